"""The layers × heads grid drawn server-side as one image.

144 interactive heatmaps of 512 tokens would be hundreds of MB of JSON; one RGB mosaic
with each head max-pooled down to a thumbnail is a few hundred KB and stays responsive.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from viz.trace import AttentionStack

MASKED_RGB = (217, 217, 217)
GAP = 2  # pixels between thumbnails


def _blues() -> np.ndarray:
    """A 256-entry white-to-dark-blue lookup table (plotly's "Blues", linearly interpolated)."""
    stops = np.array(
        [
            [247, 251, 255],
            [222, 235, 247],
            [198, 219, 239],
            [158, 202, 225],
            [107, 174, 214],
            [66, 146, 198],
            [33, 113, 181],
            [8, 81, 156],
            [8, 48, 107],
        ],
        dtype=float,
    )
    x = np.linspace(0, len(stops) - 1, 256)
    lut = np.stack([np.interp(x, np.arange(len(stops)), stops[:, c]) for c in range(3)], axis=1)
    return lut.astype(np.uint8)


BLUES = _blues()


@dataclass(frozen=True)
class Mosaic:
    png: bytes
    width: int
    height: int
    cell: int  # thumbnail side in pixels
    layers: int
    heads: int

    @property
    def nbytes(self) -> int:
        return len(self.png)


def _pool(x: torch.Tensor, size: int, fill: float, reduce: str = "amax") -> torch.Tensor:
    """Pool the last two axes in size × size blocks (padding with `fill` to whole blocks)."""
    rows, cols = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (0, -cols % size, 0, -rows % size), value=fill)
    blocks = padded.view(*x.shape[:-2], padded.shape[-2] // size, size, padded.shape[-1] // size, size)
    return getattr(blocks, reduce)(dim=(-3, -1))


def layer_thumbnails(stack: AttentionStack, layer: int, cell: int) -> tuple[np.ndarray, np.ndarray]:
    """One layer's heads max-pooled to thumbnails: ([heads, rows', cols'] weights, [rows', cols'] all-masked).

    Pixel (a, b) is the largest weight any query in row block a gives any key in column block b.
    Computed a block of rows at a time, and the softmax is never written out: exp is monotonic,
    so the largest of exp(score - logsumexp) over a block is exp of the block's largest (score - logsumexp)."""
    size = max(1, -(-max(stack.n_queries, stack.n_keys) // cell))  # tokens per pixel
    n_cols = -(-stack.n_keys // size)
    strips = []
    for _, _, scores, lse in stack.row_blocks(layer, multiple_of=size):
        strip = _pool(scores.sub_(lse), size, float("-inf")).exp()  # causal blocks stop early: pad the future
        strips.append(torch.nn.functional.pad(strip, (0, n_cols - strip.shape[-1])).cpu())
    masked = _pool(torch.from_numpy(stack.forbidden(layer)), size, True, reduce="all")
    return torch.cat(strips, dim=1).numpy(), masked.numpy()


def attention_mosaic(stack: AttentionStack, cell: int = 64, progress: Callable[[float], None] | None = None) -> Mosaic:
    """Every head of a stack as one PNG grid; each thumbnail scaled to its own maximum so weak heads stay visible.

    Built layer by layer (`progress` hears the fraction done): memory holds one block of scores."""
    layers, heads = stack.n_layers, stack.n_heads
    canvas = None
    for layer in range(layers):
        thumbs, masked = layer_thumbnails(stack, layer, cell)
        peak = thumbs.max(axis=(-2, -1), keepdims=True)
        rgb = BLUES[np.clip(thumbs / np.where(peak > 0, peak, 1) * 255, 0, 255).astype(np.uint8)]
        rgb[:, masked] = MASKED_RGB
        zoom = max(1, cell // max(thumbs.shape[1:]))  # short inputs: repeat pixels to about `cell` wide
        rgb = rgb.repeat(zoom, axis=1).repeat(zoom, axis=2)
        ch, cw = rgb.shape[1:3]
        if canvas is None:
            canvas = np.full((layers * (ch + GAP) - GAP, heads * (cw + GAP) - GAP, 3), 255, dtype=np.uint8)
        for head in range(heads):
            y, x = layer * (ch + GAP), head * (cw + GAP)
            canvas[y : y + ch, x : x + cw] = rgb[head]
        if progress:
            progress((layer + 1) / layers)
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG", optimize=False, compress_level=6)
    return Mosaic(buffer.getvalue(), canvas.shape[1], canvas.shape[0], max(ch, cw), layers, heads)
