"""Alignment matrices in the style of Bahdanau et al. (2015), Fig. 3: output tokens × input tokens.

Row i is the decoder step that *produces* output token i; its weights say which input tokens
that step looked at. Encoder-decoders: the cross-attention. Decoder-only models: the block of
self-attention from the steps that generated the continuation back to the prompt.
Weights are computed from the Trace on request, like every other map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viz.errors import AtlasError
from viz.tokens import TokenSeq
from viz.trace import ALL, AttentionStack, Trace


@dataclass(frozen=True)
class Alignment:
    stack: AttentionStack
    rows: slice  # the stack's rows that produced the outputs
    cols: slice  # the stack's columns that hold the inputs
    outputs: TokenSeq  # rows: the produced tokens
    inputs: TokenSeq  # columns: the source / prompt tokens
    kind: str  # "cross-attention" | "generated → prompt"

    def head(self, layer: int, head: int, value_weighted: bool = False) -> np.ndarray:
        return self.stack.attention(layer, head, self.rows, self.cols, value_weighted)

    def layer_mean(self, layer: int, value_weighted: bool = False) -> np.ndarray:
        return self.stack.head_mean(layer, self.rows, self.cols, value_weighted)

    def overall_mean(self, value_weighted: bool = False) -> np.ndarray:
        layers = range(self.stack.n_layers)
        return np.mean([self.layer_mean(layer, value_weighted) for layer in layers], axis=0)


def alignment(trace: Trace) -> Alignment:
    if "cross" in trace.stacks:
        cross = trace.stacks["cross"]
        return Alignment(cross, ALL, ALL, trace.tokens["target"], trace.tokens["source"], "cross-attention")
    if "target" in trace.tokens:
        raise AtlasError(
            "This model's decoder has no attention: it reads the input only through the encoder's last state "
            "(the bottleneck), so there is no alignment to draw. Its twin with attention has one."
        )
    if "decoder" not in trace.stacks:
        raise AtlasError("An encoder-only model produces no output tokens: there is nothing to align.")
    prompt, total = trace.prompt_length, len(trace.tokens["source"])
    if total <= prompt:
        raise AtlasError("The model generated nothing after the prompt (it ended at once, or the length cap is full).")
    source = trace.tokens["source"]
    return Alignment(
        trace.stacks["decoder"],
        slice(prompt - 1, total - 1),
        slice(0, prompt),
        source.slice(prompt, total),
        source.slice(0, prompt),
        "generated → prompt",
    )
