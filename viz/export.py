"""Downloads: a matrix as CSV, the whole Trace as NPZ."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import numpy as np

from viz.trace import AttentionStack, Trace


def matrix_csv(weights: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str]) -> bytes:
    """Rows = attending tokens, columns = attended tokens; positions kept so repeated tokens stay apart."""
    import pandas as pd  # ~0.4 s to import: paid on the first download, not before the first page draws

    frame = pd.DataFrame(
        weights,
        index=pd.Index([f"{i}:{t}" for i, t in enumerate(row_labels)], name="query"),
        columns=[f"{j}:{t}" for j, t in enumerate(col_labels)],
    )
    return frame.to_csv(float_format="%.6g").encode("utf-8")


NPZ_LOGITS = 1 << 24  # 64 MB of float32 logits at most in a download


def _per_layer(stack: AttentionStack, read) -> np.ndarray:
    return np.stack([np.stack([read(layer, head) for head in range(stack.n_heads)]) for layer in range(stack.n_layers)])


def trace_npz(trace: Trace) -> bytes:
    """Every array of the Trace under its stable name, plus tokens and metadata (load with np.load).

    Attention itself is not stored (it is T×T per head): recompute any map as
    softmax(queries · keysᵀ · scaling + bias, masked by the layer's `mask_rule`). A language model's logits are
    stored up to NPZ_LOGITS cells; beyond that they are the model's head applied to the last hidden state."""
    arrays: dict[str, np.ndarray] = {}
    for name, stack in trace.stacks.items():
        for field, read in (("queries", stack.query), ("keys", stack.key), ("values", stack.value)):
            arrays[f"{name}/{field}"] = _per_layer(stack, read)  # [layers, heads, T, d_head]
        arrays[f"{name}/contexts"] = _per_layer(stack, stack.context)
        arrays[f"{name}/mask_rule"] = np.array([r.mask.description for r in stack.layers])  # e.g. "causal"
        arrays[f"{name}/scaling"] = np.array([stack.scaling(layer) for layer in range(stack.n_layers)])
        if stack.layers[0].bias is not None:  # bias[h, i, j] = bias_by_offset[h, j - i + Tq - 1]
            arrays[f"{name}/bias_by_offset"] = np.stack([r.bias.by_offset.float().cpu().numpy() for r in stack.layers])
    for name, hidden in trace.hidden_states.items():
        arrays[f"{name}/hidden_states"] = hidden
    for name, output in trace.outputs.items():
        arrays[f"outputs/{name}"] = output
    shapes = trace.output_shapes
    if "logits" not in trace.outputs and "logits" in shapes and np.prod(shapes["logits"]) <= NPZ_LOGITS:
        arrays["outputs/logits"] = trace.logits()
    for name, seq in trace.tokens.items():
        arrays[f"tokens/{name}/ids"] = seq.ids
        arrays[f"tokens/{name}/raw"] = np.array(seq.raw, dtype=str)
        arrays[f"tokens/{name}/special"] = seq.special
    meta = dict(
        model=trace.model_name,
        model_class=trace.model_class,
        family=trace.family,
        text=trace.text,
        target_text=trace.target_text,
        device=trace.device,
        dtype=trace.dtype,
    )
    arrays["meta"] = np.array(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()
