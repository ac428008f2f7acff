"""The layers × heads grid drawn server-side as one image.

144 interactive heatmaps of 512 tokens would be hundreds of MB of JSON; one RGB mosaic
with each head box-averaged down to a thumbnail is a few hundred KB and stays responsive.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

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


def _bins(n: int, cell: int) -> np.ndarray:
    """Start index of each of `cell` roughly equal bins over n positions."""
    return np.unique(np.linspace(0, n, cell, endpoint=False).astype(int))


def downsample(weights: np.ndarray, cell: int) -> np.ndarray:
    """Box-average the last two axes down to at most `cell` × `cell`."""
    rows, cols = _bins(weights.shape[-2], cell), _bins(weights.shape[-1], cell)
    summed = np.add.reduceat(np.add.reduceat(weights, rows, axis=-2), cols, axis=-1)
    counts = np.outer(np.diff(np.append(rows, weights.shape[-2])), np.diff(np.append(cols, weights.shape[-1])))
    return summed / counts


def attention_mosaic(attentions: np.ndarray, masked: np.ndarray | None = None, cell: int = 64) -> Mosaic:
    """[layers, heads, Tq, Tk] → PNG grid; each thumbnail scaled to its own maximum so weak heads stay visible."""
    layers, heads, tq, tk = attentions.shape
    thumbs = downsample(attentions.astype(np.float32, copy=False), cell)  # [L, H, c, c]
    # Short inputs: repeat pixels so each thumbnail is still about `cell` pixels wide.
    zoom = max(1, cell // max(tq, tk))
    peak = thumbs.max(axis=(-2, -1), keepdims=True)
    index = np.clip(thumbs / np.where(peak > 0, peak, 1) * 255, 0, 255).astype(np.uint8)
    rgb = BLUES[index]  # [L, H, c, c, 3]
    if masked is not None and masked.any():
        mostly_masked = downsample(masked.astype(np.float32), cell) > 0.5  # [L, c, c]
        rgb[np.broadcast_to(mostly_masked[:, None], index.shape)] = MASKED_RGB
    rgb = rgb.repeat(zoom, axis=2).repeat(zoom, axis=3)
    ch, cw = rgb.shape[2:4]
    canvas = np.full((layers * (ch + GAP) - GAP, heads * (cw + GAP) - GAP, 3), 255, dtype=np.uint8)
    for layer in range(layers):
        for head in range(heads):
            y, x = layer * (ch + GAP), head * (cw + GAP)
            canvas[y : y + ch, x : x + cw] = rgb[layer, head]
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG", optimize=False, compress_level=6)
    return Mosaic(buffer.getvalue(), canvas.shape[1], canvas.shape[0], max(ch, cw), layers, heads)
