"""The model's own path from a hidden state to logits, outside the forward pass.

A language model's logits are [tokens × vocabulary]: 0.8 GB for 4,096 SmolLM2 tokens. A Trace keeps
the last hidden state instead and reads logits through this path for the positions a view asks for;
the logit lens reads every layer through it. The adapter table names the modules:

    logits = head(h) (+ the logits bias)       for the last hidden state, which the model has normed already
    logits = head(final_norm(h)) (+ bias)      for an intermediate layer (the logit lens)

(T5 with tied embeddings multiplies h by d_model^-0.5 before its head, as its forward does.)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np
import torch

from viz.models import LoadedModel

LM_HEADS = ("masked-lm", "causal-lm", "seq2seq-lm")


def _module(model: torch.nn.Module, path: str) -> torch.nn.Module:
    return reduce(getattr, path.split("."), model)


@dataclass(frozen=True)
class Readout:
    final_norm: torch.nn.Module | None  # applied to intermediate layers only
    head: tuple[torch.nn.Module, ...]  # applied in order
    bias: torch.Tensor | None  # added to the logits (BART, Marian)
    scale: float  # 1, or T5's d_model^-0.5 before a tied head
    dtype: torch.dtype

    @torch.inference_mode()
    def logits(self, hidden: np.ndarray, final: bool = True) -> torch.Tensor:
        """[positions, vocabulary] float32 for hidden states [positions, d_model] (`final`: of the last layer)."""
        h = torch.from_numpy(np.array(hidden, dtype=np.float32)).to(dtype=self.dtype)  # a copy: the Trace is read-only
        if self.final_norm is not None and not final:
            h = self.final_norm(_on(self.final_norm, h))
        if self.scale != 1.0:
            h = h * self.scale
        for module in self.head:
            h = module(_on(module, h))
        if self.bias is not None:
            h = h + self.bias[0].to(h.device)
        return h.float()


def _on(module: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
    """h on the module's device (a model spread over several devices keeps its head where accelerate put it)."""
    weight = next(module.parameters(), None)
    return h if weight is None else h.to(weight.device)


def readout_for(loaded: LoadedModel) -> Readout | None:
    """The model's readout, or None when it has no language-model head the adapter table can follow."""
    adapter, model = loaded.adapter, loaded.model
    if loaded.head.name not in LM_HEADS or not adapter.output_head:
        return None
    try:
        head = tuple(_module(model, path) for path in adapter.output_head)
        norm = _module(model, adapter.final_norm) if adapter.final_norm else None
        bias = _module(model, adapter.logits_bias) if adapter.logits_bias else None
    except AttributeError:
        return None
    tied = adapter.tied_output_scale and getattr(model.config, "tie_word_embeddings", False)
    scale = model.config.d_model**-0.5 if tied else 1.0
    return Readout(norm, head, bias, scale, loaded.dtype)
