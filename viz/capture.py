"""Record the query, key and value vectors every attention layer uses.

transformers 5 routes attention through `AttentionInterface`. We register one more
implementation, ``atlas``: it records q/k/v (and the mask and any additive bias) when a
recording is active, then calls the model file's own ``eager_attention_forward`` -- so the
model computes exactly what eager attention computes and returns the attention weights.

The active recording lives in a ``ContextVar``: every Streamlit session runs its script in
its own thread, so concurrent forward passes on one shared model never see each other's
records.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

ATTN_IMPLEMENTATION = "atlas"


@dataclass
class AttentionCall:
    """What one attention module saw in one call (batch of one, float32 on the CPU)."""

    module: torch.nn.Module
    query: torch.Tensor  # [heads, Tq, d_head] -- after RoPE where the model uses it
    key: torch.Tensor  # [heads, Tk, d_head] -- KV heads repeated to the query heads (GQA)
    value: torch.Tensor  # [heads, Tk, d_head]
    masked: torch.Tensor  # [Tq, Tk] bool, True where the model forbids attending
    bias: torch.Tensor | None  # [heads, Tq, Tk] additive score bias (T5's position bias), or None
    scaling: float  # scores = q·k * scaling (+ bias); T5 uses 1.0
    context: torch.Tensor  # [heads, Tq, d_head]: the model's own attention-weighted sum of values
    kv_heads: int  # number of distinct key/value heads before the GQA repeat


_recording: ContextVar[list[AttentionCall] | None] = ContextVar("atlas_recording", default=None)
# Head ablation: id(attention module) -> heads whose output is zeroed before the output projection.
_ablation: ContextVar[dict[int, tuple[int, ...]] | None] = ContextVar("atlas_ablation", default=None)


def _expand_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[kv_heads, T, d] -> [n_heads, T, d], the same repeat as transformers' `repeat_kv`."""
    return x.repeat_interleave(n_heads // x.shape[0], dim=0)


def _split_mask(
    attention_mask: torch.Tensor | None, shape: tuple[int, int, int]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split the additive mask into a boolean 'forbidden' mask and any finite bias it carries."""
    heads, tq, tk = shape
    if attention_mask is None:
        return torch.zeros(tq, tk, dtype=torch.bool), None
    mask = attention_mask[0, ..., -tk:].detach().cpu()  # [1 or heads, Tq, Tk]
    if mask.dtype == torch.bool:  # boolean masks say True = may attend
        return (~mask).all(dim=0).expand(tq, tk).clone(), None
    forbidden = mask <= torch.finfo(mask.dtype).min / 2
    finite = torch.where(forbidden, torch.zeros_like(mask), mask).float()
    bias = finite.expand(heads, tq, tk).clone() if finite.abs().max() > 0 else None
    return forbidden.all(dim=0).expand(tq, tk).clone(), bias


def _atlas_attention(module, query, key, value, attention_mask, **kwargs):
    model_file = sys.modules[type(module).__module__]
    out = model_file.eager_attention_forward(module, query, key, value, attention_mask, **kwargs)
    heads_off = (_ablation.get() or {}).get(id(module))
    if heads_off:
        context = out[0].clone()  # [batch, T, heads, d_head]
        context[:, :, list(heads_off), :] = 0.0
        out = (context, *out[1:])
    calls = _recording.get()
    if calls is not None:
        heads = query.shape[1]
        q = query[0].detach().float().cpu()
        k = _expand_heads(key[0].detach().float().cpu(), heads)
        v = _expand_heads(value[0].detach().float().cpu(), heads)
        masked, bias = _split_mask(attention_mask, (heads, q.shape[1], k.shape[1]))
        position_bias = kwargs.get("position_bias")
        if position_bias is not None and bool(position_bias.abs().max() > 0):  # T5 cross-attention: all zeros
            pb = position_bias[0].detach().float().cpu().expand(heads, q.shape[1], k.shape[1])
            bias = pb.clone() if bias is None else bias + pb
        scaling = kwargs.get("scaling")
        calls.append(
            AttentionCall(
                module=module,
                query=q,
                key=k,
                value=v,
                masked=masked,
                bias=bias,
                scaling=float(query.shape[-1] ** -0.5 if scaling is None else scaling),
                context=out[0][0].detach().float().cpu().transpose(0, 1).contiguous(),
                kv_heads=key.shape[1],
            )
        )
    return out


@contextmanager
def ablating(heads: dict[torch.nn.Module, tuple[int, ...]]) -> Iterator[None]:
    """Zero these heads' outputs (per attention module) for forward passes in this thread."""
    token = _ablation.set({id(module): tuple(h) for module, h in heads.items()})
    try:
        yield
    finally:
        _ablation.reset(token)


@contextmanager
def recording() -> Iterator[list[AttentionCall]]:
    """Collect every attention call made by this thread inside the block, in call order."""
    calls: list[AttentionCall] = []
    token = _recording.set(calls)
    try:
        yield calls
    finally:
        _recording.reset(token)


AttentionInterface.register(ATTN_IMPLEMENTATION, _atlas_attention)
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, eager_mask)
