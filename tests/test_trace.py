"""The Trace holds the model's own numbers: recomputing attention from the captured q/k/v
must give back exactly what the model returned, on every supported architecture."""

import numpy as np
import pytest

from tests.tiny import TINY
from viz.models import load_model
from viz.trace import build_trace

TARGET = "la voiture rouge est rapide"


@pytest.fixture(scope="module", params=list(TINY))
def tiny_trace(request, tiny_dirs):
    loaded = load_model(f"path:{tiny_dirs[request.param]}")
    target = TARGET if loaded.family == "encoder-decoder" else None
    return request.param, loaded, build_trace(loaded, "the cat sat on the mat .", target_text=target)


def softmax_attention(stack, layer):
    """scaled dot-product attention recomputed from the captured vectors, in plain numpy."""
    scores = stack.queries[layer] @ stack.keys[layer].transpose(0, 2, 1) * stack.scaling[layer]
    if stack.bias is not None:
        scores = scores + stack.bias[layer]
    scores = np.where(stack.masked[layer], -np.inf, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    return weights / weights.sum(axis=-1, keepdims=True)


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
        layers, heads, tq, tk = stack.attentions.shape
        assert (tq, tk) == (len(rows), len(cols))
        d_head = stack.queries.shape[-1]
        assert stack.queries.shape == (layers, heads, tq, d_head)
        assert stack.keys.shape == stack.values.shape == (layers, heads, tk, d_head)
        assert stack.contexts.shape == (layers, heads, tq, d_head)
        assert stack.masked.shape == (layers, tq, tk)
    hidden = next(iter(trace.hidden_states.values()))
    assert hidden.shape[1] == len(source)
    assert hidden.shape[0] == next(iter(trace.stacks.values())).n_layers + 1
    assert "logits" in trace.outputs
    assert trace.outputs["logits"].shape[-1] == getattr(config, "decoder_vocab_size", None) or config.vocab_size
    if name == "llama":  # grouped-query attention: 6 query heads share 2 key/value heads
        assert trace.stacks["decoder"].kv_heads == 2 and trace.stacks["decoder"].n_heads == 6


def test_rows_sum_to_one_and_causal_masks(tiny_trace):
    _, _, trace = tiny_trace
    for name, stack in trace.stacks.items():
        np.testing.assert_allclose(stack.attentions.sum(-1), 1.0, atol=1e-5)
        if name == "decoder":
            upper = np.triu(np.ones(stack.attentions.shape[-2:], dtype=bool), k=1)
            assert stack.masked[:, upper].all() and not stack.masked[:, ~upper].any()
            assert np.abs(stack.attentions[..., upper]).max() == 0.0
        else:
            assert not stack.masked.any()


def test_softmax_of_captured_qk_reproduces_attention(tiny_trace):
    _, _, trace = tiny_trace
    for stack in trace.stacks.values():
        for layer in range(stack.n_layers):
            np.testing.assert_allclose(softmax_attention(stack, layer), stack.attentions[layer], atol=1e-5)


def test_attention_weighted_values_reproduce_the_head_output(tiny_trace):
    _, _, trace = tiny_trace
    for stack in trace.stacks.values():
        np.testing.assert_allclose(stack.attentions @ stack.values, stack.contexts, atol=1e-5)


def test_t5_keeps_its_position_bias_and_unscaled_scores(tiny_dirs):
    trace = build_trace(load_model(f"path:{tiny_dirs['t5']}"), "the cat sat", target_text=TARGET)
    for name, stack in trace.stacks.items():
        assert (stack.scaling == 1.0).all()
        if name == "cross":  # T5's cross-attention has no relative position bias
            assert stack.bias is None
        else:
            assert stack.bias is not None and np.abs(stack.bias).max() > 0


def test_arrays_are_read_only(tiny_trace):
    """Traces are shared between sessions through the cache: nobody may write into one."""
    _, _, trace = tiny_trace
    stack = next(iter(trace.stacks.values()))
    with pytest.raises(ValueError):
        stack.attentions[0, 0, 0, 0] = 1.0


@pytest.mark.parametrize("name, out_proj", [("gpt2", "attn.c_proj"), ("llama", "self_attn.o_proj")])
def test_head_ablation_equals_zeroing_the_head_before_the_output_projection(tiny_dirs, name, out_proj):
    """Reference: a pre-hook on the output projection that zeroes the head's slice of its input."""
    import torch

    loaded = load_model(f"path:{tiny_dirs[name]}")
    text = "the cat sat on the mat ."
    plain = build_trace(loaded, text)
    ablated = build_trace(loaded, text, ablate=(("decoder", 1, 2), ("decoder", 0, 0)))
    assert ablated.ablated == (("decoder", 1, 2), ("decoder", 0, 0))
    assert np.abs(ablated.stacks["decoder"].contexts[1, 2]).max() == 0.0
    d_head = plain.stacks["decoder"].queries.shape[-1]
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
    np.testing.assert_allclose(ablated.outputs["logits"], reference, atol=1e-5)
    assert not np.allclose(ablated.outputs["logits"], plain.outputs["logits"], atol=1e-4)
    np.testing.assert_array_equal(build_trace(loaded, text).outputs["logits"], plain.outputs["logits"])
