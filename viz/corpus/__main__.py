"""Run a corpus from the command line (see README, "Heads across a corpus"):

    python3 -m viz.corpus --model minilm --input data/corpus-sample.txt
    python3 -m viz.corpus --model smollm2 --input texts.parquet --column body --layers 15 30 --workers 2
    RAY_ADDRESS=ray://head:10001 python3 -m viz.corpus --model gpt2 --input big.jsonl --workers 8

A run killed part-way continues where it stopped when the same command is given again."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from viz.corpus.engine import DEFAULT_MAX_TOKENS, SHARD_SIZE, Progress, prepare, run_corpus, runs_folder
from viz.corpus.index import INDEX_KINDS
from viz.corpus.inputs import SAMPLE, read_path


def _show(p: Progress) -> None:
    left = f"{p.seconds_left:.0f} s left" if p.seconds_left is not None else ""
    sys.stderr.write(f"\r{p.texts_done:,}/{p.texts_total:,} texts · {p.texts_per_second:.1f} texts/s · {left}   ")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m viz.corpus", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="minilm", help="catalog key, hub id or local directory")
    parser.add_argument("--input", type=Path, default=SAMPLE, help=".txt (a text per line), .csv, .jsonl, .parquet")
    parser.add_argument("--column", default="text", help="the text column of a table")
    parser.add_argument("--layers", type=int, nargs="*", default=None, help="hidden-state layers to index for search")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="longer texts are listed, not cut")
    parser.add_argument("--shard-size", type=int, default=SHARD_SIZE)
    parser.add_argument("--index", choices=INDEX_KINDS, default="sq8", help="search index: 1 or 2 bytes a number")
    parser.add_argument("--workers", type=int, default=2, help="model actors (one per GPU where there are GPUs)")
    parser.add_argument("--address", default=None, help="a Ray cluster (default: RAY_ADDRESS, else local Ray)")
    parser.add_argument("--out", type=Path, default=None, help="folder of runs (default: ATLAS_CORPUS_DIR)")
    args = parser.parse_args(argv)
    corpus = read_path(args.input, args.column)
    layers = tuple(args.layers) if args.layers is not None else (default_layer(args.model),)
    folder = args.out or runs_folder()
    spec, run = prepare(corpus, args.model, layers, folder, args.max_tokens, args.shard_size, args.index)
    print(
        f"{run}: {spec.n_texts:,} texts in {spec.n_shards} shards, {len(corpus.bad)} rows unreadable", file=sys.stderr
    )
    report = run_corpus(run, args.workers, _show, args.address)
    print(file=sys.stderr)
    print(json.dumps({k: v for k, v in report.items() if k != "left_out"} | {"left_out": len(report["left_out"])}))


def default_layer(model: str) -> int:
    """The middle layer's hidden state: contextual, not yet shaped for the model's output."""
    from viz.models import layer_count

    return max(1, layer_count(model) // 2)


if __name__ == "__main__":
    main()
