"""Plotly figures of a corpus run: heads ranked across texts, one head's score distributions, the joint
query–key scatter. Data in, figure out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from viz.corpus.projection import JointSample
from viz.corpus.reading import SCORES
from viz.figures import TOP_MARGIN, plotly_text, title_band

QUERY_COLOR, KEY_COLOR = "#1f5fa8", "#d95f02"


def ranked_heads_figure(summary: pd.DataFrame, measure: str, by: str, top: int = 30) -> go.Figure:
    """The `top` heads by mean (or spread) of `measure` over the texts: bars of the mean, whiskers ± one
    standard deviation. customdata = (layer, head): a click opens the head."""
    shown = summary.sort_values([by, "layer", "head"], ascending=[False, True, True]).head(top)
    names = [f"L{layer}·H{head}" for layer, head in zip(shown.layer, shown["head"], strict=True)]
    fig = go.Figure(
        go.Bar(
            x=names, y=shown["mean"], error_y=dict(type="data", array=shown["spread"].fillna(0), thickness=1),
            customdata=np.stack([shown.layer, shown["head"]], axis=1), marker_color=QUERY_COLOR,
            hovertemplate="%{x}: mean %{y:.3f}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(
        title=title_band(f"{measure}: the {len(shown)} heads with the highest {by} over the texts (click one)"),
        height=360, margin=dict(l=10, r=10, t=TOP_MARGIN, b=10), yaxis_title=measure, plot_bgcolor="white",
        dragmode=False,  # a click picks a head; nothing to zoom
    )  # fmt: skip
    return fig


def score_histograms(scores: pd.DataFrame, layer: int, head: int) -> go.Figure:
    """One head's every measure across the texts, a histogram each."""
    fig = make_subplots(rows=1, cols=len(SCORES), subplot_titles=SCORES, horizontal_spacing=0.03)
    for i, name in enumerate(SCORES, 1):
        fig.add_trace(go.Histogram(x=scores[name], nbinsx=20, marker_color=QUERY_COLOR, name=name), row=1, col=i)
    fig.update_layout(
        title=title_band(f"L{layer}·H{head} across {len(scores):,} texts: how many texts (y) score how much (x)")
        | {"pad": {"b": 28}},  # above the subplot titles, not on them
        height=280, showlegend=False, margin=dict(l=10, r=10, t=TOP_MARGIN + 36, b=10), plot_bgcolor="white",
    )  # fmt: skip
    fig.update_annotations(font_size=11)
    return fig


COLOR_BY = ("query or key", "position", "token")


def joint_figure(sample: JointSample, points: np.ndarray, color_by: str, title: str) -> go.Figure:
    """Queries and keys in one plane; hover shows the token in its text; customdata = (text_id, position)."""
    fig = go.Figure()
    groups = ((sample.is_query, "queries", QUERY_COLOR), (~sample.is_query, "keys", KEY_COLOR))
    for chosen, name, color in groups:
        index = np.flatnonzero(chosen)
        if color_by == "position":
            marker = dict(color=sample.positions[index], colorscale="Viridis", size=5,
                          symbol="circle" if name == "queries" else "diamond", showscale=name == "queries",
                          colorbar=dict(title="position"))  # fmt: skip
        elif color_by == "token":
            codes = pd.factorize(np.array(sample.tokens, dtype=object)[index])[0]
            marker = dict(
                color=codes % 10, colorscale="Turbo", size=5, symbol="circle" if name == "queries" else "diamond"
            )
        else:
            marker = dict(color=color, size=5, opacity=0.7)
        fig.add_trace(
            go.Scattergl(
                x=points[index, 0], y=points[index, 1], mode="markers", name=name, marker=marker,
                text=plotly_text([f"{name[:-1]}: {sample.contexts[i]}" for i in index]),
                customdata=np.stack([sample.text_ids[index], sample.positions[index]], axis=1),
                hovertemplate="%{text}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_layout(
        title=title_band(title), height=560, margin=dict(l=10, r=10, t=TOP_MARGIN, b=10), plot_bgcolor="white",
        legend=dict(orientation="h", y=-0.05), xaxis=dict(showticklabels=False), yaxis=dict(showticklabels=False),
    )  # fmt: skip
    return fig
