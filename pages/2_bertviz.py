"""bertviz's own head view and model view, drawn offline from the cached pass."""

import streamlit as st

from ui import shell
from viz.bertviz_views import too_large

shell.page_setup("bertviz head & model view")
trace = shell.current_trace()
view = st.radio("View", ["head", "model"], format_func=lambda v: f"{v} view", horizontal=True, key="bertviz_view")
shell.remember("bertviz_view")
layer = 0
if view == "head":
    stack = next(iter(trace.stacks.values()))
    shell.clamp("bertviz_layer", 0, stack.n_layers - 1)
    layer = st.slider("Layer", 0, stack.n_layers - 1, key="bertviz_layer")
    shell.remember("bertviz_layer")
reason = too_large(trace, view, layers=1 if view == "head" else None)
if reason:
    st.warning(reason)
    st.page_link("pages/1_Model_view.py", label="Open the Model view")
    st.stop()
with st.spinner("Building the bertviz view…"):
    html = shell.cached_bertviz(trace.identity, view, layer, trace)
tokens = max(len(seq) for seq in trace.tokens.values())
height = 120 + 22 * tokens if view == "head" else 60 + 150 * next(iter(trace.stacks.values())).n_layers
st.iframe(html, height=min(height, 4000))
st.caption(
    "Head view: hover a token to see where it attends; click the coloured squares to pick heads. "
    "Encoder-decoders: choose encoder, decoder or cross-attention in bertviz's own drop-down."
)
