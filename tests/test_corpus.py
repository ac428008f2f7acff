"""Corpus runs (issue 23): Ray Data, DuckDB over Parquet, FAISS search, AttentionViz's joint view, the page.

One local Ray serves the module; one 1-worker run and one 2-worker run of the same small corpus (with rows
that can't be read) are shared by the tests."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.apptest import decode, plotly_specs, problems, run_page
from tests.browser import CHROMIUM, open_page, running_app, wait_until_idle
from viz.corpus.engine import prepare, read_spec, run_corpus, start_ray
from viz.corpus.index import TokenIndex
from viz.corpus.inputs import SAMPLE, read_corpus, read_path
from viz.corpus.projection import joint_sample, normalise
from viz.corpus.reading import SCORES
from viz.corpus.store import CorpusStore
from viz.heads import PATTERNS, stack_stats
from viz.models import load_model
from viz.trace import build_trace

ROOT = Path(__file__).resolve().parent.parent
MAX_TOKENS = 40
LONG = "word " * 60  # 60 words: over MAX_TOKENS, so listed, not cut


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    """36 sample sentences with an empty line, a line that isn't UTF-8 and a text over the limit among them."""
    lines = [line.encode() for line in SAMPLE.read_text().splitlines()[:36]]
    lines[3:3] = [b"", b"caf\xe9 au lait", LONG.encode()]  # rows 4, 5, 6
    path = tmp_path_factory.mktemp("corpus") / "texts.txt"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="module")
def ray_local():
    start_ray(workers=2)
    yield
    import ray

    ray.shutdown()


def _run(corpus_file: Path, folder: Path, workers: int) -> Path:
    _, run = prepare(read_path(corpus_file), "minilm", (3,), folder, MAX_TOKENS, shard_size=8)
    run_corpus(run, workers)
    return run


@pytest.fixture(scope="module")
def one_worker(ray_local, corpus_file, tmp_path_factory) -> Path:
    return _run(corpus_file, tmp_path_factory.mktemp("one"), 1)


@pytest.fixture(scope="module")
def two_workers(ray_local, corpus_file, tmp_path_factory) -> Path:
    return _run(corpus_file, tmp_path_factory.mktemp("two"), 2)


def _tables(run: Path) -> dict[str, pd.DataFrame]:
    store = CorpusStore(run)
    order = {
        "scores": "text_id, layer, head",
        "cells": "text_id, layer, head, query, key",
        "tokens": "text_id, position",
    }
    return {t: store.query(f"SELECT * FROM {t} ORDER BY {o}") for t, o in order.items()}


# ------------------------------------------------------------------ the numbers
def test_a_texts_corpus_scores_equal_its_single_text_traces(one_worker, minilm):
    store = CorpusStore(one_worker)
    for text_id in (0, 7, 30):
        trace = build_trace(minilm, store.text(text_id), max_tokens=MAX_TOKENS)
        scores = stack_stats(trace, "encoder").scores  # what the Head roles page shows for this text
        stored = store.text_scores(text_id)
        assert len(stored) == 6 * 12
        for name in PATTERNS:
            np.testing.assert_allclose(stored[name], scores.scores[name].ravel(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(stored.entropy, scores.entropy.ravel(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(stored.distance, scores.distance.ravel(), rtol=1e-6, atol=1e-6)


def test_top_contexts_are_the_heads_strongest_attention_in_the_corpus(one_worker, minilm):
    store = CorpusStore(one_worker)
    layer, head = 2, 5
    best = []
    for text_id in store.query("SELECT DISTINCT text_id FROM tokens").text_id:
        trace = build_trace(minilm, store.text(int(text_id)), max_tokens=MAX_TOKENS)
        weights = trace.stacks["encoder"].attention(layer, head).copy()
        special = trace.tokens["source"].special
        weights[:, 0] = weights[:, special] = weights[special, :] = 0
        np.fill_diagonal(weights, 0)
        q, k = np.unravel_index(weights.argmax(), weights.shape)
        best.append((float(weights[q, k]), int(text_id), int(q), int(k)))
    best.sort(reverse=True)
    top = store.top_cells(layer, head, 3)
    assert list(zip(top.text_id, top["query"], top["key"], strict=True)) == [b[1:] for b in best[:3]]
    np.testing.assert_allclose(top.weight, [b[0] for b in best[:3]], rtol=1e-6)
    context = store.contexts(layer, head, 1).context[0]
    tokens = store.tokens(best[0][1])
    assert f"«{tokens[best[0][2]]}»" in context and f"[{tokens[best[0][3]]}]" in context


def test_two_workers_give_what_one_gives(one_worker, two_workers):
    """Equal up to float32 rounding: one worker's torch uses two threads, two workers one each."""
    a, b = _tables(one_worker), _tables(two_workers)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=False, rtol=1e-5, atol=1e-6)
    vector = np.random.default_rng(0).normal(size=384).astype(np.float32)
    hits = [TokenIndex(run, 3).search(vector, 5) for run in (one_worker, two_workers)]
    assert hits[0].text_ids.tolist() == hits[1].text_ids.tolist()


def test_rows_that_cant_be_read_are_reported_not_fatal(one_worker):
    report = json.loads((one_worker / "report.json").read_text())
    reasons = {row["row"]: row["reason"] for row in report["left_out"]}
    assert set(reasons) == {4, 5, 6}
    assert reasons[4] == "empty" and reasons[5].startswith("not UTF-8") and "over the limit" in reasons[6]
    assert report["texts_read"] == 36 and report["texts_in_file"] == 39


def test_a_killed_run_resumes_with_every_text_once(one_worker, corpus_file, tmp_path):
    """Kill the command-line run (and its Ray) after two shards; the same command finishes it."""
    options = {"--model": "minilm", "--input": corpus_file, "--layers": 3, "--max-tokens": MAX_TOKENS,
               "--shard-size": 4, "--workers": 1, "--out": tmp_path}  # fmt: skip
    command = [sys.executable, "-m", "viz.corpus", *(str(x) for pair in options.items() for x in pair)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
    shards = lambda: [p for p in tmp_path.glob("*/shards/[0-9]*") if p.is_dir()]  # noqa: E731
    deadline = time.time() + 240
    while len(shards()) < 2 and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    run = next(tmp_path.glob("*/run.json")).parent
    written = len(shards())
    assert 2 <= written < read_spec(run).n_shards  # killed part-way
    run_corpus(run, workers=2)  # the same run, resumed (in this process's Ray)
    again, whole = _tables(run), _tables(one_worker)
    assert not again["scores"].duplicated(["text_id", "layer", "head"]).any()
    assert again["tokens"].text_id.nunique() == 36
    for name in whole:
        pd.testing.assert_frame_equal(again[name], whole[name], check_exact=False, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ search and the joint view
def test_search_finds_the_token_itself_first(one_worker, minilm):
    store = CorpusStore(one_worker)
    index = TokenIndex(one_worker, 3)
    for text_id, position in ((2, 3), (25, 5)):
        trace = build_trace(minilm, store.text(text_id), max_tokens=MAX_TOKENS)
        hits = index.search(trace.hidden_states["encoder"][3][position], 5)
        assert (int(hits.text_ids[0]), int(hits.positions[0])) == (text_id, position)
        assert hits.similarity[0] > 0.999 and hits.similarity[1] < hits.similarity[0]
    assert len(index) == len(store.query("SELECT * FROM tokens"))


@pytest.mark.parametrize("model, layer, head", [("minilm", 2, 3), ("smollm2", 5, 7)])
def test_the_joint_views_translation_and_scaling_leave_every_softmax_unchanged(model, layer, head):
    loaded = load_model(model)
    texts = tuple(enumerate(SAMPLE.read_text().splitlines()[:6]))
    sample = joint_sample(loaded, texts, layer, head, MAX_TOKENS)
    q, k = normalise(sample.vectors[sample.is_query], sample.vectors[~sample.is_query])
    assert not np.allclose(k, sample.vectors[~sample.is_query])  # it did move the keys
    queried, keyed = sample.text_ids[sample.is_query], sample.text_ids[~sample.is_query]
    for text_id, text in texts:
        trace = build_trace(loaded, text, max_tokens=MAX_TOKENS)
        stack = trace.stacks[trace.self_stacks[0]]
        scores = torch.from_numpy(q[queried == text_id] @ k[keyed == text_id].T * sample.scaling)
        if stack.causal:
            scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), float("-inf"))
        np.testing.assert_allclose(scores.softmax(-1).numpy(), stack.attention(layer, head), atol=2e-5)


# ------------------------------------------------------------------ files
def test_tables_and_json_lines_are_read_by_their_text_column():
    frame = pd.DataFrame({"id": [1, 2, 3], "body": ["One text.", "", "Three."]})
    csv = read_corpus(frame.to_csv(index=False).encode(), "x.csv", "body")
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    parquet = read_corpus(buffer.getvalue(), "x.parquet", "body")
    jsonl = read_corpus(b'{"body": "One text."}\n{"body": 7}\nnot json\n{"body": "Three."}\n', "x.jsonl", "body")
    assert csv.texts == parquet.texts == jsonl.texts == ["One text.", "Three."]
    assert [b.reason for b in jsonl.bad] == ["not text", "not a JSON line (JSONDecodeError)"]
    with pytest.raises(ValueError, match="no column named 'text'"):
        read_corpus(frame.to_csv(index=False).encode(), "x.csv")


# ------------------------------------------------------------------ the page
def test_the_page_shows_a_runs_heads_contexts_joint_view_and_search(one_worker, monkeypatch):
    monkeypatch.setenv("ATLAS_CORPUS_DIR", str(one_worker.parent))
    store = CorpusStore(one_worker)
    text = store.text(9)
    at = run_page("pages/15_Corpus.py", model="minilm", text=text, corpus_head="L2·H5", corpus_measure="induction")
    assert problems(at) == []
    tables = {tuple(d.value.columns)[:2]: d.value for d in at.dataframe}
    contexts = tables[("weight", "query")]
    pd.testing.assert_frame_equal(contexts.reset_index(drop=True), store.contexts(2, 5), check_dtype=False)
    specs = {s["layout"]["title"]["text"].split(":")[0]: s for s in plotly_specs(at)}
    histograms = specs["L2·H5 across 36 texts"]
    expected = store.head_scores(2, 5)
    for trace, name in zip(histograms["data"], SCORES, strict=True):
        np.testing.assert_allclose(decode(trace["x"]), expected[name], rtol=1e-6)
    joint = specs["L2·H5"]  # "L2·H5: n queries and n keys from … texts, PCA"
    assert {t["name"] for t in joint["data"]} == {"queries", "keys"}
    found = tables[("similarity", "token")]
    first_word = 1  # the sidebar's text is corpus text 9: its first word finds itself
    assert (found.text_id[0], found.position[0]) == (9, first_word)
    at.selectbox(key="corpus_open").set_value(1).run()  # the second strongest context: open its text in the maps
    next(b for b in at.button if b.label == "Open in the maps: L2·H5").click().run()
    assert problems(at) == []
    assert at.text_area(key="text").value == store.text(int(contexts.text_id[1]))
    assert (at.slider(key="layer").value, at.slider(key="head").value) == (2, 5)


def test_the_page_runs_the_offline_sample(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("ATLAS_CORPUS_DIR", str(tmp_path))
    at = run_page("pages/15_Corpus.py", model="minilm", text="The cat sat on the mat.", corpus_size=20)
    assert problems(at) == [] and any("No corpus run yet" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Run").click().run()
    assert problems(at) == []
    assert any("read 20 of 20 texts" in c.value for c in at.caption)
    assert at.selectbox(key="corpus_run").value == next(tmp_path.glob("*/run.json")).parent.name


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_a_click_on_a_ranked_head_opens_exactly_that_head(one_worker, chromium):
    """In Chromium: clicking the n-th bar of the ranking opens the n-th ranked head (its histograms and contexts)."""
    summary = CorpusStore(one_worker).head_summary("previous token")
    ranked = summary.sort_values(["mean", "layer", "head"], ascending=[False, True, True])
    with running_app(ATLAS_CORPUS_DIR=str(one_worker.parent)) as server:
        page = open_page(chromium, f"{server.url}/Corpus?model=minilm&text=I+always+turn+to+the+sports+pages.")
        bars = page.locator(".js-plotly-plot").first.locator(".barlayer .point")
        bars.first.wait_for(timeout=120_000)
        for rank in (4, 1):
            layer, head = (int(x) for x in ranked.iloc[rank][["layer", "head"]])
            wait_until_idle(page)
            bars.nth(rank).click(force=True)
            page.wait_for_function(  # that head's histograms are drawn
                "want => [...document.querySelectorAll('.js-plotly-plot .gtitle')]"
                ".some(t => t.textContent.startsWith(want))",
                arg=f"L{layer}·H{head} across 36 texts",
                timeout=60_000,
            )
            wait_until_idle(page)
            assert page.get_by_text(f"L{layer}·H{head}: its strongest attention in the corpus").count() == 1
        assert page.external == [] and page.dialogs == []
        page.close()
