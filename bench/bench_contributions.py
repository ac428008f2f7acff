"""Benchmark: contribution graphs (issue 21) on SmolLM2, ours beside an LLM-Transparency-Tool-style computation.

    python3 bench/bench_contributions.py             # 128 to 4,096 tokens -> bench/results/contributions.json
    python3 bench/bench_contributions.py --tokens 512

Each row runs in a fresh process (peak RSS is that run's alone, sampled every 5 ms, minus the RSS with the
model loaded and the Trace built):
- ours: `viz.contributions.routes` from the last token, threshold 0.04, renormalised -- every node a route
  reaches, computed a layer at a time at the positions reached;
- LLM-TT style: per layer the decomposed attention tensor [positions, positions, heads, d_model]
  (α · v · W_O per head and source, as its `decomposed_attn`) and every node's contributions from it, as its
  `build_full_graph` does, in float32; not started when that tensor alone would pass 12 GB (its size is given).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_long import PeakRSS, long_text  # noqa: E402

LENGTHS = (128, 512, 1024, 4096)
TENSOR_LIMIT = 12 * 2**30


def ours(tokens: int) -> dict:
    from viz.contributions import default_target, routes
    from viz.models import load_model
    from viz.trace import build_trace

    loaded = load_model("smollm2")
    trace = build_trace(loaded, long_text(loaded.tokenizer, tokens), max_tokens=tokens)
    warm = build_trace(loaded, "warm up the kernels")
    routes(loaded, warm, default_target(warm, loaded.tokenizer))
    with PeakRSS() as memory:
        start = time.perf_counter()
        graph = routes(loaded, trace, default_target(trace, loaded.tokenizer), 0.04, True)
        seconds = time.perf_counter() - start
    return dict(
        seconds=round(seconds, 2),
        peak_rss_increase_gb=round(memory.increase / 2**30, 3),
        nodes=len(graph.nodes),
        edges=len(graph.edges),
        trace_gb=round(trace.nbytes / 2**30, 3),
    )


def llmtt_style(tokens: int) -> dict:
    import torch

    from viz.contributions import EPS
    from viz.models import load_model
    from viz.residual import layer_stream
    from viz.trace import build_trace

    loaded = load_model("smollm2")
    trace = build_trace(loaded, long_text(loaded.tokenizer, tokens), max_tokens=tokens)
    stack = trace.stacks["decoder"]
    with PeakRSS() as memory, torch.inference_mode():
        start = time.perf_counter()
        for layer in range(stack.n_layers):
            stream = layer_stream(loaded, trace, "decoder", layer)
            pattern = torch.from_numpy(stack.attention(layer))  # [heads, pos, key_pos]
            v = stack.layers[layer].value.float().repeat_interleave(stack.n_heads // stack.kv_heads, dim=0)
            w_o = stack.head_output_weights(layer)
            z = torch.einsum("hpk,hkd->pkhd", pattern, v)  # [pos, key_pos, head, d_head]
            decomposed = torch.einsum("pkhd,hde->pkhe", z, w_o)  # [pos, key_pos, head, d_model]
            del z
            whole = stream.attention_sum[:, None, None, :]
            parts = torch.cat([decomposed.flatten(1, 2), stream.x[:, None, :]], dim=1)  # + the residual
            del decomposed
            raw = (whole[:, 0].abs().sum(-1, keepdim=True) - (whole[:, 0] - parts).abs().sum(-1)).clamp_min(EPS)
            raw / raw.sum(-1, keepdim=True)
            del parts, raw
        seconds = time.perf_counter() - start
    return dict(seconds=round(seconds, 2), peak_rss_increase_gb=round(memory.increase / 2**30, 2))


def tensor_gb(tokens: int) -> float:
    return tokens * tokens * 9 * 576 * 4 / 2**30  # SmolLM2: 9 heads, d_model 576, float32


def child(kind: str, tokens: int) -> dict:
    if kind == "llmtt" and tensor_gb(tokens) * 2 > TENSOR_LIMIT / 2**30:
        return {"not run": f"the decomposed tensor alone would hold {tensor_gb(tokens):.0f} GB per layer"}
    command = [sys.executable, __file__, "--child", kind, str(tokens)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        return {"failed": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, nargs="*", default=list(LENGTHS))
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        kind, tokens = args.child
        print(json.dumps((ours if kind == "ours" else llmtt_style)(int(tokens))))
        return
    rows = []
    for tokens in args.tokens:
        row = {"tokens": tokens, "ours": child("ours", tokens), "llm_tt_style": child("llmtt", tokens)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "contributions.json").write_text(json.dumps({"model": "smollm2", "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
