"""How each token's vector changes through the layers, and what each layer would predict."""

import numpy as np
import streamlit as st

from ui import messages, page, pickers, render, views, widgets
from viz import figures
from viz.hidden import dominant_dimensions, layer_cosines, norms, outlier_tokens, pca_2d
from viz.lens import lens_available, logit_lens

LENS_WINDOW = 64  # positions the logit lens reads at most at once
LENS_FEW = 24  # ... and by default: a column for each stays wide enough for its words

page.setup("Hidden states & logit lens")
trace = page.current_trace()
loaded = page.current_model()
names = list(trace.hidden_states)
stack = pickers.one_of_stacks(names, "hidden_stack")
hidden = trace.hidden_states[stack]
tokens = trace.hidden_tokens(stack)
labels = list(tokens.display)

left, right = st.columns(2)
# log10: a few tokens (often the first, an "attention sink") grow norms 100× larger than the rest.
render.chart(
    figures.layer_token_heatmap(np.log10(norms(hidden)), labels, "log₁₀ vector norm (layer 0 = embeddings)"),
    key="norms",
    place=left,
)
render.chart(
    figures.layer_token_heatmap(
        layer_cosines(hidden), labels, "cosine(before, after) of each layer", "RdBu", zmin=-1, zmax=1
    ),
    key="cosines",
    place=right,
)

dominant = dominant_dimensions(hidden)
leave_out = ()
if dominant:
    held = ", ".join(str(d) for d in dominant)
    st.info(
        f"Dimension {held} of the {hidden.shape[-1]} holds most of the variance on its own (a 'massive "
        "activation', Sun et al. 2024): a PCA of all dimensions shows little but that one."
    )
    if widgets.checkbox(f"Leave dimension {held} out of the PCA", key="pca_leave_out"):
        leave_out = tuple(dominant)
outliers, set_aside = outlier_tokens(hidden), ()
if outliers:
    named = ", ".join(
        f"“{labels[t]}” (#{t}, {times:.0f}× the median length in layer {at})" for t, times, at in outliers[:5]
    )
    messages.say(
        st.warning,
        "{count} far longer than the others: {named}. Such a token alone sets the PCA's axes and leaves every "
        "other token in one dot.",
        count=f"{len(outliers)} token vector" + (" is" if len(outliers) == 1 else "s are"),
        named=named + (" …" if len(outliers) > 5 else ""),
    )
    if widgets.checkbox("Leave these tokens out of the PCA", key="pca_leave_outliers"):
        set_aside = tuple(t for t, _, _ in outliers)
projection = pca_2d(hidden, leave_out, set_aside)
layer = widgets.slider("PCA: layer", 0, len(hidden) - 1, key="pca_layer", default=len(hidden) - 1)
render.chart(
    figures.token_scatter(
        projection.coords[layer],
        [label for t, label in enumerate(labels) if t not in set_aside],
        projection.x_range,
        projection.y_range,
        f"token vectors after layer {layer} (one PCA for all layers: "
        f"{projection.explained[0]:.0%} + {projection.explained[1]:.0%} of the variance)",
    ),
    key="pca",
)

st.subheader("Logit lens")
if not lens_available(trace) or loaded.untrained_head:
    st.info("The logit lens reads hidden states through a trained language-model head; this model has none.")
    st.stop()
lens_tokens = trace.hidden_tokens(trace.output_stack)
start, window = 0, len(lens_tokens)
if len(lens_tokens) > LENS_FEW:  # each position costs a full vocabulary projection per layer, and a column
    left, right = st.columns([1, 3])
    window = widgets.slider(
        "Positions", LENS_FEW // 2, min(LENS_WINDOW, len(lens_tokens)), key="lens_positions",
        default=min(LENS_FEW, len(lens_tokens)), place=left,
        help="How many positions the grid reads side by side: fewer keep each column wide enough to read.",
    )  # fmt: skip
    last_start = len(lens_tokens) - window
    start = widgets.slider(
        "From position", 0, last_start, key="lens_start", default=last_start, place=right,
        help="Long texts are read a window at a time: every position costs one projection onto the whole "
        "vocabulary per layer.",
    )  # fmt: skip
lens = views.derived(logit_lens, trace, positions=slice(start, start + window), queued=True)
lens_tokens = lens_tokens.slice(start, start + window)
decode = np.vectorize(lambda i: loaded.tokenizer.decode([int(i)]).strip() or "␣")
top1 = decode(lens.top_ids[..., 0])
hover = np.empty(top1.shape, dtype=object)
for (la, t), _ in np.ndenumerate(top1):  # tokens escaped one by one; the <br> between them is ours
    after = figures.plotly_text([lens_tokens.display[t]])[0]
    hover[la, t] = f"layer {la} · after “{after}”<br>" + "<br>".join(
        f"{figures.plotly_text([decode(i)])[0]}: {p:.3f}"
        for i, p in zip(lens.top_ids[la, t], lens.top_probs[la, t], strict=True)
    )
render.chart(
    figures.layer_token_heatmap(
        lens.top_probs[..., 0],
        list(lens_tokens.display),
        "top-1 prediction at each layer (colour = its probability)",
        "Blues",
        top1,
        hover,
        0,
        1,
    ),
    key="lens",
)
st.caption(
    "Each layer's hidden state is passed through the model's final norm and output head. "
    "The last row is exactly the model's own prediction."
)
