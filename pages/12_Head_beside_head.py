"""Any two heads -- any layer, any stack, also of two models -- on one colour scale, and their difference."""

import numpy as np
import streamlit as st

from ui import messages, page, pickers, render, widgets
from viz.errors import AtlasError
from viz.models import CATALOG_BY_KEY, LAYERED_CATALOG
from viz.tokens import difference_view, matrix_view, same_cells

SIDEBAR = "sidebar"  # the sidebar's model and Trace
SIDES = (("a", "Head A", 0), ("b", "Head B", 1))  # key suffix, title, default head

page.setup("Head beside head")
trace = page.current_trace()
text = st.session_state["text"]
choices = [SIDEBAR, *(entry.key for entry in LAYERED_CATALOG)]


def model_label(choice: str) -> str:
    return "the sidebar's model" if choice == SIDEBAR else CATALOG_BY_KEY[choice].label


picked = {}
for column, (side, title, default_head) in zip(st.columns(2), SIDES, strict=True):
    with column:
        st.markdown(f"**{title}**")
        model = widgets.selectbox("Model", choices, key=f"beside_model_{side}", format_func=model_label)
        try:
            side_trace = trace if model == SIDEBAR else page.trace_for(text, model=model)
        except AtlasError as err:
            messages.say(st.error, "{message}", message=err)
            continue
        names = list(side_trace.stacks)
        stack_name = widgets.radio(
            "Attention", names, key=f"beside_stack_{side}", format_func=pickers.STACK_LABELS.get, horizontal=True
        )
        stack = side_trace.stacks[stack_name]
        layer = widgets.slider("Layer", 0, stack.n_layers - 1, key=f"beside_layer_{side}")
        head = widgets.slider(
            "Head", 0, stack.n_heads - 1, key=f"beside_head_{side}", default=min(default_head, stack.n_heads - 1)
        )
        picked[side] = (side_trace, stack_name, layer, head)
if len(picked) < 2:
    st.stop()

options = pickers.token_options()
views = {}
for side, (side_trace, stack_name, layer, head) in picked.items():
    stack = side_trace.stacks[stack_name]
    rows, cols = side_trace.stack_tokens(stack_name)
    weights = stack.attention(layer, head, value_weighted=options.value_weighted)
    title = f"{side.upper()}: {pickers.STACK_LABELS[stack_name]}, layer {layer}, head {head}"
    views[title] = matrix_view(weights, rows, cols, stack.forbidden(layer), options)
(view_a, view_b) = views.values()
same_tokens = same_cells(view_a, view_b)
rows, cols = picked["a"][0].stack_tokens(picked["a"][1])
zoom = pickers.zoom_picker(rows, cols) if same_tokens else None
shown = render.heatmaps_side_by_side(views, ["beside_a", "beside_b"], zoom)

st.subheader("A − B")
difference = difference_view(*shown.values())
if difference is None:
    st.info(
        "The two maps read different tokens (two tokenizers, or a self-attention beside a cross-attention), so "
        "there is no cell-by-cell difference: compare them by eye on the shared colour scale above."
    )
elif difference.pooled > 1:
    st.info("Zoom to at most 512 × 512 tokens to see the difference cell by cell (max-pooling hides its signs).")
else:
    peak = float(np.nanmax(np.abs(np.where(difference.masked, np.nan, difference.weights)), initial=0.0)) or 1.0
    render.heatmap(difference, "A − B (blue: A attends more, red: B does)", key="beside_diff", colorscale="RdBu",
                  zmin=-peak, zmax=peak)  # fmt: skip
    render.downloads({**shown, "A minus B": difference}, trace)
