"""Benchmark: patching every head of SmolLM2 on the indirect-object pair (issue 22), ours beside TransformerLens.

    python3 bench/bench_patching.py                                   # ours; bench/results/patching.json
    TL_PYTHON=/path/to/venv/bin/python python3 bench/bench_patching.py   # + TransformerLens 4.x in its own venv

One run, in order: our exact patching of all 270 heads' outputs (every position: `viz.patching.patching`,
"head_out"), our attribution patching of the same, and TransformerLens's
`patching.get_act_patch_attn_head_out_all_pos` on the same weights (`TransformerBridge.boot_transformers` on the
converted SmolLM2 folder, our tokenizer's ids: its bridge would prepend a BOS) with the same metric: the logit
difference " Mary" − " John" at the last position, normalised to 0 = corrupted, 1 = clean. Each timing is the
median of --repeat runs; the peer's numbers are compared with ours head by head.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When John and Mary went to the store, John gave a drink to"
ANSWERS = (" Mary", " John")


def ours(repeat: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from viz.models import load_model, smollm2_dir
    from viz.patching import Question, attribution_patching, patching, token_id
    from viz.trace import build_trace

    loaded = load_model("smollm2")
    clean, corrupted = build_trace(loaded, CLEAN), build_trace(loaded, CORRUPTED)
    q = Question(clean, corrupted, len(clean.output_tokens) - 1, *(token_id(loaded.tokenizer, a) for a in ANSWERS))
    patching(loaded, q, "head_out", "decoder")  # warm the kernels
    exact_s, estimate_s = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        exact = patching(loaded, q, "head_out", "decoder")
        exact_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        estimate = attribution_patching(loaded, q, "head_out", "decoder")
        estimate_s.append(time.perf_counter() - start)
    top = np.argsort(-exact, axis=None)[:6]
    last = len(clean.tokens["source"]) - 1
    decoder = clean.stacks["decoder"]
    mary = 1  # "When Mary ...": the indirect object's position in the clean text
    return dict(
        exact_s=round(statistics.median(exact_s), 2),
        attribution_s=round(statistics.median(estimate_s), 3),
        correlation=round(float(np.corrcoef(exact.ravel(), estimate.ravel())[0, 1]), 3),
        top_heads=[
            dict(
                layer=int(i // 9),
                head=int(i % 9),
                recovered=round(float(exact.flat[i]), 3),
                attention_to_mary=round(
                    float(decoder.attention(int(i // 9), int(i % 9), rows=slice(last, last + 1))[0, mary]), 3
                ),
            )
            for i in top
        ],  # fmt: skip
        exact=exact.tolist(),
        ids=[clean.tokens["source"].ids.tolist(), corrupted.tokens["source"].ids.tolist()],
        answers=[q.answer, q.wrong],
        folder=str(smollm2_dir()),
    )


def transformer_lens(ids: list[list[int]], answers: list[int], folder: str, repeat: int) -> dict:
    import torch
    from transformer_lens import patching
    from transformer_lens.model_bridge import TransformerBridge

    model = TransformerBridge.boot_transformers(folder, device="cpu")
    model.enable_compatibility_mode()
    clean, corrupted = torch.tensor([ids[0]]), torch.tensor([ids[1]])
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(clean)
        corrupted_logits = model(corrupted)
    diff = lambda logits: logits[0, -1, answers[0]] - logits[0, -1, answers[1]]  # noqa: E731
    clean_ld, corrupted_ld = diff(clean_logits), diff(corrupted_logits)

    def metric(logits):
        return (diff(logits) - corrupted_ld) / (clean_ld - corrupted_ld)

    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = patching.get_act_patch_attn_head_out_all_pos(model, corrupted, cache, metric)
        seconds.append(time.perf_counter() - start)
    return dict(seconds=round(statistics.median(seconds), 2), values=result.tolist())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        print(json.dumps(transformer_lens(**json.loads(Path(args.peer).read_text()), repeat=args.repeat)))
        return
    import numpy as np

    report = {"ours": ours(args.repeat)}
    python = os.environ.get("TL_PYTHON")
    if python:
        request = ROOT / "bench" / "results" / "patching-request.json"
        request.parent.mkdir(exist_ok=True)
        o = report["ours"]
        request.write_text(json.dumps(dict(ids=o["ids"], answers=o["answers"], folder=o["folder"])))
        done = subprocess.run([python, __file__, "--peer", str(request), "--repeat", str(args.repeat)],
                              capture_output=True, text=True, timeout=3600)  # fmt: skip
        if done.returncode == 0:
            peer = json.loads(done.stdout.strip().splitlines()[-1])
            gap = np.abs(np.array(peer.pop("values")) - np.array(o["exact"])).max()
            report["transformer_lens"] = dict(peer, max_difference_from_ours=float(gap))
        else:
            report["transformer_lens"] = {"failed": (done.stderr.strip().splitlines() or ["?"])[-1][:300]}
    else:
        report["transformer_lens"] = {"not run": "set TL_PYTHON to a Python with transformer-lens 4.x installed"}
    report["ours"].pop("exact")
    print(json.dumps(report, indent=2))
    (ROOT / "bench" / "results" / "patching.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
