"""bertviz's own head view and model view, drawn offline from the cached pass."""

import streamlit as st

from ui import page, views, widgets
from viz.bertviz_views import drawn_height, head_view_html, model_view_html, too_large

page.setup("bertviz head & model view")
trace = page.current_trace()
view = widgets.radio("View", ["head", "model"], key="bertviz_view", format_func=lambda v: f"{v} view", horizontal=True)
layer = 0
if view == "head":
    stack = next(iter(trace.stacks.values()))
    layer = widgets.slider("Layer", 0, stack.n_layers - 1, key="bertviz_layer")
reason = too_large(trace, view, layers=1 if view == "head" else None)
if reason:
    st.warning(reason)
    st.page_link("pages/1_Model_view.py", label="Open the Model view")
    st.stop()
with st.spinner("Building the bertviz view…"):
    html = views.derived(head_view_html, trace, layer) if view == "head" else views.derived(model_view_html, trace)
st.iframe(html, height=min(drawn_height(trace, view), 4000))
st.caption(
    (
        "Head view: hover a token to see where it attends; click the coloured squares to pick heads."
        if view == "head"
        else "Model view: every head of every layer; click a thumbnail to see it larger."
    )
    + (" Choose encoder, decoder or cross-attention in bertviz's own drop-down." if len(trace.stacks) > 1 else "")
)
