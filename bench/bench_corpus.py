"""Benchmark: corpus runs (issue 23) on this machine, each case a fresh run folder and a fresh local Ray.

    python3 bench/bench_corpus.py                    # every case -> bench/results/corpus.json
    python3 bench/bench_corpus.py --only minilm-10k

Cases: 10,000 short texts through MiniLM (2 Ray workers); 1,000 texts of exactly 128 tokens through SmolLM2
(2 workers); 2,000 MiniLM texts with 1 and with 2 workers (the scaling ratio, same run of this script).
Texts come from the offline sample (data/corpus-sample.txt, 3,000 sentences): the first 3,000 as they are,
the rest two sentences each (sentence i, then sentence 7i + 1), so every text is distinct.
Per case: texts per second (model load included, Ray start excluded), peak RSS of this process and every
process under it (Ray's workers), bytes on disk per 1,000 texts (Parquet, and the FAISS index), and the
median of 200 searches of the index (random corpus tokens' own vectors)."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from viz.corpus.engine import prepare, run_corpus, start_ray  # noqa: E402
from viz.corpus.index import TokenIndex  # noqa: E402
from viz.corpus.inputs import SAMPLE, Corpus  # noqa: E402

# exBERT (Hoover et al. 2020) as the issue cites it: its README's storage for its own corpora.
EXBERT = "≥ 9 GB for a 207 KB text; 47 GB for WikiText-2 validation (~1.1 MB), every layer's embeddings kept"


class TreeRSS:
    """Highest summed RSS of this process and all its descendants while the block runs."""

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        me = psutil.Process()
        while not self._stop.wait(0.2):
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def short_texts(n: int) -> list[str]:
    sentences = SAMPLE.read_text().splitlines()
    extra = [f"{sentences[i % 3000]} {sentences[(7 * i + 1) % 3000]}" for i in range(len(sentences), n)]
    return (sentences + extra)[:n]


def texts_of_tokens(n: int, tokens: int) -> list[str]:
    """n distinct texts of exactly `tokens` SmolLM2 tokens: sample sentences run together, cut, decoded."""
    from viz.models import load_model

    tokenizer = load_model("smollm2").tokenizer
    ids = tokenizer(" ".join(SAMPLE.read_text().splitlines()))["input_ids"]
    span = len(ids) - tokens
    out, start = [], 0
    while len(out) < n and start < 4 * span:  # windows 41 tokens apart, wrapping round: distinct texts
        text = tokenizer.decode(ids[start % span : start % span + tokens])
        if len(tokenizer(text)["input_ids"]) == tokens:  # a cut through a character re-encodes otherwise
            out.append(text)
        start += 41
    return out


def case(model: str, texts: list[str], workers: int, max_tokens: int, layer: int) -> dict:
    import ray

    folder = Path(tempfile.mkdtemp(prefix="bench-corpus-"))
    try:
        corpus = Corpus(f"bench-{model}-{len(texts)}.txt", list(range(1, len(texts) + 1)), texts)
        _, run = prepare(corpus, model, (layer,), folder, max_tokens)
        start_ray(workers=workers)
        with TreeRSS() as memory:
            start = time.perf_counter()
            report = run_corpus(run, workers)
            seconds = time.perf_counter() - start
        ray.shutdown()
        index = TokenIndex(run, layer)
        rng = np.random.default_rng(0)
        vectors = [index.index.reconstruct(int(r)) for r in rng.integers(0, len(index), 200)]
        search_ms = statistics.median(index.search(v, 10).seconds * 1000 for v in vectors)
        parquet = sum(p.stat().st_size for p in run.rglob("*.parquet"))
        return dict(
            model=model, texts=len(texts), workers=workers, texts_read=report["texts_read"],
            left_out=len(report["left_out"]), seconds=round(seconds, 1),
            texts_per_second=round(len(texts) / seconds, 1),
            peak_rss_gb=round(memory.peak / 2**30, 2), tokens_indexed=len(index),
            parquet_mb_per_1000=round(parquet / 1e6 / len(texts) * 1000, 2),
            index_mb_per_1000=round(index.nbytes / 1e6 / len(texts) * 1000, 2),
            storage_and_index_mb=round((parquet + index.nbytes) / 1e6, 1), search_ms_median=round(search_ms, 2),
        )  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)


CASES = {
    "minilm-10k": lambda: case("minilm", short_texts(10_000), 2, 128, 3),
    "smollm2-1k": lambda: case("smollm2", texts_of_tokens(1000, 128), 2, 128, 15),
    "minilm-2k-1-worker": lambda: case("minilm", short_texts(2000), 1, 128, 3),
    "minilm-2k-2-workers": lambda: case("minilm", short_texts(2000), 2, 128, 3),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=sorted(CASES), action="append")
    args = parser.parse_args()
    results = {}
    for name in args.only or CASES:
        results[name] = CASES[name]()
        print(json.dumps({name: results[name]}), flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / "corpus.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**earlier, **results, "exbert_published": EXBERT}, indent=2))


if __name__ == "__main__":
    main()
