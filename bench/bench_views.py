"""Benchmark: what the Model view costs at long inputs, against the alternatives it replaces.

    python3 bench/bench_views.py [--tokens 512]

One run, one machine; figures are reported as ratios against bertviz's model_view and a grid
of plotly heatmaps measured in the same run. Targets (issue 3): at 512 tokens on a 12×12 model,
server build <= 1.5 s and <= 5 MB sent to the browser.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
import transformers
from plotly.subplots import make_subplots

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
transformers.logging.set_verbosity_error()

from viz import figures  # noqa: E402
from viz.bertviz_views import model_view_html  # noqa: E402
from viz.heads import THUMBNAIL_CELL, head_stats  # noqa: E402
from viz.models import load_model  # noqa: E402
from viz.mosaic import GAP  # noqa: E402
from viz.trace import build_trace  # noqa: E402

TEXT = ("The quick brown fox jumps over the lazy dog while the cat sat on the mat and time flies like an arrow. ") * 60


def timed(fn, repeat=3):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _mosaic(stack):
    """The Model view's one pass over every head (thumbnails and head statistics), drawn as its PNG."""
    ids = np.arange(stack.n_queries)  # the tokens' ids only steer the pattern scores, not what is drawn
    return head_stats(stack, ids, cell=THUMBNAIL_CELL).thumbnails.mosaic


def model_view_cost(stack, rows) -> dict:
    """What the Model view page builds and sends: the mosaic figure plus one full head heatmap."""
    seconds, mosaic = timed(lambda: _mosaic(stack))

    def figures_json():
        grid = figures.mosaic_figure(
            mosaic.png, mosaic.width, mosaic.height, mosaic.cell, stack.n_layers, stack.n_heads, GAP
        )
        head = figures.attention_heatmap(stack.attention(0, 0), rows, rows, stack.forbidden(0))
        return len(grid.to_json()) + len(head.to_json())

    json_seconds, sent = timed(figures_json, repeat=1)
    return dict(
        build_s=round(seconds + json_seconds, 3),
        mosaic_s=round(seconds, 3),
        sent_mb=round(sent / 1e6, 2),
        png_mb=round(len(mosaic.png) / 1e6, 2),
    )


def plotly_grid_bytes(stack) -> int:
    fig = make_subplots(rows=stack.n_layers, cols=stack.n_heads)
    for layer in range(stack.n_layers):
        for head, weights in enumerate(stack.attention(layer)):
            fig.add_trace(go.Heatmap(z=weights, showscale=False), row=layer + 1, col=head + 1)
    return len(fig.to_json())


CHROMIUM = "/usr/bin/chromium"


def view_pages(stack, rows) -> dict[str, tuple[str, str]]:
    """Standalone HTML of our Model view page (grid + one head) and of a grid of plotly heatmaps,
    each with a JS condition that holds once everything is drawn."""
    mosaic = _mosaic(stack)
    grid = figures.mosaic_figure(
        mosaic.png, mosaic.width, mosaic.height, mosaic.cell, stack.n_layers, stack.n_heads, GAP
    )
    head = figures.attention_heatmap(stack.attention(0, 0), rows, rows, stack.forbidden(0))
    ours = grid.to_html(include_plotlyjs=True) + head.to_html(include_plotlyjs=False)
    plotly_grid = make_subplots(rows=stack.n_layers, cols=stack.n_heads)
    for layer in range(stack.n_layers):
        for h, weights in enumerate(stack.attention(layer)):
            plotly_grid.add_trace(go.Heatmap(z=weights, showscale=False), row=layer + 1, col=h + 1)
    count = "document.querySelectorAll('{}').length >= {}"
    n_heads = stack.n_layers * stack.n_heads
    return {
        "model view (ours)": (ours, count.format(".imagelayer image", 1) + " && " + count.format(".hm image", 1)),
        f"{n_heads} plotly heatmaps": (plotly_grid.to_html(include_plotlyjs=True), count.format(".hm image", n_heads)),
        # Parsing the inlined plotly.js alone; in the app the browser has it loaded already.
        "baseline: plotly.js, empty figure": (go.Figure().to_html(include_plotlyjs=True), count.format(".main-svg", 1)),
    }


def browser_times(pages: dict[str, tuple[str, str]]) -> dict:
    """Open each page from disk in headless Chromium: seconds until its condition holds (two frames later)."""
    import tempfile

    from playwright.sync_api import sync_playwright

    times = {}
    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        for name, (page_html, condition) in pages.items():
            path = Path(tmp) / f"{len(times)}.html"
            path.write_text(page_html, encoding="utf-8")
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            start = time.perf_counter()
            page.goto(path.as_uri(), timeout=600_000)
            page.wait_for_function(condition, timeout=600_000, polling=50)
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            times[name] = round(time.perf_counter() - start, 2)
            page.close()
        browser.close()
    return times


def random_bert_base():
    """12 layers × 12 heads like bert-base (random weights: no 12×12 model ships offline), with MiniLM's
    tokenizer, saved to a temporary directory and loaded like any local model."""
    import tempfile

    config = transformers.BertConfig(num_hidden_layers=12, num_attention_heads=12, hidden_size=768)
    torch.manual_seed(0)
    directory = Path(tempfile.mkdtemp(prefix="bert-base-random-"))
    transformers.BertModel(config, add_pooling_layer=False).save_pretrained(directory)
    load_model("minilm").tokenizer.save_pretrained(directory)
    return load_model(f"path:{directory}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(2)
    import viz.capture  # noqa: F401  registers the "atlas" attention implementation

    report = {"tokens": args.tokens}
    for name, loaded in (
        ("MiniLM-L6 (6×12, real)", load_model("minilm")),
        ("bert-base (12×12, random)", random_bert_base()),
    ):
        forward_s, trace = timed(lambda m=loaded: build_trace(m, TEXT, max_tokens=args.tokens), repeat=1)
        stack = trace.stacks["encoder"]
        rows = list(trace.tokens["source"].display)
        report[name] = dict(forward_and_capture_s=round(forward_s, 2), **model_view_cost(stack, rows))
        print(name, report[name], flush=True)

    # The alternatives, at 128 tokens (at 512 bertviz needs ~1.7 GB of HTML and 90 s).
    minilm = load_model("minilm")
    trace = build_trace(minilm, TEXT, max_tokens=128)
    stack, rows = trace.stacks["encoder"], list(trace.tokens["source"].display)
    ours = model_view_cost(stack, rows)
    bertviz_s, html = timed(lambda: model_view_html(trace), repeat=1)
    grid_s, grid_bytes = timed(lambda: plotly_grid_bytes(stack), repeat=1)
    report["at 128 tokens, MiniLM 6×12"] = {
        "model view (ours)": ours,
        "bertviz model_view": dict(build_s=round(bertviz_s, 2), sent_mb=round(len(html) / 1e6, 1)),
        "72 plotly heatmaps": dict(build_s=round(grid_s, 2), sent_mb=round(grid_bytes / 1e6, 1)),
        "bytes ratio bertviz/ours": round(len(html) / 1e6 / ours["sent_mb"], 1),
        "bytes ratio plotly-grid/ours": round(grid_bytes / 1e6 / ours["sent_mb"], 1),
        "time ratio bertviz/ours": round(bertviz_s / ours["build_s"], 1),
    }
    if Path(CHROMIUM).exists():
        pages = view_pages(stack, rows)
        pages["bertviz model_view"] = (html, "document.querySelectorAll('svg rect').length > 0")
        at128 = browser_times(pages)
        at128["ratio bertviz/ours"] = round(at128["bertviz model_view"] / at128["model view (ours)"], 1)
        report["browser: seconds to drawn, 128 tokens"] = at128
        long_trace = build_trace(minilm, TEXT, max_tokens=args.tokens)
        s512 = long_trace.stacks["encoder"]
        at512 = browser_times(view_pages(s512, list(long_trace.tokens["source"].display)))
        at512["ratio plotly-grid/ours"] = round(at512["72 plotly heatmaps"] / at512["model view (ours)"], 1)
        report[f"browser: seconds to drawn, {args.tokens} tokens"] = at512
    print(json.dumps(report, indent=2))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "views.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
