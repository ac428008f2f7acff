"""Benchmark: long contexts. The lazy Trace against a plain sdpa forward, and the peers.

    python3 bench/bench_long.py                    # every row below; writes bench/results/long.json
    python3 bench/bench_long.py --only smollm2     # one model
    TL_PYTHON=/path/to/venv/bin/python python3 bench/bench_long.py   # + TransformerLens rows

Each measurement runs in a fresh subprocess, so peak RSS is that run's alone (sampled every
5 ms while the Trace is built, minus the RSS just before). Per row, in one process:
- Trace time vs a plain forward of the same weights with `attn_implementation="sdpa"` (no
  hidden states, nothing kept), interleaved, median of `--repeat` runs each;
- peak RSS increase while building the Trace, and the Trace's bytes;
- server time to the first page's maps (one head's overview + the mean over heads, through
  token options, max-pooling and plotly JSON), to one head's overview alone, and to the Model
  view (every head's thumbnail + the figure JSON).
Peers (optional extras, not app dependencies): TransformerLens 4.x `run_with_cache` (give its
Python in TL_PYTHON) and bertviz's `model_view`, where they fit in this machine's memory.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROWS = [("minilm", 128), ("minilm", 512), ("smollm2", 512), ("smollm2", 1024), ("smollm2", 2048), ("smollm2", 4096)]
# Running text for long inputs: this repository's own README and sources, repeated as needed.
TEXT_FILES = ["README.md", "viz/trace.py", "viz/capture.py", "ui/page.py", "viz/figures.py"]
PEER_MEMORY_LIMIT = 12 * 2**30  # a peer run that would hold more attention than this is not started
BERTVIZ_HTML_BYTES_PER_WEIGHT = 44  # measured: 12×12 heads × 128² weights -> 104 MB of HTML
BERTVIZ_MAX_WEIGHTS = 20_000_000  # ~0.9 GB of HTML: beyond this no browser tab opens it


def long_text(tokenizer, tokens: int) -> str:
    """Just enough running text for `tokens` tokens (a user's text is about as long as what is read)."""
    text = "\n".join((ROOT / f).read_text(encoding="utf-8") for f in TEXT_FILES) * 6
    ends = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
    return text[: ends[min(tokens + 8, len(ends) - 1)][1]]


def rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


class PeakRSS:
    """Highest RSS seen while the block runs, minus the RSS when it started."""

    def __enter__(self):
        self.start = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())
        self.increase = self.peak - self.start


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


# ---------------------------------------------------------------- children (one measurement each)
def ours(model: str, tokens: int, repeat: int) -> dict:
    import numpy as np
    import torch

    from viz import figures
    from viz.heads import stack_stats
    from viz.models import load_model
    from viz.mosaic import GAP
    from viz.tokens import TokenOptions, matrix_view, pool_view
    from viz.trace import build_trace

    loaded = load_model(model)
    loaded.tokenizer.model_max_length = 1 << 20
    text = long_text(loaded.tokenizer, tokens)
    build_trace(loaded, "warm up the kernels", max_tokens=tokens)
    figures.attention_heatmap(np.eye(3), "abc", "abc").to_json()  # plotly's first figure pays its imports
    plain = copy.deepcopy(loaded.model)
    plain.set_attn_implementation("sdpa")
    with PeakRSS() as memory:
        trace = build_trace(loaded, text, max_tokens=tokens)
    ids = torch.tensor([trace.tokens["source"].ids.tolist()])
    assert ids.shape[1] == tokens, ids.shape
    with PeakRSS() as plain_memory, torch.inference_mode():
        plain(input_ids=ids)
    trace_s, plain_s = [], []
    for _ in range(repeat):  # interleaved, so drift on a noisy machine hits both alike
        with torch.inference_mode():
            plain_s.append(timed(lambda: plain(input_ids=ids))[0])
        trace_s.append(timed(lambda: build_trace(loaded, text, max_tokens=tokens))[0])
    stack = next(iter(trace.stacks.values()))
    rows, cols = trace.stack_tokens(stack.name)
    layer = stack.n_layers // 2

    def map_json(weights) -> int:
        view = pool_view(matrix_view(weights, rows, cols, stack.forbidden(layer), TokenOptions()))
        fig = figures.attention_heatmap(
            view.weights, view.row_labels, view.col_labels, view.masked, "", None, "Blues",
            view.row_positions, view.col_positions,
        )  # fmt: skip
        return len(fig.to_json())

    overview_s, overview_bytes = timed(lambda: map_json(stack.attention(layer, 1)))
    first_page_s, _ = timed(lambda: (map_json(stack.attention(layer, 1)), map_json(stack.head_mean(layer))))
    query_s, _ = timed(lambda: stack.attention(layer, 1, rows=slice(tokens // 2, tokens // 2 + 1)))

    def model_view() -> int:
        mosaic = stack_stats(trace, stack.name).thumbnails.mosaic  # the one pass: thumbnails and head scores
        grid = figures.mosaic_figure(
            mosaic.png, mosaic.width, mosaic.height, mosaic.cell, stack.n_layers, stack.n_heads, GAP
        )
        return len(grid.to_json())

    with PeakRSS() as view_memory:
        model_view_s, model_view_bytes = timed(model_view)
    return dict(
        trace_s=round(statistics.median(trace_s), 3),
        plain_sdpa_forward_s=round(statistics.median(plain_s), 3),
        trace_over_plain=round(statistics.median(trace_s) / statistics.median(plain_s), 2),
        trace_peak_rss_increase_gb=round(memory.increase / 2**30, 2),
        plain_forward_peak_rss_increase_gb=round(plain_memory.increase / 2**30, 2),
        trace_gb=round(trace.nbytes / 2**30, 3),
        trace_attention_vectors_gb=round(sum(s.nbytes for s in trace.stacks.values()) / 2**30, 3),
        head_overview_s=round(overview_s, 2),
        head_overview_mb_sent=round(overview_bytes / 1e6, 2),
        first_page_maps_s=round(first_page_s, 2),
        one_query_row_s=round(query_s, 4),
        model_view_s=round(model_view_s, 2),
        model_view_mb_sent=round(model_view_bytes / 1e6, 2),
        model_view_peak_rss_increase_gb=round(view_memory.increase / 2**30, 2),
        layers_heads=f"{stack.n_layers}×{stack.n_heads}",
    )


def _token_ids(model: str, tokens: int) -> list[int]:
    from viz.models import load_model
    from viz.trace import build_trace

    loaded = load_model(model)
    loaded.tokenizer.model_max_length = 1 << 20
    return build_trace(loaded, long_text(loaded.tokenizer, tokens), max_tokens=tokens).tokens["source"].ids.tolist()


def transformer_lens(model: str, tokens: int, repeat: int) -> dict:
    """TransformerLens 4.x: TransformerBridge over the same local weights, run_with_cache (all activations)."""
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    from viz.models import minilm_dir, smollm2_dir

    ids = torch.tensor([_token_ids(model, tokens)])
    bridge = TransformerBridge.boot_transformers(str(minilm_dir() if model == "minilm" else smollm2_dir()))
    bridge.enable_compatibility_mode()
    with torch.inference_mode():
        bridge.run_with_cache(ids[:, :8])
    times = []
    with PeakRSS() as memory, torch.inference_mode():
        for _ in range(repeat):
            seconds, (_, cache) = timed(lambda: bridge.run_with_cache(ids))
            times.append(seconds)
            cache_bytes = sum(t.nelement() * t.element_size() for t in cache.values())
            del cache
    return dict(
        run_with_cache_s=round(statistics.median(times), 3),
        peak_rss_increase_gb=round(memory.increase / 2**30, 2),
        cache_gb=round(cache_bytes / 2**30, 3),
    )


def bertviz(model: str, tokens: int, repeat: int) -> dict:
    """bertviz's model_view as its README uses it: an eager forward with output_attentions, then the HTML."""
    import torch
    from bertviz import model_view

    from viz.models import load_model

    loaded = load_model(model)
    ids = torch.tensor([_token_ids(model, tokens)])
    eager = copy.deepcopy(loaded.model)
    eager.set_attn_implementation("eager")
    labels = loaded.tokenizer.convert_ids_to_tokens(ids[0].tolist())

    def run() -> int:
        with torch.inference_mode():
            attentions = eager(input_ids=ids, output_attentions=True).attentions
        return len(model_view(attentions, labels, html_action="return").data)

    with PeakRSS() as memory:
        seconds, html_bytes = timed(run)
    return dict(
        model_view_s=round(seconds, 2),
        html_mb=round(html_bytes / 1e6, 1),
        peak_rss_increase_gb=round(memory.increase / 2**30, 2),
    )


CHILDREN = {"ours": ours, "transformer_lens": transformer_lens, "bertviz": bertviz}
SHAPES = {"minilm": (6, 12), "smollm2": (30, 9)}


def attention_gb(model: str, tokens: int) -> float:
    layers, heads = SHAPES[model]
    return layers * heads * tokens * tokens * 4 / 2**30


def run_child(kind: str, model: str, tokens: int, repeat: int) -> dict:
    python = os.environ.get("TL_PYTHON") if kind == "transformer_lens" else sys.executable
    if not python:
        return {"not run": "set TL_PYTHON to a Python with transformer-lens 4.x installed"}
    held = attention_gb(model, tokens) * 2  # scores and patterns, T² per head
    if kind != "ours" and held * 2**30 > PEER_MEMORY_LIMIT:
        return {"not run": f"would hold ~{held:.0f} GB of attention (T² per head) on a 24 GB machine"}
    weights = attention_gb(model, tokens) * 2**30 / 4
    if kind == "bertviz" and weights > BERTVIZ_MAX_WEIGHTS:
        html_gb = weights * BERTVIZ_HTML_BYTES_PER_WEIGHT / 1e9
        return {"not run": f"would write ~{html_gb:.1f} GB of HTML ({weights / 1e6:.0f} M weights)"}
    command = [python, __file__, "--child", kind, model, str(tokens), "--repeat", str(repeat)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        return {
            "failed": done.stderr.strip().splitlines()[-1][:300] if done.stderr.strip() else f"exit {done.returncode}"
        }
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(report: dict) -> str:
    """bench/results/long.json as the Markdown tables of bench/RESULTS.md."""
    lines = [
        "| model | tokens | Trace s | plain sdpa s | Trace / plain | peak RSS + GB (plain) | Trace GB (q/k/v/out)"
        " | head overview s | first page maps s | Model view s (MB sent) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        o = row["ours"]
        if "trace_s" not in o:
            lines.append(f"| {row['model']} | {row['tokens']} | {next(iter(o.values()))} |")
            continue
        cells = [
            f"{row['model']} ({o['layers_heads']})",
            f"{row['tokens']:,}",
            o["trace_s"],
            o["plain_sdpa_forward_s"],
            f"**{o['trace_over_plain']}×**",
            f"{o['trace_peak_rss_increase_gb']} ({o['plain_forward_peak_rss_increase_gb']})",
            f"{o['trace_gb']} ({o['trace_attention_vectors_gb']})",
            o["head_overview_s"],
            o["first_page_maps_s"],
            f"{o['model_view_s']} ({o['model_view_mb_sent']})",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "| model | tokens | TransformerLens run_with_cache | bertviz model_view |", "|---|---:|---|---|"]
    for row in report["rows"]:
        tl, bv = row["transformer_lens"], row["bertviz"]
        tl_text = (
            f"{tl['run_with_cache_s']} s, peak RSS +{tl['peak_rss_increase_gb']} GB, cache {tl['cache_gb']} GB"
            if "run_with_cache_s" in tl
            else next(iter(tl.values()))
        )
        bv_text = (
            f"{bv['model_view_s']} s, {bv['html_mb']} MB of HTML, peak RSS +{bv['peak_rss_increase_gb']} GB"
            if "model_view_s" in bv
            else next(iter(bv.values()))
        )
        lines.append(f"| {row['model']} | {row['tokens']:,} | {tl_text} | {bv_text} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=list(SHAPES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "MODEL", "TOKENS"))
    parser.add_argument("--table", action="store_true", help="print bench/results/long.json as Markdown")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads((ROOT / "bench" / "results" / "long.json").read_text())))
        return
    if args.child:
        kind, model, tokens = args.child
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        print(json.dumps(CHILDREN[kind](model, int(tokens), args.repeat)))
        return
    report = {"machine": f"{os.cpu_count()} CPU cores", "rows": []}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    for model, tokens in ROWS:
        if args.only and model != args.only:
            continue
        row = {"model": model, "tokens": tokens}
        for kind in CHILDREN:
            row[kind] = run_child(kind, model, tokens, args.repeat if tokens <= 2048 else max(1, args.repeat - 1))
        print(json.dumps(row), flush=True)
        report["rows"].append(row)
        (out / "long.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
