"""The contribution graph drawn as tokens across and layers up: one column per position a route reaches,
a row per stage of each layer; edges' width and opacity follow their contribution."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go

from viz.contributions import Graph, Node
from viz.figures import TOP_MARGIN, plotly_text, title_band
from viz.tokens import TokenSeq

ROWS = {"embedding": 0, "attention": 1, "cross": 2, "mlp": 3}  # within a layer, bottom to top
STAGE_COLORS = {"embedding": "#7f7f7f", "attention": "#1f5fa8", "cross": "#7570b3", "mlp": "#d95f02"}
EDGE_BUCKETS = (0.04, 0.1, 0.25, 0.5, 1.01)  # edges drawn in a few widths: one trace per bucket


def _y(node: Node, stages: int) -> float:
    return 0.0 if node.stage == "embedding" else 1 + node.layer * stages + (ROWS[node.stage] - 1)


def layout_columns(graph: Graph, order: tuple[str, ...]) -> dict[tuple[str, int], int]:
    """x of every (stack, position) the graph touches: the positions reached, in text order, stack by stack."""
    touched = sorted({(n.stack, n.position) for n in graph.nodes} | {(graph.target.stack, graph.target.position)},
                     key=lambda sp: (order.index(sp[0]), sp[1]))  # fmt: skip
    return {sp: x + order.index(sp[0]) for x, sp in enumerate(touched)}  # a gap between an encoder and its decoder


def route_figure(graph: Graph, tokens: Mapping[str, TokenSeq], selected: Node | None = None) -> go.Figure:
    """Nodes (clickable: customdata = stack, layer, position, stage) and edges summed over heads."""
    order = tuple(dict.fromkeys([s for s in tokens if s != graph.target.stack] + [graph.target.stack]))
    columns = layout_columns(graph, order)
    stages = 3 if any(n.stage == "cross" for n in graph.nodes) else 2
    weight: dict[tuple[Node, Node], float] = {}
    for e in graph.edges:
        weight[e.source, e.target] = weight.get((e.source, e.target), 0.0) + e.contribution
    fig = go.Figure()
    lower = 0.0
    for upper in EDGE_BUCKETS:
        xs, ys = [], []
        for (s, t), w in weight.items():
            if lower <= w < upper and (s.stack, s.position) in columns:
                xs += [columns[s.stack, s.position], columns[t.stack, t.position], None]
                ys += [_y(s, stages), _y(t, stages), None]
        if xs:
            strength = min(upper, 1.0)
            line = dict(width=1 + 5 * strength, color=f"rgba(31,95,168,{0.25 + 0.6 * strength})")
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=line, hoverinfo="skip", showlegend=False))
        lower = upper
    nodes = sorted(graph.nodes | {graph.target})
    label = lambda n: plotly_text([tokens[n.stack].display[n.position]])[0]  # noqa: E731
    fig.add_trace(
        go.Scatter(
            x=[columns[n.stack, n.position] for n in nodes],
            y=[_y(n, stages) for n in nodes],
            mode="markers",
            marker=dict(
                size=[14 if n == selected else 9 for n in nodes],
                color=[STAGE_COLORS[n.stage] for n in nodes],
                line=dict(width=[3 if n == selected else 0 for n in nodes], color="#000"),
            ),  # fmt: skip
            customdata=[[n.stack, n.layer, n.position, n.stage] for n in nodes],
            text=[f"{n.stack} layer {n.layer} · #{n.position} “{label(n)}” · after {n.stage}" for n in nodes],
            hovertemplate="%{text}<extra></extra>",
            showlegend=False,
        )
    )
    ticks = sorted(columns.items(), key=lambda item: item[1])
    layers = max(n.layer for n in nodes) + 1
    fig.update_layout(
        title=title_band(
            f"Routes into “{label(graph.target)}” (#{graph.target.position}): edges above "
            f"{graph.threshold:g}" + (", renormalised" if graph.renormalised else "")
        ),  # fmt: skip
        height=max(360, 26 * layers * stages + 160),
        margin=dict(l=10, r=10, t=TOP_MARGIN, b=10),
        xaxis=dict(
            tickmode="array",
            tickvals=[x for _, x in ticks],
            tickangle=-60,
            showgrid=False,
            zeroline=False,
            ticktext=[plotly_text([tokens[s].display[p]])[0] for (s, p), _ in ticks],
        ),  # fmt: skip
        yaxis=dict(
            tickmode="array",
            tickvals=[0] + [1 + layer * stages for layer in range(layers)],
            ticktext=["embeddings"] + [f"layer {layer}" for layer in range(layers)],
            zeroline=False,
        ),  # fmt: skip
        plot_bgcolor="white",
        clickmode="event+select",
    )
    return fig


def clicked_node(point: Mapping) -> Node:
    """The node a click on `route_figure` picked (Streamlit hands customdata back as {"0": …, "1": …})."""
    data = point["customdata"]
    values = list(data.values()) if isinstance(data, Mapping) else list(data)
    return Node(str(values[0]), int(values[1]), int(values[2]), str(values[3]))


def head_shares(heads: np.ndarray) -> np.ndarray:
    """Each head's share of a node: its contributions summed over the source tokens."""
    return heads.sum(axis=1)
