"""Attention Atlas -- first page: one head's attention map beside the mean over heads."""

import streamlit as st

from ui import shell
from viz import figures

shell.page_setup("Attention maps")
trace = shell.current_trace()
stack_name = shell.stack_picker(trace)
stack = trace.stacks[stack_name]
layer, head = shell.layer_head_picker(stack)
rows, cols = trace.stack_tokens(stack_name)
masked = stack.masked[layer]

left, right = st.columns(2)
left.plotly_chart(
    figures.attention_heatmap(
        stack.attentions[layer, head], rows.display, cols.display, masked, f"Layer {layer}, head {head}"
    ),
    key="head_map",
)
right.plotly_chart(
    figures.attention_heatmap(
        stack.attentions[layer].mean(axis=0),
        rows.display,
        cols.display,
        masked,
        f"Layer {layer}, mean over {stack.n_heads} heads",
    ),
    key="mean_map",
)
if stack.causal:
    st.caption("Grey cells are masked: a causal decoder may not attend to later tokens.")
st.caption("Each row is one token attending; its weights over the columns sum to 1.")
