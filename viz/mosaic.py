"""The layers × heads grid drawn server-side as one image.

144 interactive heatmaps of 512 tokens would be hundreds of MB of JSON; one RGB mosaic
with each head max-pooled down to a thumbnail is a few hundred KB and stays responsive.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from PIL import Image

from viz.trace import AttentionStack, WeightBlock

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


@dataclass(frozen=True)
class Thumbnails:
    """Every head's attention max-pooled: pixel (a, b) is the largest weight any query of row block a gives
    any key of column block b (blocks of `tokens_per_pixel` tokens a side)."""

    weights: np.ndarray  # [layers, heads, rows', cols'] float32
    masked: np.ndarray  # [layers, rows', cols'] bool: every cell of the pixel is forbidden
    tokens_per_pixel: int

    @property
    def nbytes(self) -> int:
        return self.weights.nbytes + self.masked.nbytes

    @cached_property
    def mosaic(self) -> Mosaic:
        """The thumbnails drawn as one PNG grid (made once)."""
        return attention_mosaic(self)


class ThumbnailTally:
    """Collects thumbnails from a stack's streamed blocks (`AttentionStack.row_blocks`), layer by layer.

    Each block brings every row's largest log α per column block (`WeightBlock.column_log_max`); the rows'
    maxima pool into pixel rows, kept as a running maximum since a block's rows need not fill whole pixels."""

    def __init__(self, stack: AttentionStack, cell: int) -> None:
        self.stack = stack
        self.size = max(1, -(-max(stack.n_queries, stack.n_keys) // cell))  # tokens per pixel
        self.n_cols = -(-stack.n_keys // self.size)
        pixel_rows = -(-stack.n_queries // self.size)
        self.log_max = torch.full((stack.n_layers, stack.n_heads, pixel_rows, self.n_cols), -torch.inf)

    def add(self, layer: int, block: WeightBlock) -> None:
        """Fold in a block streamed with `pool=self.size`."""
        log_weights = block.column_log_max  # [heads, rows, cols']: each row's largest log α per column block
        before, rows = block.start % self.size, log_weights.shape[1]
        padding = (0, self.n_cols - log_weights.shape[-1], before, -(before + rows) % self.size)
        pooled = torch.nn.functional.pad(log_weights, padding, value=-torch.inf).unflatten(1, (-1, self.size)).amax(2)
        first = block.start // self.size
        running = self.log_max[layer, :, first : first + pooled.shape[1]]
        torch.maximum(running, pooled.cpu(), out=running)

    def finish(self) -> Thumbnails:
        masked, pooled = [], {}
        for layer in range(self.stack.n_layers):
            rule = self.stack.layers[layer].mask
            key = id(rule.explicit) if rule.explicit is not None else (rule.causal, rule.window)
            if key not in pooled:  # layers share one rule (or a few): pool each once
                forbidden = torch.from_numpy(self.stack.forbidden(layer))
                pooled[key] = _pool(forbidden, self.size, True, reduce="all").numpy()
            masked.append(pooled[key])
        return Thumbnails(self.log_max.exp().numpy(), np.stack(masked), self.size)


def attention_mosaic(thumbnails: Thumbnails, cell: int = 64) -> Mosaic:
    """Every head of a stack as one PNG grid; each thumbnail scaled to its own maximum so weak heads stay visible."""
    layers, heads = thumbnails.weights.shape[:2]
    canvas = None
    for layer in range(layers):
        thumbs, masked = thumbnails.weights[layer], thumbnails.masked[layer]
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
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG", optimize=False, compress_level=6)
    return Mosaic(buffer.getvalue(), canvas.shape[1], canvas.shape[0], max(ch, cw), layers, heads)
