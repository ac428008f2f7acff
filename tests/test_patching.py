"""Issue 22: activation patching, attribution patching and Captum attributions against references: every
patched run again on its own, on an eager copy of the model, with plain forward hooks on its own modules."""

import copy

import numpy as np
import pytest
import torch

from viz.attribution import METHODS, baseline_ids, head_agreement, spearman, token_attribution
from viz.models import load_model
from viz.patching import Patch, Question, _batch_forward, _source_values, attribution_patching, metric, patching
from viz.patching import baseline as base_logits
from viz.trace import build_trace

PAIRS = {  # clean, corrupted: same token count
    "gpt2": ("the cat sat on the mat and the dog", "the dog sat on the mat and the cat"),
    "llama": ("the cat sat on the mat and the dog", "the dog sat on the mat and the cat"),
    "bert": ("the cat sat on the <mask> .", "the dog sat on the <mask> ."),
    "bart": ("the cat sat on the mat", "the dog sat on the mat"),
}


def _question(loaded, name):
    clean_text, corrupt_text = PAIRS[name]
    target = "la voiture rouge" if loaded.family == "encoder-decoder" else None
    clean = build_trace(loaded, clean_text, target_text=target)
    corrupted = build_trace(loaded, corrupt_text, target_text=target)
    rows = clean.output_tokens
    position = int(np.flatnonzero(rows.ids == loaded.tokenizer.mask_token_id)[0]) if name == "bert" else len(rows) - 1
    # A random tiny model barely tells the texts apart: answer and wrong answer are the tokens whose logit
    # difference moves most between the runs, so the normalised metric is well conditioned.
    shift = clean.logits(slice(position, position + 1))[0] - corrupted.logits(slice(position, position + 1))[0]
    return Question(clean, corrupted, position, int(shift.argmax()), int(shift.argmin()))


def _eager(loaded):
    model = copy.deepcopy(loaded.model)
    model.set_attn_implementation("eager")
    return model.eval()


def _run(model, trace):
    kwargs = {"input_ids": torch.tensor([trace.tokens["source"].ids.tolist()])}
    if "decoder_input" in trace.tokens:
        kwargs["decoder_input_ids"] = torch.tensor([trace.tokens["decoder_input"].ids.tolist()])
    return model(**kwargs).logits


def _modules(model, name):
    """(layer, output projection, the MLP's last linear map) of every layer, named here per architecture."""
    if name == "gpt2":
        return [(b, b.attn.c_proj, b.mlp.c_proj) for b in model.transformer.h]
    if name == "llama":
        return [(b, b.self_attn.o_proj, b.mlp.down_proj) for b in model.model.layers]
    if name == "bert":
        return [(b, b.attention.output.dense, b.output.dense) for b in model.bert.encoder.layer]
    return [(b, b.self_attn.out_proj, b.fc2) for b in model.model.decoder.layers]


def _one_patched_run(model, name, q, patch, d_head):
    """The reference: the run's input once, with one plain hook copying the source run's activation."""
    layer, out_proj, down = _modules(model, name)[patch.layer]
    target = {"resid": layer, "attn_out": out_proj, "mlp_out": down, "head_out": out_proj}[patch.kind]
    on_input = patch.kind in ("resid", "head_out")
    seen = {}

    def keep(m, args, out=None):
        seen["x"] = (args[0] if on_input else out).detach().clone()

    hook = target.register_forward_pre_hook(keep) if on_input else target.register_forward_hook(keep)
    with torch.no_grad():
        _run(model, q.source)
    hook.remove()
    source = seen["x"]
    cells = (slice(None), slice(None) if patch.position is None else patch.position)
    if patch.kind == "head_out":
        cells += (slice(patch.head * d_head, (patch.head + 1) * d_head),)

    def replace(tensor):
        tensor = tensor.clone()
        tensor[cells] = source[cells]
        return tensor

    if on_input:
        hook = target.register_forward_pre_hook(lambda m, args: (replace(args[0]), *args[1:]))
    else:
        hook = target.register_forward_hook(lambda m, args, out: replace(out))
    with torch.no_grad():
        logits = _run(model, q.run)
    hook.remove()
    return logits[0] if logits.ndim == 2 else logits[0, q.position]


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("denoise", [True, False])
def test_exact_patching_equals_each_patched_run_alone(name, denoise, tiny_dirs):
    loaded = load_model(f"path:{tiny_dirs[name]}")
    q = _question(loaded, name)
    q = Question(q.clean, q.corrupted, q.position, q.answer, q.wrong, denoise=denoise)
    stack = "decoder" if name != "bert" else "encoder"
    model, base = _eager(loaded), base_logits(loaded, q)
    d_head = loaded.model.config.get_text_config().hidden_size // q.run.stacks[stack].n_heads
    for kind in ("head_out", "resid", "attn_out", "mlp_out"):
        ours = patching(loaded, q, kind, stack)
        for index in [(0, 1), (1, 2)] if kind == "head_out" else [(0, 1), (1, len(q.run.output_tokens) - 1)]:
            patch = Patch(kind, stack, index[0], index[1] if kind == "head_out" else None,
                          None if kind == "head_out" else index[1])  # fmt: skip
            reference = metric(_one_patched_run(model, name, q, patch, d_head), q, base)
            assert ours[index] == pytest.approx(float(reference), abs=1e-4), (kind, index)
            wrong_layer = (1 - index[0], index[1])  # an off-by-one layer gives another number
            if abs(ours[wrong_layer] - ours[index]) > 1e-3:
                assert ours[wrong_layer] != pytest.approx(float(reference), abs=1e-4)


def test_patching_everything_or_nothing_gives_one_or_zero(smollm2):
    clean = build_trace(smollm2, "When Mary and John went to the store, John gave a drink to")
    corrupted = build_trace(smollm2, "When John and Mary went to the store, John gave a drink to")
    ids = smollm2.tokenizer([" Mary", " John"])["input_ids"]
    q = Question(clean, corrupted, len(clean.output_tokens) - 1, ids[0][0], ids[1][0])
    base = base_logits(smollm2, q)
    last = Patch("resid", "decoder", 29, None, None)  # the whole stream into the last layer
    with torch.inference_mode():
        everything = metric(
            _batch_forward(smollm2, q, [last], {last: _source_values(smollm2, q.source, last)}), q, base
        )
        nothing = metric(_batch_forward(smollm2, q, [last], {last: _source_values(smollm2, q.run, last)}), q, base)
    assert float(everything[0]) == pytest.approx(1.0, abs=1e-4) and float(nothing[0]) == pytest.approx(0.0, abs=1e-4)
    heads = patching(smollm2, q, "head_out", "decoder")
    assert heads.shape == (30, 9) and np.abs(heads).max() < 2


def test_attribution_patching_equals_its_gradient_formula(tiny_dirs):
    """(a_clean − a_corrupted) · ∂metric/∂a at the corrupted run, summed over each head's output elements."""
    loaded = load_model(f"path:{tiny_dirs['gpt2']}")
    q = _question(loaded, "gpt2")
    ours = attribution_patching(loaded, q, "head_out", "decoder")
    model, base = _eager(loaded), base_logits(loaded, q)
    heads = model.config.n_head
    d_head = model.config.n_embd // heads
    clean, live = {}, {}
    hooks = [b.attn.c_proj.register_forward_pre_hook(lambda m, a, n=n: clean.__setitem__(n, a[0].detach()))
             for n, b in enumerate(model.transformer.h)]  # fmt: skip
    with torch.no_grad():
        _run(model, q.clean)
    for h in hooks:
        h.remove()

    def grab(m, args, n):
        args[0].retain_grad()
        live[n] = args[0]

    hooks = [
        b.attn.c_proj.register_forward_pre_hook(lambda m, a, n=n: grab(m, a, n))
        for n, b in enumerate(model.transformer.h)
    ]
    value = metric(_run(model, q.corrupted)[0, q.position], q, base)
    grads = torch.autograd.grad(value, [live[n] for n in range(len(live))])
    for h in hooks:
        h.remove()
    for n, grad in enumerate(grads):
        effect = ((clean[n] - live[n].detach()) * grad)[0].reshape(-1, heads, d_head).sum((0, 2))
        np.testing.assert_allclose(ours[n], effect.double().numpy(), atol=1e-6)
    exact = patching(loaded, q, "head_out", "decoder")
    assert np.corrcoef(exact.ravel(), ours.ravel())[0, 1] > 0.5  # a first-order estimate of the same effects


@pytest.mark.parametrize("method", METHODS)
def test_captum_numbers_are_captums(method, tiny_dirs):
    from captum.attr import FeatureAblation, LayerGradientXActivation, LayerIntegratedGradients

    loaded = load_model(f"path:{tiny_dirs['gpt2']}")
    q = _question(loaded, "gpt2")
    ours = token_attribution(loaded, q.clean, q.position, q.answer, method)
    ids = torch.tensor([q.clean.tokens["source"].ids.tolist()])

    def f(input_ids):
        return loaded.model(input_ids=input_ids).logits[:, q.position, q.answer]

    blank = baseline_ids(loaded, q.clean)
    embeddings = loaded.model.get_input_embeddings()
    if method == "integrated gradients":
        theirs = LayerIntegratedGradients(f, embeddings).attribute(ids, baselines=blank, n_steps=32).sum(-1)
    elif method == "input × gradient":
        theirs = LayerGradientXActivation(f, embeddings).attribute(ids).sum(-1)
    else:
        theirs = FeatureAblation(f).attribute(ids, baselines=blank)
    np.testing.assert_allclose(ours, theirs[0].detach().numpy(), rtol=1e-4, atol=1e-6)
    agreement = head_agreement(q.clean, "decoder", q.position, ours)
    row = q.clean.stacks["decoder"].attention(1, 2, rows=slice(q.position, q.position + 1))[0]
    assert agreement[1, 2] == pytest.approx(spearman(row, np.abs(ours)))
