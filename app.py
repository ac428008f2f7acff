"""Attention Atlas -- first page: one head's attention map beside the mean over heads."""

import streamlit as st

from ui import shell
from viz.tokens import matrix_view

shell.page_setup("Attention maps")
trace = shell.current_trace()
stack_name = shell.stack_picker(trace)
stack = trace.stacks[stack_name]
layer, head = shell.layer_head_picker(stack)
options = shell.token_options()
rows, cols = trace.stack_tokens(stack_name)
views = {
    f"Layer {layer}, head {head}": matrix_view(stack.attentions[layer, head], rows, cols, stack.masked[layer], options),
    f"Layer {layer}, mean over {stack.n_heads} heads": matrix_view(
        stack.attentions[layer].mean(axis=0), rows, cols, stack.masked[layer], options
    ),
}
for column, key, (title, view) in zip(st.columns(2), ("head_map", "mean_map"), views.items(), strict=True):
    with column:
        shell.heatmap(view, title, key=key)
if stack.causal:
    st.caption("Grey cells are masked: a causal decoder may not attend to later tokens.")
st.caption("Each row is one token attending; its weights over the columns sum to 1.")
shell.downloads(views, trace)
