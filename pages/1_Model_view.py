"""Every head of every layer at once; click a thumbnail to open that head."""

from dataclasses import replace

import streamlit as st

from ui import page, pickers, render, views
from viz import figures
from viz.heads import THUMBNAIL_CELL, stack_stats
from viz.mosaic import GAP
from viz.tokens import matrix_view


def open_clicked_head() -> None:
    points = st.session_state["grid"]["selection"]["points"]
    if points:
        st.session_state["layer"], st.session_state["head"] = figures.clicked_layer_head(points[0])


page.setup("Model view")
trace = page.current_trace()
stack_name = pickers.stack_picker(trace)
stack = trace.stacks[stack_name]
stats = views.derived(
    stack_stats, trace, stack_name, what=f"Reading {stack.n_layers} layers × {stack.n_heads} heads from q and k"
)
mosaic = stats.thumbnails.mosaic

st.caption(
    f"{stack.n_layers} layers × {stack.n_heads} heads. Each thumbnail is one head's attention (rows attend to "
    f"columns), max-pooled to at most {THUMBNAIL_CELL} × {THUMBNAIL_CELL} pixels (a pixel shows the largest weight "
    "in its block) and scaled to its own maximum; grey = masked. Click one to open it below."
)
render.chart(
    figures.mosaic_figure(mosaic.png, mosaic.width, mosaic.height, mosaic.cell, stack.n_layers, stack.n_heads, GAP),
    key="grid",
    on_select=open_clicked_head,
    selection_mode="points",
)
st.download_button("Grid as PNG", mosaic.png, file_name=f"{stack_name}-heads.png", mime="image/png")

layer, head = pickers.layer_head_picker(stack)
options = pickers.token_options(contribution=True)
rows, cols = trace.stack_tokens(stack_name)
zoom = pickers.zoom_picker(rows, cols)
contributions = page.contribution_maps_of(trace, stack_name, layer) if options.contribution else None
if contributions is None:
    options = replace(options, contribution=False)
weights = (
    stack.attention(layer, head, value_weighted=options.value_weighted)
    if contributions is None
    else contributions[head]
)
view = matrix_view(weights, rows, cols, stack.forbidden(layer), options)
shown = render.heatmap(view, f"Layer {layer}, head {head}", key="model_view_head", zoom=zoom)
render.downloads({f"{stack_name} layer {layer} head {head}": shown}, trace)
