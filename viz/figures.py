"""Plotly figures. Data in, figure out; nothing here runs a model."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

HOVER_LABEL_LIMIT = 256  # above this many tokens per side, hover shows positions only (keeps the JSON small)
MASKED_COLOR = "#d9d9d9"


def plotly_text(labels: Sequence[str]) -> list[str]:
    """Plotly renders a subset of HTML in tick and hover text: escape tokens so they show literally."""
    return [html.escape(str(label), quote=False) for label in labels]


def _axis(labels: Sequence[str]) -> dict:
    # Integer positions with tick text: a category axis would merge repeated tokens.
    return dict(
        tickmode="array",
        tickvals=list(range(len(labels))),
        ticktext=plotly_text(labels),
        showgrid=False,
        zeroline=False,
    )


def attention_heatmap(
    weights: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    masked: np.ndarray | None = None,
    title: str = "",
    zmax: float | None = None,
) -> go.Figure:
    """One attention matrix: rows attend (from), columns are attended to.

    Cells the model may not attend (a causal decoder's future tokens) are drawn grey and
    left out of the colour scale, so a masked zero never looks like a learned zero.
    """
    z = np.asarray(weights, dtype=np.float32)
    if masked is not None and masked.any():
        z = np.where(masked, np.nan, z)
    n_rows, n_cols = z.shape
    fig = go.Figure()
    heat = dict(
        z=z,
        x=list(range(n_cols)),
        y=list(range(n_rows)),
        colorscale="Blues",
        zmin=0.0,
        zmax=zmax if zmax is not None else float(np.nanmax(z)) if np.isfinite(z).any() else 1.0,
        colorbar=dict(title="weight", thickness=12),
        name="attention",
    )
    if max(n_rows, n_cols) <= HOVER_LABEL_LIMIT:
        rows = np.asarray(plotly_text(row_labels), dtype=object)[:, None]
        cols = np.asarray(plotly_text(col_labels), dtype=object)[None, :]
        heat["customdata"] = np.stack(np.broadcast_arrays(rows, cols), axis=-1)
        heat["hovertemplate"] = (
            "from %{customdata[0]} (#%{y})<br>to %{customdata[1]} (#%{x})<br>weight %{z:.4f}<extra></extra>"
        )
    else:
        heat["hovertemplate"] = "from #%{y} to #%{x}<br>weight %{z:.4f}<extra></extra>"
    fig.add_trace(go.Heatmap(**heat))
    if masked is not None and masked.any():
        fig.add_trace(
            go.Heatmap(
                z=np.where(masked, 1.0, np.nan),
                x=list(range(n_cols)),
                y=list(range(n_rows)),
                colorscale=[[0, MASKED_COLOR], [1, MASKED_COLOR]],
                showscale=False,
                hovertemplate="masked: #%{y} may not attend to the later token #%{x}<extra></extra>",
                name="masked",
            )
        )
    size = max(320, min(900, 22 * max(n_rows, n_cols) + 140))
    fig.update_layout(
        title=dict(text=title, font=dict(size=14)),
        xaxis=dict(_axis(col_labels), side="top", tickangle=-60, title="attended to (key)"),
        yaxis=dict(_axis(row_labels), autorange="reversed", title="attending (query)"),
        height=size,
        margin=dict(l=10, r=10, t=110, b=10),
        plot_bgcolor="white",
    )
    return fig
