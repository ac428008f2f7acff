"""Switch heads off and see what the model would predict without them (a second, cached pass)."""

import pandas as pd
import streamlit as st

from ui import messages, page, render, widgets
from viz import figures
from viz.ablation import hidden_cosine, prediction_shift
from viz.predictions import top_candidates

page.setup("Head ablation")
trace = page.current_trace()
loaded = page.current_model()
choices = [
    (name, layer, head) for name, s in trace.stacks.items() for layer in range(s.n_layers) for head in range(s.n_heads)
]
label = (lambda c: f"L{c[1]}·H{c[2]}") if len(trace.stacks) == 1 else (lambda c: f"{c[0]} L{c[1]}·H{c[2]}")
# Keep only heads this model has (the selection survives a change of model).
st.session_state["ablate_heads"] = [c for c in st.session_state.get("ablate_heads", []) if c in choices]
picked = widgets.multiselect(
    "Heads to switch off (their outputs are zeroed before the output projection)",
    choices,
    key="ablate_heads",
    format_func=label,
    select_all=False,  # one click on "Select all" switched off all 270 of SmolLM2's heads
)
if not picked:
    st.info("Pick one or more heads. The model then runs once more on the same input without them.")
    st.stop()
ablated = page.variant(ablate=tuple(sorted(picked)))
st.caption(f"Ablated: {', '.join(label(c) for c in sorted(picked))}")

if trace.has_logits:
    kl = prediction_shift(trace, ablated)
    if kl.ndim == 0:  # a classifier: one distribution over labels
        st.metric("KL divergence of the label distribution (bits)", f"{float(kl):.4f}")
    else:
        rows = trace.output_tokens
        render.chart(
            figures.weight_bars(kl, list(rows.display), "KL(original ‖ ablated) per position, bits", ".4f"), key="kl"
        )
        position = int(kl.argmax())
        st.markdown(f"Most affected position: **{messages.literal(rows.display[position])}** (#{position})")
        at = slice(position, position + 1)
        before = top_candidates(trace.logits(at)[0], loaded.tokenizer, 5)
        after = top_candidates(ablated.logits(at)[0], loaded.tokenizer, 5)
        st.dataframe(
            pd.DataFrame(
                {
                    "original": [c.token for c in before],
                    "p": [c.probability for c in before],
                    "ablated": [c.token for c in after],
                    "p ": [c.probability for c in after],
                }
            ),
            hide_index=True,
        )
else:
    stack = next(iter(trace.hidden_states))
    cosine = hidden_cosine(trace.hidden_states[stack], ablated.hidden_states[stack])
    render.chart(
        figures.weight_bars(
            cosine, list(trace.tokens["source"].display), "cosine(last hidden state, ablated) per token", ".4f"
        ),
        key="cosine",
    )
