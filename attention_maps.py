"""Attention Atlas -- first page: one head's attention map beside the mean over heads."""

import streamlit as st

from ui.cold_start import importing_stack

TITLE = "Attention maps"
PALE_SHARE = 0.5  # above this share of attention on special tokens, the rest of a map is near white

with importing_stack(TITLE):  # the first page a fresh server shows: draw something while torch imports
    from dataclasses import replace

    import numpy as np

    from ui import page, pickers, render
    from viz import figures
    from viz.tokens import matrix_view, special_share

page.setup(TITLE)
st.markdown(
    "Each map is one **attention head** of the model reading your text: row *i* is token *i* looking back "
    "at the tokens in the columns, with weights that sum to 1. Try another layer or head, hover a cell, or "
    "see every head at once in the Model view."
)
st.page_link("pages/90_Guided_walk.py", label="New to attention? Take the guided walk →")
trace = page.current_trace()
stack_name = pickers.stack_picker(trace)
stack = trace.stacks[stack_name]
layer, head = pickers.layer_head_picker(stack)
options = pickers.token_options(contribution=True)
rows, cols = trace.stack_tokens(stack_name)
zoom = pickers.zoom_picker(rows, cols)
forbidden = stack.forbidden(layer)
contributions = page.contribution_maps_of(trace, stack_name, layer) if options.contribution else None
if contributions is not None:  # what each token adds: per head, and summed over heads (a token's edge weight)
    head_weights, all_heads = contributions[head], contributions.sum(0)
    all_title = f"Layer {layer}, summed over {stack.n_heads} heads"
else:
    options = replace(options, contribution=False)
    head_weights = stack.attention(layer, head, value_weighted=options.value_weighted)
    all_heads = stack.head_mean(layer, value_weighted=options.value_weighted)
    all_title = f"Layer {layer}, mean over {stack.n_heads} heads"
views = {
    f"Layer {layer}, head {head}": matrix_view(head_weights, rows, cols, forbidden, options),
    all_title: matrix_view(all_heads, rows, cols, forbidden, options),
}
shown = render.heatmaps_side_by_side(views, ["head_map", "mean_map"], zoom)
share = special_share(head_weights / np.maximum(head_weights.sum(-1, keepdims=True), 1e-30), cols)
if share >= PALE_SHARE and not options.hide_special:
    st.caption(
        f"{share:.0%} of this head's attention goes to special tokens, which sets the colour scale's top and "
        "leaves the rest of the map pale: tick **Hide special tokens** and **Renormalise rows** in Token "
        "options to spread the colours over the other tokens."
    )
if stack.causal:
    st.caption("Grey cells are masked: a causal decoder may not attend to later tokens.")
st.caption("Each row is one token attending; its weights over the columns sum to 1.")

st.subheader("One query over the whole context")
# A decoder's last token sees the whole text; its first sees only itself.
query = pickers.token_picker(
    "Query token (the row that attends)", rows, key="query", default=len(rows) - 1 if stack.causal else 0
)
render.chart(
    figures.attention_line(
        stack.attention(layer, head, rows=slice(query, query + 1))[0],
        list(cols.display),
        f"where “{rows.display[query]}” (#{query}) attends: layer {layer}, head {head}",
    ),
    key="query_line",
)
render.downloads(shown, trace)
