"""The neuron view: one head, one query token, every step of scaled dot-product attention
with the model's own numbers (bertviz's neuron view, for every architecture we trace).

    1. project   q = x Wq,  k = x Wk,  v = x Wv            (captured from the model)
    2. score     s_j = (q · k_j) * scale  (+ bias_j)  (masked: -inf)
    3. weigh     w = softmax(s)
    4. mix       out = Σ_j w_j v_j
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viz.trace import AttentionStack


@dataclass(frozen=True)
class NeuronView:
    layer: int
    head: int
    query_index: int
    query: np.ndarray  # [d_head]
    keys: np.ndarray  # [Tk, d_head]
    products: np.ndarray  # [Tk, d_head]: q ⊙ k_j, whose row sums are the dot products
    dots: np.ndarray  # [Tk]: q · k_j
    scaling: float
    bias: np.ndarray | None  # [Tk]: T5's relative position bias, if any
    masked: np.ndarray  # [Tk] bool
    scores: np.ndarray  # [Tk]: what goes into the softmax (-inf where masked)
    weights: np.ndarray  # [Tk]: softmax(scores)
    values: np.ndarray  # [Tk, d_head]
    weighted_values: np.ndarray  # [Tk, d_head]: w_j v_j
    output: np.ndarray  # [d_head]: Σ_j w_j v_j
    model_output: np.ndarray  # [d_head]: the head output the model's own attention kernel computed

    def strongest(self, n: int) -> np.ndarray:
        """Positions of the n keys with the largest weights, in text order (every key when there are at most n)."""
        if len(self.weights) <= n:
            return np.arange(len(self.weights))
        return np.sort(np.argsort(-self.weights, kind="stable")[:n])

    @property
    def max_output_error(self) -> float:
        """How far Σ w·v, recomputed here step by step, is from the model's own head output (round-off)."""
        return float(np.abs(self.output - self.model_output).max())


def neuron_view(stack: AttentionStack, layer: int, head: int, query_index: int) -> NeuronView:
    """Every step for one query, in float64 numpy from the captured vectors -- independent of the
    Trace's own on-demand maps, so the page's check against the model's head output means something."""
    row = slice(query_index, query_index + 1)
    q = stack.query(layer, head)[query_index].astype(np.float64)
    k = stack.key(layer, head).astype(np.float64)
    v = stack.value(layer, head).astype(np.float64)
    masked = stack.forbidden(layer, row)[0]
    products = q[None, :] * k
    dots = products.sum(axis=1)
    scaling = stack.scaling(layer)
    bias = stack.bias(layer, head, row)
    bias = None if bias is None else bias[0].astype(np.float64)
    scores = dots * scaling + (0.0 if bias is None else bias)
    scores = np.where(masked, -np.inf, scores)
    weights = np.exp(scores - scores.max())
    weights /= weights.sum()
    weighted_values = weights[:, None] * v
    return NeuronView(
        layer=layer,
        head=head,
        query_index=query_index,
        query=q,
        keys=k,
        products=products,
        dots=dots,
        scaling=scaling,
        bias=bias,
        masked=masked,
        scores=scores,
        weights=weights,
        values=v,
        weighted_values=weighted_values,
        output=weighted_values.sum(axis=0),
        model_output=stack.context(layer, head)[query_index],
    )
