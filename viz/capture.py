"""Record the query, key and value vectors every attention layer uses -- around the fast kernel.

transformers 5 routes attention through `AttentionInterface`. We register one more
implementation, ``atlas``: it runs PyTorch's fused `scaled_dot_product_attention` (through
transformers' own sdpa function, so the model computes exactly what `attn_implementation="sdpa"`
computes) and, when a recording is active, keeps what the scores are made of:

- q (after RoPE), k and v -- k and v at their own key/value-head count (GQA is not repeated);
- the mask as a *rule* (none, causal, sliding window), not a T×T array;
- an additive position bias (T5) in compact form: one value per head and relative offset;
- the scale, and each head's output as the kernel returned it.

Attention weights are never materialised here: `viz.trace.AttentionStack` computes any map
on request from these, with the model's own formula.

The active recording lives in a ``ContextVar``: every Streamlit session runs its script in
its own thread, so concurrent forward passes on one shared model never see each other's
records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTN_IMPLEMENTATION = "atlas"


@dataclass(frozen=True)
class MaskRule:
    """Which keys each query may not see, as a rule: query i sees key j unless ...

    causal: j > i (a decoder may not look ahead);  window: i - j >= window (sliding window);
    explicit: a packed boolean array [Tq, ceil(Tk / 8)] for patterns that are neither (rare;
    e.g. padding) -- kept so that no pattern is ever guessed.
    """

    n_queries: int
    n_keys: int
    causal: bool = False
    window: int | None = None
    explicit: np.ndarray | None = None  # np.packbits of the forbidden mask along keys

    def forbidden(self, rows: slice, cols: slice, device: torch.device | str = "cpu") -> torch.Tensor | None:
        """[rows, cols] bool, True where attending is forbidden; None when everything is visible."""
        r = torch.arange(self.n_queries, device=device)[rows][:, None]
        c = torch.arange(self.n_keys, device=device)[cols][None, :]
        if self.explicit is not None:
            bits = np.unpackbits(self.explicit[rows], axis=1, count=self.n_keys)[:, cols].astype(bool)
            return torch.from_numpy(bits).to(device)
        if not self.causal and self.window is None:
            return None
        out = torch.zeros(len(r), c.shape[1], dtype=torch.bool, device=device)
        if self.causal:
            out |= c > r
        if self.window is not None:
            out |= (r - c) >= self.window
        return out

    def fill_forbidden(self, scores: torch.Tensor, rows: slice, cols: slice, value: float = float("-inf")) -> None:
        """Set scores[..., rows, cols] to `value` where forbidden, touching only the keys the rule can hide
        (a causal block's future, a window's distant past): most of a long causal row needs no work."""
        first, stop = range(self.n_queries)[rows][0], range(self.n_queries)[rows][-1] + 1
        c0 = range(self.n_keys)[cols].start
        spans = []
        if self.explicit is not None:
            spans.append((0, scores.shape[-1]))
        if self.causal:  # keys after the block's first row
            spans.append((max(0, first + 1 - c0), scores.shape[-1]))
        if self.window is not None:  # keys before the block's last row's window
            spans.append((0, max(0, min(scores.shape[-1], stop - self.window - c0))))
        for lo, hi in spans:
            if lo < hi:
                part = slice(c0 + lo, c0 + hi)
                scores[..., lo:hi].masked_fill_(self.forbidden(rows, part, scores.device), value)

    def visible_keys(self, row_stop: int) -> int:
        """Keys beyond this index are hidden from every query before `row_stop` (lets causal maps skip them)."""
        return min(self.n_keys, row_stop) if self.causal and self.explicit is None else self.n_keys

    @property
    def description(self) -> str:
        if self.explicit is not None:
            return "explicit mask"
        if self.causal:
            return "causal" + (f", sliding window of {self.window}" if self.window else "")
        return "none (every query sees every key)"


@dataclass(frozen=True)
class PositionBias:
    """An additive score bias that depends only on the relative offset j - i (T5, ALiBi):
    bias[h, i, j] = by_offset[h, j - i + n_queries - 1]. Kept compact: [heads, Tq + Tk - 1]."""

    by_offset: torch.Tensor
    n_queries: int

    def block(self, heads: slice | list[int], rows: slice, cols: slice, n_keys: int) -> torch.Tensor:
        r = torch.arange(self.n_queries, device=self.by_offset.device)[rows][:, None]
        c = torch.arange(n_keys, device=self.by_offset.device)[cols][None, :]
        return self.by_offset[heads][:, c - r + self.n_queries - 1].float()


@dataclass(frozen=True)
class AttentionRecord:
    """What one attention module saw in one call (batch of one), on the model's device and dtype."""

    module: torch.nn.Module
    query: torch.Tensor  # [heads, Tq, d_head] -- after RoPE where the model uses it
    key: torch.Tensor  # [kv_heads, Tk, d_head] -- one per key/value head (GQA: fewer than heads)
    value: torch.Tensor  # [kv_heads, Tk, d_head]
    mask: MaskRule
    bias: PositionBias | None
    scaling: float  # scores = q·k * scaling (+ bias); T5 uses 1.0
    context: torch.Tensor  # [heads, Tq, d_head]: the kernel's attention-weighted sum of values


@dataclass(frozen=True)
class Intervention:
    """A change to one attention module's computation (head ablation, activation patching, reading gradients):
    `before(q, k, v)` returns the q, k, v the kernel reads ([batch, heads, T, d_head]); `after(context, v)` the
    heads' outputs it hands on ([batch, T, heads, d_head]), before the output projection."""

    before: Callable | None = None
    after: Callable | None = None


_recording: ContextVar[list[AttentionRecord] | None] = ContextVar("atlas_recording", default=None)
_interventions: ContextVar[dict[int, Intervention] | None] = ContextVar("atlas_interventions", default=None)


def _mask_rule(attention_mask: torch.Tensor | None, tq: int, tk: int, is_causal: bool, window: int | None) -> MaskRule:
    """The rule behind the mask the kernel received (checked against it, never assumed)."""
    if attention_mask is None:  # the kernel's own rule: causal flag, or nothing
        return MaskRule(tq, tk, causal=is_causal and tq > 1)
    mask = attention_mask[0, 0, :, -tk:]
    forbidden = ~mask if mask.dtype == torch.bool else mask <= torch.finfo(mask.dtype).min / 2
    for rule in (
        MaskRule(tq, tk),
        MaskRule(tq, tk, causal=True),
        MaskRule(tq, tk, causal=True, window=window) if window else None,
    ):
        if rule is None:
            continue
        expected = rule.forbidden(slice(None), slice(None), forbidden.device)
        if torch.equal(forbidden, torch.zeros_like(forbidden) if expected is None else expected):
            return rule
    return MaskRule(tq, tk, explicit=np.packbits(forbidden.cpu().numpy(), axis=1))


def _compact_bias(position_bias: torch.Tensor | None, heads: int, tq: int, tk: int) -> PositionBias | None:
    """T5's [1, heads, Tq, Tk] position bias as one value per head and offset, when it is one."""
    if position_bias is None or not bool(position_bias.abs().max() > 0):  # T5 cross-attention: all zeros
        return None
    full = position_bias[0, :, :, -tk:].expand(heads, tq, tk)
    # Offsets -(Tq-1) .. Tk-1: the first column gives negative ones, the first row the rest.
    by_offset = torch.cat([full[:, 1:, 0].flip(-1), full[:, 0, :]], dim=-1).clone()
    compact = PositionBias(by_offset, tq)
    if not torch.equal(compact.block(slice(None), slice(None), slice(None), tk).to(full.dtype), full):
        raise ValueError("this model's attention bias is not a function of relative position")
    return compact


def _atlas_attention(module, query, key, value, attention_mask, **kwargs):
    change = (_interventions.get() or {}).get(id(module))
    if change is not None and change.before is not None:
        query, key, value = change.before(query, key, value)
    out = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if change is not None and change.after is not None:  # context: [batch, T, heads, d_head]
        out = (change.after(out[0], value), *out[1:])
    calls = _recording.get()
    if calls is not None:
        heads, tq, tk = query.shape[1], query.shape[2], key.shape[2]
        is_causal = kwargs.get("is_causal")
        is_causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
        scaling = kwargs.get("scaling")
        calls.append(
            AttentionRecord(
                module=module,
                query=query[0].detach().clone(memory_format=torch.contiguous_format),
                key=key[0].detach().clone(memory_format=torch.contiguous_format),
                value=value[0].detach().clone(memory_format=torch.contiguous_format),
                mask=_mask_rule(attention_mask, tq, tk, bool(is_causal), kwargs.get("sliding_window")),
                bias=_compact_bias(kwargs.get("position_bias"), heads, tq, tk),
                scaling=float(query.shape[-1] ** -0.5 if scaling is None else scaling),
                context=out[0][0].detach().transpose(0, 1).contiguous(),
            )
        )
    return out


@contextmanager
def intervening(changes: dict[torch.nn.Module, Intervention]) -> Iterator[None]:
    """Apply these changes (per attention module) to forward passes in this thread."""
    token = _interventions.set({id(module): change for module, change in changes.items()})
    try:
        yield
    finally:
        _interventions.reset(token)


def _zeroing(heads: tuple[int, ...]) -> Callable:
    def after(context: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        context = context.clone()
        context[:, :, list(heads), :] = 0.0
        return context

    return after


def ablating(heads: dict[torch.nn.Module, tuple[int, ...]]):
    """Zero these heads' outputs (per attention module) before the output projection, in this thread."""
    return intervening({module: Intervention(after=_zeroing(tuple(h))) for module, h in heads.items()})


@contextmanager
def recording() -> Iterator[list[AttentionRecord]]:
    """Collect every attention call made by this thread inside the block, in call order."""
    calls: list[AttentionRecord] = []
    token = _recording.set(calls)
    try:
        yield calls
    finally:
        _recording.reset(token)


AttentionInterface.register(ATTN_IMPLEMENTATION, _atlas_attention)
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
