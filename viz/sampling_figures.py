"""Figures of generation step by step (viz.generation): the next-token distribution with the sampling cut-offs
on it, and the KV cache. Data in, figure out."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go

from viz.figures import TOP_MARGIN, plotly_text, title_band, weight_bars
from viz.generation import Generation, Sampling, Step
from viz.lesson import Section
from viz.predictions import softmax

KEPT, CUT, CHOSEN = "#1f5fa8", "#c8c8c8", "#d95f02"


def distribution_figure(step: Step, sampling: Sampling, piece: Callable[[int], str], top: int = 20) -> go.Figure:
    """The `top` most probable next tokens at temperature T (softmax(z / T)) as bars: blue where top-k and top-p
    keep them, grey where they cut them, orange the token drawn; the line: cumulative probability, with p."""
    probabilities = softmax(step.logits / sampling.temperature if sampling.temperature > 0 else step.logits)
    order = np.argsort(-probabilities, kind="stable")[:top]
    if step.token not in order:  # the drawn token always shows, even from far down the list
        order = np.append(order[:-1], step.token)
    kept = np.isfinite(step.scores[order])
    colors = [CHOSEN if t == step.token else KEPT if k else CUT for t, k in zip(order, kept, strict=True)]
    names = plotly_text([f"{i + 1}. {piece(int(t))}" for i, t in enumerate(order)])
    fig = go.Figure(go.Bar(x=names, y=probabilities[order], marker_color=colors, name="p at temperature T",
                           hovertemplate="%{x}: %{y:.4f}<extra></extra>"))  # fmt: skip
    fig.add_trace(go.Scatter(x=names, y=np.cumsum(probabilities[order]), mode="lines+markers", name="cumulative",
                             line=dict(color="#555", width=1)))  # fmt: skip
    if sampling.top_p < 1:
        fig.add_hline(y=sampling.top_p, line_dash="dot", annotation_text=f"top-p {sampling.top_p:g}")
    if 0 < sampling.top_k < len(order):
        fig.add_vline(x=sampling.top_k - 0.5, line_dash="dot", annotation_text=f"top-k {sampling.top_k}")
    rule = "greedy (T = 0)" if sampling.temperature == 0 else f"T = {sampling.temperature:g}"
    kept_count = int(np.isfinite(step.scores).sum())
    fig.update_layout(
        title=title_band(f"Next token, {rule}: blue kept, grey cut, orange drawn ({kept_count:,} tokens kept)"),
        height=380, margin=dict(l=10, r=10, t=TOP_MARGIN, b=10), plot_bgcolor="white", yaxis=dict(range=[0, 1.05]),
        legend=dict(orientation="h", y=-0.3), xaxis=dict(tickfont=dict(size=13)),
    )  # fmt: skip
    return fig


def cache_figure(labels: list[str], reused: int, title: str) -> go.Figure:
    """One cell per token whose keys and values the step reads: grey from the cache, orange made now."""
    new = len(labels) - reused
    colors = [0] * reused + [1] * new
    fig = go.Figure(
        go.Heatmap(z=[colors], x=list(range(len(labels))), colorscale=[[0, CUT], [1, CHOSEN]], showscale=False,
                   text=[plotly_text(labels)], texttemplate="%{text}", hovertemplate="%{text}<extra></extra>", xgap=2)
    )  # fmt: skip
    fig.update_layout(title=title_band(title), height=150, margin=dict(l=10, r=10, t=TOP_MARGIN, b=10),
                      yaxis=dict(visible=False), xaxis=dict(visible=False))  # fmt: skip
    return fig


def generation_sections(run: Generation, piece: Callable[[int], str], rows: list[tuple[list[str], np.ndarray]],
                        where: str) -> list[Section]:  # fmt: skip
    """A generation as lesson sections, a step each: the distribution, and the newest token's attention
    (`rows[t]`: the tokens read and the chosen head's weights at step t; `where`: which layer and head)."""
    sections = []
    for t, (step, (labels, weights)) in enumerate(zip(run.steps, rows, strict=True)):
        kept, chance = int(np.isfinite(step.scores).sum()), step.probabilities[step.token]
        text = (f"Reading {len(labels)} tokens ({step.reused} keys and values from the cache), the model kept "
                f"{kept:,} candidates and drew “{piece(step.token)}” (p = {chance:.3f}).")  # fmt: skip
        attention = weight_bars(weights, labels, f"the newest token's attention, {where}")
        sections.append(Section(f"Step {t + 1}: “{piece(step.token)}”", text,
                                (distribution_figure(step, run.sampling, piece), attention)))  # fmt: skip
    return sections
