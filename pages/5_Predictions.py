"""What the model head predicts, from the same forward pass: logits → softmax → tokens or labels."""

import html

import numpy as np
import pandas as pd
import streamlit as st

from ui import messages, page, render, views, widgets
from viz import figures
from viz import predictions as P
from viz.architectures import ENCODER


def show_mlm(trace, loaded):
    tok = loaded.tokenizer
    masks = P.fill_mask(trace, tok, k=10)
    if not masks:
        messages.say(
            st.info,
            "Put {mask} in the text to ask the model to fill it — or mask any token below.",
            mask=tok.mask_token,
        )
    for position, candidates in masks.items():
        st.markdown(f"**{messages.literal(tok.mask_token)} at position {position}**")
        show_candidates(candidates, f"mask_{position}")
    seq = trace.tokens["source"]
    choices = [i for i in range(len(seq)) if not seq.special[i] and seq.ids[i] != tok.mask_token_id]
    if choices:
        position = widgets.selectbox(
            "Mask a token and see what the model would put there",
            choices,
            key="mask_position",
            default=None,
            format_func=lambda i: f"{i}: {seq.display[i]}",
        )
        if position is not None:
            masked_text = P.text_with_mask_at(trace, tok, position)
            masked = page.trace_for(masked_text)
            messages.say(st.caption, "Input: {text}", text=masked_text)
            for candidates in P.fill_mask(masked, tok, k=10).values():
                show_candidates(candidates, "masked_choice")


def show_candidates(candidates, key):
    frame = pd.DataFrame(
        {
            "token": [c.token for c in candidates],
            "probability": [c.probability for c in candidates],
            "logit": [c.logit for c in candidates],
        }
    )
    render.chart(figures.weight_bars(frame["probability"].to_numpy(), frame["token"].tolist(), "probability"), key=key)


def show_causal(trace, loaded):
    st.markdown("**Next token after the text**")
    show_candidates(P.next_token(trace, loaded.tokenizer, k=10), "next")
    if len(trace.tokens["source"]) > 1:
        s = P.surprisal(trace)
        labels = [trace.tokens["source"].display[i] for i in s.positions]
        fig = figures.surprisal_bars(s.bits, s.probability, s.rank, labels)
        render.chart(fig, key="surprisal")
    with st.expander("Continue the text (a separate generate call)", expanded=True):
        cols = st.columns(5)
        mode = widgets.radio("Decoding", ["greedy", "sample"], key="decoding", place=cols[0])
        n = widgets.number_input("New tokens", 1, 200, key="new_tokens", default=20, place=cols[1])
        temperature = widgets.number_input("Temperature", 0.05, 5.0, key="temperature", default=0.8, place=cols[2])
        top_k = widgets.number_input("Top-k", 1, 1000, key="top_k", default=50, place=cols[3])
        seed = widgets.number_input("Seed", 0, 10_000, key="seed", place=cols[4])
        limit = page.session_limit()
        settings = (int(n), mode == "sample", float(temperature), int(top_k), int(seed))
        more = views.derived(P.continuation, loaded, trace, limit, *settings, queued=True)
        if more.allowed < more.asked:
            messages.say_cut(limit, more.allowed, more.asked)
        st.markdown(messages.literal(more.prompt) + messages.literal_bold(more.text))


def show_seq2seq(trace, loaded):
    p = P.target_probabilities(trace)
    target = trace.tokens["target"]
    output = loaded.tokenizer.decode(target.ids.tolist(), skip_special_tokens=True)
    st.markdown("**Output:** " + messages.literal(output))
    render.chart(
        figures.weight_bars(p, list(target.display), "probability of each output token when produced"),
        key="target_probs",
    )
    step = widgets.selectbox(
        "The whole distribution at one step", range(len(target)), key="output_step",
        format_func=lambda i: f"step {i + 1}: wrote “{target.display[i]}”",
    )  # fmt: skip
    show_candidates(P.step_candidates(trace, loaded.tokenizer, int(step)), "step_candidates")


def show_classes(trace, loaded):
    rows = P.class_probabilities(trace, loaded.model.config)
    frame = pd.DataFrame(rows, columns=["label", "probability", "logit"])
    render.chart(
        figures.weight_bars(frame["probability"].to_numpy(), frame["label"].tolist(), "p(label)"), key="classes"
    )
    numbers = lambda values: "[" + ", ".join(f"{v:.4f}" for v in values) + "]"  # noqa: E731
    label, probability, _ = max(rows, key=lambda r: r[1])
    messages.say(
        st.markdown,
        f"logits {numbers(frame['logit'])} → softmax {numbers(frame['probability'])} → id2label → **{{label}}** "
        f"({probability:.4f})",
        label=label,
    )
    show_batch(trace, loaded)


BATCH_SECOND = "I hate this so much!"  # the course's second sentence


def show_batch(trace, loaded):
    """The course's two-sentence batch: padding and the attention mask, then logits → softmax → labels."""
    with st.expander("Two sentences in one batch, as in the course (padding and attention mask)"):
        batch = views.derived(P.classify_batch, loaded, (trace.text, BATCH_SECOND), queued=True)
        st.caption(
            "tokenizer(texts, padding=True, truncation=True): the shorter text is padded to the longer one's "
            "length; its attention mask is 0 there, so no token attends to the padding."
        )
        for i, text in enumerate(batch.texts):
            messages.say(st.markdown, "**{text}** → {label}", text=text, label=batch.labels[i])
            rows = [batch.tokens[i], batch.input_ids[i], batch.attention_mask[i]]
            st.dataframe(  # one column mixes a token with numbers: text, so Arrow does not refuse the column
                pd.DataFrame([[str(v) for v in row] for row in rows], index=["token", "input_ids", "attention_mask"]),
                key=f"batch_{i}",
            )
        names = [loaded.model.config.id2label[j] for j in range(batch.logits.shape[1])]
        st.dataframe(
            pd.DataFrame(
                np.concatenate([batch.logits, batch.scores], axis=1),
                columns=[f"logit {n}" for n in names] + [f"p({n})" for n in names],
            ),
            key="batch_logits",
        )


def show_pipeline(trace, loaded):
    """The pipeline's three stages, as the course teaches them, with this input's numbers."""
    seq = trace.tokens["source"]
    st.subheader("The pipeline, stage by stage")
    left, middle, right = st.columns(3)
    left.markdown("**1 · Tokenizer**: text → ids")
    left.dataframe(
        pd.DataFrame({"token": seq.display, "id": seq.ids, "special": seq.special, "attention_mask": 1}),
        hide_index=True,
        height=220,
    )
    middle.markdown("**2 · Model**: ids → logits")
    shapes = [f"input_ids ({1}, {len(seq)})"] + [
        f"{name} (1, {', '.join(map(str, shape))})" for name, shape in trace.output_shapes.items()
    ]
    middle.markdown("  \n".join(f"`{s}`" for s in shapes))
    middle.caption(f"{trace.model_class}: {loaded.model.config.num_hidden_layers} layers, then the task head.")
    right.markdown(
        "**3 · Post-processing**: softmax → " + ("labels (id2label)" if trace.head in LABELLED else "tokens")
    )
    right.caption("The predictions above are these probabilities, sorted.")


PALETTE = ["#fde0dd", "#e0ecf4", "#e5f5e0", "#fff7bc", "#efedf5", "#fee6ce", "#deebf7", "#f0f0f0"]


def show_token_labels(trace, loaded):
    words = P.word_labels(P.token_labels(trace, loaded.model.config), trace)
    labels = sorted({label for _, label, _ in words})
    colour = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
    spans = " ".join(
        f"<span style='background:{colour[label]};padding:2px 4px;border-radius:4px' title='{score:.3f}'>"
        f"{html.escape(word)} <sub>{html.escape(label)}</sub></span>"
        for word, label, score in words
    )
    st.html(f"<div style='line-height:2.2'>{spans}</div>")
    st.dataframe(pd.DataFrame(words, columns=["word", "label", "score"]), hide_index=True)


def show_qa(trace, loaded):
    if not trace.question:
        st.info("Type a question in the sidebar; the text is the context the answer is taken from.")
        return
    spans = P.answer_spans(trace, loaded.tokenizer, k=5)
    if spans:
        st.success(f"**Answer:** {messages.literal(spans[0].text)}  (score {spans[0].score:.3f})")
    st.dataframe(
        pd.DataFrame(
            [(s.text, s.score, s.start, s.end, s.start_logit, s.end_logit) for s in spans],
            columns=["span", "score", "start", "end", "start logit", "end logit"],
        ),
        hide_index=True,
    )


def show_embedding(trace, loaded):
    st.caption(
        "This encoder has no prediction head: it is a sentence-embedding model. Its output is the mean of "
        "the last layer's token vectors, normalised to length 1."
    )
    vector = P.sentence_embedding(trace)
    render.chart(
        figures.vectors_heatmap(vector[None], ["embedding"], f"{len(vector)}-d sentence embedding", height=140),
        key="embedding",
    )
    other = widgets.text_input("Compare with another text", key="compare_text", default="A cat was sitting on a rug.")
    if other.strip():
        st.metric("cosine similarity", f"{P.cosine(vector, P.sentence_embedding(page.trace_for(other))):.3f}")
    labels = widgets.text_input(
        "Candidate labels (comma-separated): zero-shot by similarity",
        key="candidate_labels",
        default="animals, sports, politics, weather",
    )
    names = [x.strip() for x in labels.split(",") if x.strip()]
    if names:
        scores = np.array([P.cosine(vector, P.sentence_embedding(page.trace_for(n))) for n in names])
        render.chart(figures.weight_bars(scores, names, "cosine similarity to each label", ".3f"), key="zeroshot")


LABELLED = ("sequence-classification", "token-classification")
RENDER = {
    "masked-lm": show_mlm,
    "causal-lm": show_causal,
    "seq2seq-lm": show_seq2seq,
    "sequence-classification": show_classes,
    "token-classification": show_token_labels,
    "question-answering": show_qa,
}

page.setup("Predictions")
trace = page.current_trace(recurrent=True)
loaded = page.current_model()
messages.say(
    st.markdown,
    "**{model_class}** — loaded with {auto_class}; head: **{head}**",
    model_class=trace.model_class,
    auto_class=loaded.head.auto_class,
    head=trace.head,
)
if loaded.untrained_head:
    messages.say(
        st.warning,
        "This checkpoint has no trained weights for its {head} head ({modules}…): they would be random, "
        "so no predictions are shown.",
        head=trace.head,
        modules=", ".join(loaded.untrained_head[:4]),
    )
elif trace.head in RENDER:
    RENDER[trace.head](trace, loaded)
elif trace.family == ENCODER:
    show_embedding(trace, loaded)
else:
    st.info("This checkpoint has no task head: it only produces hidden states (see the Hidden states page).")

if trace.output_shapes and not loaded.untrained_head:
    show_pipeline(trace, loaded)
    with st.expander("How the head turns the last hidden state into predictions"):
        st.table(pd.DataFrame(P.head_modules(loaded.model), columns=["module", "layers"]))
        name = next(iter(trace.output_shapes))
        values = trace.logits(slice(-1, None)) if name == "logits" else trace.outputs[name]
        row = values if values.ndim == 1 else values[-1]
        probs = P.softmax(row)
        top = np.argsort(-row)[:10]
        id2label = loaded.model.config.id2label if row.shape[-1] == loaded.model.config.num_labels else None
        names = [id2label[int(i)] if id2label else loaded.tokenizer.decode([int(i)]) for i in top]
        messages.say(
            st.caption,
            "{name} of the last position: raw scores → softmax → probabilities"
            + (" → id2label" if id2label else " → tokens"),
            name=name,
        )
        st.dataframe(
            pd.DataFrame({"id": top, "label / token": names, "logit": row[top], "softmax": probs[top]}), hide_index=True
        )
