"""Which heads carry the answer: activation and attribution patching, and gradient attribution beside attention."""

import numpy as np
import pandas as pd
import streamlit as st

from ui import messages, page, pickers, render, views, widgets
from viz import figures
from viz.attribution import METHODS, head_agreement, token_attribution
from viz.errors import AtlasError
from viz.patching import (
    EXAMPLES,
    KIND_HOOKS,
    KINDS,
    METRICS,
    Question,
    answer_position,
    attribution_patching,
    baseline,
    check_pair,
    effects_csv,
    effects_rows,
    patching,
    rows_at_once,
    token_id,
)
from viz.predictions import top_candidates

CANDIDATES = 10  # answers offered: each run's top candidates at the position
EXACT_AT_ONCE = 2  # exact patching starts by itself up to this many batched forward passes; more wait for a click

page.setup("Patching")
st.markdown(
    "**Activation patching** (Meng et al. 2022; Wang et al. 2023): run a corrupted text, copy one activation of "
    "the clean run into it, and see how much of the answer comes back — 1: all of it, 0: none. It finds what a "
    "behaviour runs through, which attention maps alone can't say. **Attribution patching** estimates every "
    "patch at once from one backward pass (Nanda 2023)."
)
trace = page.current_trace()
loaded = page.current_model()
tokenizer = loaded.tokenizer
examples = EXAMPLES.get(loaded.key, ())


def load_example() -> None:
    ex = next(e for e in examples if e.name == st.session_state["patch_example"])
    ids = {"patch_answer": token_id(tokenizer, ex.answer), "patch_wrong": token_id(tokenizer, ex.wrong)}
    st.session_state.update(patch_clean=ex.clean, patch_corrupted=ex.corrupted, **ids)
    st.session_state.pop("patch_position", None)  # the new example's own


if examples:
    st.selectbox("Offline example", [e.name for e in examples], index=None, key="patch_example",
                 placeholder="Load an example…", on_change=load_example)  # fmt: skip
first = examples[0] if examples else None
left, right = st.columns(2)
clean_text = widgets.text_input(
    "Clean text", key="patch_clean", default=first.clean if first else trace.text, place=left
)
corrupted_text = widgets.text_input("Corrupted text (as many tokens)", key="patch_corrupted",
                                    default=first.corrupted if first else trace.text, place=right)  # fmt: skip
clean = views.safely("Reading the clean text…", lambda: page.trace_for(clean_text))
written = clean.tokens.get("target")  # an encoder-decoder's output: the corrupted run is forced to write it too
forced = tokenizer.decode(written.ids.tolist(), skip_special_tokens=True) if written is not None else ""
corrupted = views.safely("Reading the corrupted text…", lambda: page.trace_for(corrupted_text, target=forced))
try:
    check_pair(clean, corrupted)
except AtlasError as err:
    messages.say(st.warning, "{message}", message=err)
    for name, run in (("clean", clean), ("corrupted", corrupted)):
        messages.say(st.caption, "{name}: {tokens}", name=name, tokens=" · ".join(run.tokens["source"].display))
    st.stop()
if not clean.has_logits or clean.logits().ndim == 1:
    st.info("Patching reads the answer from a language model's logits at one position; this model's head has none.")
    st.stop()

rows = clean.output_tokens
default_answer = token_id(tokenizer, first.answer) if first else None
where = answer_position(clean, tokenizer, default_answer if default_answer is not None else -1)
position = pickers.token_picker("Read the answer at", rows, key="patch_position", default=where)
at = slice(position, position + 1)
offered = [c.token_id for run in (clean, corrupted) for c in top_candidates(run.logits(at)[0], tokenizer, CANDIDATES)]
offered = list(dict.fromkeys([i for i in (default_answer, first and token_id(tokenizer, first.wrong)) if i] + offered))
name = lambda i: f"“{tokenizer.decode([int(i)])}” ({i})"  # noqa: E731
cols = st.columns(4)
answer = widgets.selectbox("Answer", offered, key="patch_answer", format_func=name, place=cols[0])
wrong = widgets.selectbox(
    "Wrong answer", offered, key="patch_wrong", default=offered[1], format_func=name, place=cols[1]
)
metric = widgets.selectbox("Metric", METRICS, key="patch_metric", place=cols[2])
direction = widgets.radio(
    "Direction", ["denoising", "noising"], key="patch_direction", place=cols[3],
    help="Denoising: clean activations into the corrupted run. Noising: corrupted ones into the clean run.",
)  # fmt: skip
q = Question(clean, corrupted, position, int(answer), int(wrong), metric, direction == "denoising")

left, right = st.columns([2, 1])
kind = widgets.selectbox("What to patch", list(KINDS), key="patch_kind", format_func=KINDS.get, place=left,
                         default="head_out")  # fmt: skip
names = list(clean.self_stacks) if kind in KIND_HOOKS else list(clean.stack_names)
with right:
    stack = pickers.one_of_stacks(names, "patch_stack", format_func=pickers.STACK_LABELS.get)

estimate = None
try:
    if kind != "head_pattern":
        estimate = views.derived(attribution_patching, loaded, q, kind, stack, queued=True)
    else:
        baseline(loaded, q)  # says whether the question can be answered before offering a run
except AtlasError as err:
    messages.say(st.info, "{message}", message=err)
    st.stop()
forwards = -(-len(estimate.ravel() if estimate is not None else range(999)) // rows_at_once(loaded, q.run))
exact = views.already_derived(patching, loaded, q, kind, stack)
if exact is None and (forwards <= EXACT_AT_ONCE or st.button(f"Run exact patching ({forwards} batched passes)")):
    exact = views.derived(patching, loaded, q, kind, stack, what="Patching, batch by batch", queued=True)
if exact is None:
    st.caption("Exact patching runs every patched forward pass. Until you start it, the attribution estimate shows.")
    st.caption("A run in progress stops when you change anything on the page.")


def shown(values: np.ndarray, title: str, key: str) -> None:
    """A layers × (positions or heads) map on a diverging scale centred on 0 (one position per head map's row)."""
    if values.ndim == 3:  # layer × head × position: one head's row of positions per layer? show heads at a position
        values = values[:, :, position]
        title += f" (at position {position})"
    limit = float(np.abs(values).max()) or 1.0
    labels = (
        [f"h{h}" for h in range(values.shape[1])]
        if kind not in KIND_HOOKS
        else list(q.run.hidden_tokens(stack).display)
    )
    render.chart(figures.layer_token_heatmap(values, labels, title, "RdBu", zmin=-limit, zmax=limit,
                                             column="head" if kind not in KIND_HOOKS else "token"), key)  # fmt: skip


maps = st.columns(2) if exact is not None and estimate is not None else [st.container()]
if exact is not None:
    with maps[0]:
        shown(exact, f"exact patching: {metric}", "patch_exact")
if estimate is not None:
    with maps[-1]:
        shown(estimate, f"attribution patching: {metric} (estimate)", "patch_estimate")
if exact is not None and estimate is not None:
    both = np.stack([exact.ravel(), estimate.ravel()])
    agree = f"{np.corrcoef(both)[0, 1]:.3f}" if both.std(axis=1).all() else "—"
    st.metric("correlation of the estimate with exact patching", agree)
values = exact if exact is not None else estimate
if values is not None:
    table = pd.DataFrame(effects_rows(kind, values), columns=["what", "layer", "head", "position", "value"])
    table = table.astype({"head": "Int64", "position": "Int64"})
    with st.expander("Every patch (a table, and as CSV)"):
        st.dataframe(table.sort_values("value", ascending=False), hide_index=True)
        st.download_button(
            "Patching (CSV)", effects_csv(kind, values), file_name=f"patching-{kind}.csv", mime="text/csv"
        )
    if kind not in KIND_HOOKS and values.ndim == 2:
        order = np.argsort(-values, axis=None)[:10]
        top = [(int(i // values.shape[1]), int(i % values.shape[1])) for i in order]
        pick = widgets.selectbox("Open a head", range(len(top)), key="patch_open",
                                 format_func=lambda r: f"L{top[r][0]}·H{top[r][1]}: {values[top[r]]:.3f}")  # fmt: skip
        pickers.open_head_buttons(stack, *top[pick], key="patch_heads")

st.subheader("Gradient attribution beside attention (Captum)")
method = widgets.selectbox("Method", METHODS, key="patch_attribution", default="input × gradient")
salience = views.derived(token_attribution, loaded, clean, position, int(answer), method, queued=True)
attended = clean.cross_stack or clean.output_stack
agreement = head_agreement(clean, attended, position, salience)
best = np.unravel_index(int(np.argmax(agreement)), agreement.shape)
inputs = list(clean.tokens["source"].display)
render.chart(
    figures.weight_bars(
        salience[: len(inputs)],
        inputs,
        f"{method}: each input token's part in “{tokenizer.decode([int(answer)])}”",
        ".4f",
    ),
    "salience",
)
layer, head = (int(best[0]), int(best[1]))
row = clean.stacks[attended].attention(layer, head, rows=at)[0]
render.chart(
    figures.weight_bars(
        row[: len(inputs)], inputs, f"attention of layer {layer}, head {head} (the head that agrees most)", ".3f"
    ),
    "agreeing_head",
)
heads = [f"h{h}" for h in range(agreement.shape[1])]
agreeing = "Spearman correlation of each head's attention with |attribution|"
render.chart(
    figures.layer_token_heatmap(agreement, heads, agreeing, "RdBu", zmin=-1, zmax=1, column="head"), "agreement"
)
st.caption("Attention says where a head looks; attribution says which inputs the answer depends on. Heads whose "
           "attention ranks the tokens as the attribution does are few (Jain & Wallace 2019).")  # fmt: skip
