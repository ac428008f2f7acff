"""Alignment matrices in the style of Bahdanau et al. (2015), Fig. 3: output tokens × input tokens.

Row i is the decoder step that *produces* output token i; its weights say which input tokens
that step looked at. Encoder-decoders: the cross-attention. Decoder-only models: the block of
self-attention from the steps that generated the continuation back to the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viz.errors import AtlasError
from viz.tokens import TokenSeq
from viz.trace import Trace


@dataclass(frozen=True)
class Alignment:
    weights: np.ndarray  # [layers, heads, outputs, inputs]
    outputs: TokenSeq  # rows: the produced tokens
    inputs: TokenSeq  # columns: the source / prompt tokens
    kind: str  # "cross-attention" | "generated → prompt"

    def layer_mean(self, layer: int) -> np.ndarray:
        return self.weights[layer].mean(axis=0)

    def overall_mean(self) -> np.ndarray:
        return self.weights.mean(axis=(0, 1))


def alignment(trace: Trace) -> Alignment:
    if "cross" in trace.stacks:
        return Alignment(
            trace.stacks["cross"].attentions, trace.tokens["target"], trace.tokens["source"], "cross-attention"
        )
    if "decoder" not in trace.stacks:
        raise AtlasError("An encoder-only model produces no output tokens: there is nothing to align.")
    prompt, total = trace.prompt_length, len(trace.tokens["source"])
    if total <= prompt:
        raise AtlasError("The model generated nothing after the prompt (it ended at once, or the length cap is full).")
    block = trace.stacks["decoder"].attentions[:, :, prompt - 1 : total - 1, :prompt]
    source = trace.tokens["source"]
    return Alignment(block, source.slice(prompt, total), source.slice(0, prompt), "generated → prompt")
