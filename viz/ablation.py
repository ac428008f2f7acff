"""How much a prediction moves when heads are switched off (compare two Traces of one text)."""

from __future__ import annotations

import numpy as np

from viz.predictions import ROWS_AT_ONCE, softmax
from viz.trace import Trace


def kl_divergence(logits: np.ndarray, ablated_logits: np.ndarray) -> np.ndarray:
    """KL(p ‖ p_ablated) in bits along the last axis: per position for LM heads, one value for classifiers.
    Long inputs go a block of positions at a time (two [T, vocabulary] float64 softmaxes would be GBs)."""
    if logits.ndim == 2 and len(logits) > ROWS_AT_ONCE:
        return np.concatenate(
            [
                kl_divergence(logits[i : i + ROWS_AT_ONCE], ablated_logits[i : i + ROWS_AT_ONCE])
                for i in range(0, len(logits), ROWS_AT_ONCE)
            ]
        )
    p, q = softmax(logits), softmax(ablated_logits)
    return (p * (np.log2(np.maximum(p, 1e-300)) - np.log2(np.maximum(q, 1e-300)))).sum(-1)


def prediction_shift(trace: Trace, ablated: Trace) -> np.ndarray:
    """KL(p ‖ p_ablated) in bits: per position for a language model (its logits read a block of positions at a
    time, never all at once), one value for a classifier."""
    if trace.readout is None and trace.logits().ndim == 1:  # a sequence classifier
        return kl_divergence(trace.logits(), ablated.logits())
    positions = len(trace.output_tokens)
    blocks = (slice(i, min(i + ROWS_AT_ONCE, positions)) for i in range(0, positions, ROWS_AT_ONCE))
    return np.concatenate([kl_divergence(trace.logits(rows), ablated.logits(rows)) for rows in blocks])


def hidden_cosine(hidden: np.ndarray, ablated_hidden: np.ndarray) -> np.ndarray:
    """Per token: cosine similarity of the last layer's vectors with and without the heads."""
    a, b = hidden[-1].astype(np.float64), ablated_hidden[-1].astype(np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
