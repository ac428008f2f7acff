"""Issue 26: what a teacher and a researcher hit as new users. Each test fails on the code before its fix."""

import logging

import numpy as np
import pytest

from tests.apptest import decode, plotly_specs, problems, run_page
from training import word_order
from training.common import evaluate
from ui import views
from ui.page import pages
from viz import figures
from viz.bertviz_views import head_view_html
from viz.models import load_model
from viz.tokens import unknown_words
from viz.trace import build_trace


def _translation(loaded, text: str) -> str:
    trace = build_trace(loaded, text)
    return loaded.tokenizer.decode(trace.tokens["target"].ids.tolist(), skip_special_tokens=True)


# ------------------------------------------------------------------ 1. the English -> French model
def test_the_french_model_translates_every_held_out_short_phrase_exactly():
    """It wrote "le chat noir noir" for "the black cat": it had never seen a phrase end after its noun."""
    loaded = load_model("word-order")
    phrases = word_order.short_phrases(held_out=True)  # every 2- and 3-word phrase the training never saw
    assert len(phrases) >= 50 and {p.tag for p in phrases} == {"phrase of 2 words", "phrase of 3 words"}
    assert evaluate(loaded.model, loaded.tokenizer, phrases)["exact_match"] == 1.0
    for text, french in (
        ("the black cat", "le chat noir"),
        ("the white dog", "le chien blanc"),
        ("the black cat sleeps", "le chat noir dort"),
        ("a big house", "une grande maison"),
    ):
        assert _translation(loaded, text) == french


def test_words_a_model_does_not_know_are_named_on_the_page():
    at = run_page("pages/4_Alignment.py", model="word-order", text="The capital of France is")
    assert problems(at) == []
    warning = next(w.value for w in at.warning if "does not know" in w.value)
    assert "capital" in warning and "France" in warning and "<unk>" in warning.replace("\\", "")
    assert unknown_words(load_model("word-order").tokenizer, "the black cat sleeps") == []


def test_each_model_is_offered_only_examples_it_can_read():
    for model in ("word-order", "dates"):
        at = run_page(model=model, text="the red car is fast" if model == "word-order" else "22/11/26")
        loaded = load_model(model)
        offered = at.selectbox(key="example").options
        assert offered and all(unknown_words(loaded.tokenizer, example) == [] for example in offered)


# ------------------------------------------------------------------ 2. settings from another model or page
def test_a_target_text_belongs_to_the_model_it_was_typed_for():
    at = run_page("pages/4_Alignment.py", model="word-order", text="the black cat")
    at.text_input(key="target").input("le chat noir").run()
    assert at.session_state["current_trace_args"]["target"] == "le chat noir"
    at.selectbox(key="model_choice").set_value("dates").run()
    at.text_area(key="text").input("the 3rd of march 1999").run()
    assert problems(at) == [] and at.session_state["current_trace_args"]["target"] == ""  # not the French one
    assert at.text_input(key="target").value == ""
    assert any("1999-03-03" in m.value.replace("\\", "") for m in at.markdown)
    assert "target" not in at.query_params
    at.selectbox(key="model_choice").set_value("word-order").run()
    assert at.text_input(key="target").value == "le chat noir"  # back where it was typed


def test_a_view_that_would_be_empty_says_why():
    at = run_page(model="minilm", text="🤗 ✓", hide_special="True")  # every token is [UNK], [CLS] or [SEP]
    assert problems(at) == []
    assert sum("Nothing to draw" in i.value for i in at.info) == 2  # the head's map and the mean's
    assert not [s for s in plotly_specs(at) if s["data"] and s["data"][0]["type"] == "heatmap"]


# ------------------------------------------------------------------ 3. the guided walk's entry
def test_the_guided_walk_opens_with_the_bottleneck_on_any_model():
    at = run_page("pages/90_Guided_walk.py", model="minilm", text="The cat sat on the mat.")
    assert problems(at) == []
    assert (
        at.header[0].value == "1 · The bottleneck"
        and "one vector" in plotly_specs(at)[0]["layout"]["annotations"][-3]["text"]
    )
    assert any(b.key == "offer_model" for b in at.button)  # and the button that runs it on the dates model


def test_the_walk_shows_the_whole_output_and_names_the_step_readably():
    at = run_page("pages/90_Guided_walk.py", model="dates", text="the 3rd of march 1999", walk_step=3)
    assert problems(at) == []
    shown = " ".join(m.value for m in at.markdown).replace("\\", "")
    assert "**Output:** 1999-03-03" in shown
    assert "While writing “-” (output token 4 of 6, after “03”)" in shown


# ------------------------------------------------------------------ 4. bertviz's stack selector
def test_bertviz_head_view_keeps_the_encoder_decoder_cross_selector():
    html = head_view_html(build_trace(load_model("dates"), "the 3rd of march 1999"))
    assert '<select id="filter">' in html and "Attention: " in html
    assert '<select id="layer" hidden></select>' in html and "Layer:" not in html
    assert "display: none" not in html.split("<body")[0]  # no stylesheet rule hides a line of controls


# ------------------------------------------------------------------ 5. long texts
LONG = "the cat sat on the mat and looked at the dog . " * 60  # ~660 tokens: long enough for every long-text rule


def test_the_logit_lens_reads_fewer_positions_with_readable_labels_and_text():
    at = run_page("pages/6_Hidden_states.py", model="smollm2", text=LONG, max_tokens=700)
    assert problems(at) == []
    lens = next(s for s in plotly_specs(at) if "top-1 prediction" in s["layout"]["title"]["text"])
    assert len(lens["data"][0]["x"]) == 24  # the default, not 64
    at.slider(key="lens_positions").set_value(12).run()
    lens = next(s for s in plotly_specs(at) if "top-1 prediction" in s["layout"]["title"]["text"])
    assert len(lens["data"][0]["x"]) == 12 and len(lens["layout"]["xaxis"]["tickvals"]) <= figures.MAX_KEY_TICKS
    probabilities, text = decode(lens["data"][0]["z"]).ravel(), lens["data"][1]
    colours = np.array(text["textfont"]["color"])
    assert (colours[probabilities > 0.8] == "#ffffff").all() and (colours[probabilities < 0.3] == "#1b1b1b").all()


def test_pca_names_an_outlier_token_and_can_leave_it_out():
    at = run_page("pages/6_Hidden_states.py", model="smollm2", text=LONG, max_tokens=700)
    warning = next(w.value for w in at.warning if "far longer than the others" in w.value)
    assert "#0" in warning

    def pca_x(at) -> np.ndarray:
        return decode(next(s for s in plotly_specs(at) if "one PCA" in s["layout"]["title"]["text"])["data"][0]["x"])

    before = len(pca_x(at))
    at.checkbox(key="pca_leave_outliers").check().run()
    assert problems(at) == [] and len(pca_x(at)) == before - 1 and np.ptp(pca_x(at)) > 0


def test_zoom_ranges_take_typed_numbers():
    at = run_page(model="smollm2", text=LONG, max_tokens=700)
    at.number_input(key="zoom_rows_from").set_value(100).run()
    at.number_input(key="zoom_rows_to").set_value(180).run()
    assert problems(at) == [] and at.slider(key="zoom_rows").value == (100, 180)
    head = plotly_specs(at)[0]
    assert (head["data"][0]["y"][0], head["data"][0]["y"][-1]) == (100, 180)
    assert at.query_params["zoom_rows"] == "100:180"


# ------------------------------------------------------------------ 6. Max tokens
def test_max_tokens_stops_at_the_models_limit():
    at = run_page(model="smollm2", text="The capital of France is", max_tokens=20000)
    assert problems(at) == []
    box = at.number_input(key="max_tokens")
    assert box.max == 8192 and box.value == 8192


def test_a_cap_that_changes_nothing_read_reuses_the_cached_trace():
    text = "A short text for the cache, read once."
    at = run_page(model="minilm", text=text, max_tokens=256)
    loaded, traces = views.cached_model("minilm", "auto", "float32"), len(views.trace_cache())
    passes = loaded.forward_count
    at.number_input(key="max_tokens").set_value(512).run()
    assert problems(at) == [] and loaded.forward_count == passes and len(views.trace_cache()) == traces
    at.number_input(key="max_tokens").set_value(8).run()  # now it cuts the text: a pass of its own
    assert loaded.forward_count == passes + 1


# ------------------------------------------------------------------ 7. links carry only their own settings
def test_the_address_holds_only_the_settings_this_page_and_model_use():
    stale = dict(target="le chat noir", stack="cross", lens_start="5", walk_step="3", bertviz_view="model")
    at = run_page(model="minilm", text="The cat sat on the mat.", layer=2, head=3, **stale)
    assert problems(at) == []
    assert not set(stale) & set(at.query_params), dict(at.query_params)
    assert (at.query_params["layer"], at.query_params["head"]) == ("2", "3")


# ------------------------------------------------------------------ 8. small things
def test_the_examples_box_shows_an_example_only_while_the_text_is_that_example():
    at = run_page(model="minilm", text="anything")
    at.selectbox(key="example").set_value("The cat sat on the mat.").run()
    assert at.text_area(key="text").value == "The cat sat on the mat." and at.selectbox(key="example").value
    at.text_area(key="text").input("A text of my own.").run()
    assert at.selectbox(key="example").value is None


def test_prediction_bar_labels_are_large_enough_to_read():
    assert figures.weight_bars(np.ones(3), [".", ",", "the"], "p")["layout"]["xaxis"]["tickfont"]["size"] >= 14


@pytest.fixture
def arrow_refusals():
    """What Streamlit logs when Arrow refuses a dataframe (at INFO, with the ArrowTypeError's traceback, in the
    server's log; its loggers do not propagate, so pytest's caplog never sees them)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    streamlit_logger = logging.getLogger("streamlit.dataframe_util")
    level = streamlit_logger.level
    streamlit_logger.addHandler(handler)
    streamlit_logger.setLevel(logging.INFO)
    yield records
    streamlit_logger.removeHandler(handler)
    streamlit_logger.setLevel(level)


@pytest.mark.parametrize("page", [path for path, _, _ in pages()])
def test_no_arrow_type_errors_with_the_sentiment_head(page, arrow_refusals):
    at = run_page(page, model="minilm-sentiment", text="I've been waiting for a HuggingFace course my whole life.")
    assert problems(at) == []
    assert [r.getMessage() for r in arrow_refusals] == []
