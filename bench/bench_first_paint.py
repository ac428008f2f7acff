"""Benchmark: from `streamlit run app.py` to the first attention map drawn in headless Chromium.

    python3 bench/bench_first_paint.py [--runs 3]

Each run starts a fresh server process (cold caches, the OS file cache warm as on a re-run) and a
fresh browser page, and records when the server answers /_stcore/health, when the page's first
plotly heatmap exists, and when both maps of the first page are drawn. Results in
bench/results/first_paint.json.
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


def one_run(browser) -> dict:
    port = free_port()
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true"],
        cwd=ROOT,
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
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        runs = [one_run(browser) for _ in range(args.runs)]
        browser.close()
    report = {"runs": runs, **{f"median_{k}": statistics.median(r[k] for r in runs) for k in runs[0]}}
    print(json.dumps(report, indent=2))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "first_paint.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
