"""The bottleneck, measured: held-out exact match by input length for a task's two RNNs (without and with
attention) and its transformer, on the same examples, as training/rnn.py wrote it (models/bottleneck-<task>.json).

Exact match at input length n = (held-out inputs of n tokens, </s> not counted, whose greedy output equals the
reference) / (held-out inputs of n tokens). Without attention the decoder reads the input only through the
encoder's last state; how much of a longer input that one vector keeps is what the curve shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go

from viz.errors import AtlasError
from viz.figures import LINE_COLORS, model_lines

MODELS = Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class Bottleneck:
    task: str
    title: str
    examples: int  # held-out examples, every model the same
    exact_match: dict[str, float]  # catalog key -> overall exact match
    by_length: dict[str, dict[int, tuple[float, int]]]  # catalog key -> {input length: (exact match, examples)}
    only_attention_right: tuple[dict[str, str], ...]  # long inputs the RNN without attention gets wrong


def bottleneck(task: str, folder: Path = MODELS) -> Bottleneck:
    path = folder / f"bottleneck-{task}.json"
    if not path.is_file():
        raise AtlasError(f"No accuracy-by-length figures for the {task} task: run python3 -m training.rnn.")
    record = json.loads(path.read_text())
    curves = {key: m["by_input_length"] for key, m in record["models"].items()}
    return Bottleneck(
        task=task,
        title=record["title"],
        examples=record["examples"],
        exact_match={key: m["exact_match"] for key, m in record["models"].items()},
        by_length={key: {int(n): (share, count) for n, (share, count) in c.items()} for key, c in curves.items()},
        only_attention_right=tuple(record["only_attention_right"]),
    )


def by_length_figure(b: Bottleneck, labels: dict[str, str]) -> go.Figure:
    """Exact match against input length, one line per model (`labels`: catalog key -> legend name)."""
    series = {
        f"{labels.get(key, key)} (overall {b.exact_match[key]:.3f})": (list(curve), [s for s, _ in curve.values()])
        for key, curve in b.by_length.items()
    }
    title = f"{b.title}: held-out exact match by input length ({b.examples:,} examples)"
    fig = model_lines(series, title, LINE_COLORS, x_title="input length (tokens)", y_title="exact match")
    fig.update_yaxes(range=[0, 1.02])
    return fig
