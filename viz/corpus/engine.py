"""A corpus run on Ray Data: texts → shards → model actors → one directory of Parquet per shard.

    run/
      run.json            what was asked (model, layers, limit, shard size) and the corpus's digest
      texts.parquet       text_id, row (in the file), text: every readable text, in file order
      bad.parquet         rows of the file that could not be read (empty, not UTF-8, not text)
      shards/00012/       scores, cells, tokens, failed (.parquet) and emb-L{layer}.npy of shard 12
      index-L{layer}.*    the FAISS index over that layer's embeddings (viz.corpus.index), once every shard is in

A shard's directory is written under a temporary name and renamed when complete, so after a kill a shard
is either wholly there or not at all: a resumed run reads only the shards that are missing, and every
text is counted exactly once. The actors run wherever Ray puts them (in-process local Ray by default, a
cluster given its address); they return their results to the driver, which alone writes the run."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from viz.corpus.inputs import Corpus

ROOT = Path(__file__).resolve().parents[2]
SHARD_SIZE = 64  # texts per shard: a kill loses at most this many texts' work per worker
DEFAULT_MAX_TOKENS = 128


def runs_folder() -> Path:
    """Where runs live: ATLAS_CORPUS_DIR, else ~/.cache/attention-atlas/corpus."""
    default = Path.home() / ".cache" / "attention-atlas" / "corpus"
    return Path(os.environ.get("ATLAS_CORPUS_DIR") or default)


@dataclass(frozen=True)
class RunSpec:
    model: str
    source: str  # the corpus file's name
    digest: str  # sha256 of the texts: a run resumes only on the same corpus
    n_texts: int
    layers: tuple[int, ...]  # hidden-state layers indexed for search (0 = embeddings)
    max_tokens: int
    shard_size: int = SHARD_SIZE
    index: str = "sq8"  # viz.corpus.index.INDEX_KINDS: how the search index stores each number

    @property
    def n_shards(self) -> int:
        return -(-self.n_texts // self.shard_size)


@dataclass(frozen=True)
class Progress:
    texts_done: int
    texts_total: int
    texts_per_second: float
    seconds_left: float | None


def corpus_digest(corpus: Corpus) -> str:
    digest = hashlib.sha256()
    for row, text in zip(corpus.rows, corpus.texts, strict=True):
        digest.update(f"{row}\0{text}\0".encode())
    return digest.hexdigest()


def run_name(spec: RunSpec) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(spec.source).stem)[:40]
    model = "".join(c if c.isalnum() or c in "-_" else "-" for c in spec.model)[:40]
    return f"{model}--{stem}--{spec.digest[:10]}"


def prepare(corpus: Corpus, model: str, layers: tuple[int, ...], folder: Path, max_tokens: int = DEFAULT_MAX_TOKENS,
            shard_size: int = SHARD_SIZE, index: str = "sq8") -> tuple[RunSpec, Path]:  # fmt: skip
    """Create (or find, to resume) a run's directory: run.json, the texts, the unreadable rows."""
    spec = RunSpec(model, corpus.name, corpus_digest(corpus), len(corpus.texts), tuple(sorted(set(layers))),
                   max_tokens, shard_size, index)  # fmt: skip
    run = folder / run_name(spec)
    if (run / "run.json").exists():
        found = read_spec(run)
        if found != spec:
            raise ValueError(f"{run} holds another run ({found.model}, layers {found.layers}); pick another folder")
        return spec, run
    (run / "shards").mkdir(parents=True, exist_ok=True)
    texts = pd.DataFrame({"text_id": np.arange(len(corpus.texts)), "row": corpus.rows, "text": corpus.texts})
    texts.to_parquet(run / "texts.parquet")
    bad = pd.DataFrame([asdict(b) for b in corpus.bad], columns=["row", "reason"])
    bad.to_parquet(run / "bad.parquet")
    _write_atomic(run / "run.json", json.dumps(asdict(spec), indent=2).encode())
    return spec, run


def read_spec(run: Path) -> RunSpec:
    data = json.loads((run / "run.json").read_text())
    return RunSpec(**{**data, "layers": tuple(data["layers"])})


def done_shards(run: Path) -> set[int]:
    return {int(p.name) for p in (run / "shards").iterdir() if p.is_dir() and p.name.isdigit()}


def is_complete(run: Path) -> bool:
    return (run / "run.json").exists() and len(done_shards(run)) == read_spec(run).n_shards


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_shard(run: Path, shard: int, payload: dict[str, bytes]) -> None:
    """A shard's files under a temporary name, then one rename: after a kill it is all there or absent."""
    final = run / "shards" / f"{shard:05d}"
    if final.exists():  # a worker's result arrived twice (Ray retried a task): the first one counts
        return
    temporary = run / "shards" / f".{shard:05d}.{os.getpid()}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    for name, data in payload.items():
        (temporary / name).write_bytes(data)
    os.replace(temporary, final)


# ---------------------------------------------------------------- the actor: one model, many shards
def _parquet(frames: list[pd.DataFrame], columns: list[str]) -> bytes:
    buffer = io.BytesIO()
    (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)).to_parquet(buffer)
    return buffer.getvalue()


class ShardReader:
    """A Ray Data actor: loads the model once, then reads whole shards (a batch is one shard)."""

    def __init__(self, model: str, layers: tuple[int, ...], max_tokens: int, threads: int) -> None:
        import torch

        from viz.models import load_model

        torch.set_num_threads(max(1, threads))
        self.loaded = load_model(model)
        self.layers, self.max_tokens = tuple(layers), max_tokens

    def read_shard(self, text_ids: list[int], texts: list[str]) -> dict[str, bytes]:
        from viz.corpus.reading import read_text
        from viz.errors import AtlasError

        results, failed = [], []
        for text_id, text in zip(text_ids, texts, strict=True):
            try:
                results.append(read_text(self.loaded, int(text_id), text, self.layers, self.max_tokens))
            except (AtlasError, ValueError) as err:  # over the limit, or a text the model can't take
                failed.append({"text_id": int(text_id), "reason": str(err)[:300]})
        payload = {
            "scores.parquet": _parquet([r.scores for r in results], ["text_id", "layer", "head"]),
            "cells.parquet": _parquet([r.cells for r in results], ["text_id", "layer", "head", "query", "key"]),
            "tokens.parquet": _parquet([r.tokens for r in results], ["text_id", "position", "token", "special"]),
            "failed.parquet": _parquet([pd.DataFrame(failed)] if failed else [], ["text_id", "reason"]),
        }
        for layer in self.layers:
            buffer = io.BytesIO()
            rows = [r.embeddings[layer] for r in results]
            np.save(buffer, np.concatenate(rows) if rows else np.zeros((0, 0), np.float16))
            payload[f"emb-L{layer}.npy"] = buffer.getvalue()
        return payload

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shards = zip(batch["text_ids"], batch["texts"], strict=True)
        out = [pickle.dumps(self.read_shard(list(ids), list(texts))) for ids, texts in shards]
        return {"shard": np.asarray(batch["shard"]), "payload": np.array(out, dtype=object)}


# ---------------------------------------------------------------- the driver
def start_ray(address: str | None = None, workers: int = 2) -> None:
    """Ray for this process: the cluster at `address` (or RAY_ADDRESS), else an in-process local one with
    `workers` CPUs. The repository travels to a cluster's workers as the job's working directory."""
    import logging

    import ray

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-operator progress lines flood a terminal
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"log_to_driver": False, "include_dashboard": False, "logging_level": "ERROR"}
    if address:
        excludes = [".git", "tests", "docs", "bench/results", "**/__pycache__"]
        ray.init(address=address, runtime_env={"working_dir": str(ROOT), "excludes": excludes}, **quiet)
    else:
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        ray.init(num_cpus=workers, object_store_memory=256 * 2**20, runtime_env={"env_vars": env}, **quiet)


def run_corpus(run: Path, workers: int = 2, progress: Callable[[Progress], None] | None = None,
               address: str | None = None) -> dict:  # fmt: skip
    """Read every shard of `run` not yet written, on Ray Data; then build the search index. Returns the report."""
    import ray
    import torch

    spec = read_spec(run)
    texts = pd.read_parquet(run / "texts.parquet")
    pending = sorted(set(range(spec.n_shards)) - done_shards(run))
    items = [
        {"shard": s, "text_ids": texts.text_id[s * spec.shard_size : (s + 1) * spec.shard_size].tolist(),
         "texts": texts.text[s * spec.shard_size : (s + 1) * spec.shard_size].tolist()}
        for s in pending
    ]  # fmt: skip
    start, done_before = time.perf_counter(), spec.n_texts - sum(len(i["texts"]) for i in items)
    done = done_before
    if items:
        start_ray(address, workers)
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours says texts/s and time left
        gpus = 1 if torch.cuda.is_available() else 0  # one actor per GPU where there are GPUs
        cpus = max(1, int(ray.available_resources().get("CPU", workers)) // workers)
        dataset = ray.data.from_items(items).map_batches(
            ShardReader, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=0 if gpus else cpus, num_gpus=gpus,
            fn_constructor_kwargs={"model": spec.model, "layers": spec.layers, "max_tokens": spec.max_tokens,
                                   "threads": cpus},
        )  # fmt: skip
        sizes = {i["shard"]: len(i["texts"]) for i in items}
        for row in dataset.iter_rows():
            write_shard(run, int(row["shard"]), pickle.loads(row["payload"]))
            done += sizes[int(row["shard"])]
            if progress:
                rate = (done - done_before) / max(time.perf_counter() - start, 1e-9)
                progress(Progress(done, spec.n_texts, rate, (spec.n_texts - done) / rate if rate else None))
    from viz.corpus.index import build_indexes, has_indexes

    if items or not has_indexes(run, spec.layers):
        build_indexes(run)
    return write_report(run, time.perf_counter() - start, done - done_before)


def write_report(run: Path, seconds: float, texts_read: int) -> dict:
    from viz.corpus.store import CorpusStore

    store = CorpusStore(run)
    rate = round(texts_read / max(seconds, 1e-9), 2)
    report = store.report() | {
        "this_session": {"texts_read": texts_read, "seconds": round(seconds, 2), "texts_per_second": rate}
    }
    _write_atomic(run / "report.json", json.dumps(report, indent=2).encode())
    return report


def list_runs(folder: Path) -> list[tuple[Path, RunSpec]]:
    """The runs in a folder, newest first."""
    found = []
    for path in Path(folder).glob("*/run.json") if Path(folder).is_dir() else ():
        try:
            found.append((path.parent, read_spec(path.parent)))
        except (OSError, ValueError, TypeError, KeyError):  # a half-written or foreign folder: not a run
            continue
    return sorted(found, key=lambda item: item[0].stat().st_mtime, reverse=True)
