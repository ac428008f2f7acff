"""Plotly figures. Data in, figure out; nothing here runs a model."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

TOOLBAR = 30  # px kept free at a figure's top for plotly's toolbar (on a phone it stays shown, over a title there)
TOP_MARGIN = TOOLBAR + 34  # the toolbar's band, then the title, just above the plot area


def title_band(text: str, size: int = 13) -> dict:
    """A figure's title, just above its plot area and under the toolbar's band."""
    at_plot = dict(x=0, xref="paper", xanchor="left", y=1, yref="paper", yanchor="bottom")  # clear of tick labels
    return dict(text=text, font=dict(size=size), pad=dict(b=8), **at_plot)


HOVER_LABEL_LIMIT = 256  # above this many tokens per side, hover shows positions only (keeps the JSON small)
MASKED_COLOR = "#d9d9d9"


def plotly_text(labels: Sequence[str]) -> list[str]:
    """Plotly renders a subset of HTML in tick and hover text: escape tokens so they show literally."""
    return [html.escape(str(label), quote=False) for label in labels]


MAX_TICK_LABELS = 80  # per axis: the browser spends ~13 ms laying out each one (512 + 512 labels: 13 s)
MAX_KEY_TICKS = 24  # rotated key labels above a half-width map: more than this pile into each other


def _axis(labels: Sequence[str], positions: Sequence[int] | None = None, most: int = MAX_TICK_LABELS) -> dict:
    """Token positions with tick text (a category axis would merge repeated tokens); on long
    inputs every k-th token is labelled so the figure still draws in about a second."""
    positions = list(range(len(labels))) if positions is None else list(positions)
    step = -(-len(labels) // most) if labels else 1
    shown = range(0, len(labels), step)
    text = plotly_text(labels)
    return dict(
        tickmode="array",
        tickvals=[positions[i] for i in shown],
        ticktext=[text[i] for i in shown],
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
    colorscale: str = "Blues",
    row_positions: Sequence[int] | None = None,
    col_positions: Sequence[int] | None = None,
    quantity: str = "weight",
    zmin: float = 0.0,
) -> go.Figure:
    """One attention matrix: rows attend (from), columns are attended to; `quantity` names what a cell holds.

    Cells the model may not attend (a causal decoder's future tokens) are drawn grey and
    left out of the colour scale, so a masked zero never looks like a learned zero. Axes are
    token positions (`row_positions`/`col_positions`, default 0..n-1), so a zoomed or pooled
    matrix still reports where in the text a cell is.
    """
    z = np.asarray(weights, dtype=np.float32)
    if masked is not None and masked.any():
        z = np.where(masked, np.nan, z)
    n_rows, n_cols = z.shape
    x = list(range(n_cols)) if col_positions is None else list(col_positions)
    y = list(range(n_rows)) if row_positions is None else list(row_positions)
    fig = go.Figure()
    heat = dict(
        z=z,
        x=x,
        y=y,
        colorscale=colorscale,
        zmin=zmin,
        zmax=zmax if zmax is not None else float(np.nanmax(z)) if np.isfinite(z).any() else 1.0,
        colorbar=dict(title=quantity, thickness=12),
        name="attention",
    )
    if max(n_rows, n_cols) <= HOVER_LABEL_LIMIT:
        rows = np.asarray(plotly_text(row_labels), dtype=object)[:, None]
        cols = np.asarray(plotly_text(col_labels), dtype=object)[None, :]
        heat["customdata"] = np.stack(np.broadcast_arrays(rows, cols), axis=-1)
        heat["hovertemplate"] = (
            "from %{customdata[0]} (#%{y})<br>to %{customdata[1]} (#%{x})<br>" + quantity + " %{z:.4f}<extra></extra>"
        )
    else:
        heat["hovertemplate"] = "from #%{y} to #%{x}<br>" + quantity + " %{z:.4f}<extra></extra>"
    fig.add_trace(go.Heatmap(**heat))
    if masked is not None and masked.any():
        fig.add_trace(
            go.Heatmap(
                z=np.where(masked, np.float32(1.0), np.float32(np.nan)),
                x=x,
                y=y,
                colorscale=[[0, MASKED_COLOR], [1, MASKED_COLOR]],
                showscale=False,
                hovertemplate="masked: #%{y} may not attend to the later token #%{x}<extra></extra>",
                name="masked",
            )
        )
    size = max(320, min(900, 22 * max(n_rows, n_cols) + 140))
    keys = _axis(col_labels, x, MAX_KEY_TICKS)
    # Key labels stand rotated above the map: make room for the longest (~6 px a character, at 60°),
    # then the axis title, then the figure's title at the very top -- none on top of another.
    label_height = 0.87 * 6.5 * max((len(html.unescape(t)) for t in keys["ticktext"]), default=0)
    fig.update_layout(
        title=dict(text=title, font=dict(size=14), y=1, yref="container", yanchor="top", pad=dict(t=6 + TOOLBAR)),
        xaxis=dict(keys, side="top", tickangle=-60, title="attended to (key)"),
        yaxis=dict(_axis(row_labels, y), autorange="reversed", title="attending (query)"),
        height=size + int(label_height) + TOOLBAR,
        margin=dict(l=10, r=10, t=int(90 + TOOLBAR + label_height), b=10),
        plot_bgcolor="white",
    )
    return fig


def clicked_customdata(point: dict) -> list[int]:
    """A clicked point's customdata as ints. Streamlit hands it over as a dict with string keys
    ({"0": a, "1": b}), not a list: read it by index, never by iteration."""
    data = point["customdata"]
    if isinstance(data, dict):
        data = [data[key] for key in sorted(data, key=int)]
    return [int(value) for value in data]


def clicked_layer_head(point: dict) -> tuple[int, int]:
    """(layer, head) of a clicked head (a mosaic marker, a ranked bar: customdata (layer, head))."""
    layer, head = clicked_customdata(point)[:2]
    return layer, head


def mosaic_figure(png: bytes, width: int, height: int, cell: int, layers: int, heads: int, gap: int) -> go.Figure:
    """The layers × heads image with one invisible marker per head, so a click selects that head.

    (Plotly reports no clicks on images or heatmaps; a nearly transparent scatter on top does.)
    """
    source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    step = cell + gap
    layer_idx, head_idx = np.meshgrid(np.arange(layers), np.arange(heads), indexing="ij")
    fig = go.Figure(go.Image(source=source, x0=0, y0=0, dx=1, dy=1, hoverinfo="skip"))
    fig.add_trace(
        go.Scatter(
            x=(head_idx * step + cell / 2).ravel(),
            y=(layer_idx * step + cell / 2).ravel(),
            mode="markers",
            marker=dict(size=max(8, min(40, cell * 0.6)), opacity=0.01, symbol="square", color="black"),
            customdata=np.stack([layer_idx.ravel(), head_idx.ravel()], axis=1),
            hovertemplate="layer %{customdata[0]}, head %{customdata[1]}<extra>click to open</extra>",
            showlegend=False,
        )
    )
    scale = min(1.0, 900 / max(width, 1))
    fig.update_layout(
        height=int(height * scale) + 80,
        margin=dict(l=40, r=10, t=40, b=10),
        xaxis=dict(
            tickmode="array",
            tickvals=[h * step + cell / 2 for h in range(heads)],
            ticktext=list(range(heads)),
            title="head",
            side="top",
            showgrid=False,
            range=[0, width],
            constrain="domain",
        ),
        yaxis=dict(
            tickmode="array",
            tickvals=[la * step + cell / 2 for la in range(layers)],
            ticktext=list(range(layers)),
            title="layer",
            showgrid=False,
            range=[height, 0],
            scaleanchor="x",
        ),
        plot_bgcolor="white",
        dragmode=False,
    )
    return fig


def vectors_heatmap(matrix: np.ndarray, row_labels: Sequence[str], title: str, height: int | None = None) -> go.Figure:
    """Rows of vectors (q, k_j, q⊙k_j, v_j, ...) on a diverging scale centred at 0; columns are dimensions."""
    matrix = np.atleast_2d(matrix)
    limit = float(np.abs(matrix).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            y=list(range(len(row_labels))),
            colorscale="RdBu",
            zmid=0,
            zmin=-limit,
            zmax=limit,
            customdata=np.broadcast_to(np.asarray(plotly_text(row_labels), dtype=object)[:, None], matrix.shape),
            hovertemplate="%{customdata} · dim %{x}: %{z:.4f}<extra></extra>",
            colorbar=dict(thickness=10),
        )
    )
    fig.update_layout(
        title=title_band(title),
        height=(height or max(120, 24 * len(row_labels) + 70)) + TOOLBAR,
        margin=dict(l=10, r=10, t=TOP_MARGIN, b=30),
        yaxis=dict(_axis(row_labels), autorange="reversed"),
        xaxis=dict(title="dimension", showgrid=False),
    )
    return fig


def attention_line(weights: np.ndarray, labels: Sequence[str], title: str) -> go.Figure:
    """One query's attention over the whole context as a line (readable at thousands of keys)."""
    fig = go.Figure(
        go.Scatter(
            x=list(range(len(weights))),
            y=weights,
            mode="lines",
            line=dict(color="#1f5fa8", width=1),
            fill="tozeroy",
            customdata=plotly_text(labels),
            hovertemplate="#%{x} %{customdata}: %{y:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title_band(title),
        height=280,
        margin=dict(l=10, r=10, t=TOP_MARGIN, b=10),
        xaxis=dict(title="key position", showgrid=False),
        yaxis=dict(title="weight", rangemode="tozero"),
    )
    return fig


LINE_COLORS = ("#1f5fa8", "#d95f02", "#7570b3", "#1b9e77")  # distinct hues, not shades of one


def position_lines(series: dict[str, np.ndarray], labels: Sequence[str], title: str, y_title: str) -> go.Figure:
    """Several values per token position as lines (NaN leaves a gap), e.g. a loss with and without heads."""
    fig = go.Figure(
        [
            go.Scatter(
                x=list(range(len(values))),
                y=np.where(np.isfinite(values), values, np.nan),
                mode="lines",
                name=name,
                line=dict(color=LINE_COLORS[i % len(LINE_COLORS)], width=1.5),
                customdata=plotly_text(labels),
                hovertemplate="#%{x} %{customdata}: %{y:.2f}<extra>" + html.escape(name) + "</extra>",
            )
            for i, (name, values) in enumerate(series.items())
        ]
    )
    fig.update_layout(  # the legend sits under the plot, clear of the axis title
        title=title_band(title),
        height=340,
        margin=dict(l=10, r=10, t=TOP_MARGIN, b=10),
        xaxis=dict(title="token position", showgrid=False),
        yaxis=dict(title=y_title, rangemode="tozero"),
        legend=dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0),
    )
    return fig


BAR_LABEL_SIZE = 15


def weight_bars(values: np.ndarray, labels: Sequence[str], title: str, fmt: str = ".4f") -> go.Figure:
    """One bar per token (keys), e.g. the softmax weights of one query."""
    finite = np.where(np.isfinite(values), values, np.nan)
    fig = go.Figure(
        go.Bar(
            x=list(range(len(labels))),
            y=finite,
            customdata=plotly_text(labels),
            hovertemplate="%{customdata}: %{y:" + fmt + "}<extra></extra>",
            marker_color="#1f5fa8",
        )
    )
    fig.update_layout(
        title=title_band(title),
        height=280,
        margin=dict(l=10, r=10, t=TOP_MARGIN, b=10),
        xaxis=dict(_axis(labels), tickangle=-60, tickfont=dict(size=BAR_LABEL_SIZE)),  # "." and "," stay legible
    )
    return fig


def surprisal_bars(bits: np.ndarray, probability: np.ndarray, rank: np.ndarray, labels: Sequence[str]) -> go.Figure:
    """Surprisal of each actual token, −log₂ p(token | everything before it); redder = lower rank."""
    fig = go.Figure(
        go.Bar(
            x=list(range(len(labels))),
            y=bits,
            customdata=np.stack([probability, rank], 1),
            hovertemplate="%{x}: %{y:.2f} bits · p=%{customdata[0]:.4f} · rank %{customdata[1]}<extra></extra>",
            marker_color=np.minimum(rank, 20),
            marker_colorscale="Reds",
        )
    )
    fig.update_layout(
        title=title_band("Surprisal of each actual token (−log₂ p given everything before it)"),
        height=320,
        margin=dict(l=10, r=10, t=TOP_MARGIN, b=10),
        xaxis=dict(_axis(labels), tickangle=-60),
    )
    return fig


def model_lines(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    colors: Sequence[str],
    x_title: str = "relative depth",
    y_title: str = "",
):
    """One line per model, e.g. over relative depth (0 = first layer, 1 = last); the legend under the axis title."""
    fig = go.Figure(
        [
            go.Scatter(x=list(x), y=list(y), mode="lines+markers", name=name, line=dict(color=color))
            for (name, (x, y)), color in zip(series.items(), colors, strict=False)
        ]
    )
    fig.update_layout(
        title=title_band(title),
        height=360,
        margin=dict(l=10, r=10, t=TOP_MARGIN, b=10),
        xaxis_title=x_title,
        yaxis_title=y_title,
        legend=dict(orientation="h", yanchor="top", y=-0.3, xanchor="left", x=0),
    )
    return fig


def layer_token_heatmap(
    z: np.ndarray,
    token_labels: Sequence[str],
    title: str,
    colorscale: str = "Viridis",
    cell_text: np.ndarray | None = None,
    hover: np.ndarray | None = None,
    zmin: float | None = None,
    zmax: float | None = None,
    column: str = "token",
) -> go.Figure:
    """Layers (rows, 0 at the bottom = embeddings) × token positions (or heads: `column="head"`)."""
    layers = list(range(z.shape[0]))
    heat = dict(
        z=z,
        x=list(range(len(token_labels))),
        y=layers,
        colorscale=colorscale,
        zmin=zmin,
        zmax=zmax,
        colorbar=dict(thickness=10),
    )
    if hover is not None:
        heat.update(customdata=hover, hovertemplate="%{customdata}<extra></extra>")
    else:
        heat.update(hovertemplate=f"layer %{{y}} · {column} %{{x}}: %{{z:.3f}}<extra></extra>")
    fig = go.Figure(go.Heatmap(**heat))
    if cell_text is not None:
        fig.add_trace(_cell_text(z, cell_text, colorscale, zmin, zmax))
    fig.update_layout(
        title=title_band(title),
        height=max(260, 22 * len(layers) + 140),
        margin=dict(l=10, r=10, t=TOP_MARGIN, b=10),
        xaxis=dict(_axis(token_labels, most=MAX_KEY_TICKS), tickangle=-60),
        yaxis=dict(title="layer", tickmode="array", tickvals=layers),
        showlegend=False,
    )
    return fig


def _cell_text(z: np.ndarray, text: np.ndarray, colorscale: str, zmin: float | None, zmax: float | None) -> go.Scatter:
    """Text on each cell, dark on light cells and white on dark ones (a heatmap's own text has one colour)."""
    lo = float(np.nanmin(z)) if zmin is None else zmin
    hi = float(np.nanmax(z)) if zmax is None else zmax
    scaled = np.clip((np.nan_to_num(z, nan=lo) - lo) / ((hi - lo) or 1.0), 0, 1)
    cells = sample_colorscale(colorscale, scaled.ravel().tolist(), colortype="tuple")
    luminance = np.array([0.299 * r + 0.587 * g + 0.114 * b for r, g, b in cells])  # 0..1
    rows, cols = np.indices(z.shape)
    return go.Scatter(
        x=cols.ravel(),
        y=rows.ravel(),
        mode="text",
        text=np.vectorize(html.escape)(text.astype(str)).ravel(),
        textfont=dict(size=10, color=np.where(luminance < 0.5, "#ffffff", "#1b1b1b").tolist()),
        hoverinfo="skip",
    )


SCATTER_LABEL_LIMIT = 64  # tokens labelled on a scatter; beyond, labels pile up and only hover names them


def token_scatter(coords: np.ndarray, labels: Sequence[str], x_range, y_range, title: str) -> go.Figure:
    fig = go.Figure(
        go.Scatter(
            x=coords[:, 0],
            y=coords[:, 1],
            mode="markers+text" if len(labels) <= SCATTER_LABEL_LIMIT else "markers",  # more: hover
            text=plotly_text(labels),
            textposition=[("top center", "bottom center")[i % 2] for i in range(len(labels))],  # neighbours apart
            marker=dict(size=9, color=list(range(len(labels))), colorscale="Viridis"),
            hovertemplate="%{text}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title_band(title),
        height=480,
        margin=dict(l=10, r=10, t=TOP_MARGIN, b=10),
        xaxis=dict(range=list(x_range), title="PC 1"),
        yaxis=dict(range=list(y_range), title="PC 2"),
    )
    return fig


def waiting_figure(message: str, height: int = 420) -> go.Figure:
    """An empty chart holding a map's place with a message (it also makes the browser load plotly.js)."""
    figure = go.Figure(layout=dict(height=height, xaxis_visible=False, yaxis_visible=False, plot_bgcolor="#f4f6f9"))
    figure.add_annotation(text=message, showarrow=False, font=dict(size=14, color="#555"))
    return figure


PLOTLY_FONT_SIZE, PLOTLY_HEIGHT = 12, 450  # plotly's defaults where a figure sets none
PLOTLY_MARGIN = {"l": 80, "r": 80, "t": 100, "b": 80}


def _grown(node: object, factor: float, font: bool = False) -> object:
    """Every font size and padding under `node` (a figure's JSON) × factor: the `size` of any dict named
    …font, and the sides of any `pad` (a title's room under the toolbar grows with the toolbar)."""
    if isinstance(node, dict):
        return {
            key: (value * factor if font and key == "size" and isinstance(value, int | float) else
                  {side: v * factor for side, v in value.items()} if key == "pad" and isinstance(value, dict) else
                  _grown(value, factor, key.endswith("font")))
            for key, value in node.items()
        }  # fmt: skip
    if isinstance(node, list | tuple) and node and isinstance(node[0], dict):  # annotations, shapes
        return [_grown(item, factor) for item in node]
    return node


def scaled(fig: go.Figure, factor: float) -> go.Figure:
    """A copy of the figure for a projector: every font, its height and its margins × factor.

    One place enlarges every figure of the app (presenter mode), whatever sizes each figure chose.
    """
    if factor == 1:
        return fig
    layout = _grown(fig.layout.to_plotly_json(), factor)
    layout.setdefault("font", {})
    layout["font"]["size"] = (fig.layout.font.size or PLOTLY_FONT_SIZE) * factor
    layout["height"] = (fig.layout.height or PLOTLY_HEIGHT) * factor
    margin = layout.setdefault("margin", {})
    for side, default in PLOTLY_MARGIN.items():
        margin[side] = margin.get(side, default) * factor
    legend = layout.get("legend", {})
    if legend.get("y", 0) < 0:  # a legend under the plot moves down as far as its axis title grew
        legend["y"] *= factor
    out = go.Figure(fig)
    out.layout = layout
    for trace in out.data:
        fonts = {k: v for k, v in trace.to_plotly_json().items() if k.endswith("font") and isinstance(v, dict)}
        trace.update(_grown(fonts, factor))
    return out
