"""The residual stream of one layer, put back together from a Trace (and, where it lacks a piece, the model).

A Trace keeps each layer's input (its hidden states) and each attention module's head outputs. With the
output projection, those give what attention adds; the adapter table's `Block` says where the layer puts
its LayerNorms and which modules make the MLP. Per layer, every position, float32 [positions, d_model]:

    x             the stream entering the layer (hidden_states[layer])
    attention     the self-attention's output: Σ_h head_h · W_O^h + b_O
    cross         an encoder-decoder decoder's cross-attention output (same formula), else None
    mlp           the MLP's output
and the sums each stage makes (its "whole"), and what the next stage reads:
    pre-norm      attention_sum = x + attention,      after_attention = attention_sum
                  cross_sum = after_attention + cross,  after_cross = cross_sum
                  mlp_sum = mlp_in + mlp              (= the next layer's x)
    post-norm     the same sums, each followed by its LayerNorm: after_attention = LN(attention_sum), ...
A pre-norm MLP's output is the difference of two hidden states, except in the last layer, whose returned
hidden state has been through the final norm: there, and in post-norm models, the MLP runs again (its own
modules, on the stream it reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np
import torch

from viz.architectures import Block
from viz.errors import AtlasError
from viz.models import LoadedModel
from viz.trace import AttentionStack, Trace


def submodule(root: torch.nn.Module, path: str) -> torch.nn.Module:
    """A module by dotted path; a number indexes a list of modules (-1: its last)."""
    return reduce(
        lambda m, part: m[int(part)] if part.lstrip("-").isdigit() else getattr(m, part), path.split("."), root
    )


def layer_module(loaded: LoadedModel, attention_module: torch.nn.Module) -> torch.nn.Module:
    """The numbered layer that holds an attention module ("model.layers.3.self_attn" -> "model.layers.3")."""
    parts = loaded.module_names[id(attention_module)].split(".")
    index = next(i for i, part in enumerate(parts) if part.isdigit())
    return loaded.model.get_submodule(".".join(parts[: index + 1]))


def block_of(loaded: LoadedModel) -> Block:
    if loaded.adapter.block is None:
        raise AtlasError(
            f"Contributions need to know how a {loaded.model.config.model_type} layer passes its residual stream, "
            "and the adapter table doesn't say yet."
        )
    return loaded.adapter.block


def attention_output(stack: AttentionStack, layer: int) -> torch.Tensor:
    """[queries, d_model]: Σ_h head_h · W_O^h + b_O, from the head outputs the model's kernel returned."""
    projection = stack.output_projections[layer] if stack.has_value_weights else None
    if projection is None:
        raise AtlasError("This model's output projection wasn't found: what attention adds can't be read.")
    heads = stack.layers[layer].context.float()  # [heads, queries, d_head]
    out = heads.transpose(0, 1).reshape(heads.shape[1], -1) @ projection.weight.float()
    return out + projection.bias.float() if projection.bias is not None else out


@dataclass(frozen=True)
class LayerStream:
    x: torch.Tensor
    attention: torch.Tensor
    attention_sum: torch.Tensor
    after_attention: torch.Tensor
    cross: torch.Tensor | None
    cross_sum: torch.Tensor | None
    after_cross: torch.Tensor | None
    mlp_in: torch.Tensor
    mlp: torch.Tensor
    mlp_sum: torch.Tensor


@torch.inference_mode()
def run_modules(loaded: LoadedModel, layer: torch.nn.Module, paths: tuple[str, ...], h: torch.Tensor) -> torch.Tensor:
    """Apply the layer's modules at `paths` in order (float32 in, float32 out; the model's device and dtype)."""
    device = next(layer.parameters()).device
    out = h.to(device, loaded.dtype)
    for path in paths:
        out = submodule(layer, path)(out)
    return out.float().cpu()


def cross_reading(trace: Trace, stack_name: str) -> str | None:
    """The cross-attention whose rows are this stack's positions (an encoder-decoder's decoder), or None."""
    cross = trace.cross_stack
    if cross is None or trace.stacks[stack_name].keys_from == trace.stacks[cross].keys_from:
        return None
    return cross


def layer_stream(loaded: LoadedModel, trace: Trace, stack_name: str, layer: int) -> LayerStream:
    """One layer of a self-attention stack, every position (see the module docstring)."""
    block = block_of(loaded)
    stack = trace.stacks[stack_name]
    hidden = trace.hidden_states[stack_name]
    module = layer_module(loaded, stack.layers[layer].module)
    norm = (lambda path, h: run_modules(loaded, module, (path,), h)) if block.norm == "post" else (lambda _, h: h)
    x = torch.from_numpy(np.array(hidden[layer], dtype=np.float32))
    attention = attention_output(stack, layer).cpu()
    attention_sum = x + attention
    after_attention = norm(block.attention_norm, attention_sum)
    cross = cross_sum = after_cross = None
    cross_name = cross_reading(trace, stack_name)
    if cross_name is not None:
        cross = attention_output(trace.stacks[cross_name], layer).cpu()
        cross_sum = after_attention + cross
        after_cross = norm(block.cross_norm, cross_sum)
    mlp_in = after_attention if after_cross is None else after_cross
    if block.norm == "pre" and layer + 1 < len(hidden) - 1:  # the next hidden state is this layer's own output
        mlp = torch.from_numpy(np.array(hidden[layer + 1], dtype=np.float32)) - mlp_in
    else:
        mlp = run_modules(loaded, module, block.mlp, mlp_in)
    return LayerStream(x, attention, attention_sum, after_attention, cross, cross_sum, after_cross, mlp_in, mlp,
                       mlp_in + mlp)  # fmt: skip
