"""What each head does (where its attention goes), and attention rollout across layers."""

import numpy as np
import pandas as pd
import streamlit as st

from ui import shell
from viz import figures
from viz.errors import AtlasError
from viz.heads import BROAD_ENTROPY, ROLE_SHARE, rollout
from viz.tokens import matrix_view

STATISTICS = {
    "to_previous": "share of attention on the previous token",
    "to_first": "share on the first token",
    "to_self": "share on the token itself",
    "entropy": "entropy (0 = one key, 1 = uniform over the visible keys)",
    "distance": "mean distance to the attended token (tokens)",
}

shell.page_setup("Head roles & rollout")
trace = shell.current_trace()
names = [name for name in trace.stacks if name != "cross"]  # roles and rollout need self-attention
shell.keep_choice("roles_stack", names)
stack_name = st.radio("Stack", names, horizontal=True, key="roles_stack") if len(names) > 1 else names[0]
stack = trace.stacks[stack_name]
stats = shell.cached_head_stats(trace, stack_name)
heads = [f"h{h}" for h in range(stack.n_heads)]

st.caption(
    f"Roles are rules, not a classifier: a head is named for where at least {ROLE_SHARE:.0%} of its attention "
    f"goes (previous token, first token, itself), 'broad' when its rows are ≥ {BROAD_ENTROPY:.0%} of maximal "
    "entropy, else 'mixed'. Averaged over this text's tokens: try longer texts before trusting a label."
)
shell.keep_choice("role_statistic", STATISTICS)
statistic = st.selectbox("Colour by", list(STATISTICS), format_func=STATISTICS.get, key="role_statistic")
shell.remember("roles_stack", "role_statistic")
values = getattr(stats, statistic)
st.plotly_chart(
    figures.layer_token_heatmap(
        values, heads, STATISTICS[statistic] + " · text = role", "Blues", stats.roles, column="head"
    ),
    key="roles",
)
table = pd.DataFrame(
    [
        (layer, head, stats.roles[layer, head], *(round(float(getattr(stats, s)[layer, head]), 3) for s in STATISTICS))
        for layer in range(stack.n_layers)
        for head in range(stack.n_heads)
    ],
    columns=["layer", "head", "role", *STATISTICS],
)
with st.expander("All heads as a table"):
    st.dataframe(table, hide_index=True)
    st.write(table["role"].value_counts().rename("heads"))

st.subheader("Attention rollout")
st.caption(
    "Abnar & Zuidema (2020): follow attention through the residual stream, "
    "Â = ½·I + ½·mean over heads(A), multiplied layer by layer. Row i: how much token i's representation "
    "after the chosen layer draws on each input token."
)
shell.clamp("rollout_layer", 0, stack.n_layers - 1)
layer = st.slider("After layer", 0, stack.n_layers - 1, stack.n_layers - 1, key="rollout_layer")
shell.remember("rollout_layer")
tokens = trace.tokens[stack.queries_from]
options = shell.token_options()
try:
    mixed = rollout(stack, layer)
except AtlasError as err:
    shell.say(st.info, "{message}", message=err)
    st.stop()
view = matrix_view(mixed, tokens, tokens, np.zeros(mixed.shape, dtype=bool), options)
shown = shell.heatmap(view, f"rollout through layers 0–{layer}", key="rollout", zoom=shell.zoom_picker(tokens, tokens))
shell.downloads({f"{stack_name} rollout to layer {layer}": shown}, trace)
