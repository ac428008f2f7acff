"""Random tokens, repeated: which heads find the first copy, and what the model loses without them."""

import pandas as pd
import streamlit as st

from ui import messages, page, pickers, render, views, widgets
from viz import figures
from viz.errors import AtlasError
from viz.heads import stack_stats
from viz.induction import PROBE_LENGTHS, control_heads, copy_loss, induction_probe, position_bits, ranked_heads
from viz.models import CAUSAL_LM
from viz.tokens import TokenOptions, matrix_view

RANKED = 10

page.setup("Induction probe")
st.markdown(
    "The probe is the model's start token, *N* random tokens, then the same *N* tokens again. Nothing predicts "
    "the first copy; the second is predictable only by finding the earlier copy and reading the token after it — "
    "what **induction heads** do (Olsson et al. 2022). Heads are ranked by TransformerLens's induction score "
    "over the second copy: the share of attention on the token after the earlier copy of the current one."
)
trace = page.current_trace()  # the sidebar's model (and text, for the pages a ranked head opens on)
loaded = page.current_model()
most = max(PROBE_LENGTHS[0], min(PROBE_LENGTHS[1], (page.session_limit() - 2) // 2))
left, right = st.columns(2)
length = widgets.number_input(
    "Random tokens per copy (N)", PROBE_LENGTHS[0], most, key="probe_length", default=min(50, most), place=left
)
seed = widgets.number_input("Seed", 0, 2**31 - 1, key="probe_seed", place=right)
try:
    probe = induction_probe(loaded.tokenizer, length, seed)
except AtlasError as err:
    messages.say(st.error, "{message}", message=err)
    st.stop()


def read_probe(ablate: tuple[tuple[str, int, int], ...] = ()):
    """The sidebar's model reading the probe (its token ids, not a text), cached like any Trace."""
    return views.safely("Reading the probe…", lambda: page.trace_for(probe.text, token_ids=probe.ids, ablate=ablate))


probe_trace = read_probe()
stack_name = probe_trace.self_stacks[0]  # the stack that reads the probe
stack = probe_trace.stacks[stack_name]
tokens = probe_trace.tokens["source"]
messages.say(
    st.caption,
    f"{len(tokens)} tokens, read by the {stack_name}: {{start}} … second copy from #{probe.second_copy.start}: "
    "{second} …",
    start=" ".join(tokens.display[: probe.first_copy.start + 6]),
    second=" ".join(tokens.display[probe.second_copy.start : probe.second_copy.start + 5]),
)

second_copy = (probe.second_copy.start, probe.second_copy.stop)
scores = views.derived(stack_stats, probe_trace, stack_name, rows=second_copy, what="Scoring every head").scores
induction = scores.scores["induction"]
labels = scores.roles()
ranked = ranked_heads(induction)
st.subheader("Heads ranked by induction score on the second copy")
st.dataframe(
    pd.DataFrame(
        [(layer, head, induction[layer, head], labels[layer, head]) for layer, head in ranked[:RANKED]],
        columns=["layer", "head", "induction score", "roles on the second copy"],
    ),
    hide_index=True,
    column_config={"induction score": st.column_config.NumberColumn(format="%.3f")},
)
render.chart(
    figures.layer_token_heatmap(
        induction, [f"h{h}" for h in range(stack.n_heads)], "induction score on the second copy", "Blues",
        zmin=0.0, zmax=1.0, column="head",
    ),
    key="probe_scores",
)  # fmt: skip
rank = widgets.selectbox(
    "A ranked head",
    range(min(RANKED, len(ranked))),  # a small model has fewer heads than that
    key="probe_rank",
    format_func=lambda r: f"#{r + 1}: layer {ranked[r][0]}, head {ranked[r][1]}",
)
layer, head = ranked[rank]
view = matrix_view(stack.attention(layer, head), tokens, tokens, stack.forbidden(layer), TokenOptions())
render.heatmap(view, f"layer {layer}, head {head} reading the probe", key="probe_map")
st.caption(
    f"An induction head draws a stripe {probe.length - 1} cells left of the diagonal in the second copy: each "
    "token attends to the token after its earlier copy. The buttons open this head on the sidebar's text."
)
pickers.open_head_buttons(stack_name, layer, head, key="probe_open")

if probe_trace.head != CAUSAL_LM.name:
    st.info("The loss per token needs a model that predicts the next token; this one doesn't, so it stops here.")
    st.stop()
st.subheader("In-context learning you can see: loss per token")
most_k = max(2, min(20, len(ranked) // 2))  # leaves k other heads to draw the control from
k = widgets.slider("Switch off the top k induction heads", 1, most_k, key="probe_ablate", default=min(5, most_k))
top, control = ranked[:k], control_heads(ranked, k, seed)
runs = {
    "the model": probe_trace,
    f"top {k} induction heads off": read_probe(ablate=tuple((stack_name, *h) for h in sorted(top))),
    f"{len(control)} random other heads off": read_probe(ablate=tuple((stack_name, *h) for h in control)),
}
bits = {name: position_bits(run) for name, run in runs.items()}
columns = st.columns(len(bits))
base = copy_loss(bits["the model"], probe.second_copy)
for column, (name, values) in zip(columns, bits.items(), strict=True):
    second = copy_loss(values, probe.second_copy)
    column.metric(
        f"second copy, {name}",
        f"{second:.2f} bits/token",
        None if name == "the model" else f"{second - base:+.2f}",
        delta_color="inverse",
    )
st.caption(
    f"First copy (the model): {copy_loss(bits['the model'], probe.first_copy):.2f} bits/token — random tokens are "
    f"unpredictable. Mean surprisal over each copy after its first token. Random heads switched off: "
    + ", ".join(f"L{a}·H{b}" for a, b in control)
    + f" (drawn with seed {seed})."
)
render.chart(
    figures.position_lines(bits, list(tokens.display), "surprisal of each token (bits)", "bits"), key="probe_loss"
)
