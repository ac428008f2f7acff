"""One head, one query token: the four steps of scaled dot-product attention with real numbers."""

import numpy as np
import pandas as pd
import streamlit as st

from ui import messages, page, pickers, render
from viz import figures
from viz.neuron import neuron_view

COURSE = {"text": "time flies like an arrow", "layer": 0, "head": 8}
KEY_ROWS = 48  # long inputs: the vector heatmaps show the keys with the largest weights, the table shows all


def load_course_preset() -> None:
    st.session_state.update(COURSE)


page.setup("Neuron view")
st.button("Course example: “time flies like an arrow”, layer 0, head 8", on_click=load_course_preset)
trace = page.current_trace()
stack_name = pickers.stack_picker(trace)
stack = trace.stacks[stack_name]
messages.say(
    st.caption,
    "The course notes draw this example on bert-base-uncased (12 layers × 12 heads, 768 dimensions, 64 per head). "
    f"Here it runs on {{model}}: {stack.n_layers} layers × {stack.n_heads} heads, "
    f"{stack.n_heads * stack.d_head} dimensions, {stack.d_head} per head — other weights, so layer 0, head 8 "
    "need not show the same pattern.",
    model=trace.model_name,
)
layer, head = pickers.layer_head_picker(stack)
rows, cols = trace.stack_tokens(stack_name)
# A decoder's first token can only see itself: open on its last token, which sees the whole text.
query = pickers.token_picker(
    "Query token (the row that attends)", rows, key="query", default=len(rows) - 1 if stack.causal else 0
)
v = neuron_view(stack, layer, head, query)
keys = list(cols.display)
q_label = f"q ({rows.display[query]})"
shown = v.strongest(KEY_ROWS)
shown_keys = [f"#{j} {keys[j]}" if len(shown) < len(keys) else keys[j] for j in shown]

st.subheader("1 · Project: query, keys and values")
st.caption(
    "The model multiplied each token's hidden state by this head's W_q, W_k and W_v. "
    + f"Positions: {page.current_model().adapter.positions}. "
    + (
        f"Grouped-query attention: this head shares keys and values with {stack.n_heads // stack.kv_heads - 1} other "
        "heads. "
        if stack.kv_heads < stack.n_heads
        else ""
    )
)
render.chart(figures.vectors_heatmap(v.query[None], [q_label], "query vector q", height=150), key="q")
if len(shown) < len(keys):
    st.caption(
        f"{len(keys):,} keys: the vectors below are the {len(shown)} keys with the largest weights, in text order; "
        "the score table has every key."
    )
left, right = st.columns(2)
render.chart(figures.vectors_heatmap(v.keys[shown], shown_keys, "key vectors k_j"), key="k", place=left)
render.chart(
    figures.vectors_heatmap(v.products[shown], shown_keys, "q ⊙ k_j (elementwise; each row sums to q · k_j)"),
    key="qk",
    place=right,
)

st.subheader("2 · Score: q · k_j, scaled" + (", plus position bias" if v.bias is not None else "") + ", masked")
table = pd.DataFrame({"key token": keys, "q · k": v.dots, "× scale": v.dots * v.scaling})
if v.bias is not None:
    table["+ position bias"] = v.dots * v.scaling + v.bias
table["masked"] = v.masked
table["score"] = np.where(v.masked, -np.inf, v.scores)
table["softmax weight"] = v.weights
scale_text = "1 (T5 does not scale)" if v.scaling == 1.0 else f"{v.scaling:.5f} = 1/√{round(v.scaling**-2)}"
st.caption(f"scale = {scale_text}. Masked keys get −∞ and so weight 0.")
st.dataframe(table, hide_index=False, width="stretch")

st.subheader("3 · Weigh: softmax over the scores")
weights_figure = figures.weight_bars if len(keys) <= figures.HOVER_LABEL_LIMIT else figures.attention_line
render.chart(weights_figure(v.weights, keys, f"attention weights of {q_label}"), key="w")
st.caption("Recomputed here, step by step, from the q and k the model captured.")

st.subheader("4 · Mix: the weighted sum of the value vectors")
left, right = st.columns(2)
render.chart(figures.vectors_heatmap(v.weighted_values[shown], shown_keys, "w_j · v_j"), key="wv", place=left)
render.chart(
    figures.vectors_heatmap(
        np.stack([v.output, v.model_output]), ["Σ_j w_j v_j", "model's own head output"], "head output", height=170
    ),
    key="out",
    place=right,
)
st.caption(
    f"Largest difference to the head output the model's own attention kernel computed: {v.max_output_error:.1e}."
)
