"""Generation step by step (issue 24): sampling equals transformers' generate, the cut-offs their definitions,
each step's attention row the Trace of that prefix, the KV cache its tensors' sizes; the page."""

import os

import numpy as np
import pytest
import torch

from tests.apptest import decode, plotly_specs, problems, run_page
from tests.browser import CHROMIUM
from viz.generation import Sampling, generate
from viz.lesson import lesson_html
from viz.models import load_model
from viz.sampling_figures import generation_sections
from viz.trace import build_trace

PROMPT = "The capital of France is"
DATE = "the 3rd of march 1999"
CASES = [("smollm2", PROMPT, Sampling(0.8, 50, 0.95, 3)), ("dates", DATE, Sampling(1.3, 0, 0.9, 11))]


def _ids(loaded, text):
    return tuple(build_trace(loaded, text).tokens["source"].ids.tolist())


@pytest.mark.parametrize("key, text, sampling", CASES)
def test_a_seed_reproduces_transformers_generate(key, text, sampling):
    loaded = load_model(key)
    ids = _ids(loaded, text)
    ours = generate(loaded, ids, sampling, 12)
    torch.manual_seed(sampling.seed)
    theirs = loaded.model.generate(
        torch.tensor([ids]), do_sample=True, temperature=sampling.temperature, top_k=sampling.top_k,
        top_p=sampling.top_p, max_new_tokens=12, num_beams=1,
    )[0].tolist()  # fmt: skip
    theirs = theirs[1:] if loaded.model.config.is_encoder_decoder else theirs[len(ids) :]
    assert list(ours.tokens) == theirs[: len(ours.tokens)] and len(ours.tokens) == len(theirs)
    assert len(set(ours.tokens)) > 1


def _kept_by_definition(logits: np.ndarray, sampling: Sampling) -> np.ndarray:
    """Top-k then top-p from their definitions: the k largest scores (ties kept), then the smallest set of most
    probable tokens whose probability reaches p (of what top-k left)."""
    scores = logits / sampling.temperature
    kept = np.ones_like(scores, dtype=bool)
    if sampling.top_k:
        kept &= scores >= np.sort(scores)[-sampling.top_k]
    probabilities = np.where(kept, np.exp(scores - scores.max()), 0.0)
    probabilities /= probabilities.sum()
    order = np.argsort(-probabilities, kind="stable")
    before = np.cumsum(probabilities[order]) - probabilities[order]  # mass of the more probable tokens
    nucleus = np.zeros_like(kept)
    nucleus[order[before < sampling.top_p]] = True
    return kept & nucleus


@pytest.mark.parametrize("key, text, sampling", CASES)
def test_the_cut_offs_are_top_k_and_top_p_by_their_definitions(key, text, sampling):
    loaded = load_model(key)
    run = generate(loaded, _ids(loaded, text), sampling, 6)
    for step in run.steps:
        kept = np.isfinite(step.scores)
        np.testing.assert_array_equal(kept, _kept_by_definition(step.logits.astype(np.float64), sampling))
        assert kept[step.token]  # what was drawn was allowed
        np.testing.assert_allclose(step.probabilities.sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("key, text, sampling", CASES)
def test_each_steps_kv_cache_is_its_tensors_size(key, text, sampling):
    loaded = load_model(key)
    ids = _ids(loaded, text)
    run = generate(loaded, ids, sampling, 5)
    config = loaded.model.config
    layers = config.num_hidden_layers if not config.is_encoder_decoder else config.decoder_layers
    trace = build_trace(loaded, text)
    stack = trace.stacks[trace.output_stack]
    for index, step in enumerate(run.steps):
        positions = len(run.start) + index  # everything read so far, the newest token included
        per_layer = 2 * stack.kv_heads * positions * stack.d_head * 4  # keys and values, float32
        assert step.cache.positions == positions and step.cache.self_bytes == (per_layer,) * layers
        assert step.reused == (positions - 1 if index else 0)
        if config.is_encoder_decoder:  # the source's keys and values, made once
            cross = trace.stacks[trace.cross_stack]
            assert step.cache.cross_bytes == (2 * cross.kv_heads * len(ids) * cross.d_head * 4,) * layers


@pytest.mark.parametrize("key, text", [("smollm2", PROMPT), ("dates", DATE)])
def test_the_page_shows_each_steps_attention_row_as_the_prefix_trace_has_it(key, text):
    at = run_page("pages/16_Generation.py", model=key, text=text, gen_tokens=6, gen_step=4, layer=1, head=2)
    assert problems(at) == []
    loaded = load_model(key)
    sampling = Sampling(at.slider(key="gen_temperature").value, at.number_input(key="gen_top_k").value,
                        at.slider(key="gen_top_p").value, at.number_input(key="gen_seed").value)  # fmt: skip
    ids = _ids(loaded, text)
    run = generate(loaded, ids, sampling, 6)
    step = 3  # the slider counts from 1
    if loaded.model.config.is_encoder_decoder:  # the decoder has read its start token and tokens[:step]
        prefix = build_trace(loaded, text, target_ids=run.tokens[: step + 1])
    else:
        prefix = build_trace(loaded, text, token_ids=ids + run.tokens[:step])
    stack = prefix.stacks[prefix.output_stack]
    query = len(run.start) - 1 + step
    expected = stack.attention(1, 2, rows=slice(query, query + 1), cols=slice(0, query + 1))[0]
    bars = next(s for s in plotly_specs(at) if s["layout"]["title"]["text"] == "layer 1, head 2")
    np.testing.assert_allclose(decode(bars["data"][0]["y"]), expected, atol=1e-5)
    written = loaded.tokenizer.decode(list(run.tokens), skip_special_tokens=True)
    squeezed = lambda text: "".join(text.replace("\\", "").split())  # noqa: E731 -- Markdown escapes, line breaks
    assert any(squeezed(written) in squeezed(m.value) for m in at.markdown)
    distribution = next(s for s in plotly_specs(at) if s["layout"]["title"]["text"].startswith("Next token"))
    colors = distribution["data"][0]["marker"]["color"]
    assert colors.count("#d95f02") == 1  # one token drawn, marked
    assert at.query_params["gen_step"] == "4"


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_the_lesson_file_opens_offline_with_every_step(chromium, tmp_path):
    loaded = load_model("smollm2")
    ids = _ids(loaded, PROMPT)
    run = generate(loaded, ids, CASES[0][2], 4)
    trace = build_trace(loaded, PROMPT, token_ids=ids + run.tokens)
    stack, tokens = trace.stacks["decoder"], trace.tokens["source"].display
    rows = [(list(tokens[: q + 1]), stack.attention(0, 1, rows=slice(q, q + 1), cols=slice(0, q + 1))[0])
            for q in range(len(ids) - 1, len(ids) - 1 + len(run.steps))]  # fmt: skip
    piece = lambda t: loaded.tokenizer.decode([t])  # noqa: E731
    hostile = "<script>window.ran = 1</script> lesson"
    path = tmp_path / "lesson.html"
    path.write_text(lesson_html(hostile, generation_sections(run, piece, rows, "layer 0, head 1"), "http://x/?a=1"))
    page = chromium.new_page()
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page.goto(path.as_uri())
    page.wait_for_function(f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {4 * len(run.steps)}")
    assert requests == [path.as_uri()]  # nothing fetched: plotly's JavaScript is in the file
    assert page.evaluate("window.ran") is None and hostile in page.inner_text("h1")  # shown, never run
    bars = page.evaluate("document.getElementById('figure-1-1').data[0].y")
    np.testing.assert_allclose(decode(bars), rows[1][1], atol=1e-6)
    page.close()
