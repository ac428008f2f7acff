"""Which input tokens each output token was produced from (Bahdanau et al. 2015, Fig. 3)."""

import numpy as np
import streamlit as st

from ui import messages, page, pickers, render
from viz.alignment import alignment
from viz.architectures import DECODER, ENCODER_DECODER, RNN
from viz.errors import AtlasError
from viz.tokens import matrix_view

page.setup("Alignment")
needs_output = page.Offer(
    (DECODER, ENCODER_DECODER, RNN),
    "dates",
    0,
    "Alignment needs a model that writes output; the sidebar's model is an encoder.",
)
trace = page.current_trace(generate=True, offer=needs_output, recurrent=True)
try:
    align = alignment(trace)
except AtlasError as err:
    messages.say(st.warning, "{message}", message=err)
    st.stop()

output_text = page.current_model().tokenizer.decode(align.outputs.ids.tolist(), skip_special_tokens=True)
if output_text.strip():
    st.markdown(f"**Output:** {messages.literal(output_text)}")
else:  # an empty view says why
    messages.say(
        st.info,
        "The output is empty: the model's first token ended it ({tokens}). The rows below show where it looked "
        "while it decided to stop.",
        tokens=" ".join(align.outputs.display),
    )
st.caption(
    f"{align.kind}: row i is the decoder step that produced output token i; columns are the input tokens. "
    "Type a target text in the sidebar to see how the model aligns a translation you give it (forced decoding)."
    if align.kind == "cross-attention"
    else "generated → prompt: row i is the step that produced generated token i; columns are the prompt tokens."
)
layer, head = pickers.layer_head_picker(align.stack)
options = pickers.token_options(value_weighted=align.stack.has_value_weights)
zoom = pickers.zoom_picker(align.outputs, align.inputs)
no_mask = np.zeros((len(align.outputs), len(align.inputs)), dtype=bool)
weighted = options.value_weighted
matrices = {
    f"layer {layer}, head {head}": align.head(layer, head, weighted),
    f"layer {layer}, mean over heads": align.layer_mean(layer, weighted),
    "mean over all layers and heads": align.overall_mean(weighted),
}
if align.stack.n_layers == align.stack.n_heads == 1:  # one attention: the three matrices are one
    matrices = {"α: the decoder's weights over the encoder states": align.head(0, 0)}
# Side by side for short inputs; tabs when the matrices need the full width to stay legible.
wide = max(no_mask.shape) > 16
places = st.tabs(list(matrices)) if wide else st.columns(len(matrices))
shown = {}
for i, (place, (title, weights)) in enumerate(zip(places, matrices.items(), strict=True)):
    view = matrix_view(weights, align.outputs, align.inputs, no_mask, options)
    with place:
        shown[title] = render.heatmap(view, title, key=f"alignment_{i}", zoom=zoom, colorscale="gray")
st.caption("Black = 0, white = the largest weight in the matrix, as in Bahdanau et al. (2015).")
render.downloads(shown, trace)
