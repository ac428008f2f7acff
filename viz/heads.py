"""What each head does, in numbers: where its attention goes, and how it adds up across layers.

Statistics are averaged over the query rows of one input; roles are simple, stated rules,
not a classifier: a head is named for where most of its attention goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from viz.errors import AtlasError
from viz.trace import AttentionStack

ROLE_SHARE = 0.5  # a head is "previous token" etc. when at least half its attention goes there
BROAD_ENTROPY = 0.8  # ... and "broad" when its rows are at least this close to uniform


@dataclass(frozen=True)
class HeadStats:
    entropy: np.ndarray  # [layers, heads]: mean row entropy / log(number of visible keys), 0..1 (rows with ≥ 2 keys)
    distance: np.ndarray  # [layers, heads]: mean |query - key| in tokens, weighted by attention
    to_first: np.ndarray  # [layers, heads]: share of attention on the first token
    to_previous: np.ndarray  # [layers, heads]: share on the token just before the query
    to_self: np.ndarray  # [layers, heads]: share on the query token itself
    roles: np.ndarray  # [layers, heads] str

    @property
    def nbytes(self) -> int:
        return 6 * self.entropy.nbytes


def head_stats(stack: AttentionStack, progress: Callable[[float], None] | None = None) -> HeadStats:
    """Per-head statistics of a self-attention stack, streamed a block of rows at a time."""
    shape = (stack.n_layers, stack.n_heads)
    sums = {name: np.zeros(shape) for name in ("entropy", "distance", "to_first", "to_previous", "to_self")}
    rows_with_choice = np.zeros(stack.n_layers)  # queries that see more than one key (entropy is defined)
    t = stack.n_queries
    for layer in range(stack.n_layers):
        for start, stop, scores, lse in stack.row_blocks(layer):
            log_w = (scores - lse).clamp_min_(-1e30).cpu()  # log weights; masked keys: huge negative, not -inf
            w = log_w.exp()  # [heads, rows, keys'] (sums are taken in float64 below)
            rows = torch.arange(start, stop, dtype=w.dtype)[:, None]
            cols = torch.arange(w.shape[-1], dtype=w.dtype)[None, :]
            visible = torch.isfinite(scores[0]).sum(-1).cpu().to(w.dtype)  # [rows]
            plogp = (w * log_w).sum(-1)  # Σ w log w without taking a log: log w is already at hand
            choice = visible > 1
            sums["entropy"][layer] += (-plogp[:, choice] / visible[choice].log()).sum(-1).numpy()
            rows_with_choice[layer] += int(choice.sum())
            sums["distance"][layer] += (w * (rows - cols).abs()).sum((-2, -1)).numpy()
            sums["to_first"][layer] += w[..., 0].sum(-1).numpy()
            index = torch.arange(start, stop)
            sums["to_self"][layer] += w[:, index - start, index].sum(-1).numpy()
            previous = index[index > 0]
            sums["to_previous"][layer] += w[:, previous - start, previous - 1].sum(-1).numpy()
        if progress:
            progress((layer + 1) / stack.n_layers)
    means = {name: total / t for name, total in sums.items()}
    means["to_previous"] = sums["to_previous"] / max(t - 1, 1)  # the first token has no previous one
    means["entropy"] = sums["entropy"] / np.maximum(rows_with_choice, 1)[:, None]
    roles = np.full(shape, "mixed", dtype=object)
    roles[means["entropy"] >= BROAD_ENTROPY] = "broad"
    for name, key in (("self", "to_self"), ("previous token", "to_previous"), ("first token", "to_first")):
        roles[means[key] >= ROLE_SHARE] = name  # later rules win: a first-token sink is named as such
    return HeadStats(**means, roles=roles)


ROLLOUT_MAX_TOKENS = 1024  # rollout multiplies T×T matrices layer by layer: T³ work per layer


def rollout(stack: AttentionStack, upto_layer: int, residual: float = 0.5) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) after `upto_layer`: [T, T], row i = how much token i's
    representation draws on each input token, following attention through the residual stream:
    Â_l = residual·I + (1 - residual)·mean_heads(A_l), rows renormalised, rollout = Â_l · Â_{l-1} ··· Â_0."""
    t = stack.n_queries
    if t > ROLLOUT_MAX_TOKENS:
        raise AtlasError(
            f"Rollout multiplies {t}×{t} matrices layer by layer; it is offered up to {ROLLOUT_MAX_TOKENS:,} "
            "tokens. Lower 'Max tokens' in the sidebar to see it."
        )
    product = np.eye(t)
    for layer in range(upto_layer + 1):
        mixed = residual * np.eye(t) + (1 - residual) * stack.head_mean(layer).astype(np.float64)
        mixed /= mixed.sum(-1, keepdims=True)
        product = mixed @ product
    return product
