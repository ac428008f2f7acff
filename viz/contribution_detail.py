"""One node of the contribution graph up close: the stream there read through the model's head, what each head
and each MLP neuron adds (viz.contributions has the definitions)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from viz.contributions import Node, contributions
from viz.models import LoadedModel
from viz.residual import LayerStream, block_of, layer_module, layer_stream, run_modules, submodule
from viz.trace import Trace


def node_vector(stream: LayerStream, node: Node) -> torch.Tensor:
    """The residual stream at a node: what the next stage reads (a post-norm model's after its LayerNorm)."""
    i = node.position
    if node.stage == "attention":
        return stream.after_attention[i]
    if node.stage == "cross":
        return stream.after_cross[i]
    return stream.mlp_sum[i]


@dataclass(frozen=True)
class Neurons:
    """An MLP node's parts neuron by neuron: a_n · W_out[n] for every neuron n, and the residual it read."""

    contribution: np.ndarray  # [neurons], then the residual's share separately
    residual: float
    activation: np.ndarray  # [neurons]: a_n at this position
    rows: torch.Tensor  # [neurons, d_model]: W_out[n], what neuron n writes per unit of activation


def neuron_parts(loaded: LoadedModel, trace: Trace, node: Node) -> Neurons:
    """Per-neuron contributions at an MLP node (the MLP's last linear map's bias is in the whole only)."""
    stream = layer_stream(loaded, trace, node.stack, node.layer)
    layer = layer_module(loaded, trace.stacks[node.stack].layers[node.layer].module)
    down = submodule(layer, block_of(loaded).mlp_down)
    seen = {}
    handle = down.register_forward_pre_hook(lambda module, args: seen.__setitem__("a", args[0].detach()))
    try:
        run_modules(loaded, layer, block_of(loaded).mlp, stream.mlp_in[node.position : node.position + 1])
    finally:
        handle.remove()
    activation = seen["a"].float().cpu()[0]  # [neurons]
    weight = down.weight.detach().float().cpu()
    rows = weight if type(down).__name__ == "Conv1D" else weight.T  # [neurons, d_model]
    whole = stream.mlp_sum[node.position]
    c = contributions(whole, torch.cat([activation[:, None] * rows, stream.mlp_in[node.position][None]]))
    return Neurons(c[:-1].numpy(), float(c[-1]), activation.numpy(), rows)


@dataclass(frozen=True)
class Lens:
    """The stream at a node read through the model's final norm and head (the logit lens)."""

    top_ids: np.ndarray  # [k]
    top_probs: np.ndarray  # [k]
    rank: int  # of the model's own prediction at the target (1 = top)
    rank_before: int  # ... in the stream the stage read


def lens_at(trace: Trace, stream: LayerStream, node: Node, read: Node, predicted: int, k: int = 5) -> Lens:
    """Top-k tokens at a node, and the rank of `predicted` there and in the stream `read` (the node's input)."""
    before = stream.x[node.position] if read.stage in ("embedding", "mlp") else node_vector(stream, read)
    logits = trace.readout.logits(torch.stack([node_vector(stream, node), before]).numpy(), final=False)
    probs = torch.softmax(logits, dim=-1)
    top = probs[0].topk(k)
    ranks = (logits > logits[:, predicted : predicted + 1]).sum(-1) + 1
    return Lens(top.indices.numpy(), top.values.numpy(), int(ranks[0]), int(ranks[1]))


def promoted_tokens(trace: Trace, rows: torch.Tensor, k: int = 5) -> np.ndarray:
    """[neurons, k]: the tokens each neuron's output row raises most, read through the model's head."""
    return trace.readout.logits(rows.numpy(), final=True).topk(k, dim=-1).indices.numpy()
