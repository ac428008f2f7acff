"""exBERT-style search (Hoover et al. 2020): a token of any text → the corpus tokens whose contextual embedding
at the same layer is nearest (cosine), with their contexts and what a chosen head does there."""

from __future__ import annotations

import numpy as np
import pandas as pd

from viz.corpus.index import Hits, TokenIndex
from viz.corpus.reading import in_context
from viz.corpus.store import CorpusStore
from viz.trace import Trace


def nearest_tokens(store: CorpusStore, index: TokenIndex, vector: np.ndarray, k: int = 10) -> tuple[pd.DataFrame, Hits]:
    """The k nearest corpus tokens to `vector` (one hidden state of the run's model at the index's layer)."""
    hits = index.search(vector, k)
    rows = []
    for text_id, position, similarity in zip(hits.text_ids, hits.positions, hits.similarity, strict=True):
        tokens = store.tokens(int(text_id))
        context = in_context(tokens, {int(position): "«{}»"}, 8)
        rows.append({"similarity": float(similarity), "token": tokens[position], "context": context,
                     "text_id": int(text_id), "position": int(position)})  # fmt: skip
    return pd.DataFrame(rows, columns=["similarity", "token", "context", "text_id", "position"]), hits


def head_there(trace: Trace, layer: int, head: int, position: int) -> tuple[str, float]:
    """Where one head of the first self-attention stack looks from `position`: its strongest key and weight."""
    stack = trace.stacks[trace.self_stacks[0]]
    row = stack.attention(layer, head, rows=slice(position, position + 1))[0]
    key = int(row.argmax())
    return trace.tokens[stack.keys_from].display[key], float(row[key])
