"""exBERT-style search over a run's contextual embeddings: one FAISS index per indexed layer.

Cosine similarity as an inner product of L2-normalised vectors, searched exhaustively. Stored with FAISS's
scalar quantizer: "sq8" (default: one byte a number, each dimension's range learnt from up to 65,536 of the
run's vectors; MiniLM: 0.4 KB a token) or "fp16" (two bytes a number, exact up to float16 rounding). Row r of
index-L{layer}.faiss is the token (text_id, position) in row r of index-L{layer}.ids.npy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def index_paths(run: Path, layer: int) -> tuple[Path, Path]:
    return run / f"index-L{layer}.faiss", run / f"index-L{layer}.ids.npy"


INDEX_KINDS = ("sq8", "fp16")
TRAINING_VECTORS = 65_536


def _empty_index(kind: str, vectors: list[np.ndarray]):
    """A scalar-quantizer index; "sq8" learns each dimension's range from an even sample of `vectors`."""
    import faiss

    quantizer = {"sq8": faiss.ScalarQuantizer.QT_8bit, "fp16": faiss.ScalarQuantizer.QT_fp16}[kind]
    index = faiss.IndexScalarQuantizer(vectors[0].shape[1], quantizer, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        step = max(1, sum(len(v) for v in vectors) // TRAINING_VECTORS)
        index.train(_normalised(np.concatenate([v[::step] for v in vectors])))
    return index


def build_indexes(run: Path) -> None:
    """Every indexed layer's index from the shards' embeddings (shard order = token order in tokens.parquet)."""
    import faiss
    import pandas as pd

    from viz.corpus.engine import read_spec

    spec = read_spec(run)
    shards = sorted(p for p in (run / "shards").iterdir() if p.is_dir() and p.name.isdigit())
    for layer in spec.layers:
        path, ids_path = index_paths(run, layer)
        stored = [np.load(shard / f"emb-L{layer}.npy", mmap_mode="r") for shard in shards]
        stored = [(shard, v) for shard, v in zip(shards, stored, strict=True) if len(v)]
        if not stored:
            continue
        index, ids = _empty_index(spec.index, [v for _, v in stored]), []
        for shard, vectors in stored:
            tokens = pd.read_parquet(shard / "tokens.parquet", columns=["text_id", "position"])
            assert len(tokens) == len(vectors), shard  # one vector per token, in the same order
            index.add(_normalised(vectors))
            ids.append(tokens.to_numpy(np.int32))
        faiss.write_index(index, str(path.with_name(path.name + ".tmp")))
        np.save(ids_path.with_name("tmp-" + ids_path.name), np.concatenate(ids))
        path.with_name(path.name + ".tmp").replace(path)
        ids_path.with_name("tmp-" + ids_path.name).replace(ids_path)
    for shard in shards:  # the index holds them now: the float16 copies would be most of the run's bytes
        for vectors in shard.glob("emb-L*.npy"):
            vectors.unlink()


def has_indexes(run: Path, layers: tuple[int, ...]) -> bool:
    return all(all(p.exists() for p in index_paths(run, layer)) for layer in layers)


@dataclass(frozen=True)
class Hits:
    text_ids: np.ndarray  # [k]
    positions: np.ndarray  # [k]
    similarity: np.ndarray  # [k] cosine
    seconds: float  # the index search alone


class TokenIndex:
    """A loaded index of one layer."""

    def __init__(self, run: Path, layer: int) -> None:
        import faiss

        path, ids_path = index_paths(run, layer)
        if not path.exists():
            raise FileNotFoundError(f"layer {layer} was not indexed in this run")
        self.index = faiss.read_index(str(path))
        self.ids = np.load(ids_path)
        self.nbytes = path.stat().st_size + ids_path.stat().st_size

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, vector: np.ndarray, k: int = 10) -> Hits:
        import time

        start = time.perf_counter()
        similarity, rows = self.index.search(_normalised(vector[None]), k)
        seconds = time.perf_counter() - start
        found = rows[0] >= 0
        rows = rows[0][found]
        return Hits(self.ids[rows, 0], self.ids[rows, 1], similarity[0][found], seconds)
