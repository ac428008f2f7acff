"""Benchmark: from `streamlit run app.py` to the first attention map drawn in headless Chromium.

    python3 bench/bench_first_paint.py [--runs 3] [--baseline DIR]

Each run starts a fresh server process (cold caches, the OS file cache warm as on a re-run) and a
fresh browser page on a new port (so the browser's cache is cold too), and records when the server
answers /_stcore/health, when the page's first plotly heatmap exists, and when both maps of the first
page are drawn. Variants run in turn, so a busy moment hits them alike:
- "app.py": the README's command (st.App: the model stack is warmed as the server starts);
- "attention_maps.py": the first page run directly (no warm-up; the page imports the stack itself);
- with --baseline DIR, DIR's `streamlit run app.py` (e.g. a worktree of an older commit).
Results in bench/results/first_paint.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(browser, root: Path, script: str) -> dict:
    port = free_port()
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port), "--server.headless", "true"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.05)
        healthy = time.perf_counter() - start
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"http://localhost:{port}/")
        page.wait_for_selector(".js-plotly-plot .heatmaplayer", timeout=120_000)
        first_map = time.perf_counter() - start
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .heatmaplayer').length >= 2", timeout=60_000)
        both = time.perf_counter() - start
        page.close()
        return dict(server_healthy_s=round(healthy, 2), first_map_s=round(first_map, 2), both_maps_s=round(both, 2))
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout whose `streamlit run app.py` to time alike")
    args = parser.parse_args()
    variants = {"app.py": (ROOT, "app.py"), "attention_maps.py (no warm-up)": (ROOT, "attention_maps.py")}
    if args.baseline:
        variants[f"baseline {args.baseline} app.py"] = (args.baseline.resolve(), "app.py")
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for _ in range(args.runs):
            for name, (root, script) in variants.items():
                runs[name].append(one_run(browser, root, script))
        browser.close()
    report = {
        name: {"runs": done, **{f"median_{k}": statistics.median(r[k] for r in done) for k in done[0]}}
        for name, done in runs.items()
    }
    print(json.dumps(report, indent=2))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "first_paint.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
