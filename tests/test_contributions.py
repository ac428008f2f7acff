"""Issue 21: information-flow contributions (Ferrando & Voita 2024) against a reference written from the
formula: an eager copy of the model, forward hooks on its own modules (named here per architecture, not
through the app's adapter table), the full [positions × positions × heads × d_model] parts tensor of each
layer, and c = max(‖whole‖₁ − ‖whole − part‖₁, ε) normalised over the parts."""

import copy

import numpy as np
import pytest
import torch

from tests.tiny import build_tiny
from viz.contributions import EPS, Graph, Node, default_target, edges_csv, kept_edges, routes, stage_parts
from viz.models import load_model
from viz.trace import build_trace

TEXT = "the cat sat on the mat , time flies like an arrow"


def formula(whole: torch.Tensor, parts: torch.Tensor, norm: int = 1) -> torch.Tensor:
    """The paper's definition (norm=2 is the deliberately wrong variant the tests must tell apart)."""
    whole, parts = whole.double(), parts.double()
    raw = (torch.linalg.vector_norm(whole, norm) - torch.linalg.vector_norm(whole - parts, norm, dim=-1)).clamp_min(EPS)
    return raw / raw.sum()


class Hooks:
    """Record a module's input (args[0]) or output under a name, for every call."""

    def __init__(self):
        self.seen, self.handles = {}, []

    def output(self, module, name):
        self.handles.append(module.register_forward_hook(lambda m, a, o: self.seen.__setitem__(name, _first(o))))

    def input(self, module, name):
        self.handles.append(module.register_forward_pre_hook(lambda m, a: self.seen.__setitem__(name, a[0])))

    def remove(self):
        for h in self.handles:
            h.remove()


def _first(o):
    return (o[0] if isinstance(o, tuple) else o).detach()


def _eager(loaded):
    model = copy.deepcopy(loaded.model)
    model.set_attn_implementation("eager")
    return model.eval()


def _heads_out(weight: torch.Tensor, heads: int, conv1d: bool = False) -> torch.Tensor:
    """W_O per head [heads, d_head, d_model] from a Linear ([out, in]) or GPT-2 Conv1D ([in, out]) weight."""
    w = weight if conv1d else weight.T
    return w.detach().reshape(heads, -1, w.shape[-1]).float()


def _attention_reference(alpha, values, w_o, whole, residual, norm=1, causal=True, swap_heads=False):
    """Per query i: contributions of every (head, visible key) part and of the residual. alpha [H, Tq, Tk],
    values [Tk, H, d_head] (the value as the model computes it), w_o [H, d_head, d]."""
    heads, tq, tk = alpha.shape
    moved = torch.einsum("khd,hde->hke", values.double(), w_o.double())  # [H, Tk, d]: what each head moves
    if swap_heads:
        moved = moved.flip(0)
    out = []
    for i in range(tq):
        keys = slice(0, i + 1) if causal else slice(0, tk)
        parts = (alpha[:, i, keys, None].double() * moved[:, keys]).reshape(-1, moved.shape[-1])
        c = formula(whole[i], torch.cat([parts, residual[i][None]]), norm)
        out.append((c[:-1].reshape(heads, -1).numpy(), float(c[-1])))
    return out


def _compare(trace, loaded, stack, layer, stage, reference, atol=1e-4):
    for i, (heads, residual) in enumerate(reference):
        parts = stage_parts(loaded, trace, Node(stack, layer, i, stage))
        np.testing.assert_allclose(parts.heads, heads, atol=atol, err_msg=f"{stack} {layer} {i} {stage}")
        assert parts.residual == pytest.approx(residual, abs=atol)
        assert parts.heads.sum() + parts.residual == pytest.approx(1.0, abs=1e-5)


def _mlp_reference(mlp_out, read, norm=1):
    return [formula(read[i] + mlp_out[i], torch.stack([mlp_out[i], read[i]]), norm).numpy() for i in range(len(read))]


def _compare_mlp(trace, loaded, stack, layer, reference, whole=None):
    for i, (mlp, residual) in enumerate(reference):
        parts = stage_parts(loaded, trace, Node(stack, layer, i, "mlp"))
        assert (parts.mlp, parts.residual) == pytest.approx((mlp, residual), abs=1e-4)


# ------------------------------------------------------------------ references, one per architecture
def _gpt2_like(loaded, trace, llama: bool):
    """Pre-LayerNorm decoders: hooks on each block's input, its attention's value projection and output
    projection, and the MLP's output (GPT-2: c_attn's third part; Llama: v_proj, o_proj, mlp)."""
    model = _eager(loaded)
    blocks = model.model.layers if llama else model.transformer.h
    hooks = Hooks()
    for n, b in enumerate(blocks):
        hooks.input(b, f"x{n}")
        hooks.output(b.self_attn.v_proj if llama else b.attn.c_attn, f"v{n}")
        hooks.output(b.self_attn.o_proj if llama else b.attn.c_proj, f"attn{n}")
        hooks.output(b.mlp, f"mlp{n}")
    ids = torch.tensor([trace.tokens["source"].ids.tolist()])
    with torch.no_grad():
        out = model(input_ids=ids, output_attentions=True)
    hooks.remove()
    cfg = model.config
    heads = cfg.num_attention_heads if llama else cfg.n_head
    kv = getattr(cfg, "num_key_value_heads", heads)
    d = cfg.hidden_size
    checks = []
    for n, b in enumerate(blocks):
        x, attn, mlp = (hooks.seen[f"{k}{n}"][0].float() for k in ("x", "attn", "mlp"))
        v = hooks.seen[f"v{n}"][0].float()
        v = v if llama else v[:, 2 * d :]  # GPT-2's fused q, k, v
        v = v.reshape(len(x), kv, -1).repeat_interleave(heads // kv, dim=1)  # grouped-query heads share one
        w_o = _heads_out(b.self_attn.o_proj.weight if llama else b.attn.c_proj.weight, heads, conv1d=not llama)
        alpha = out.attentions[n][0].float()
        checks.append((n, alpha, v, w_o, x + attn, x, attn, mlp))
    return checks


@pytest.mark.parametrize("name", ["gpt2", "llama", "smollm2"])
def test_decoder_contributions_equal_the_formula(name, tiny_dirs, smollm2):
    loaded = smollm2 if name == "smollm2" else load_model(f"path:{tiny_dirs[name]}")
    trace = build_trace(loaded, TEXT)
    for n, alpha, v, w_o, whole, x, attn, mlp in _gpt2_like(loaded, trace, llama=name != "gpt2"):
        _compare(trace, loaded, "decoder", n, "attention", _attention_reference(alpha, v, w_o, whole, x))
        mlp_ref = _mlp_reference(mlp, whole)
        _compare_mlp(trace, loaded, "decoder", n, mlp_ref)
        if n == 1:  # the deliberately wrong variants give other numbers: the comparison above would fail
            ours = stage_parts(loaded, trace, Node("decoder", n, 5, "attention")).heads
            for wrong in (dict(norm=2), dict(swap_heads=True)):
                assert not np.allclose(ours, _attention_reference(alpha, v, w_o, whole, x, **wrong)[5][0], atol=1e-4)
            with_bias_as_part = _attention_reference(alpha, v, w_o, whole - attn + attn, x)  # same whole: no change
            assert np.allclose(ours, with_bias_as_part[5][0], atol=1e-4)


def test_bert_contributions_are_shares_of_the_sum_before_each_layernorm(tiny_dirs):
    """Post-LayerNorm: the attention stage's whole is x + attention (the LayerNorm's input), the MLP stage's
    is the normalised mid + the MLP's output (the second LayerNorm's input)."""
    loaded = load_model(f"path:{tiny_dirs['bert']}")
    trace = build_trace(loaded, TEXT)
    model = _eager(loaded)
    hooks = Hooks()
    layers = model.bert.encoder.layer
    for n, layer in enumerate(layers):
        hooks.input(layer, f"x{n}")
        hooks.output(layer.attention.self.value, f"v{n}")
        hooks.input(layer.attention.output.LayerNorm, f"sum{n}")
        hooks.output(layer.attention.output, f"mid{n}")
        hooks.output(layer.output.dense, f"mlp{n}")
    ids = torch.tensor([trace.tokens["source"].ids.tolist()])
    with torch.no_grad():
        out = model(input_ids=ids, output_attentions=True)
    hooks.remove()
    heads = model.config.num_attention_heads
    for n, layer in enumerate(layers):
        x, v, whole, mid, mlp = (hooks.seen[f"{k}{n}"][0].float() for k in ("x", "v", "sum", "mid", "mlp"))
        v = v.reshape(len(x), heads, -1)
        w_o = _heads_out(layer.attention.output.dense.weight, heads)
        reference = _attention_reference(out.attentions[n][0].float(), v, w_o, whole, x, causal=False)
        _compare(trace, loaded, "encoder", n, "attention", reference)
        _compare_mlp(trace, loaded, "encoder", n, _mlp_reference(mlp, mid))
        wrong = _attention_reference(out.attentions[n][0].float(), v, w_o, mid, x, causal=False)  # after the LN
        assert not np.allclose(stage_parts(loaded, trace, Node("encoder", n, 2, "attention")).heads, wrong[2][0])


def test_encoder_decoder_cross_contributions_come_from_the_encoders_positions(tiny_dirs):
    """BART (post-LayerNorm): the cross stage's parts are the encoder's positions through the cross heads."""
    loaded = load_model(f"path:{tiny_dirs['bart']}")
    trace = build_trace(loaded, TEXT, target_text="la voiture rouge est rapide")
    model = _eager(loaded)
    hooks = Hooks()
    decoder = model.model.decoder.layers
    for n, layer in enumerate(decoder):
        hooks.output(layer.encoder_attn.v_proj, f"v{n}")
        hooks.input(layer.encoder_attn_layer_norm, f"sum{n}")
        hooks.output(layer.self_attn_layer_norm, f"read{n}")
    kwargs = dict(
        input_ids=torch.tensor([trace.tokens["source"].ids.tolist()]),
        decoder_input_ids=torch.tensor([trace.tokens["decoder_input"].ids.tolist()]),
    )
    with torch.no_grad():
        out = model(**kwargs, output_attentions=True)
    hooks.remove()
    heads = model.config.decoder_attention_heads
    for n, layer in enumerate(decoder):
        v = hooks.seen[f"v{n}"][0].float()
        v = v.reshape(len(v), heads, -1)
        w_o = _heads_out(layer.encoder_attn.out_proj.weight, heads)
        whole, read = hooks.seen[f"sum{n}"][0].float(), hooks.seen[f"read{n}"][0].float()
        reference = _attention_reference(out.cross_attentions[n][0].float(), v, w_o, whole, read, causal=False)
        _compare(trace, loaded, "decoder", n, "cross", reference)
        parts = stage_parts(loaded, trace, Node("decoder", n, 1, "cross"))
        assert {s.stack for s in parts.sources} == {"encoder"} and len(parts.sources) == len(trace.tokens["source"])


# ------------------------------------------------------------------ threshold, routes, export
def test_threshold_and_renormalise_follow_the_papers_rule(smollm2):
    trace = build_trace(smollm2, TEXT)
    parts = stage_parts(smollm2, trace, Node("decoder", 10, 8, "attention"))
    per_source = parts.heads.sum(0)
    for threshold in (0.01, 0.04, 0.1):
        kept = kept_edges(parts, threshold)
        keep = per_source > threshold
        expected_total = per_source[keep].sum() + (parts.residual if parts.residual > threshold else 0.0)
        attention = [e for e in kept if e.kind == "attention"]
        assert {e.source.position for e in attention} == {parts.sources[j].position for j in np.flatnonzero(keep)}
        for e in attention:  # one edge per head, each scaled by the same renormalisation
            j = [s.position for s in parts.sources].index(e.source.position)
            assert e.contribution == pytest.approx(parts.heads[e.head, j] / expected_total, rel=1e-6)
        assert sum(e.contribution for e in kept) == pytest.approx(1.0)
        raw = kept_edges(parts, threshold, renormalise=False)
        assert sum(e.contribution for e in raw) == pytest.approx(expected_total)


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert", "t5", "bart", "marian", "distilbert", "roberta"])
def test_routes_on_every_family(name, tiny_dirs):
    loaded = load_model(f"path:{tiny_dirs[name]}")
    target = "la voiture rouge" if loaded.family == "encoder-decoder" else None
    trace = build_trace(loaded, TEXT, target_text=target)
    graph = routes(loaded, trace, default_target(trace, loaded.tokenizer), threshold=0.0)
    assert graph.edges and graph.target in graph.nodes
    if loaded.family == "encoder-decoder":  # with no threshold the routes reach into the encoder
        assert any(e.kind == "cross" for e in graph.edges) and any(n.stack == "encoder" for n in graph.nodes)
    incoming: dict = {}
    for e in graph.edges:
        incoming[e.target] = incoming.get(e.target, 0.0) + e.contribution
    assert all(total == pytest.approx(1.0, abs=1e-5) for total in incoming.values())  # every node's parts sum to 1


def test_the_csv_holds_the_computed_edges(smollm2):
    trace = build_trace(smollm2, TEXT)
    graph: Graph = routes(smollm2, trace, default_target(trace, smollm2.tokenizer))
    lines = edges_csv(graph).decode().strip().split("\n")
    assert lines[0] == "layer,stage,source_position,target_position,head,contribution"
    assert len(lines) - 1 == len(graph.edges)
    for line, edge in zip(lines[1:], graph.edges, strict=True):
        layer, stage, source, target, head, value = line.split(",")
        assert (int(layer), stage, int(source), int(target)) == (
            edge.target.layer, edge.kind, edge.source.position, edge.target.position)  # fmt: skip
        assert head == ("" if edge.head is None else str(edge.head))
        assert float(value) == pytest.approx(edge.contribution, rel=1e-5)


def test_routes_at_thousands_of_tokens_hold_no_position_by_position_array(tmp_path):
    directory = build_tiny("llama", tmp_path, max_position_embeddings=4096)
    loaded = load_model(f"path:{directory}")
    trace = build_trace(loaded, " ".join(["the cat sat on the mat"] * 500), max_tokens=3000)
    graph = routes(loaded, trace, default_target(trace, loaded.tokenizer), threshold=0.04)
    assert graph.target.position == 2999 and graph.edges
