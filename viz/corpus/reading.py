"""What one text of a corpus gives: every head's scores (the Head roles page's, from the same `head_stats`),
each head's strongest (query, key) cells, the tokens, and contextual embeddings of the layers asked for.

Everything reads the model's first self-attention stack (an encoder-decoder's encoder): the patterns compare
a query's token with its keys', and the search compares tokens of one kind of sequence."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from viz.heads import PATTERNS, head_stats
from viz.models import LoadedModel
from viz.trace import Trace, build_trace

SCORES = (*PATTERNS, "entropy", "distance")  # per text × layer × head
TOP_CELLS = 3  # a text's strongest cells kept per head: the run keeps the corpus's top k from these
SCORE_TYPES = {"text_id": "int64", "layer": "int16", "head": "int16", **dict.fromkeys(SCORES, "float32")}


@dataclass(frozen=True)
class TextResult:
    text_id: int
    n_tokens: int
    scores: pd.DataFrame  # text_id, layer, head, one column per SCORES name
    cells: pd.DataFrame  # text_id, layer, head, query, key, weight
    tokens: pd.DataFrame  # text_id, position, token (readable), special
    embeddings: dict[int, np.ndarray]  # layer -> [tokens, d_model] float16 (hidden state after that layer)


def in_context(tokens: Sequence[str], marks: Mapping[int, str], window: int) -> str:
    """The tokens around the marked positions as one line, each marked one through its format ("«{}»"), with
    "…" where the text goes on: how the page shows a cell, a search hit or a projected point."""
    lo, hi = max(0, min(marks) - window), min(len(tokens), max(marks) + window + 1)
    shown = [marks[i].format(t) if i in marks else t for i, t in enumerate(tokens[lo:hi], lo)]
    return ("… " if lo else "") + " ".join(shown) + (" …" if hi < len(tokens) else "")


class TooLong(ValueError):
    """The text has more tokens than the run reads: listed as a bad row, not cut."""


def corpus_trace(loaded: LoadedModel, text: str, max_tokens: int) -> Trace:
    """The single-text Trace a corpus run reads (the same call the pages make for this text)."""
    trace = build_trace(loaded, text, max_tokens=max_tokens)
    if trace.dropped_tokens:
        raise TooLong(f"over the limit: {trace.prompt_length + trace.dropped_tokens} tokens > {trace.token_limit}")
    return trace


def top_cells(weights: np.ndarray, special: np.ndarray, k: int = TOP_CELLS) -> list[tuple[int, int, int, float]]:
    """A layer's [heads, queries, keys] attention → per head its k largest (head, query, key, weight) cells,
    leaving out the first key, the query itself, and special tokens as keys (where heads park attention) and as
    queries ([SEP] rows hold little a reader can scan): cells between the text's own tokens."""
    n_heads, n_queries, n_keys = weights.shape
    open_cells = np.ones((n_queries, n_keys), dtype=bool)
    open_cells[:, 0] = False
    open_cells[np.arange(min(n_queries, n_keys)), np.arange(min(n_queries, n_keys))] = False
    open_cells[:, special[:n_keys]] = False
    open_cells[special[:n_queries], :] = False
    found = []
    for head in range(n_heads):
        flat = np.where(open_cells, weights[head], -1.0).ravel()
        best = np.argsort(flat, kind="stable")[::-1][:k]
        found += [(head, int(i // n_keys), int(i % n_keys), float(flat[i])) for i in best if flat[i] > 0]
    return found


def read_text(loaded: LoadedModel, text_id: int, text: str, layers: tuple[int, ...], max_tokens: int) -> TextResult:
    """One text through the model (one forward pass) and everything the run keeps of it."""
    trace = corpus_trace(loaded, text, max_tokens)
    name = trace.self_stacks[0]
    stack = trace.stacks[name]
    tokens = trace.tokens[stack.queries_from]
    scored = head_stats(stack, tokens.ids).scores
    layer, head = np.indices((stack.n_layers, stack.n_heads)).reshape(2, -1)
    columns = {name: scored.scores[name].ravel() for name in PATTERNS}
    columns |= {"entropy": scored.entropy.ravel(), "distance": scored.distance.ravel()}
    scores = pd.DataFrame({"text_id": text_id, "layer": layer, "head": head, **columns}).astype(SCORE_TYPES)
    cells = [(lay, *cell) for lay in range(stack.n_layers) for cell in top_cells(stack.attention(lay), tokens.special)]
    cells = pd.DataFrame(cells, columns=["layer", "head", "query", "key", "weight"]).assign(text_id=text_id)
    token_frame = pd.DataFrame(
        {
            "text_id": text_id,
            "position": np.arange(len(tokens)),
            "token": list(tokens.display),
            "special": tokens.special,
        }
    )
    hidden = trace.hidden_states[name]
    embeddings = {layer: hidden[layer].astype(np.float16) for layer in layers}
    return TextResult(text_id, len(tokens), scores, cells, token_frame, embeddings)
