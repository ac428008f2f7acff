"""What each head does, scored against patterns (TransformerLens's head detector), and attention rollout."""

import numpy as np
import pandas as pd
import streamlit as st

from ui import messages, page, pickers, render, views, widgets
from viz import figures
from viz.errors import AtlasError
from viz.heads import (
    ABOVE_CHANCE,
    BROAD_ENTROPY,
    CUSTOM_KINDS,
    MIN_ROWS,
    PATTERNS,
    ROLE_CODES,
    ROLE_SHARE,
    RULE_HELP,
    custom_pattern,
    role_codes,
    rollout,
    stack_stats,
)
from viz.induction import ranked_heads
from viz.tokens import matrix_view

MEASURES = {
    **{name: f"{name} score" for name in PATTERNS},
    "entropy": "entropy (0 = one key, 1 = uniform over the visible keys)",
    "distance": "mean distance to the attended token (tokens)",
}
RANKED = 10  # heads listed under a pattern

page.setup("Head roles & rollout")
trace = page.current_trace()
stack_name = pickers.one_of_stacks(list(trace.self_stacks), "roles_stack")  # patterns and rollout read self-attention
stack = trace.stacks[stack_name]
exclude_first = widgets.checkbox(
    "Leave out the first token",
    key="roles_exclude_first",
    help="Score each pattern as a share of the attention that does not go to the first token (TransformerLens's "
    "exclude_bos): a head that parks most of its attention there can still be found by what it does with the rest.",
)
stats = views.derived(stack_stats, trace, stack_name, what=f"Scoring {stack.n_layers} layers × {stack.n_heads} heads")
scores = stats.scored(exclude_first)
labels = scores.roles()

st.caption(
    "Scores use TransformerLens's head detector: the share of a head's attention on the cells a pattern marks "
    "(previous token j = i−1; duplicate token: an earlier copy of the query's token; induction: the token after "
    f"an earlier copy; first token; self). A head takes every role it follows on ≥ {ROLE_SHARE:.0%} of its "
    f"attention over the rows where the pattern applies (at least {MIN_ROWS} rows, and {ABOVE_CHANCE}× what a "
    f"uniform head would give there; the number is shown beside the role), else 'broad' (rows ≥ "
    f"{BROAD_ENTROPY:.0%} of maximal entropy) or 'mixed'. Cell text: "
    + ", ".join(f"{code} = {name}" for name, code in ROLE_CODES.items())
    + "."
)
st.page_link("pages/11_Induction_probe.py", label="Find induction heads with the induction probe →")
measure = widgets.selectbox("Colour by", list(MEASURES), key="role_statistic", format_func=MEASURES.get)
values = scores.scores[measure] if measure in PATTERNS else getattr(scores, measure)
hover = np.array(
    [[f"layer {layer} · head {head}: {label}" for head, label in enumerate(row)] for layer, row in enumerate(labels)]
)
render.chart(
    figures.layer_token_heatmap(
        values, [f"h{h}" for h in range(stack.n_heads)], MEASURES[measure], "Blues", role_codes(labels), hover,
        column="head",
    ),
    key="roles",
)  # fmt: skip
table = pd.DataFrame(
    [
        (layer, head, labels[layer, head])
        + tuple(round(float(scores.scores[p][layer, head]), 3) for p in PATTERNS)
        + (round(float(scores.entropy[layer, head]), 3), round(float(scores.distance[layer, head]), 2))
        for layer in range(stack.n_layers)
        for head in range(stack.n_heads)
    ],
    columns=["layer", "head", "roles", *PATTERNS, "entropy", "distance"],
)
with st.expander("All heads as a table (sortable)"):
    st.dataframe(table, hide_index=True)

st.subheader("Rank heads by a pattern")
left, right = st.columns([2, 3])
kind = widgets.selectbox("Pattern", CUSTOM_KINDS, key="pattern_kind", place=left)
k, rule_text = 1, ""
if kind == "k tokens back":
    k = int(widgets.number_input("k", 0, 64, key="pattern_k", default=2, place=right))
elif kind == "a rule you type":
    rule_text = widgets.text_input(
        "Rule", key="pattern_rule", default="j == i - 2", place=right, help=RULE_HELP, max_chars=200
    )
try:
    name, _ = custom_pattern(kind, k, rule_text)  # checks a typed rule before any pass
    # A built-in pattern is already scored above: no second pass over every head's attention.
    ranked = (
        scores
        if name[0] in PATTERNS
        else views.derived(
            stack_stats, trace, stack_name, pattern=(kind, k, rule_text), what="Scoring the pattern"
        ).scored(exclude_first)
    )
except AtlasError as err:
    messages.say(st.warning, "{message}", message=err)
else:
    score, applies = ranked.scores[name[0]], ranked.where_applies[name[0]]
    top = ranked_heads(score)[:RANKED]
    st.dataframe(
        pd.DataFrame(
            [(layer, head, score[layer, head], applies[layer, head], labels[layer, head]) for layer, head in top],
            columns=["layer", "head", "score", "where it applies", "roles"],
        ),
        hide_index=True,
        column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("score", "where it applies")},
    )
    st.caption(
        f"The pattern marks a key in {ranked.rows_applying[name[0]]} of {stack.n_queries} rows. 'score' is "
        "TransformerLens's (over all rows); 'where it applies' counts only rows where the pattern marks a key."
    )
    rank = widgets.selectbox(
        "Open a ranked head",
        range(len(top)),
        key="roles_rank",
        format_func=lambda r: f"#{r + 1}: layer {top[r][0]}, head {top[r][1]}",
    )
    pickers.open_head_buttons(stack_name, *top[rank], key="roles_open")

st.subheader("Attention rollout")
st.caption(
    "Abnar & Zuidema (2020): follow attention through the residual stream, "
    "Â = ½·I + ½·mean over heads(A), multiplied layer by layer. Row i: how much token i's representation "
    "after the chosen layer draws on each input token."
)
layer = widgets.slider("After layer", 0, stack.n_layers - 1, key="rollout_layer", default=stack.n_layers - 1)
tokens = trace.tokens[stack.queries_from]
options = pickers.token_options(value_weighted=False)
try:
    mixed = rollout(stack, layer)
except AtlasError as err:
    messages.say(st.info, "{message}", message=err)
    st.stop()
view = matrix_view(mixed, tokens, tokens, np.zeros(mixed.shape, dtype=bool), options)
zoom = pickers.zoom_picker(tokens, tokens)
shown = render.heatmap(view, f"rollout through layers 0–{layer}", key="rollout", zoom=zoom)
render.downloads({f"{stack_name} rollout to layer {layer}": shown}, trace)
