"""The logit lens: read every layer's hidden state through the model's own output head.

No forward pass: the hidden states come from the Trace; only the final norm and the head
(`viz.readout`, from the adapter table) run again, one layer at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from viz.errors import AtlasError
from viz.trace import ALL, Trace


@dataclass(frozen=True)
class Lens:
    stack: str  # whose hidden states: "encoder" (masked LMs) or "decoder"
    top_ids: np.ndarray  # [layers + 1, positions, k]
    top_probs: np.ndarray  # [layers + 1, positions, k]
    last_logits: np.ndarray  # [positions, vocab]: the lens at the last layer (equals the model's logits)


def lens_available(trace: Trace) -> bool:
    return trace.readout is not None


@torch.inference_mode()
def logit_lens(trace: Trace, top_k: int = 5, positions: slice = ALL) -> Lens:
    """Top-k of every layer's read-out at `positions` (each position costs a full vocabulary projection
    per layer, so long inputs are read a window at a time)."""
    if trace.readout is None:
        raise AtlasError(f"The logit lens needs a language-model head; {trace.model_class} has none we can read.")
    stack = trace.output_stack
    hidden = trace.hidden_states[stack]
    last = len(hidden) - 1
    ids, probs, logits = [], [], None
    for layer in range(len(hidden)):
        logits = trace.readout.logits(hidden[layer][positions], final=layer == last)
        top = torch.softmax(logits, dim=-1).topk(top_k, dim=-1)
        ids.append(top.indices.cpu().numpy())
        probs.append(top.values.cpu().numpy())
    return Lens(stack, np.stack(ids), np.stack(probs), logits.cpu().numpy())
