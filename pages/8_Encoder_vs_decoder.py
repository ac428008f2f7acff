"""Two models read the same text: a bidirectional encoder beside a causal decoder."""

import numpy as np
import pandas as pd
import streamlit as st

from ui import messages, page, render, views, widgets
from viz import figures
from viz.errors import AtlasError
from viz.heads import stack_stats
from viz.models import CATALOG_BY_KEY, LAYERED_CATALOG
from viz.tokens import TokenOptions, matrix_view

page.setup("Encoder vs decoder")
page.sidebar_only()
text = st.session_state["text"]
keys = [entry.key for entry in LAYERED_CATALOG]
left, right = st.columns(2)
models = [
    widgets.selectbox(title, keys, key=key, default=default, place=place, format_func=lambda k: CATALOG_BY_KEY[k].label)
    for title, key, default, place in (
        ("Left", "compare_left", "minilm", left),
        ("Right", "compare_right", "smollm2", right),
    )
]
depth = widgets.slider(
    "Depth (0 = first layer, 1 = last): layers are matched by relative depth", 0.0, 1.0, key="compare_depth", step=0.05
)
if st.button("Put one head of each model side by side →"):
    st.session_state.update(beside_model_a=models[0], beside_model_b=models[1])
    st.switch_page("pages/12_Head_beside_head.py")
options = TokenOptions(hide_special=True)
SIDE_COLORS = ("#1f5fa8", "#d95f02")  # left blue, right orange: two blues were hard to tell apart

curves = []
for side, column, key in zip(("left", "right"), (left, right), models, strict=True):
    try:  # each side says it is loading (a slow model must not leave a blank column)
        with column, st.spinner(f"Loading {CATALOG_BY_KEY[key].label.split(' · ')[0]} and reading the text…"):
            trace = page.trace_for(text, model=key)
    except AtlasError as err:
        column.error(str(err))
        continue
    stack_name = trace.self_stacks[0]
    stack = trace.stacks[stack_name]
    layer = round(depth * (stack.n_layers - 1))
    tokens = trace.tokens["source"]
    view = matrix_view(stack.head_mean(layer), tokens, tokens, stack.forbidden(layer), options)
    with column:
        messages.say(
            st.caption,
            f"{{model}}: {stack_name}, {stack.n_layers} layers × {stack.n_heads} heads, "
            f"{'causal (sees only the past)' if stack.causal else 'bidirectional (sees both sides)'}",
            model=trace.model_name,
        )
        render.heatmap(view, f"layer {layer}, mean over heads (special tokens hidden)", key=f"compare_map_{side}")
    scores = views.derived(stack_stats, trace, stack_name).scores
    rel = np.linspace(0, 1, stack.n_layers)
    for name, values in (
        ("entropy", scores.entropy),
        ("to first token", scores.scores["first token"]),
        ("to previous token", scores.scores["previous token"]),
    ):
        label = f"{trace.model_name} ({side})"  # the same model may sit on both sides
        curves += [(label, name, float(r), float(v)) for r, v in zip(rel, values.mean(1), strict=True)]

if curves:
    frame = pd.DataFrame(curves, columns=["model", "statistic", "depth", "value"])
    st.subheader("Layer by layer, averaged over heads")
    cols = st.columns(3)
    for column, (name, group) in zip(cols, frame.groupby("statistic", sort=False), strict=False):
        series = {model: (g["depth"], g["value"]) for model, g in group.groupby("model", sort=False)}
        fig = figures.model_lines(series, name, SIDE_COLORS)
        render.chart(fig, key=f"curve_{name}", place=column)
    st.caption(
        "Entropy is normalised by the number of keys each token may see, so a causal decoder's early "
        "tokens (few keys) and an encoder's tokens (all keys) compare fairly."
    )
