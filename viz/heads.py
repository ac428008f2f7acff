"""What each head does, in numbers: where its attention goes, and how it adds up across layers.

Statistics are averaged over the query rows of one input; roles are simple, stated rules,
not a classifier: a head is named for where most of its attention goes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROLE_SHARE = 0.5  # a head is "previous token" etc. when at least half its attention goes there
BROAD_ENTROPY = 0.8  # ... and "broad" when its rows are at least this close to uniform


@dataclass(frozen=True)
class HeadStats:
    entropy: np.ndarray  # [layers, heads]: mean row entropy / log(number of visible keys), 0..1
    distance: np.ndarray  # [layers, heads]: mean |query - key| in tokens, weighted by attention
    to_first: np.ndarray  # [layers, heads]: share of attention on the first token
    to_previous: np.ndarray  # [layers, heads]: share on the token just before the query
    to_self: np.ndarray  # [layers, heads]: share on the query token itself
    roles: np.ndarray  # [layers, heads] str


def head_stats(attentions: np.ndarray, masked: np.ndarray) -> HeadStats:
    """attentions [layers, heads, T, T] of a self-attention stack; masked [layers, T, T]."""
    a = attentions.astype(np.float64)
    t = a.shape[-1]
    rows = np.arange(t)
    visible = (~masked).sum(-1).clip(min=1)  # [layers, T] keys each query may see
    plogp = np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0)), 0.0)
    row_entropy = -plogp.sum(-1) / np.log(np.maximum(visible, 2))[:, None, :]  # [L, H, T]
    row_entropy = np.where((visible > 1)[:, None, :], row_entropy, np.nan)
    distance = (a * np.abs(rows[:, None] - rows[None, :])).sum(-1).mean(-1)
    to_first = a[..., 0].mean(-1)
    to_self = np.diagonal(a, axis1=-2, axis2=-1).mean(-1)
    to_previous = np.diagonal(a, offset=-1, axis1=-2, axis2=-1).mean(-1) if t > 1 else np.zeros(a.shape[:2])
    entropy = np.nanmean(row_entropy, axis=-1) if t > 1 else np.zeros(a.shape[:2])
    roles = np.full(a.shape[:2], "mixed", dtype=object)
    roles[entropy >= BROAD_ENTROPY] = "broad"
    for name, share in (("self", to_self), ("previous token", to_previous), ("first token", to_first)):
        roles[share >= ROLE_SHARE] = name  # later rules win: a first-token sink is named as such
    return HeadStats(entropy, distance, to_first, to_previous, to_self, roles)


def rollout(attentions: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020): [layers, T, T], row l = how much each token's
    representation after layer l draws on each input token, following attention through the
    residual stream: Â_l = residual·I + (1 - residual)·mean_heads(A_l), rows renormalised,
    rollout_l = Â_l · Â_{l-1} ··· Â_0."""
    layers, _, t, _ = attentions.shape
    out = np.empty((layers, t, t))
    product = np.eye(t)
    for layer in range(layers):
        mixed = residual * np.eye(t) + (1 - residual) * attentions[layer].astype(np.float64).mean(0)
        mixed /= mixed.sum(-1, keepdims=True)
        product = mixed @ product
        out[layer] = product
    return out
