"""Teaching pictures drawn with plotly shapes: the ideas behind the numbers, with fixed example words."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

INPUT = ("the", "3rd", "of", "march", "1999")
OUTPUT = ("1999", "-", "03", "-", "03")
ENCODER_COLOR, DECODER_COLOR, BOTTLENECK_COLOR = "#dbe9f6", "#fde0c5", "#d95f02"


def _boxes(fig: go.Figure, xs: Sequence[float], y: float, labels: Sequence[str], fill: str, size=(0.8, 0.5)) -> None:
    w, h = size
    for x, label in zip(xs, labels, strict=True):
        fig.add_shape(type="rect", x0=x - w / 2, x1=x + w / 2, y0=y - h / 2, y1=y + h / 2, fillcolor=fill,
                      line=dict(color="#555", width=1))  # fmt: skip
        fig.add_annotation(x=x, y=y, text=label, showarrow=False, font=dict(size=14))


def _arrow(fig: go.Figure, start: tuple[float, float], end: tuple[float, float], color: str = "#555", width=1.5):
    fig.add_annotation(x=end[0], y=end[1], ax=start[0], ay=start[1], xref="x", yref="y", axref="x", ayref="y",
                       text="", showarrow=True, arrowhead=2, arrowwidth=width, arrowcolor=color)  # fmt: skip


def bottleneck_diagram(inputs: Sequence[str] = INPUT, outputs: Sequence[str] = OUTPUT) -> go.Figure:
    """An RNN encoder-decoder (Sutskever et al. 2014): the encoder reads the input one token at a time into
    states h₁…h_n, and the decoder writes the whole output from the last state alone -- the bottleneck."""
    n, m = len(inputs), len(outputs)
    enc_x = [float(i) for i in range(n)]
    dec_x = [n + 1.5 + j for j in range(m)]
    fig = go.Figure()
    _boxes(fig, enc_x, 0.0, list(inputs), "#ffffff")
    _boxes(fig, enc_x, 1.2, [f"h{i + 1}" for i in range(n)], ENCODER_COLOR)
    _boxes(fig, dec_x, 1.2, [f"s{j + 1}" for j in range(m)], DECODER_COLOR)
    _boxes(fig, dec_x, 2.4, list(outputs), "#ffffff")
    for i in range(n):
        _arrow(fig, (enc_x[i], 0.25), (enc_x[i], 0.95))
        if i:
            _arrow(fig, (enc_x[i - 1] + 0.4, 1.2), (enc_x[i] - 0.4, 1.2))
    for j in range(m):
        _arrow(fig, (dec_x[j], 1.45), (dec_x[j], 2.15))
        if j:
            _arrow(fig, (dec_x[j - 1] + 0.4, 1.2), (dec_x[j] - 0.4, 1.2))
    _arrow(fig, (enc_x[-1] + 0.4, 1.2), (dec_x[0] - 0.4, 1.2), BOTTLENECK_COLOR, 4)
    fig.add_annotation(x=(enc_x[-1] + dec_x[0]) / 2, y=1.75, showarrow=False, font=dict(color=BOTTLENECK_COLOR),
                       text="one vector: all<br>the decoder gets")  # fmt: skip
    fig.add_annotation(x=(n - 1) / 2, y=-0.65, showarrow=False, text="encoder reads the input")
    fig.add_annotation(x=(dec_x[0] + dec_x[-1]) / 2, y=3.05, showarrow=False, text="decoder writes the output")
    fig.update_xaxes(visible=False, range=[-0.7, dec_x[-1] + 0.7])
    fig.update_yaxes(visible=False, range=[-0.9, 3.3], scaleanchor="x", scaleratio=1)
    fig.update_layout(height=280, margin=dict(l=5, r=5, t=5, b=5), plot_bgcolor="white", dragmode=False)
    return fig
