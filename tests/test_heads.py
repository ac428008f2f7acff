"""Issue 11: heads found by what they do -- TransformerLens's detector scores, the induction probe, typed
patterns, head beside head and value-weighted attention -- each checked against an independent reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.apptest import decode, plotly_specs, problems, run_page
from tests.tiny import build_tiny, eager_attentions
from viz.capture import AttentionRecord, MaskRule
from viz.errors import AtlasError
from viz.heads import PATTERNS, custom_pattern, head_scores, parse_rule, pattern_cells
from viz.induction import control_heads, copy_loss, induction_probe, position_bits, ranked_heads
from viz.models import load_model
from viz.trace import AttentionStack, build_trace


# ------------------------------------------------------------------ TransformerLens's definitions, written out
def tl_detection_pattern(name: str, tokens: np.ndarray) -> np.ndarray:
    """transformer_lens.head_detector's get_*_detection_pattern, step by step as it builds them."""
    t = len(tokens)
    if name == "previous token":
        pattern = np.zeros((t, t))
        pattern[1:, :-1] = np.eye(t - 1)
        return np.tril(pattern)
    duplicate = (tokens[None, :] == tokens[:, None]).astype(float)
    np.fill_diagonal(duplicate, 0)
    duplicate = np.tril(duplicate)
    if name == "duplicate token":
        return duplicate
    assert name == "induction"
    shifted = np.roll(duplicate, 1, axis=1)
    return np.tril(np.concatenate([np.zeros((t, 1)), shifted[:, 1:]], axis=1))


def tl_score(attention: np.ndarray, pattern: np.ndarray, exclude_bos: bool = False) -> float:
    """compute_head_attention_similarity_score with error_measure="mul"."""
    a = attention.astype(np.float64).copy()
    if exclude_bos:
        a[:, 0] = 0
    return float((a * pattern).sum() / a.sum())


TL_NAMES = ("previous token", "duplicate token", "induction")


def _random_causal_stack(t: int, heads: int, seed: int) -> AttentionStack:
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(heads, t, 8, generator=g) * 2, torch.randn(heads, t, 8, generator=g) * 2
    record = AttentionRecord(None, q, k, torch.zeros(heads, t, 8), MaskRule(t, t, causal=True), None, 1.0, q)
    return AttentionStack("decoder", "source", "source", (record,))


@pytest.mark.parametrize("exclude_first", [False, True])
def test_scores_equal_transformer_lens_definitions_on_hand_made_attention(exclude_first, monkeypatch):
    monkeypatch.setattr("viz.trace.BLOCK_CELLS", 4 * 40 * 7)  # several blocks of rows
    tokens = np.array([5, 1, 2, 3, 1, 2, 3, 4, 1, 2, 3, 5, 9, 9, 1, 2] * 3)
    stack = _random_causal_stack(len(tokens), 4, seed=1)
    scores = head_scores(stack, tokens, exclude_first=exclude_first)
    attention = stack.attention(0)
    for name in TL_NAMES:
        pattern = tl_detection_pattern(name, tokens)
        expected = [tl_score(attention[h], pattern, exclude_first) for h in range(4)]
        np.testing.assert_allclose(scores.scores[name][0], expected, rtol=1e-6, err_msg=name)
        rows = pattern.any(1) if not exclude_first else pattern[:, 1:].any(1)  # "where it applies"
        a = attention.astype(np.float64).copy()
        if exclude_first:
            a[..., 0] = 0
        expected_applies = (a * pattern)[:, rows].sum((-2, -1)) / a[:, rows].sum((-2, -1))
        np.testing.assert_allclose(scores.where_applies[name][0], expected_applies, rtol=1e-6, err_msg=name)


def test_scores_over_some_rows_are_the_definition_on_those_rows():
    tokens = np.array([7, *range(20, 30), *range(20, 30)])
    stack = _random_causal_stack(len(tokens), 3, seed=2)
    second = slice(11, 21)
    scores = head_scores(stack, tokens, rows=second)
    pattern = tl_detection_pattern("induction", tokens)[second]
    attention = stack.attention(0)[:, second]
    np.testing.assert_allclose(
        scores.scores["induction"][0], [tl_score(attention[h], pattern) for h in range(3)], rtol=1e-6
    )


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_scores_on_tiny_models_equal_the_definitions_on_eager_attention(name, tmp_path):
    loaded = load_model(f"path:{build_tiny(name, tmp_path)}")
    text = "the cat sat on the mat the cat sat on the mat time flies like an arrow the cat"
    trace = build_trace(loaded, text)
    stack = trace.stacks["decoder"]
    tokens = trace.tokens["source"].ids
    reference = eager_attentions(loaded, trace)["decoder"]
    scores = head_scores(stack, tokens)
    for pattern_name in TL_NAMES:
        pattern = tl_detection_pattern(pattern_name, tokens)
        expected = [
            [tl_score(reference[lay, h], pattern) for h in range(stack.n_heads)] for lay in range(stack.n_layers)
        ]
        np.testing.assert_allclose(scores.scores[pattern_name], expected, atol=1e-5, err_msg=pattern_name)


def test_a_head_gets_every_role_it_plays():
    """Issue 11: a head that parks on the first token in the first copy and does induction in the second
    was called a sink. Hand-made: rows of the first copy look at token 0, rows of the second copy at the
    token after their earlier copy."""
    n = 8
    tokens = np.array([0, *range(10, 10 + n), *range(10, 10 + n)])
    t = len(tokens)
    target = np.zeros(t, dtype=int)
    target[n + 1 :] = np.arange(2, n + 2)  # second copy: the token after the earlier copy
    keys = torch.eye(t)
    query = torch.zeros(1, t, t)
    query[0, torch.arange(t), torch.from_numpy(target)] = 80.0
    record = AttentionRecord(
        None, query, keys[None], torch.zeros(1, t, t), MaskRule(t, t, causal=True), None, 1.0, query
    )
    scores = head_scores(AttentionStack("decoder", "source", "source", (record,)), tokens)
    label = scores.roles()[0, 0]
    assert label.startswith("induction 1.00") and "first token 0.53" in label, label
    assert scores.has_role("induction")[0, 0] and scores.has_role("first token")[0, 0]
    np.testing.assert_allclose(scores.scores["induction"][0, 0], n / t, atol=1e-9)  # TL's score: diluted by copy 1


# ------------------------------------------------------------------ typed patterns
@pytest.mark.parametrize(
    "rule, builtin",
    [
        ("j == i - 1", "previous token"),
        ("tok[j] == tok[i] and j < i", "duplicate token"),
        ("tok[j-1] == tok[i] and 1 <= j <= i", "induction"),
        ("j == 0", "first token"),
        ("not (j != i)", "self"),
    ],
)
def test_typed_rules_mark_the_same_cells_as_the_builtin_patterns(rule, builtin):
    ids = np.array([3, 4, 5, 3, 4, 5, 6, 3], dtype=float)
    rows = range(len(ids))
    typed = pattern_cells(parse_rule(rule), ids, rows, len(ids), causal=True)
    expected = pattern_cells(PATTERNS[builtin], ids, rows, len(ids), causal=True)
    assert [c.tolist() for c in typed] == [c.tolist() for c in expected]


@pytest.mark.parametrize(
    "rule",
    [
        "__import__('os').system('true')",
        "i.__class__",
        "(lambda: 1)()",
        "j ** 99999999",
        "tok",
        "j % i == 0",
        "i + j",
        "10**10**10",
        "open('x')",
        "[j for j in i]",
        "j == 1" + " and j == 1" * 40,
        "",
    ],
)
def test_typed_rules_refuse_anything_but_the_small_language(rule):
    with pytest.raises(AtlasError):
        parse_rule(rule)


def test_k_back_pattern_finds_the_head_that_looks_k_back():
    t = 12
    keys = torch.eye(t)
    query = torch.zeros(2, t, t)
    query[0, torch.arange(3, t), torch.arange(0, t - 3)] = 80.0  # head 0: three tokens back
    query[1, torch.arange(1, t), torch.arange(0, t - 1)] = 80.0  # head 1: one token back
    record = AttentionRecord(
        None, query, keys.expand(2, t, t), torch.zeros(2, t, t), MaskRule(t, t, causal=True), None, 1.0, query
    )
    stack = AttentionStack("decoder", "source", "source", (record,))
    name, rule = custom_pattern("k tokens back", k=3)
    scores = head_scores(stack, np.arange(t), {name[0]: rule})
    assert ranked_heads(scores.scores[name[0]])[0] == (0, 0)
    np.testing.assert_allclose(scores.where_applies[name[0]][0], [1.0, 0.0], atol=1e-9)


# ------------------------------------------------------------------ the induction probe on SmolLM2
def test_probe_is_random_tokens_repeated_after_the_start_token(smollm2, minilm):
    probe = induction_probe(smollm2.tokenizer, 30, seed=4)
    ids = np.array(probe.ids)
    assert ids[0] == smollm2.tokenizer.bos_token_id and len(ids) == 61
    assert (ids[probe.first_copy] == ids[probe.second_copy]).all() and len(set(ids[probe.first_copy])) == 30
    assert not set(ids[1:]) & set(smollm2.tokenizer.all_special_ids)
    assert induction_probe(smollm2.tokenizer, 30, seed=4) == probe != induction_probe(smollm2.tokenizer, 30, seed=5)
    framed = induction_probe(minilm.tokenizer, 10, seed=0).ids  # an encoder's own framing: [CLS] … [SEP]
    assert (framed[0], framed[-1]) == (minilm.tokenizer.cls_token_id, minilm.tokenizer.sep_token_id)


@pytest.fixture(scope="module")
def smollm2_probe(smollm2):
    probe = induction_probe(smollm2.tokenizer, 50, seed=0)
    trace = build_trace(smollm2, probe.text, token_ids=probe.ids, max_tokens=256)
    return probe, trace


def test_probe_ranks_smollm2s_induction_heads_by_the_definition(smollm2, smollm2_probe):
    """The ranking equals TL's induction score computed from SmolLM2's eager attention, and the heads
    at the top are labelled induction heads and really are: their stripe sits on the earlier copy."""
    probe, trace = smollm2_probe
    stack = trace.stacks["decoder"]
    scores = head_scores(stack, trace.tokens["source"].ids, rows=probe.second_copy)
    reference = eager_attentions(smollm2, trace)["decoder"][:, :, probe.second_copy]
    pattern = tl_detection_pattern("induction", np.array(probe.ids))[probe.second_copy]
    expected = np.array([[tl_score(reference[lay, h], pattern) for h in range(9)] for lay in range(stack.n_layers)])
    np.testing.assert_allclose(scores.scores["induction"], expected, atol=2e-4)
    top = ranked_heads(scores.scores["induction"])[:3]
    assert top == ranked_heads(expected)[:3]
    assert all(scores.has_role("induction")[h] for h in top) and scores.scores["induction"][top[0]] > 0.7
    assert (scores.has_role("induction").sum()) < 0.1 * stack.n_layers * stack.n_heads  # a few specialists


def test_switching_off_the_top_induction_heads_raises_the_second_copys_loss(smollm2, smollm2_probe):
    probe, trace = smollm2_probe
    scores = head_scores(trace.stacks["decoder"], trace.tokens["source"].ids, rows=probe.second_copy)
    ranked = ranked_heads(scores.scores["induction"])
    run = lambda heads: position_bits(  # noqa: E731
        build_trace(
            smollm2, probe.text, token_ids=probe.ids, max_tokens=256, ablate=tuple(("decoder", *h) for h in heads)
        )
    )
    base = copy_loss(position_bits(trace), probe.second_copy)
    assert copy_loss(position_bits(trace), probe.first_copy) > base + 10  # in-context learning: copy 2 is easy
    top_off = copy_loss(run(ranked[:5]), probe.second_copy)
    random_off = copy_loss(run(control_heads(ranked, 5, seed=0)), probe.second_copy)
    assert top_off > base + 5 and random_off < base + 2, (base, top_off, random_off)


def test_probe_page_shows_the_ranking_the_loss_and_the_ablation(smollm2, smollm2_probe):
    probe, trace = smollm2_probe
    at = run_page("pages/11_Induction_probe.py", model="smollm2", text="Hello", probe_length=50, probe_seed=0)
    assert problems(at) == []
    ranking = at.dataframe[0].value
    scores = head_scores(trace.stacks["decoder"], trace.tokens["source"].ids, rows=probe.second_copy)
    ranked = ranked_heads(scores.scores["induction"])
    assert list(zip(ranking["layer"], ranking["head"], strict=True))[:5] == ranked[:5]
    assert ranking["roles on the second copy"][0].startswith("induction")
    base = copy_loss(position_bits(trace), probe.second_copy)
    metrics = [m.value for m in at.metric]
    assert metrics[0] == f"{base:.2f} bits/token" and float(metrics[1].split()[0]) > base + 5
    lines = next(s for s in plotly_specs(at) if s["layout"]["title"]["text"].startswith("surprisal"))
    np.testing.assert_allclose(decode(lines["data"][0]["y"])[1:], position_bits(trace)[1:], rtol=1e-5)


def test_a_ranked_head_opens_on_the_neuron_view_and_in_ablation():
    """Open the 2nd-ranked head: the next page shows exactly that head (not layer 0, head 1)."""
    at = run_page("pages/11_Induction_probe.py", model="smollm2", text="Hello")
    ranking = at.dataframe[0].value
    at.selectbox(key="probe_rank").set_value(1).run()
    layer, head = int(ranking["layer"][1]), int(ranking["head"][1])
    at.button(key="probe_open_pages/3_Neuron_view.py").click().run()
    assert problems(at) == []
    assert (at.slider(key="layer").value, at.slider(key="head").value) == (layer, head)
    at.switch_page("pages/11_Induction_probe.py").run()
    at.button(key="probe_open_pages/9_Head_ablation.py").click().run()
    assert at.multiselect(key="ablate_heads").value == [("decoder", layer, head)]


# ------------------------------------------------------------------ the Head roles page
def test_head_roles_page_ranks_heads_by_a_typed_rule(minilm):
    text = "The capital of France is Paris. The capital of Germany is Berlin."
    at = run_page("pages/7_Head_roles.py", model="minilm", text=text)
    at.selectbox(key="pattern_kind").set_value("a rule you type").run()
    at.text_input(key="pattern_rule").set_value("j == i - 1").run()
    assert problems(at) == []
    trace = build_trace(minilm, text)
    expected = head_scores(trace.stacks["encoder"], trace.tokens["source"].ids)
    table = at.dataframe[1].value
    assert (int(table["layer"][0]), int(table["head"][0])) == ranked_heads(expected.scores["previous token"])[0]
    at.text_input(key="pattern_rule").set_value("__import__('os')").run()
    assert [w.value for w in at.warning] and not at.exception  # a message, not a traceback


# ------------------------------------------------------------------ value-weighted attention (Kobayashi et al. 2020)
def _reference_value_norms(name: str, loaded, trace, layer: int) -> np.ndarray:
    """‖f_h(v_j)‖ from the model's weights and its hidden states, module by module: [heads, keys]."""
    h = torch.from_numpy(trace.hidden_states[next(iter(trace.hidden_states))][layer].copy())[None]
    config = loaded.model.config
    if name == "gpt2":
        block = loaded.model.transformer.h[layer]
        v = block.attn.c_attn(block.ln_1(h))[..., 2 * config.n_embd :]
        w_o = block.attn.c_proj.weight  # Conv1D: [in, out]
        heads = kv = config.n_head
    elif name == "bert":
        attention = loaded.model.bert.encoder.layer[layer].attention
        v = attention.self.value(h)
        w_o = attention.output.dense.weight.T
        heads = kv = config.num_attention_heads
    else:  # llama, grouped-query
        block = loaded.model.model.layers[layer]
        v = block.self_attn.v_proj(block.input_layernorm(h))
        w_o = block.self_attn.o_proj.weight.T
        heads, kv = config.num_attention_heads, config.num_key_value_heads
    d = w_o.shape[0] // heads
    v = v[0].reshape(-1, kv, d)
    out = np.zeros((heads, v.shape[0]))
    for head in range(heads):
        moved = v[:, head // (heads // kv)] @ w_o[head * d : (head + 1) * d]  # [keys, d_model]: the vectors themselves
        out[head] = moved.norm(dim=-1).detach().numpy()
    return out


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama"])
def test_value_weighted_attention_equals_a_reference_from_the_weights(name, tmp_path):
    loaded = load_model(f"path:{build_tiny(name, tmp_path)}")
    trace = build_trace(loaded, "the cat sat on the mat time flies like an arrow")
    stack = next(iter(trace.stacks.values()))
    attention = eager_attentions(loaded, trace)[stack.name]
    for layer in range(stack.n_layers):
        norms = _reference_value_norms(name, loaded, trace, layer)
        expected = attention[layer] * norms[:, None, :]  # ‖α_ij f(v_j)‖ = α_ij ‖f(v_j)‖, α ≥ 0
        np.testing.assert_allclose(stack.attention(layer, value_weighted=True), expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(stack.attention(layer, 1, value_weighted=True), expected[1], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(stack.head_mean(layer, value_weighted=True), expected.mean(0), rtol=1e-4, atol=1e-6)


def test_value_weighted_option_redraws_the_maps_with_the_norms(minilm):
    text = "The cat sat on the mat."
    at = run_page(model="minilm", text=text, layer=1, head=2)
    at.checkbox(key="value_weighted").check().run()
    assert problems(at) == []
    head_map = plotly_specs(at)[0]["data"][0]
    expected = build_trace(minilm, text).stacks["encoder"].attention(1, 2, value_weighted=True)
    np.testing.assert_allclose(decode(head_map["z"]), expected, rtol=1e-5)
    assert "‖α·f(v)‖" in head_map["hovertemplate"]


# ------------------------------------------------------------------ head beside head
def test_two_heads_side_by_side_and_their_difference(minilm):
    text = "The cat sat on the mat."
    at = run_page("pages/12_Head_beside_head.py", model="minilm", text=text)
    at.slider(key="beside_layer_a").set_value(2).run()
    at.slider(key="beside_head_b").set_value(7).run()
    assert problems(at) == []
    stack = build_trace(minilm, text).stacks["encoder"]
    a, b = stack.attention(2, 0), stack.attention(0, 7)
    maps = [s["data"][0] for s in plotly_specs(at) if s["data"][0]["type"] == "heatmap"]
    np.testing.assert_allclose(decode(maps[0]["z"]), a, rtol=1e-5)
    np.testing.assert_allclose(decode(maps[1]["z"]), b, rtol=1e-5)
    assert maps[0]["zmax"] == maps[1]["zmax"] == pytest.approx(max(a.max(), b.max()))  # one colour scale
    np.testing.assert_allclose(decode(maps[2]["z"]), a - b, atol=1e-6)
    at.selectbox(key="beside_model_b").set_value("smollm2").run()  # two tokenizers: no cell-by-cell difference
    assert problems(at) == [] and any("different tokens" in i.value for i in at.info)


def test_a_built_in_pattern_is_ranked_from_the_standard_scores_without_another_pass(monkeypatch):
    """Ranking by 'the token after its previous occurrence' (the default) or 'k = 1 tokens back' reads the
    scores already computed for the grid; only a new pattern streams every head's attention again."""
    import viz.heads

    calls = []
    original = viz.heads.head_stats
    monkeypatch.setattr(viz.heads, "head_stats", lambda *a, **kw: calls.append(a[2]) or original(*a, **kw))
    at = run_page("pages/7_Head_roles.py", model="minilm", text="A pattern counting text, seen once here.")
    assert problems(at) == [] and len(calls) == 1  # the default (induction) ranking: the grid's pass only
    at.selectbox(key="pattern_kind").set_value("k tokens back").run()  # k = 2: a pattern of its own
    assert len(calls) == 2 and list(calls[1]) == ["k tokens back"]
    at.number_input(key="pattern_k").set_value(1).run()  # = previous token: no new pass
    assert problems(at) == [] and len(calls) == 2
    assert (int(at.dataframe[1].value["layer"][0]), int(at.dataframe[1].value["head"][0])) == (0, 2)  # prev-token head
