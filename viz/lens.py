"""The logit lens: read every layer's hidden state through the model's own output head.

No forward pass: the hidden states come from the Trace; only the final norm and the head
(the adapter table says which modules) run again, one layer at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np
import torch

from viz.errors import AtlasError
from viz.models import LoadedModel
from viz.trace import ALL, Trace


@dataclass(frozen=True)
class Lens:
    stack: str  # whose hidden states: "encoder" (masked LMs) or "decoder"
    top_ids: np.ndarray  # [layers + 1, positions, k]
    top_probs: np.ndarray  # [layers + 1, positions, k]
    last_logits: np.ndarray  # [positions, vocab]: the lens at the last layer (equals the model's logits)


def _module(model: torch.nn.Module, path: str) -> torch.nn.Module:
    return reduce(getattr, path.split("."), model)


def lens_available(loaded: LoadedModel) -> bool:
    adapter = loaded.adapter
    if loaded.head.name not in ("masked-lm", "causal-lm", "seq2seq-lm") or not adapter.output_head:
        return False
    try:
        for path in (*adapter.output_head, *filter(None, [adapter.final_norm])):
            _module(loaded.model, path)
    except AttributeError:
        return False
    return True


@torch.inference_mode()
def logit_lens(loaded: LoadedModel, trace: Trace, top_k: int = 5, positions: slice = ALL) -> Lens:
    """Top-k of every layer's read-out at `positions` (each position costs a full vocabulary projection
    per layer, so long inputs are read a window at a time)."""
    if not lens_available(loaded):
        raise AtlasError(f"The logit lens needs a language-model head; {trace.model_class} has none we can read.")
    adapter, model = loaded.adapter, loaded.model
    stack = "decoder" if "decoder" in trace.hidden_states else "encoder"
    hidden = trace.hidden_states[stack]
    norm = _module(model, adapter.final_norm) if adapter.final_norm else None
    head = [_module(model, path) for path in adapter.output_head]
    bias = _module(model, adapter.logits_bias) if adapter.logits_bias else None
    last = len(hidden) - 1
    ids, probs, logits = [], [], None
    for layer in range(len(hidden)):
        h = torch.from_numpy(np.array(hidden[layer][positions])).to(loaded.device, loaded.dtype)
        if norm is not None and layer < last:
            h = norm(h)
        if adapter.tied_output_scale and getattr(model.config, "tie_word_embeddings", False):
            h = h * model.config.d_model**-0.5
        for module in head:
            h = module(h)
        if bias is not None:
            h = h + bias[0]
        logits = h.float()
        top = torch.softmax(logits, dim=-1).topk(top_k, dim=-1)
        ids.append(top.indices.cpu().numpy())
        probs.append(top.values.cpu().numpy())
    return Lens(stack, np.stack(ids), np.stack(probs), logits.cpu().numpy())
