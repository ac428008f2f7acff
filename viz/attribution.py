"""Gradient attribution of one output to the input tokens, by Captum (PyTorch's attribution library), beside
attention: which heads look where the answer's evidence is (Jain & Wallace 2019: attention is not explanation).

The output is one logit: the answer's at one position (a classifier's: one label's). Attributions are taken on
the input embeddings (an encoder-decoder's: the encoder's) and summed over the embedding's dimensions, one
number per input token:

    integrated gradients   Captum's LayerIntegratedGradients: (e − e') · ∫₀¹ ∂f(e' + t(e − e'))/∂e dt, 32 steps
    input × gradient       Captum's LayerGradientXActivation: e · ∂f/∂e
    feature ablation       Captum's FeatureAblation: f(input) − f(input with the token replaced)
The baseline e' (and the ablated token) is the tokenizer's pad token (else its unknown token, else id 0);
special tokens ([CLS], </s>, ...) stay themselves in the baseline.

Agreement: per head, Spearman's rank correlation between the head's attention row at the output position (an
encoder-decoder's cross-attention row) and the attributions' magnitudes over the same tokens.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from viz.models import LoadedModel
from viz.trace import Trace

METHODS = ("integrated gradients", "input × gradient", "feature ablation")
IG_STEPS = 32


def _embedding_layer(loaded: LoadedModel) -> torch.nn.Module:
    model = loaded.model
    encoder = getattr(model, "get_encoder", None)
    return encoder().get_input_embeddings() if loaded.model.config.is_encoder_decoder else model.get_input_embeddings()


def _forward(loaded: LoadedModel, trace: Trace, position: int, answer: int):
    """f(input ids) = the answer's logit at `position`, for a batch of input ids (Captum batches its steps)."""
    decoder = trace.tokens.get("decoder_input")

    def f(input_ids: torch.Tensor) -> torch.Tensor:
        extra = {}
        if decoder is not None:
            extra["decoder_input_ids"] = torch.tensor([decoder.ids.tolist()], device=input_ids.device).expand(
                len(input_ids), -1
            )
        logits = loaded.model(input_ids=input_ids, **extra).logits
        return (logits if logits.ndim == 2 else logits[:, position])[:, answer]

    return f


def baseline_ids(loaded: LoadedModel, trace: Trace) -> torch.Tensor:
    tokenizer, seq = loaded.tokenizer, trace.tokens["source"]
    blank = next((t for t in (tokenizer.pad_token_id, tokenizer.unk_token_id) if t is not None), 0)
    return torch.tensor([[int(i) if special else blank for i, special in zip(seq.ids, seq.special, strict=True)]])


def token_attribution(loaded: LoadedModel, trace: Trace, position: int, answer: int, method: str) -> np.ndarray:
    """[input tokens]: the chosen Captum method's attribution of the answer's logit (module docstring)."""
    from captum.attr import FeatureAblation, LayerGradientXActivation, LayerIntegratedGradients

    f = _forward(loaded, trace, position, answer)
    ids = torch.tensor([trace.tokens["source"].ids.tolist()], device=loaded.device)
    blank = baseline_ids(loaded, trace).to(loaded.device)
    with torch.enable_grad():
        if method == "integrated gradients":
            found = LayerIntegratedGradients(f, _embedding_layer(loaded)).attribute(
                ids, baselines=blank, n_steps=IG_STEPS, internal_batch_size=IG_STEPS
            )
        elif method == "input × gradient":
            found = LayerGradientXActivation(f, _embedding_layer(loaded)).attribute(ids)
        else:
            found = FeatureAblation(f).attribute(ids, baselines=blank)
    found = found.detach().float().cpu()[0]
    return (found.sum(-1) if found.ndim == 2 else found).numpy()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties take their mean rank): Pearson's correlation of the ranks."""
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def head_agreement(trace: Trace, stack_name: str, position: int, attribution: np.ndarray, value_weighted: bool = False):
    """[layers, heads]: each head's Spearman correlation between its attention row at `position` (or its
    value-weighted row) and |attribution| over the input tokens."""
    stack = trace.stacks[stack_name]
    magnitude = np.abs(attribution)
    rows = slice(position, position + 1)
    out = np.zeros((stack.n_layers, stack.n_heads))
    for layer in range(stack.n_layers):
        weights = stack.attention(layer, rows=rows, value_weighted=value_weighted)[:, 0]  # [heads, keys]
        keys = min(weights.shape[-1], len(magnitude))
        out[layer] = [spearman(row[:keys], magnitude[:keys]) for row in weights]
    return out
