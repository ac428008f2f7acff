"""Heads across a corpus: score distributions, top contexts, AttentionViz's joint query–key view, search."""

import os

import numpy as np
import streamlit as st

from ui import messages, page, pickers, render, views, widgets
from viz.corpus.engine import list_runs, prepare, run_corpus, runs_folder
from viz.corpus.figures import COLOR_BY, joint_figure, ranked_heads_figure, score_histograms
from viz.corpus.index import TokenIndex
from viz.corpus.inputs import read_corpus, sample_corpus
from viz.corpus.projection import MAX_POINTS, METHODS, joint_sample, project
from viz.corpus.reading import SCORES
from viz.corpus.search import head_there, nearest_tokens
from viz.corpus.store import CorpusStore, load_report
from viz.figures import clicked_customdata, clicked_layer_head

page.setup("Corpus")
page.current_trace()  # the sidebar's model starts runs and its text is searched for: a model with layers × heads
ss = st.session_state
st.markdown(
    "One sentence shows what a head did once; a corpus shows what it does. A run reads every text once "
    "(on Ray: local by default, a cluster given `RAY_ADDRESS`), stores each head's scores per text with DuckDB "
    "over Parquet, and indexes contextual embeddings with FAISS. Runs also start from the command line: "
    "`python3 -m viz.corpus --model minilm --input texts.txt`."
)


def progress_text(p) -> str:
    left = f" · {p.seconds_left:.0f} s left" if p.seconds_left is not None else ""
    return f"{p.texts_done:,} of {p.texts_total:,} texts · {p.texts_per_second:.1f} texts/s{left}"


def new_run() -> None:
    """Start (or resume) a run of the sidebar's model on the sample or an uploaded file."""
    if views.policy().public:
        st.caption("This server only shows runs made by its operator (`python3 -m viz.corpus`).")
        return
    with st.expander("New run (or resume one) with the sidebar's model", expanded=not list_runs(runs_folder())):
        source = widgets.radio("Texts", ("the offline sample (fortunes)", "a file"), key="corpus_source")
        if source == "a file":
            upload = st.file_uploader("One text per line (.txt), or .csv / .jsonl / .parquet", key="corpus_file")
            column = widgets.text_input("Text column (tables)", key="corpus_column", default="text")
        else:
            size = widgets.number_input("Sentences (of 3,000)", 10, 3000, key="corpus_size", default=300, step=50)
        layers = page.current_model().model.config.num_hidden_layers
        indexed = widgets.multiselect("Layers to index for search", list(range(layers + 1)), key="corpus_layers",
                                      default=[max(1, layers // 2)])  # fmt: skip
        workers = widgets.number_input("Ray workers", 1, max(1, os.cpu_count() or 1), key="corpus_workers", default=2)
        if not st.button("Run", type="primary"):
            return
        try:
            corpus = (
                sample_corpus(int(size)) if source != "a file" else read_corpus(upload.getvalue(), upload.name, column)
            )
            _, run = prepare(corpus, ss["model"], tuple(indexed), runs_folder())
        except (ValueError, AttributeError) as err:  # no file, a table without the column, a broken file
            messages.say(st.error, "This file can't be read: {message}", message=err if upload else "no file")
            return
        bar = st.progress(0.0, text="Starting Ray and the model…")
        run_corpus(run, int(workers), lambda p: bar.progress(p.texts_done / p.texts_total, text=progress_text(p)))
        ss["corpus_run"] = run.name
        st.rerun()


new_run()
runs = {path.name: (path, spec) for path, spec in list_runs(runs_folder())}
if not runs:
    st.info("No corpus run yet: start one above (the offline sample takes about a minute).")
    st.stop()
label = lambda name: f"{runs[name][1].model} · {runs[name][1].source} · {runs[name][1].n_texts:,} texts"  # noqa: E731
chosen = widgets.selectbox("Run", list(runs), key="corpus_run", format_func=label)
run, spec = runs[chosen]
report = load_report(run)
if report is None:
    messages.say(st.warning, "This run stopped part-way: start it again above (same texts, same model) to finish it.")
    st.stop()
store = CorpusStore(run)  # a DuckDB connection per script run: connections are not shared across threads
left_out = report["left_out"]
read, total, mb = report["texts_read"], report["texts_in_file"], report["bytes_on_disk"] / 1e6
messages.say(st.caption, f"{{model}} read {read:,} of {total:,} texts; {len(left_out)} left out; {mb:.1f} MB on "
             f"disk, of which the search index {report['index_bytes'] / 1e6:.1f} MB.", model=spec.model)  # fmt: skip
if left_out:
    with st.expander(f"Rows left out ({len(left_out)})"):
        st.dataframe(left_out, hide_index=True)

st.header("Heads across the texts")
measure = widgets.selectbox("Measure", SCORES, key="corpus_measure")
by = widgets.radio("Rank heads by", ("mean", "spread"), key="corpus_rank", horizontal=True)
summary = store.head_summary(measure)
heads = [f"L{layer}·H{head}" for layer, head in zip(summary.layer, summary["head"], strict=True)]


def open_clicked_head() -> None:  # a callback: it runs when the selection changes, before the Head box is drawn
    points = ss["corpus_ranked"]["selection"]["points"]
    if points:
        ss["corpus_head"] = "L{}·H{}".format(*clicked_layer_head(points[0]))


render.chart(ranked_heads_figure(summary, measure, by), key="corpus_ranked", on_select=open_clicked_head,
                selection_mode="points")  # fmt: skip
with st.expander("Every head (table)"):
    st.dataframe(summary.sort_values(by, ascending=False), hide_index=True)
picked = widgets.selectbox("Head", heads, key="corpus_head")
layer, head = (int(part[1:]) for part in picked.split("·"))
render.chart(score_histograms(store.head_scores(layer, head), layer, head), key="corpus_histograms")
top = store.top_texts(layer, head, measure, 5)
st.markdown(f"**Texts where L{layer}·H{head} scores highest on {measure}**")
st.dataframe(top, hide_index=True)

st.subheader(f"L{layer}·H{head}: its strongest attention in the corpus")
st.caption("Each row one (query, key) cell: the query in «», the key in [ ]; cells between the text's own "
           "tokens: the first token as key, the query itself and special tokens left out.")  # fmt: skip
contexts = store.contexts(layer, head)
trace = page.trace_for(ss["text"], model=spec.model)  # the sidebar's text read by the run's model: searched below
stack = trace.self_stacks[0]  # the stack the run read
st.dataframe(contexts, hide_index=True, key="corpus_contexts")
if len(contexts):
    opened = widgets.selectbox("Open a context's text", range(len(contexts)), key="corpus_open",
                               format_func=lambda i: f"{i + 1}: {contexts.context[i][:90]}")  # fmt: skip
    text = store.text(int(contexts.text_id[opened]))
    pickers.open_head_buttons(stack, layer, head, key="corpus_open_head", also={"text": text, "model": spec.model})

st.header("Queries and keys together (AttentionViz)")
st.markdown(
    f"L{layer}·H{head}'s query and key vectors from a sample of the texts (at most {MAX_POINTS:,} points), keys "
    "translated and both rescaled as AttentionViz does — no attention weight changes — so a query lies near the "
    "keys it attends to. Hover for the token in its text."
)
left, middle, right = st.columns(3)
method = widgets.radio("Projection", METHODS, key="corpus_projection", place=left, horizontal=True)
color_by = widgets.radio("Colour by", COLOR_BY, key="corpus_color", place=middle, horizontal=True)
seed = widgets.number_input("Sample seed", 0, 10_000, key="corpus_seed", place=right)
read_ids = store.query("SELECT DISTINCT text_id FROM tokens ORDER BY text_id").text_id.to_numpy()
sampled = np.random.default_rng(int(seed)).permutation(read_ids)[:400]
loaded = views.cached_model(spec.model, ss["device"], ss["dtype"])
texts = tuple((int(t), store.text(int(t))) for t in sampled)
sample = views.derived(joint_sample, loaded, texts, layer, head, spec.max_tokens)
points = views.derived(project, sample, method, int(seed))
title = (f"L{layer}·H{head}: {int(sample.is_query.sum()):,} queries and {int((~sample.is_query).sum()):,} keys "
         f"from {len(set(sample.text_ids.tolist()))} texts, {method}")  # fmt: skip
picked_point = render.chart(joint_figure(sample, points, color_by, title), key="corpus_joint", on_select="rerun",
                               selection_mode="points")  # fmt: skip
if picked_point and picked_point.selection.points:  # a click: that token's text, to read or open in the maps
    text_id, position = clicked_customdata(picked_point.selection.points[0])
    clicked_text = store.text(text_id)
    messages.say(st.markdown, "**Text {text_id}, token {position}:** {text}", text_id=text_id, position=position,
                 text=clicked_text)  # fmt: skip
    pickers.open_head_buttons(
        stack, layer, head, key="corpus_joint_open", also={"text": clicked_text, "model": spec.model}
    )

st.header("Search the corpus by meaning (exBERT)")
if not spec.layers:
    st.info("This run indexed no layer: start it with layers to index to search it.")
    st.stop()
tokens = trace.tokens[trace.stacks[stack].queries_from]
left, right = st.columns(2)
first_word = int(np.argmin(tokens.special))  # not [CLS]: every text's [CLS] is alike
position = widgets.selectbox("A token of the sidebar's text", range(len(tokens)), key="corpus_token", place=left,
                             default=first_word, format_func=lambda i: f"{i}: {tokens.display[i]}")  # fmt: skip
hidden_layer = widgets.selectbox("Layer (hidden state after it)", spec.layers, key="corpus_search_layer", place=right)
index = views.derived(TokenIndex, run, hidden_layer)
found, hits = nearest_tokens(store, index, trace.hidden_states[stack][hidden_layer][position])
there = [head_there(page.trace_for(store.text(t), model=spec.model), layer, head, p)
         for t, p in zip(found.text_id, found.position, strict=True)]  # fmt: skip
found[f"L{layer}·H{head} looks at"] = [f"{token} ({weight:.2f})" for token, weight in there]
st.dataframe(found, hide_index=True)
st.caption(f"{len(index):,} tokens indexed at layer {hidden_layer} ({index.nbytes / 1e6:.1f} MB, {spec.index}); this "
           f"search took {hits.seconds * 1000:.1f} ms.")  # fmt: skip
