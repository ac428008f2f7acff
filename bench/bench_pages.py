"""Every page of the app on one long text, as the server runs it: seconds and memory per page.

    python3 bench/bench_pages.py                         # SmolLM2, 4,096 tokens
    python3 bench/bench_pages.py --model minilm --tokens 512
    python3 bench/bench_pages.py --first 2               # the first page, then the Model view

Pages run in one process through Streamlit's AppTest (no browser), in the order a user might
visit them, sharing the server's caches as they would. Reports each page's server seconds,
the process RSS after it and the peak so far, and any error shown. Results in
bench/results/pages-<model>-<tokens>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_long import PeakRSS, long_text, rss  # noqa: E402
from tests.apptest import problems  # noqa: E402
from ui.page import pages  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--first", type=int, help="only the first N pages (2: the first page and the Model view)")
    args = parser.parse_args()
    from streamlit.testing.v1 import AppTest

    from ui.views import cached_model

    # The app's own cached model (the pages below find it loaded): figures are above the loaded model.
    text = long_text(cached_model(args.model, "auto", "float32").tokenizer, args.tokens)
    start_rss = rss()
    report = {"model": args.model, "tokens": args.tokens, "rss_at_start_gb": round(start_rss / 2**30, 2), "pages": {}}
    with PeakRSS() as overall:
        for page, _, _ in pages()[: args.first]:
            at = AppTest.from_file(str(ROOT / "attention_maps.py"), default_timeout=900)
            for key, value in dict(model=args.model, text=text, max_tokens=args.tokens).items():
                at.query_params[key] = str(value)
            t0 = time.perf_counter()
            at.run()
            if page != "attention_maps.py":
                at.switch_page(page).run()
            seconds = time.perf_counter() - t0
            captions = [c.value for c in at.caption if "tokens (limit" in c.value]
            report["pages"][page] = dict(
                seconds=round(seconds, 2),
                rss_gb=round(rss() / 2**30, 2),
                peak_rss_so_far_gb=round(overall.peak / 2**30, 2),
                problems=[p[:200] for p in problems(at)],
                tokens_shown=next((part.strip() for part in captions[0].split("·") if "tokens (limit" in part), None)
                if captions
                else None,
            )
            print(page, report["pages"][page], flush=True)
    report["peak_rss_increase_gb"] = round(overall.increase / 2**30, 2)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    name = f"pages-{args.model}-{args.tokens}" + (f"-first{args.first}" if args.first else "")
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "pages"}))


if __name__ == "__main__":
    main()
