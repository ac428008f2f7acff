"""Activation patching (Meng et al. 2022; Wang et al. 2023) and attribution patching (Nanda 2023; Syed et al. 2023).

Two runs of one model: a clean input and a corrupted one of the same token count. Denoising runs the corrupted
input with one activation copied from the clean run; noising runs the clean input with one copied from the
corrupted run. What comes back of the answer, read at one position (the one that predicts it):

    logit difference   LD = logit(answer) − logit(wrong answer);  metric = (LD_patched − LD_corrupted) /
                       (LD_clean − LD_corrupted): 0 = the corrupted run, 1 = the clean run (the default)
    probability        p(answer)
    KL                 KL(p_clean ‖ p_patched) in bits (0 = the clean distribution)

What can be patched, one patched run each (`KINDS`): the residual stream entering a layer, a layer's attention
output or MLP output (each at one position); a head's output (before the output projection) at every position
or at one; a head's query, key or value, or its attention pattern (the source run's weights times this run's
values), at every position. Many patched runs share one batched forward pass, a row each: the rows' changes
are made inside the attention kernel (viz.capture.Intervention) or by hooks on the layer, its output
projection and its MLP's last linear map (the adapter table's Block).

Attribution patching estimates every one at once from one backward pass (first-order Taylor):
    effect(a) ≈ (a_source − a_run) · ∂metric/∂a  at the run,   summed over the activation's elements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from viz.capture import Intervention, intervening
from viz.errors import AtlasError
from viz.models import LoadedModel
from viz.residual import block_of, layer_module, layer_stream, submodule
from viz.trace import Trace

KINDS = {
    "resid": "residual stream entering each layer (layer × position)",
    "attn_out": "attention output (layer × position)",
    "mlp_out": "MLP output (layer × position)",
    "head_out": "each head's output, every position (layer × head)",
    "head_out_pos": "each head's output at each position (layer × head × position)",
    "head_q": "each head's query, every position (layer × head)",
    "head_k": "each head's key, every position (layer × key/value head)",
    "head_v": "each head's value, every position (layer × key/value head)",
    "head_pattern": "each head's attention pattern (layer × head)",
}
METRICS = ("logit difference", "probability", "KL")
ROW_TOKENS = 1 << 13  # tokens one batched forward reads (rows × positions)
LOGIT_CELLS = 1 << 25  # logits one batched forward may return (rows × positions × vocabulary)


@dataclass(frozen=True)
class Question:
    """What a patching run asks: which runs, where the answer is read, which answer against which."""

    clean: Trace
    corrupted: Trace
    position: int  # the output position whose logits give the answer (a row of `Trace.output_tokens`)
    answer: int  # token id (or label)
    wrong: int
    metric: str = "logit difference"
    denoise: bool = True  # True: clean activations into the corrupted run; False: corrupted into clean

    @property
    def identity(self) -> tuple:
        return (self.clean.identity, self.corrupted.identity, self.position, self.answer, self.wrong, self.metric,
                self.denoise)  # fmt: skip

    @property
    def run(self) -> Trace:  # the input the patched runs read
        return self.corrupted if self.denoise else self.clean

    @property
    def source(self) -> Trace:  # where the copied activations come from
        return self.clean if self.denoise else self.corrupted


def check_pair(clean: Trace, corrupted: Trace) -> None:
    for name, seq in clean.tokens.items():
        if len(seq) != len(corrupted.tokens[name]):
            raise AtlasError(
                f"The clean and corrupted texts must have the same number of tokens ({len(seq)} and "
                f"{len(corrupted.tokens[name])} here): each patched activation is copied position by position."
            )


# ---------------------------------------------------------------- the metric
@dataclass(frozen=True)
class Baseline:
    clean: torch.Tensor  # the clean run's logits at the position [vocabulary]
    corrupted: torch.Tensor

    def difference(self, logits: torch.Tensor, q: Question) -> torch.Tensor:
        return logits[..., q.answer] - logits[..., q.wrong]


def metric(logits: torch.Tensor, q: Question, base: Baseline) -> torch.Tensor:
    """The question's metric for logits [..., vocabulary] (module docstring)."""
    if q.metric == "probability":
        return torch.softmax(logits.double(), -1)[..., q.answer]
    if q.metric == "KL":
        p = torch.log_softmax(base.clean.double(), -1)
        return (p.exp() * (p - torch.log_softmax(logits.double(), -1))).sum(-1) / np.log(2)
    clean, corrupted = base.difference(base.clean, q), base.difference(base.corrupted, q)
    return (base.difference(logits, q).double() - corrupted) / (clean - corrupted)


def _inputs(trace: Trace, rows: int, device) -> dict:
    ids = {"input_ids": torch.tensor([trace.tokens["source"].ids.tolist()] * rows, device=device)}
    if "decoder_input" in trace.tokens:
        ids["decoder_input_ids"] = torch.tensor([trace.tokens["decoder_input"].ids.tolist()] * rows, device=device)
    return ids


def _logits(loaded: LoadedModel, trace: Trace, rows: int, position: int) -> torch.Tensor:
    """One forward of `rows` copies of the trace's input: the logits at `position` [rows, vocabulary]."""
    inputs = _inputs(trace, rows, loaded.device)
    out = loaded.model(**inputs).logits
    return (out if out.ndim == 2 else out[:, position]).float()


@torch.inference_mode()
def baseline(loaded: LoadedModel, q: Question) -> Baseline:
    """The two runs' logits at the question's position; refused when the logit difference can't tell them apart."""
    base = Baseline(_logits(loaded, q.clean, 1, q.position)[0], _logits(loaded, q.corrupted, 1, q.position)[0])
    gap = float(base.difference(base.clean, q) - base.difference(base.corrupted, q))
    if q.metric == "logit difference" and abs(gap) < 1e-6:
        raise AtlasError(
            "The clean and the corrupted run give the answer the same logit difference (over the wrong answer): "
            "there is nothing for patching to bring back. Corrupt the text where the answer depends on it."
        )
    return base


# ---------------------------------------------------------------- exact patching, many runs a forward
@dataclass(frozen=True)
class Patch:
    kind: str  # one of KINDS
    stack: str
    layer: int
    head: int | None = None  # heads: a query head (q, pattern, out) or a key/value head (k, v)
    position: int | None = None  # None: every position


def patches(trace: Trace, kind: str, stack: str) -> tuple[list[Patch], tuple[int, ...]]:
    """Every patch of a kind in a stack, and the shape its results take (layers first)."""
    s = trace.stacks[stack]
    positions = range(s.n_queries)
    if kind in ("resid", "attn_out", "mlp_out"):
        return [Patch(kind, stack, layer, None, p) for layer in range(s.n_layers) for p in positions], (
            s.n_layers, s.n_queries)  # fmt: skip
    heads = s.kv_heads if kind in ("head_k", "head_v") else s.n_heads
    if kind == "head_out_pos":
        found = [
            Patch(kind, stack, layer, h, p) for layer in range(s.n_layers) for h in range(heads) for p in positions
        ]
        return found, (s.n_layers, heads, s.n_queries)
    return [Patch(kind, stack, layer, h) for layer in range(s.n_layers) for h in range(heads)], (s.n_layers, heads)


def _source_values(loaded: LoadedModel, source: Trace, patch: Patch) -> torch.Tensor:
    """What the source run had where the patch copies from (its whole layer or head, every position)."""
    stack = source.stacks[patch.stack]
    record = stack.layers[patch.layer]
    if patch.kind == "resid":
        return torch.from_numpy(np.array(source.hidden_states[patch.stack][patch.layer]))
    if patch.kind == "attn_out":
        from viz.residual import attention_output

        return attention_output(stack, patch.layer)
    if patch.kind == "mlp_out":
        return layer_stream(loaded, source, patch.stack, patch.layer).mlp
    if patch.kind == "head_pattern":
        return torch.from_numpy(stack.attention(patch.layer, patch.head))
    name = {"head_q": "query", "head_k": "key", "head_v": "value"}.get(patch.kind, "context")
    return getattr(record, name)[patch.head]  # [T, d_head]


def _attention_change(batch: list[tuple[int, Patch, torch.Tensor]], kv_group: int) -> Intervention:
    """One attention module's changes for the rows of a batch (viz.capture applies them inside the kernel)."""
    inputs = [(row, p, v) for row, p, v in batch if p.kind in ("head_q", "head_k", "head_v")]
    outputs = [(row, p, v) for row, p, v in batch if p.kind in ("head_out", "head_out_pos", "head_pattern")]

    def before(query, key, value):
        tensors = {"head_q": query, "head_k": key, "head_v": value}
        changed = {kind: tensors[kind].clone() for kind in {p.kind for _, p, _ in inputs}}
        for row, p, v in inputs:
            changed[p.kind][row, p.head] = v.to(changed[p.kind].dtype)
        return changed.get("head_q", query), changed.get("head_k", key), changed.get("head_v", value)

    def after(context, value):
        context = context.clone()
        for row, p, v in outputs:
            if p.kind == "head_pattern":  # the source's weights over this run's values
                context[row, :, p.head] = (v.to(value.dtype) @ value[row, p.head // kv_group]).to(context.dtype)
            else:
                at = slice(None) if p.position is None else p.position
                context[row, at, p.head] = v[at].to(context.dtype)
        return context

    return Intervention(before if inputs else None, after if outputs else None)


def _hook_rows(module: torch.nn.Module, rows: list[tuple[int, Patch, torch.Tensor]], on_input: bool):
    """A hook replacing rows' vectors at their positions in a module's input (a layer's stream) or output."""

    def replace(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        for row, p, v in rows:
            at = slice(None) if p.position is None else p.position
            tensor[row, at] = v[at].to(tensor.dtype)
        return tensor

    if on_input:

        def pre(m, args, kwargs):
            if args:
                return (replace(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": replace(kwargs["hidden_states"])}

        return module.register_forward_pre_hook(pre, with_kwargs=True)
    return module.register_forward_hook(lambda m, args, out: replace(out))


def _batch_forward(loaded: LoadedModel, q: Question, batch: list[Patch], sources: dict) -> torch.Tensor:
    """Patched logits at the question's position, one row per patch of the batch [rows, vocabulary]."""
    stacks, changes, handles, groups = q.run.stacks, {}, [], {}
    for row, p in enumerate(batch):
        groups.setdefault((p.stack, p.layer, p.kind if p.kind in KIND_HOOKS else "heads"), []).append(
            (row, p, sources[p])
        )
    try:
        for (stack, layer, kind), group in groups.items():
            if kind == "heads":
                s = stacks[stack]
                changes[s.layers[layer].module] = _attention_change(group, s.n_heads // s.kv_heads)
            else:
                module = _hooked_module(loaded, q.run, kind, stack, layer)
                handles.append(_hook_rows(module, group, on_input=kind == "resid"))
        with intervening(changes):
            return _logits(loaded, q.run, len(batch), q.position)
    finally:
        for handle in handles:
            handle.remove()


KIND_HOOKS = ("resid", "attn_out", "mlp_out")  # patched by hooks on the layer's modules; heads inside the kernel


def _hooked_module(loaded: LoadedModel, trace: Trace, kind: str, stack: str, layer: int) -> torch.nn.Module:
    """Where a hooked kind lives: the layer (its input: the residual stream), the attention's output projection
    (its output: what attention adds), the MLP's last linear map (its output: what the MLP adds)."""
    attention = trace.stacks[stack].layers[layer].module
    if kind == "resid":
        return layer_module(loaded, attention)
    if kind == "attn_out":
        return trace.stacks[stack].output_projections[layer].module
    return submodule(layer_module(loaded, attention), block_of(loaded).mlp_down)


def rows_at_once(loaded: LoadedModel, trace: Trace) -> int:
    tokens = sum(len(trace.tokens[name]) for name in ("source", "decoder_input") if name in trace.tokens)
    vocabulary = loaded.model.config.get_text_config().vocab_size
    return max(1, min(ROW_TOKENS // tokens, LOGIT_CELLS // (tokens * vocabulary)))


@torch.inference_mode()
def patching(
    loaded: LoadedModel, q: Question, kind: str, stack: str, progress: Callable[[float], None] | None = None
) -> np.ndarray:
    """The question's metric after each patch of `kind` in `stack` (shape: `patches`), exact: every patched run
    really runs, `rows_at_once` of them a batched forward."""
    check_pair(q.clean, q.corrupted)
    base = baseline(loaded, q)
    todo, shape = patches(q.run, kind, stack)
    sources_by_layer: dict = {}
    values = []
    step = rows_at_once(loaded, q.run)
    for start in range(0, len(todo), step):
        batch = todo[start : start + step]
        sources = {}
        for p in batch:
            key = (p.kind, p.stack, p.layer, p.head)
            if key not in sources_by_layer:
                sources_by_layer[key] = _source_values(loaded, q.source, p)
            sources[p] = sources_by_layer[key]
        values.append(metric(_batch_forward(loaded, q, batch, sources), q, base).cpu())
        if progress:
            progress(min(1.0, (start + step) / len(todo)))
    return torch.cat(values).numpy().reshape(shape)


# ---------------------------------------------------------------- attribution patching: one backward pass
def _capture(loaded: LoadedModel, q: Question, kind: str, stack: str, layers: range):
    """Hooks that keep the run's activations of `kind` (live, in the autograd graph), layer by layer."""
    seen, changes, handles = {}, {}, []
    for layer in layers:
        attention = q.run.stacks[stack].layers[layer].module
        if kind in KIND_HOOKS:
            module = _hooked_module(loaded, q.run, kind, stack, layer)
            if kind == "resid":

                def keep_input(m, args, kwargs, layer=layer):
                    seen[layer] = args[0] if args else kwargs["hidden_states"]

                handles.append(module.register_forward_pre_hook(keep_input, with_kwargs=True))
            else:
                handles.append(
                    module.register_forward_hook(lambda m, a, out, layer=layer: seen.__setitem__(layer, out))
                )
        elif kind in ("head_q", "head_k", "head_v"):
            index = ("head_q", "head_k", "head_v").index(kind)

            def before(qq, kk, vv, layer=layer, index=index):
                seen[layer] = (qq, kk, vv)[index]  # [1, heads, T, d_head]
                return qq, kk, vv

            changes[attention] = Intervention(before=before)
        else:

            def after(context, value, layer=layer):
                seen[layer] = context  # [1, T, heads, d_head]
                return context

            changes[attention] = Intervention(after=after)
    return seen, changes, handles


def attribution_patching(loaded: LoadedModel, q: Question, kind: str, stack: str) -> np.ndarray:
    """Every patch of `kind` in `stack` estimated at once (module docstring): (a_source − a_run) · ∂metric/∂a,
    the gradient from one backward pass of the run, summed over each patch's elements (shape: `patches`).
    The attention pattern has no estimate here (the fused kernel never forms the weights)."""
    if kind == "head_pattern":
        raise AtlasError("Attribution patching here estimates activations the model computes; the fused kernel "
                         "never forms attention weights as a tensor. Patch the pattern exactly instead.")  # fmt: skip
    check_pair(q.clean, q.corrupted)
    base = baseline(loaded, q)
    layers = range(q.run.stacks[stack].n_layers)
    seen, changes, handles = _capture(loaded, q, kind, stack, layers)
    try:
        with torch.enable_grad(), intervening(changes):
            value = metric(_logits(loaded, q.run, 1, q.position), q, base)[0]
            grads = torch.autograd.grad(value, [seen[layer] for layer in layers])
    finally:
        for handle in handles:
            handle.remove()
    todo, shape = patches(q.run, kind, stack)
    out = []
    for layer, grad in zip(layers, grads, strict=True):
        run = seen[layer].detach()[0].float()
        source = _source_values(loaded, q.source, Patch(kind, stack, layer, 0)) if kind in KIND_HOOKS else None
        if kind in KIND_HOOKS:  # [T, d]
            out.append(((source.to(run.device) - run) * grad[0].float()).sum(-1))
            continue
        record = q.source.stacks[stack].layers[layer]
        if kind in ("head_q", "head_k", "head_v"):  # [heads, T, d_head]
            source = getattr(record, {"head_q": "query", "head_k": "key", "head_v": "value"}[kind]).float()
            out.append(((source - run) * grad[0].float()).sum((-2, -1)))
        else:  # head outputs: run [T, heads, d_head]; the source's [heads, T, d_head]
            effect = ((record.context.float().transpose(0, 1) - run) * grad[0].float()).sum(-1)  # [T, heads]
            out.append(effect.T if kind == "head_out_pos" else effect.sum(0))
    return torch.stack(out).detach().cpu().double().numpy().reshape(shape)


# ---------------------------------------------------------------- export
def effects_rows(kind: str, values: np.ndarray) -> list[tuple]:
    """(what, layer, head, position, value) for every patch (head or position None where it doesn't apply)."""
    rows = []
    for index, value in np.ndenumerate(values):
        layer, rest = index[0], index[1:]
        if kind in KIND_HOOKS:
            head, position = None, rest[0]
        elif kind == "head_out_pos":
            head, position = rest
        else:
            head, position = rest[0], None
        rows.append((kind, int(layer), head, position, float(value)))
    return rows


def effects_csv(kind: str, values: np.ndarray) -> bytes:
    """what, layer, head, position, value -- one row per patch; head or position empty where it doesn't apply."""
    field = lambda v: "" if v is None else str(v)  # noqa: E731
    lines = ["what,layer,head,position,value"]
    lines += [f"{w},{layer},{field(h)},{field(p)},{v:.6g}" for w, layer, h, p, v in effects_rows(kind, values)]
    return ("\n".join(lines) + "\n").encode("utf-8")


# ---------------------------------------------------------------- offline examples
@dataclass(frozen=True)
class Example:
    name: str
    clean: str
    corrupted: str  # the same number of tokens
    answer: str  # a token of the model's (its first, if the string makes several)
    wrong: str


EXAMPLES: dict[str, tuple[Example, ...]] = {
    "smollm2": (
        Example("indirect object (Wang et al. 2023)", "When Mary and John went to the store, John gave a drink to",
                "When John and Mary went to the store, John gave a drink to", " Mary", " John"),
        Example("factual recall (Meng et al. 2022)", "The Eiffel Tower is in the city of",
                "The Colosseum is in the city of", " Paris", " Rome"),
    ),
    "minilm-mlm": (
        Example("subject-verb agreement (Linzen et al. 2016)", "The dogs in the house [MASK] very loud.",
                "The dog in the house [MASK] very loud.", "are", "is"),
    ),
    "dates": (Example("one digit", "the 3rd of march 1999", "the 3rd of march 1998", "1999", "1998"),),
}  # fmt: skip


def token_id(tokenizer, text: str) -> int:
    """A one-token answer's id (a longer string: its first token's)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"][0]


def answer_position(trace: Trace, tokenizer, answer: int) -> int:
    """Where a question reads its answer: a decoder's last position, an encoder's [MASK], an encoder-decoder's
    step that writes the answer (else its first)."""
    rows = trace.output_tokens
    if "target" in trace.tokens:
        found = np.flatnonzero(rows.ids == answer)
        return int(found[0]) if len(found) else 0
    masks = np.flatnonzero(rows.ids == getattr(tokenizer, "mask_token_id", -1))
    return int(masks[0]) if len(masks) and not trace.stacks[trace.output_stack].causal else len(rows) - 1
