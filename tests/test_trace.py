"""The Trace holds q/k/v, never T×T attention; every map it computes on request must equal what
the model's own eager attention returns, on every supported architecture and at long lengths."""

import numpy as np
import pytest
import torch
import transformers

from tests.tiny import TINY, all_attention, build_tiny, eager_attentions, tokenizer_for
from viz.capture import MaskRule
from viz.models import load_model
from viz.trace import build_trace

TARGET = "la voiture rouge est rapide"


@pytest.fixture(scope="module", params=list(TINY))
def tiny_trace(request, tiny_dirs):
    loaded = load_model(f"path:{tiny_dirs[request.param]}")
    target = TARGET if loaded.family == "encoder-decoder" else None
    return request.param, loaded, build_trace(loaded, "the cat sat on the mat .", target_text=target)


def test_stacks_and_shapes(tiny_trace):
    name, loaded, trace = tiny_trace
    config = loaded.model.config
    expected = {"encoder"} if loaded.family == "encoder" else {"decoder"}
    if loaded.family == "encoder-decoder":
        expected = {"encoder", "decoder", "cross"}
    assert set(trace.stacks) == expected
    source = trace.tokens["source"]
    for stack_name, stack in trace.stacks.items():
        rows, cols = trace.stack_tokens(stack_name)
        assert (stack.n_queries, stack.n_keys) == (len(rows), len(cols))
        for layer in range(stack.n_layers):
            record = stack.layers[layer]
            assert record.query.shape == (stack.n_heads, len(rows), stack.d_head)
            assert record.key.shape == record.value.shape == (stack.kv_heads, len(cols), stack.d_head)
            assert record.context.shape == (stack.n_heads, len(rows), stack.d_head)
        assert stack.attention(0).shape == (stack.n_heads, len(rows), len(cols))
    hidden = next(iter(trace.hidden_states.values()))
    assert hidden.shape[1] == len(source)
    assert hidden.shape[0] == next(iter(trace.stacks.values())).n_layers + 1
    assert trace.has_logits
    assert trace.logits().shape[-1] == getattr(config, "decoder_vocab_size", None) or config.vocab_size
    if name == "llama":  # grouped-query attention: 6 query heads share 2 key/value heads, kept unrepeated
        stack = trace.stacks["decoder"]
        assert (stack.kv_heads, stack.n_heads) == (2, 6) and stack.layers[0].key.shape[0] == 2
        np.testing.assert_array_equal(stack.key(0, 2), stack.key(0, 0))  # heads 0-2 read kv head 0
        assert not np.array_equal(stack.key(0, 3), stack.key(0, 0))


def test_on_demand_maps_equal_the_models_eager_attention(tiny_trace):
    """The contract of the lazy Trace: softmax(q·kᵀ·scale + bias, masked) == eager `output_attentions`."""
    _, loaded, trace = tiny_trace
    reference = eager_attentions(loaded, trace)
    for name, stack in trace.stacks.items():
        np.testing.assert_allclose(all_attention(stack), reference[name], atol=1e-5)
        for layer in range(stack.n_layers):
            np.testing.assert_allclose(stack.head_mean(layer), reference[name][layer].mean(0), atol=1e-5)
            # a zoomed region keeps the true weights (rows are normalised over all keys, then cut)
            rows, cols = slice(1, 4), slice(2, stack.n_keys)
            np.testing.assert_allclose(
                stack.attention(layer, 1, rows, cols), reference[name][layer, 1, rows, cols], atol=1e-5
            )


def test_rows_sum_to_one_and_causal_masks(tiny_trace):
    _, _, trace = tiny_trace
    for name, stack in trace.stacks.items():
        weights = all_attention(stack)
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
        forbidden = stack.forbidden(0)
        if name == "decoder":
            upper = np.triu(np.ones(forbidden.shape, dtype=bool), k=1)
            assert (forbidden == upper).all() and stack.layers[0].mask.description == "causal"
            assert np.abs(weights[..., upper]).max() == 0.0
        else:
            assert not forbidden.any()


def test_attention_weighted_values_reproduce_the_kernels_head_output(tiny_trace):
    """The head outputs come from the fused sdpa kernel; recomputed maps times v must give them back."""
    _, _, trace = tiny_trace
    for stack in trace.stacks.values():
        for layer in range(stack.n_layers):
            for head in range(stack.n_heads):
                np.testing.assert_allclose(
                    stack.attention(layer, head) @ stack.value(layer, head), stack.context(layer, head), atol=1e-5
                )


def test_t5_keeps_its_position_bias_compact_and_unscaled_scores(tiny_dirs):
    trace = build_trace(load_model(f"path:{tiny_dirs['t5']}"), "the cat sat", target_text=TARGET)
    for name, stack in trace.stacks.items():
        assert all(stack.scaling(layer) == 1.0 for layer in range(stack.n_layers))
        if name == "cross":  # T5's cross-attention has no relative position bias
            assert stack.layers[0].bias is None
        else:  # one value per head and relative offset, not [heads, Tq, Tk]
            bias = stack.layers[0].bias.by_offset
            assert bias.shape == (stack.n_heads, stack.n_queries + stack.n_keys - 1)
            assert np.abs(stack.bias(0, 1)).max() > 0


def test_returned_arrays_cannot_change_the_shared_trace(tiny_trace):
    """Traces are shared between sessions through the cache: nobody may write into one."""
    _, _, trace = tiny_trace
    stack = next(iter(trace.stacks.values()))
    with pytest.raises(ValueError):
        stack.query(0, 0)[0, 0] = 1.0
    with pytest.raises(ValueError):
        stack.key(0, 0)[0, 0] = 1.0
    assert not np.shares_memory(stack.attention(0, 0), stack.attention(0, 0))  # maps are computed afresh


def test_explicit_mask_rule_round_trips():
    """Patterns that are neither causal nor a window are kept bit for bit, never guessed."""
    forbidden = np.random.default_rng(0).random((5, 11)) > 0.6
    rule = MaskRule(5, 11, explicit=np.packbits(forbidden, axis=1))
    np.testing.assert_array_equal(rule.forbidden(slice(None), slice(None)).numpy(), forbidden)
    np.testing.assert_array_equal(rule.forbidden(slice(1, 3), slice(4, 9)).numpy(), forbidden[1:3, 4:9])
    window = MaskRule(6, 6, causal=True, window=2).forbidden(slice(None), slice(None)).numpy()
    assert window[5].tolist() == [True, True, True, True, False, False]


# ------------------------------------------------------------------ long inputs on tiny models
LONG = 3000


@pytest.fixture(scope="module")
def long_dirs(tmp_path_factory):
    """Tiny models with room for thousands of positions (cheap: 2 layers, d=32/48)."""
    dirs = {
        name: build_tiny(name, tmp_path_factory.mktemp(f"long-{name}"), max_position_embeddings=4096)
        for name in ("llama", "bert")
    }
    # Mistral: Llama with a sliding window of 64 tokens.
    mistral = tmp_path_factory.mktemp("long-mistral")
    config = transformers.MistralConfig(
        vocab_size=64, hidden_size=48, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
        intermediate_size=64, max_position_embeddings=4096, sliding_window=64, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.MistralForCausalLM(config).save_pretrained(mistral)
    tokenizer_for("none").save_pretrained(mistral)
    return {**dirs, "mistral": mistral}


def long_text(n_words: int) -> str:
    words = "the cat sat on the mat time flies like an arrow paris is the capital of france".split()
    return " ".join(words[i % len(words)] for i in range(n_words))


@pytest.mark.parametrize("name", ["llama", "mistral", "bert"])
def test_long_context_maps_equal_eager_and_the_trace_holds_no_t_by_t_array(long_dirs, name):
    loaded = load_model(f"path:{long_dirs[name]}")
    loaded.tokenizer.model_max_length = 8192
    trace = build_trace(loaded, long_text(LONG + 100), max_tokens=LONG)
    stack = next(iter(trace.stacks.values()))
    assert stack.n_queries == LONG
    reference = eager_attentions(loaded, trace)[stack.name]
    for layer in range(stack.n_layers):
        for head in (0, stack.n_heads - 1):
            np.testing.assert_allclose(stack.attention(layer, head), reference[layer, head], atol=1e-5)
    if name == "mistral":
        assert stack.layers[0].mask.description == "causal, sliding window of 64"
        assert stack.attention(1, 0, rows=slice(LONG - 1, LONG))[0, : LONG - 64].max() == 0.0
    # bytes: q/k/v/outputs grow with T, the attention would grow with T²
    per_head_maps = stack.n_layers * stack.n_heads * LONG * LONG * 4
    assert stack.nbytes < per_head_maps / 50
    shapes = [tuple(t.shape) for r in stack.layers for t in (r.query, r.key, r.value, r.context)]
    assert not any(shape.count(LONG) > 1 for shape in shapes)


@pytest.mark.parametrize("name, out_proj", [("gpt2", "attn.c_proj"), ("llama", "self_attn.o_proj")])
def test_head_ablation_equals_zeroing_the_head_before_the_output_projection(tiny_dirs, name, out_proj):
    """Reference: a pre-hook on the output projection that zeroes the head's slice of its input."""
    loaded = load_model(f"path:{tiny_dirs[name]}")
    text = "the cat sat on the mat ."
    plain = build_trace(loaded, text)
    ablated = build_trace(loaded, text, ablate=(("decoder", 1, 2), ("decoder", 0, 0)))
    assert ablated.ablated == (("decoder", 1, 2), ("decoder", 0, 0))
    assert np.abs(ablated.stacks["decoder"].context(1, 2)).max() == 0.0
    d_head = plain.stacks["decoder"].d_head
    layers = loaded.model.transformer.h if name == "gpt2" else loaded.model.model.layers
    handles = []
    for layer, head in ((1, 2), (0, 0)):
        module = layers[layer].get_submodule(out_proj)

        def zero(_, args, head=head):
            x = args[0].clone()
            x[..., head * d_head : (head + 1) * d_head] = 0.0
            return (x,)

        handles.append(module.register_forward_pre_hook(zero))
    try:
        with torch.no_grad():
            reference = loaded.model(**loaded.tokenizer(text, return_tensors="pt")).logits[0].numpy()
    finally:
        for handle in handles:
            handle.remove()
    np.testing.assert_allclose(ablated.logits(), reference, atol=1e-5)
    assert not np.allclose(ablated.logits(), plain.logits(), atol=1e-4)
    np.testing.assert_array_equal(build_trace(loaded, text).logits(), plain.logits())


def test_attention_modules_are_learnt_when_the_model_loads(tiny_dirs):
    loaded = load_model(f"path:{tiny_dirs['marian']}")
    assert {name: len(m) for name, m in loaded.attention_modules.items()} == {"encoder": 2, "decoder": 2, "cross": 2}
    assert loaded.forward_count == 0  # the probe pass is not a traced pass


def test_spread_placement_loads_and_traces(tiny_dirs):
    """device_map="auto" (accelerate) -- on a machine without GPUs everything lands on the CPU."""
    loaded = load_model(f"path:{tiny_dirs['llama']}", device="spread")
    trace = build_trace(loaded, "the cat sat on the mat")
    reference = eager_attentions(loaded, trace)["decoder"]
    np.testing.assert_allclose(all_attention(trace.stacks["decoder"]), reference, atol=1e-5)


def test_roberta_counts_positions_after_its_padding_index(tiny_dirs):
    """RoBERTa numbers positions from pad_token_id + 1: roberta-base's 514 position rows hold 512 tokens.
    The cap was max_position_embeddings, so a long text ran the model past its table (IndexError)."""
    from viz.models import model_position_limit

    loaded = load_model(f"path:{tiny_dirs['roberta']}")
    config = loaded.model.config
    assert loaded.position_limit == config.max_position_embeddings - config.pad_token_id - 1
    trace = build_trace(loaded, "the cat sat on the mat " * 40, max_tokens=1024)
    assert len(trace.tokens["source"]) == loaded.position_limit and trace.dropped_tokens > 0
    reference = eager_attentions(loaded, trace)["encoder"]
    np.testing.assert_allclose(all_attention(trace.stacks["encoder"]), reference, atol=1e-5)

    small = dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    roberta_base_like = transformers.RobertaModel(
        transformers.RobertaConfig(**small, max_position_embeddings=514, pad_token_id=1)
    )
    bert_base_like = transformers.BertModel(transformers.BertConfig(**small, max_position_embeddings=512))
    assert (model_position_limit(roberta_base_like), model_position_limit(bert_base_like)) == (512, 512)
