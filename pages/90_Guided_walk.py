"""A guided walk from the RNN bottleneck to scaled dot-product attention, on a real model's numbers.

Works on any encoder-decoder; offers the offline dates model, whose attention is easy to read.
"""

import numpy as np
import streamlit as st

from ui import messages, page, widgets
from ui.page import current_model
from viz import diagrams, figures
from viz.architectures import ENCODER_DECODER
from viz.neuron import neuron_view
from viz.predictions import softmax

page.setup("Guided walk: from RNN to attention")
st.header("1 · The bottleneck")
st.markdown(
    "A sequence-to-sequence RNN (Sutskever et al. 2014) reads the input one token at a time into a state, "
    "and writes the output from its **last state alone**. However long the input, everything the decoder "
    "will ever know about it must fit through that one vector:"
)
st.plotly_chart(diagrams.bottleneck_diagram(), key="walk_bottleneck", config={"displayModeBar": False})
st.markdown(
    "Attention removes the bottleneck: at every output step the decoder looks back at **all** the encoder's "
    "states. The rest of this walk follows a real encoder-decoder doing exactly that, with its own numbers."
)
trace = page.current_trace(
    offer=page.Offer(
        (ENCODER_DECODER,), "dates", 1, "The walk follows an encoder-decoder: it reads the cross-attention."
    )
)
if trace.cross_stack is None:  # an encoder-decoder whose cross-attention modules weren't recognised
    st.warning("The walk reads cross-attention, and none was found in this model.")
    st.stop()
source, target = trace.tokens["source"], trace.tokens["target"]
cross, encoder = trace.stacks[trace.cross_stack], trace.stacks[trace.self_stacks[0]]
last = cross.n_layers - 1


def scaling_effect(step: int) -> float:
    """How far scaling moves this step's weights (L1): open where step 4 has something to show."""
    v = neuron_view(cross, last, 0, step)
    return float(np.abs(softmax(np.where(v.masked, -np.inf, v.dots)) - v.weights).sum())


def step_name(i: int) -> str:
    """An output step as a reader says it: its token, its place, what came before."""
    before = f", after “{target.display[i - 1]}”" if i else ", the first"
    return f"“{target.display[i]}” (output token {i + 1} of {len(target)}{before})"


default_step = int(np.argmax([scaling_effect(i) for i in range(len(target))]))
step = int(
    widgets.select_slider(
        "Follow the decoder while it writes…", range(len(target)), key="walk_step", default=default_step,
        format_func=lambda i: f"{i + 1}: “{target.display[i]}”",
    )
)  # fmt: skip
output = current_model().tokenizer.decode(target.ids.tolist(), skip_special_tokens=True)
messages.say(st.markdown, "**Output:** {output}  \nFollowed below: the step that wrote {step}.", output=output,
             step=step_name(step))  # fmt: skip
st.markdown(
    "Below: this model's encoder output for every input token — an RNN decoder would only get a single summary "
    "of them (its last state)."
)
states = trace.hidden_states[encoder.name][-1]
st.plotly_chart(
    figures.vectors_heatmap(states, list(source.display), "encoder output, one row per input token"), key="walk_states"
)

st.header("2 · Look back instead (Bahdanau et al. 2015)")
this_step = slice(step, step + 1)
row = np.mean([cross.head_mean(layer, rows=this_step)[0] for layer in range(cross.n_layers)], axis=0)
st.markdown(
    f"Attention lets each output step look back at **all** encoder states and take a weighted mix. While "
    f"writing {messages.literal(step_name(step))}, this model's weights (all layers and heads averaged) "
    f"put most weight on **{messages.literal(source.display[int(row.argmax())])}**."
)
st.plotly_chart(
    figures.weight_bars(row, list(source.display), "attention weights α over the input tokens"), key="walk_alpha"
)

st.header("3 · Scores from queries and keys")
layer = last
v = neuron_view(cross, layer, 0, step)
st.markdown(
    "Each weight comes from a score: the decoder's **query** vector q against each input token's **key** k — "
    f"a dot product q·k (Luong et al. 2015). Layer {layer}, head 0 of this model, with its real vectors:"
)
st.plotly_chart(figures.weight_bars(v.dots, list(source.display), "q · k for each input token", ".2f"), key="walk_dots")

st.header("4 · Scale, then softmax (Vaswani et al. 2017)")
d = cross.d_head
unscaled = softmax(np.where(v.masked, -np.inf, v.dots))
left, right = st.columns(2)
left.plotly_chart(
    figures.weight_bars(unscaled, list(source.display), "softmax(q·k): without scaling"), key="walk_unscaled"
)
right.plotly_chart(
    figures.weight_bars(v.weights, list(source.display), f"what the model uses (scale {v.scaling:.3g})"),
    key="walk_scaled",
)
st.markdown(
    f"Dot products of {d}-dimensional vectors grow with √{d}; dividing by √d keeps the softmax from "
    "saturating on one key. The right-hand bars are the model's own attention row: their weighted sum of "
    f"values differs from the model's head output by {v.max_output_error:.1e}."
)

st.header("5 · Several heads at once")
st.markdown("Each head has its own W_q, W_k, W_v and so its own idea of what to look at:")
heads = cross.attention(layer, rows=this_step)[:, 0]
columns = st.columns(min(4, len(heads)))
for head in range(len(heads)):
    columns[head % len(columns)].plotly_chart(
        figures.weight_bars(heads[head], list(source.display), f"layer {layer}, head {head}"), key=f"walk_head{head}"
    )

st.header("6 · Self-attention")
st.markdown(
    "Take queries and keys from the **same** sequence and the same mechanism lets every input token look at "
    "every other: the encoder's self-attention (layer 0, mean over heads)."
)
st.plotly_chart(figures.attention_heatmap(encoder.head_mean(0), source.display, source.display), key="walk_self")
