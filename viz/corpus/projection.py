"""AttentionViz's joint query–key view (Yeh et al., IEEE VIS 2023): one head's queries and keys from many
texts, made comparable, then projected together to 2-D.

For a head with queries q_i and keys k_j (as its scores use them: after RoPE, GQA keys of its own key head):

    key translation      k̃_j = k_j + (q̄ − k̄)            q̄, k̄: the sample's mean query and mean key
    scale normalisation  q'_i = c·q_i,  k'_j = k̃_j / c,  c = sqrt(mean_j ‖k̃_j‖ / mean_i ‖q_i‖)

Neither changes any attention weight: q_i·k̃_j = q_i·k_j + q_i·(q̄ − k̄) adds the same number to every score of
query i (softmax is shift-invariant), and c·q_i · k̃_j / c = q_i·k̃_j. After both, the two clouds share a centre
and a size, so a query lands near the keys it attends to (distance tracks q·k) instead of the two clouds lying
apart. Projections: PCA and t-SNE (scikit-learn), UMAP (umap-learn)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viz.corpus.reading import corpus_trace, in_context
from viz.models import LoadedModel

METHODS = ("PCA", "UMAP", "t-SNE")
MAX_POINTS = 4000  # queries + keys drawn: a scatter a browser draws at once, and UMAP's time on 2 cores


@dataclass(frozen=True)
class JointSample:
    """One head's queries and keys over a sample of texts, one row per token and kind."""

    vectors: np.ndarray  # [n, d_head]: queries then keys, as the scores use them
    is_query: np.ndarray  # [n] bool
    text_ids: np.ndarray  # [n]
    positions: np.ndarray  # [n]
    tokens: list[str]  # [n]
    contexts: list[str]  # [n]: the token in its text, marked with « »
    scaling: float  # the head's score scale (1/√d)
    identity: tuple = field(default=(), compare=False)  # what it was sampled from: views derived from it cache under it


def joint_sample(loaded: LoadedModel, texts: tuple[tuple[int, str], ...], layer: int, head: int, max_tokens: int,
                 max_points: int = MAX_POINTS) -> JointSample:  # fmt: skip
    """Queries and keys of one head of the first self-attention stack over `texts` ((text_id, text) pairs), each text
    a fresh single-text Trace, until `max_points` points (the last text that would pass the bound is left out)."""
    parts, scaling = [], 1.0
    for text_id, text in texts:
        trace = corpus_trace(loaded, text, max_tokens)
        stack = trace.stacks[trace.self_stacks[0]]
        tokens = trace.tokens[stack.queries_from]
        if sum(len(p[0]) for p in parts) + 2 * len(tokens) > max_points:
            break
        scaling = stack.scaling(layer)
        contexts = [in_context(tokens.display, {i: "«{}»"}, 5) for i in range(len(tokens))]
        for vectors, is_query in ((stack.query(layer, head), True), (stack.key(layer, head), False)):
            n = len(vectors)
            parts.append((np.asarray(vectors, np.float32), np.full(n, is_query), np.full(n, text_id), np.arange(n),
                          list(tokens.display), contexts))  # fmt: skip
    if not parts:
        raise ValueError("no text of the sample fits the point bound")
    vectors, is_query, text_ids, positions = (np.concatenate([p[i] for p in parts]) for i in range(4))
    order = np.argsort(~is_query, kind="stable")  # queries first, then keys
    tokens = [t for p in parts for t in p[4]]
    contexts = [c for p in parts for c in p[5]]
    return JointSample(vectors[order], is_query[order], text_ids[order], positions[order],
                       [tokens[i] for i in order], [contexts[i] for i in order], scaling,
                       (*loaded.identity, tuple(t for t, _ in texts), layer, head, max_tokens, max_points))  # fmt: skip


def normalise(queries: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AttentionViz's key translation, then query/key scale normalisation (module docstring)."""
    queries, keys = np.asarray(queries, np.float64), np.asarray(keys, np.float64)
    keys = keys + (queries.mean(0) - keys.mean(0))
    c = np.sqrt(np.linalg.norm(keys, axis=1).mean() / max(np.linalg.norm(queries, axis=1).mean(), 1e-12))
    return queries * c, keys / c


def project(sample: JointSample, method: str = "PCA", seed: int = 0) -> np.ndarray:
    """[n, 2]: the normalised queries and keys projected together."""
    q, k = normalise(sample.vectors[sample.is_query], sample.vectors[~sample.is_query])
    points = np.concatenate([q, k])
    if method == "PCA":
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed).fit_transform(points)
    if method == "t-SNE":
        from sklearn.manifold import TSNE

        return TSNE(2, random_state=seed, init="pca", perplexity=min(30, len(points) - 1)).fit_transform(points)
    if method == "UMAP":
        import umap

        return umap.UMAP(
            n_components=2, random_state=seed, n_jobs=1, n_neighbors=min(15, len(points) - 1)
        ).fit_transform(points)
    raise ValueError(f"unknown projection {method!r}")
