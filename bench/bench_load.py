"""Benchmark: many browser sessions at once on one server process (issue 10's load figures).

    python3 bench/bench_load.py                      # 16 sessions on MiniLM, then 8 on SmolLM2
    ATLAS_PUBLIC=1 python3 bench/bench_load.py       # the same in public mode (2 passes at a time)

Each phase starts a fresh `streamlit run app.py` and opens all its sessions in headless Chromium at
once, each with its own text ("the <animal> sat on the mat"), after one cold visit and one visit
alone on the warm server (the baseline the ratio uses). The browsers run on the same machine, so
the server's own CPU seconds per session are reported too: the rest of the time is Chromium's.
Reports p50/p95/max seconds from navigation to each session's first map, whether every session saw
its own word and no error, and the server's peak RSS (VmHWM). Results in bench/results/load.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import WORDS, concurrent_sessions, running_app  # noqa: E402

PHASES = (("minilm", 16), ("smollm2", 8))


def peak_rss_gb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / (1 << 20)
    raise RuntimeError("no VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the server process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(model: str, sessions: int) -> dict:
    env = {key: os.environ[key] for key in os.environ if key.startswith("ATLAS_")}
    with running_app(**env) as server:
        url = server.url
        cold = concurrent_sessions(url, model, 1, first_word=len(WORDS) - 1)[0]["seconds"]  # imports, model load
        alone = concurrent_sessions(url, model, 1, first_word=len(WORDS) - 2)[0]["seconds"]  # warm, one user
        cpu_before = cpu_seconds(server.pid)
        results = concurrent_sessions(url, model, sessions)
        server_cpu = cpu_seconds(server.pid) - cpu_before
        rss = peak_rss_gb(server.pid)
    seconds = sorted(r["seconds"] for r in results)
    return dict(
        model=model,
        sessions=sessions,
        public=os.environ.get("ATLAS_PUBLIC", "") not in ("", "0"),
        first_visit_cold_server_s=cold,
        one_session_alone_s=alone,
        p50_over_alone=round(statistics.median(seconds) / alone, 1),
        p50_s=round(statistics.median(seconds), 2),
        p95_s=round(seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))], 2),
        max_s=seconds[-1],
        own_text_everywhere=all(r["words_shown"] == [r["word"]] for r in results),
        errors=sum(len(r["errors"]) for r in results),
        server_cpu_s_per_session=round(server_cpu / sessions, 2),
        server_peak_rss_gb=round(rss, 2),
    )


def main() -> None:
    report = [phase(model, sessions) for model, sessions in PHASES]
    print(json.dumps(report, indent=2))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    name = "load-public.json" if report[0]["public"] else "load.json"
    (out / name).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
