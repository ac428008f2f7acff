"""The app, run headless with AppTest on the offline models."""

import re

import numpy as np
import pytest

from tests.apptest import decode, option_value, plotly_specs, problems, run_page
from ui.views import cached_model


def heatmap_z(at, index=0) -> np.ndarray:
    return decode(plotly_specs(at)[index]["data"][0]["z"])


@pytest.mark.parametrize("model", ["minilm", "smollm2"])
def test_attention_maps_page_shows_real_rows(model):
    at = run_page(model=model, text="The cat sat on the mat.")
    assert problems(at) == []
    z = heatmap_z(at)
    np.testing.assert_allclose(np.nansum(z, axis=1), 1.0, atol=1e-4)
    mean = heatmap_z(at, 1)
    np.testing.assert_allclose(np.nansum(mean, axis=1), 1.0, atol=1e-4)
    if model == "smollm2":  # causal: the future is masked (NaN in the heatmap, drawn grey)
        assert np.isnan(z[0, 1:]).all() and not np.isnan(np.tril(z)).any()
    assert any("forward" in c.value and "cpu" in c.value for c in at.caption)


def test_changing_head_or_layer_runs_the_model_zero_times():
    at = run_page(model="minilm", text="time flies like an arrow")
    loaded = cached_model("minilm", "auto", "float32")
    before = loaded.forward_count
    first = heatmap_z(at)
    at.slider(key="head").set_value(8).run()
    at.slider(key="layer").set_value(3).run()
    assert problems(at) == []
    assert loaded.forward_count == before
    assert not np.allclose(first, heatmap_z(at))
    assert at.query_params["head"] == "8" and at.query_params["layer"] == "3"


def test_url_reopens_the_same_view():
    at = run_page(model="minilm", text="Transformers are great!", layer=2, head=5)
    assert at.slider(key="layer").value == 2 and at.slider(key="head").value == 5
    assert at.text_area(key="text").value == "Transformers are great!"
    specs = plotly_specs(at)
    assert specs[0]["layout"]["title"]["text"] == "Layer 2, head 5"


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(text="   "), "empty"),
        (dict(model="hub:no-such-org/no-such-model"), "no network"),
        (dict(model="no-such-model"), "no network"),
        (dict(model="path:/nonexistent/dir"), "no config.json"),
    ],
)
def test_bad_input_gives_a_message_and_no_traceback(params, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the same answer on machines with and without network
    at = run_page(**{"model": "minilm", "text": "hello", **params})
    assert not at.exception
    assert any(message in e.value.replace("\\", "") for e in at.error)  # the id is quoted with escapes


def test_long_text_warns_about_dropped_tokens():
    at = run_page(model="minilm", text="word " * 100, max_tokens=32)
    assert problems(at) == []
    assert any("70 tokens were dropped" in w.value for w in at.warning)


def test_encoder_decoder_shows_cross_attention(tiny_dirs):
    at = run_page(model=f"path:{tiny_dirs['marian']}", text="the cat sat", target="la voiture rouge")
    assert problems(at) == []
    assert at.radio(key="stack").value == "cross"
    z = heatmap_z(at)
    assert z.shape == (4, 4)  # la voiture rouge </s>  x  the cat sat </s>
    at.radio(key="stack").set_value("decoder").run()
    assert np.isnan(heatmap_z(at)[0, 1:]).all()


def test_model_and_user_text_is_shown_literally_in_markdown():
    from ui.messages import literal

    evil = "**bold** [x](javascript:alert(1)) <img src=x onerror=alert(1)> # heading"
    escaped = literal(evil)
    for mark in "<>[]()*#":  # every Markdown/HTML mark is backslash-escaped
        assert re.search(rf"(?<!\\){re.escape(mark)}", escaped) is None, mark
    assert escaped.replace("\\", "") == evil  # nothing lost: every character is still shown


def test_sessions_sharing_the_cached_model_see_only_their_own_text():
    a = run_page(model="minilm", text="time flies like an arrow", head=3)
    b = run_page(model="minilm", text="The cat sat on the mat.", head=7)
    a.slider(key="layer").set_value(4).run()  # a rerun of session a after b used the shared model
    ticks = lambda at: plotly_specs(at)[0]["layout"]["yaxis"]["ticktext"]  # noqa: E731
    assert ticks(a) == ["[CLS]", "time", "flies", "like", "an", "arrow", "[SEP]"]
    assert ticks(b) == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]"]
    assert a.slider(key="head").value == 3 and b.slider(key="head").value == 7


@pytest.mark.parametrize(
    "page",
    [
        "attention_maps.py",
        "pages/2_bertviz.py",
        "pages/3_Neuron_view.py",
        "pages/6_Hidden_states.py",
        "pages/1_Model_view.py",
    ],
)
def test_hand_edited_url_cannot_break_a_page(page):
    junk = dict(
        device="cuda" if not __import__("torch").cuda.is_available() else "banana",
        dtype="float99",
        layer="abc",
        head=99,
        query=-5,
        bertviz_layer=40,
        bertviz_view="x",
        pca_layer=77,
        hide_special="maybe",
        stack="nonsense",
        max_tokens=10**9,
    )
    at = run_page(page, model="minilm", text="time flies like an arrow", **junk)
    assert problems(at) == []


def test_first_page_says_what_it_shows_and_points_to_the_guided_walk():
    at = run_page(model="minilm", text="The cat sat on the mat.")
    assert problems(at) == []
    assert any("attention head" in m.value for m in at.markdown)
    links = {link.proto.label: link.proto.page for link in at.get("page_link")}
    guide = next(page for label, page in links.items() if label.startswith("New to attention?"))
    assert guide.endswith("Guided_walk")  # (the sidebar's own link to it is labelled differently)


# ------------------------------------------------------------------ the URL holds the whole view (issue 9, 8)
def _reopened(at, page):
    """A fresh session opened on the URL the first one wrote."""
    return run_page(page, **dict(at.query_params))


# In the order they are changed: text and numbers first, as they decide what the others offer.
WIDGET_KINDS = ("text_area", "text_input", "number_input", "checkbox", "multiselect", "radio", "selectbox",
                "select_slider", "slider")  # fmt: skip
# The URL names the model as `model`, and an example only fills the text.
NOT_IN_URL = {"model_choice", "hub_id", "local_dir", "example"}
NOT_IN_URL |= {f"zoom_{axis}_{end}" for axis in ("rows", "cols") for end in ("from", "to")}  # typed ends: the slider's
TYPED = {"pattern_rule": "tok[j] == tok[i]", "compare_text": "A dog ran.", "candidate_labels": "pets, cars"}
D, M, S = "the 3rd of march 1999", "The cat sat on the mat.", "The capital of France is"
SWEEPS = [  # every page, on the families whose widgets differ
    ("attention_maps.py", "dates", D), ("attention_maps.py", "smollm2", "a " * 600),  # 600 tokens: zoom ranges
    ("pages/1_Model_view.py", "minilm", M), ("pages/2_bertviz.py", "dates", D),
    ("pages/3_Neuron_view.py", "smollm2", S), ("pages/3_Neuron_view.py", "dates", D),
    ("pages/4_Alignment.py", "dates", D), ("pages/4_Alignment.py", "smollm2", S),
    ("pages/5_Predictions.py", "smollm2", S), ("pages/5_Predictions.py", "minilm-mlm", M),
    ("pages/5_Predictions.py", "minilm", M), ("pages/5_Predictions.py", "dates", D),
    ("pages/6_Hidden_states.py", "dates", D), ("pages/7_Head_roles.py", "dates", D),
    ("pages/8_Encoder_vs_decoder.py", "minilm", M), ("pages/9_Head_ablation.py", "dates", D),
    ("pages/90_Guided_walk.py", "dates", D), ("pages/11_Induction_probe.py", "smollm2", S),
    ("pages/11_Induction_probe.py", "dates", D), ("pages/11_Induction_probe.py", "tiny:gpt2", S),
    ("pages/12_Head_beside_head.py", "dates", D),
]  # fmt: skip


def _widgets(at) -> dict:
    every = [w for kind in WIDGET_KINDS for w in getattr(at, kind)]
    assert [w.label for w in every if not w.key] == []  # a widget without a key can't be found in the URL
    return {w.key: w for w in every if w.key not in NOT_IN_URL}


def _changed(at, widget):
    """The widget moved to another value it offers (an offline model where it offers models)."""
    kind = type(widget).__name__
    if kind == "Checkbox":
        return widget.set_value(not widget.value)
    if kind in ("TextInput", "TextArea"):
        return widget.set_value(TYPED.get(widget.key, f"{widget.value} again"))
    if kind in ("Slider", "NumberInput"):
        lo, hi, step = widget.min, widget.max, widget.step
        if isinstance(widget.value, tuple | list):
            return widget.set_value((lo, lo + step) if tuple(widget.value) != (lo, lo + step) else (lo, hi))
        moved = widget.value + step if widget.value + step <= hi else widget.value - step
        return widget.set_value(type(widget.value)(moved))
    labels = [label for label in widget.options if "network" not in label and "(hub)" not in label]
    if kind == "Multiselect":
        return widget.set_value(option_value(at, widget, labels[:2]))
    shown = widget.format_func(widget.value) if widget.value is not None else None
    return widget.set_value(option_value(at, widget, labels[-1] if shown != labels[-1] else labels[0]))


@pytest.mark.parametrize("page, model, text", SWEEPS, ids=[f"{p.split('/')[-1]}-{m}" for p, m, _ in SWEEPS])
def test_every_widget_on_every_page_comes_back_from_the_url(page, model, text, tiny_dirs):
    """Issue 9 item 8: change every widget on the page (and those the changes reveal: a typed rule, zoom
    ranges), then open the URL in a fresh session: each widget holds the value it was left at. Max tokens goes
    first: it bounds others (the probe's length). Before
    ui.widgets, the continuation settings, the masked token, the ranked head, the zoom ranges (and, earlier,
    pca_layer, the stacks, the compare pickers, the ablated heads) came back at their defaults; the sweep also
    found the Induction probe raising on a model with fewer than ten heads."""
    model = f"path:{tiny_dirs[model[5:]]}" if model.startswith("tiny:") else model
    at = run_page(page, model=model, text=text, max_tokens=1024)
    assert problems(at) == []
    first, set_to = {}, {}
    while todo := sorted((key for key in _widgets(at) if key not in first), key=lambda k: k != "max_tokens"):
        for key in todo:
            widget = _widgets(at).get(key)
            first[key] = widget and widget.value
            if widget is not None:  # (an earlier change may have removed it)
                _changed(at, widget).run()
                assert problems(at) == [], key
                set_to[key] = _widgets(at)[key].value
    left = {key: w.value for key, w in _widgets(at).items()}
    assert {key: left[key] for key in set_to if key in left} == {key: set_to[key] for key in set_to if key in left}
    assert [key for key in left if left[key] == first[key]] == []  # (each one moved)
    again = _reopened(at, page)
    assert problems(again) == []
    assert {key: w.value for key, w in _widgets(again).items()} == left


@pytest.mark.parametrize(
    "page, params",
    [  # issue 10's reproductions: unknown keys overwrote widget keys and pages raised
        ("attention_maps.py", dict(model="minilm", text="hi", npz="1")),
        ("pages/1_Model_view.py", dict(model="minilm", text="hi", grid="x")),
        ("pages/5_Predictions.py", dict(model="smollm2", text="Hello", seed="1")),
        ("pages/8_Encoder_vs_decoder.py", dict(text="hi", compare_depth="abc")),
        ("pages/8_Encoder_vs_decoder.py", dict(text="hi", compare_depth="7", compare_left="no-such")),
        ("pages/9_Head_ablation.py", dict(model="minilm", text="hi", ablate_heads="encoder:x:1,,:")),
    ],
)
def test_unknown_or_malformed_url_values_are_ignored(page, params):
    at = run_page(page, **params)
    assert problems(at) == []


# ------------------------------------------------------------------ readability (issue 9, 5)
def test_side_by_side_maps_share_one_colour_scale_unless_asked():
    """Issue 9: the head map ran 0-0.4 and the mean 0-0.6, so equal colours meant different weights."""
    at = run_page(model="minilm", text="The cat sat on the mat.", layer=2, head=3)
    assert problems(at) == []
    head, mean = (plotly_specs(at)[i]["data"][0] for i in (0, 1))
    peak = max(np.nanmax(decode(head["z"])), np.nanmax(decode(mean["z"])))
    assert head["zmax"] == mean["zmax"] == pytest.approx(peak, rel=1e-6)
    at.checkbox(key="own_scale").check().run()
    head, mean = (plotly_specs(at)[i]["data"][0] for i in (0, 1))
    assert head["zmax"] == pytest.approx(np.nanmax(decode(head["z"])), rel=1e-6)
    assert mean["zmax"] == pytest.approx(np.nanmax(decode(mean["z"])), rel=1e-6) and head["zmax"] != mean["zmax"]


def test_encoder_vs_decoder_lines_are_told_apart_and_the_legend_clears_the_axis():
    at = run_page("pages/8_Encoder_vs_decoder.py", model="minilm", text="The cat sat on the mat.")
    entropy = next(s for s in plotly_specs(at) if s["layout"].get("title", {}).get("text") == "entropy")
    colors = [line["line"]["color"] for line in entropy["data"]]
    assert len(set(colors)) == 2
    assert entropy["layout"]["legend"]["y"] < 0  # under the x-axis title, not on top of it


def test_pca_names_smollm2s_massive_activation_and_can_leave_it_out():
    at = run_page("pages/6_Hidden_states.py", model="smollm2", text="The capital of France is Paris.")
    assert problems(at) == []
    assert any("Dimension 507" in i.value and "massive activation" in i.value for i in at.info)

    def first_axis_share(at) -> float:
        title = next(s for s in plotly_specs(at) if "one PCA for all layers" in s["layout"]["title"]["text"])
        return float(re.search(r"(\d+)% \+", title["layout"]["title"]["text"]).group(1)) / 100

    assert first_axis_share(at) >= 0.99  # one blob: everything lies along dimension 507
    at.checkbox(key="pca_leave_out").check().run()
    assert problems(at) == [] and first_axis_share(at) <= 0.9
    assert at.query_params["pca_leave_out"] == "True"


def test_a_map_washed_out_by_special_tokens_says_how_to_see_the_rest():
    """Issue 9 item 5: at ~200 tokens [CLS]/[SEP] columns take most of a head's attention and the map
    looks white. The page names the share (the model's own number) and the options that fix it."""
    from viz.models import load_model
    from viz.trace import build_trace

    text = "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat near the door. " * 9
    trace = build_trace(load_model("minilm"), text, None, 512)
    weights, seq = trace.stacks["encoder"].attention(4, 5), trace.tokens["source"]
    share = float(weights[:, seq.special].sum(axis=1).mean())
    assert share > 0.5
    at = run_page(model="minilm", text=text, layer=4, head=5)
    assert problems(at) == []
    notes = [c.value for c in at.caption if "goes to special tokens" in c.value]
    assert notes and notes[0].startswith(f"{share:.0%} of this head's attention")
    washed = plotly_specs(at)[0]["data"][0]["zmax"]
    at.checkbox(key="hide_special").check().run()
    at.checkbox(key="renormalize").check().run()
    assert not [c for c in at.caption if "goes to special tokens" in c.value]
    assert plotly_specs(at)[0]["data"][0]["zmax"] < washed  # the colours now span the other tokens
    quiet = run_page(model="minilm", text=text, layer=0, head=0)  # 2 % on special tokens: no note
    assert not [c for c in quiet.caption if "goes to special tokens" in c.value]


def test_widget_values_survive_a_visit_to_a_page_without_them():
    """Streamlit forgets a widget's state on a run that doesn't draw it: layer, head and a token option
    set on the first page must still be there after a visit to Hidden states (which has none of them)."""
    at = run_page(model="minilm", text="time flies like an arrow")
    at.slider(key="layer").set_value(3).run()
    at.slider(key="head").set_value(5).run()
    at.checkbox(key="hide_special").check().run()
    at.switch_page("pages/6_Hidden_states.py").run()
    assert problems(at) == [] and "layer" not in [s.key for s in at.slider]
    at.switch_page("attention_maps.py").run()
    assert problems(at) == []
    assert (at.slider(key="layer").value, at.slider(key="head").value) == (3, 5)
    assert at.checkbox(key="hide_special").value is True
    assert (at.query_params["layer"], at.query_params["head"], at.query_params["hide_special"]) == ("3", "5", "True")
