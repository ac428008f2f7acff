"""The guided walk's later chapters, measured on a Trace: where position comes from, causal masking, and what
each family's attention may see. Data in, numbers out; the page draws them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viz.predictions import cosine  # cos(a, b) = a·b / (‖a‖ ‖b‖)
from viz.trace import AttentionStack, Trace

POSITION_TEXT = "the cat sees the dog and the bird"  # a word that comes back: same token, two places


@dataclass(frozen=True)
class Repeat:
    """One token at two places of a model's first self-attention stack."""

    token: str
    first: int
    second: int
    input_cosine: float  # of the vectors the first layer reads (hidden state 0) at the two places
    query_cosine: float  # of layer 0's queries there, mean over heads


def same_token_two_places(trace: Trace) -> Repeat | None:
    """The first token id that occurs twice in the first self-attention stack's sequence, compared at both places.

    Position added to the embeddings (learned or sinusoidal) makes the two inputs differ (cosine < 1); rotary
    positions (RoPE) leave the inputs identical (cosine 1) and rotate q and k inside each layer instead, so the
    two queries differ although their inputs do not. None if no token repeats.
    """
    name = trace.self_stacks[0]
    stack, tokens = trace.stacks[name], trace.hidden_tokens(name)
    seen: dict[int, int] = {}
    for position, token_id in enumerate(tokens.ids):
        if token_id in seen and not tokens.special[position]:
            first, second = seen[token_id], position
            break
        seen.setdefault(token_id, position)
    else:
        return None
    inputs = trace.hidden_states[name][0]
    queries = [cosine(stack.query(0, h)[first], stack.query(0, h)[second]) for h in range(stack.n_heads)]
    return Repeat(tokens.display[first], first, second, cosine(inputs[first], inputs[second]), float(np.mean(queries)))


def future_share(stack: AttentionStack, layer: int) -> float:
    """The mean weight a token gives to tokens after it: (1/T) Σ_i Σ_{j>i} mean_h A_h[i, j], over the
    square self-attention map. Exactly 0 under a causal mask."""
    weights = stack.head_mean(layer)
    return float(np.triu(weights, k=1).sum(axis=1).mean())


def attention_kinds(trace: Trace) -> list[dict]:
    """One row per attention of the model: who asks (queries), who is read (keys), what it may see, its size."""
    rows = []
    for name, stack in trace.stacks.items():
        if stack.queries_from != stack.keys_from:
            sees = f"every {stack.keys_from} token"
        elif stack.causal:
            sees = "only earlier tokens (causal mask)"
        else:
            sees = "every token, both sides"
        rows.append({"model": trace.model_name, "attention": name, "queries from": stack.queries_from,
                     "keys and values from": stack.keys_from, "each token sees": sees,
                     "layers × heads": f"{stack.n_layers} × {stack.n_heads}"})  # fmt: skip
    return rows
