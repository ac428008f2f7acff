"""Hidden states across layers: norms, how much each layer turns a token, and a 2-D map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def norms(hidden: np.ndarray) -> np.ndarray:
    """[layers + 1, T]: length of each token's vector after each layer (layer 0 = embeddings)."""
    return np.linalg.norm(hidden.astype(np.float64), axis=-1)


def layer_cosines(hidden: np.ndarray) -> np.ndarray:
    """[layers, T]: cosine similarity of each token's vector before and after each layer."""
    h = hidden.astype(np.float64)
    a, b = h[:-1], h[1:]
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


@dataclass(frozen=True)
class Projection:
    coords: np.ndarray  # [layers + 1, T, 2]
    x_range: tuple[float, float]  # the same axes for every layer, so motion between layers is visible
    y_range: tuple[float, float]
    explained: tuple[float, float]  # share of variance on each axis


def dominant_dimensions(hidden: np.ndarray, share: float = 0.5) -> list[int]:
    """Dimensions of the residual stream that alone hold more than `share` of all the variance --
    "massive activations" (Sun et al. 2024): a PCA then shows that one dimension and nothing else."""
    variance = hidden.reshape(-1, hidden.shape[-1]).astype(np.float64).var(axis=0)
    return [int(d) for d in np.flatnonzero(variance > share * variance.sum())]


OUTLIER_NORM = 10.0  # a token whose vector is this many times the median token's, in some layer, is an outlier


def outlier_tokens(hidden: np.ndarray, ratio: float = OUTLIER_NORM) -> list[tuple[int, float, int]]:
    """Tokens whose vector is over `ratio` × the median token's length in some layer -- often the first
    token, an "attention sink" -- as (position, how many times the median, in which layer), largest first.
    One such token sets a PCA's axes and leaves every other token in one dot."""
    lengths = norms(hidden)  # [layers + 1, T]
    times = lengths / np.maximum(np.median(lengths, axis=1, keepdims=True), 1e-12)
    found = [
        (int(t), float(times[:, t].max()), int(times[:, t].argmax())) for t in np.flatnonzero(times.max(0) > ratio)
    ]
    return sorted(found, key=lambda item: -item[1])


def pca_2d(hidden: np.ndarray, leave_out: tuple[int, ...] = (), leave_out_tokens: tuple[int, ...] = ()) -> Projection:
    """One PCA fitted on the token vectors of all layers together, then applied to each layer
    (`leave_out`: dimensions set aside, e.g. a massive activation; `leave_out_tokens`: token positions set
    aside, e.g. an outlier; `coords` then hold the other tokens, in order)."""
    if leave_out:
        hidden = np.delete(hidden, list(leave_out), axis=-1)
    if leave_out_tokens:
        hidden = np.delete(hidden, list(leave_out_tokens), axis=1)
    flat = hidden.reshape(-1, hidden.shape[-1]).astype(np.float64)
    centred = flat - flat.mean(axis=0)
    # The d × d covariance's eigenvectors are the principal axes: cheap at 31 layers × 4,096 tokens,
    # where a full SVD would also build a (layers·T) × d matrix of left singular vectors.
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(eigenvalues)[::-1]
    axes = eigenvectors[:, order[:2]]
    axes *= np.where(axes[np.abs(axes).argmax(axis=0), [0, 1]] < 0, -1, 1)  # a fixed sign per axis
    coords = (centred @ axes).reshape(*hidden.shape[:2], 2)
    variance = np.clip(eigenvalues[order], 0, None) / max(np.clip(eigenvalues, 0, None).sum(), 1e-12)
    pad = lambda lo, hi: (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))  # noqa: E731
    return Projection(
        coords,
        pad(float(coords[..., 0].min()), float(coords[..., 0].max())),
        pad(float(coords[..., 1].min()), float(coords[..., 1].max())),
        (float(variance[0]), float(variance[1]) if len(variance) > 1 else 0.0),
    )
