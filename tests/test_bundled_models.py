"""The project's own Marian models (models/), trained by training/train_marian.py."""

import json

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.tiny import all_attention, eager_attentions
from training import dates, word_order
from training.common import evaluate
from viz.alignment import alignment
from viz.models import load_model
from viz.trace import build_trace

TASKS = {"dates": dates, "word-order": word_order}


@pytest.fixture(scope="module", params=list(TASKS))
def bundled(request, monkeypatch_module):
    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")  # loads from the repo, never the hub
    return request.param, load_model(request.param)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_weights_are_small_and_documented(bundled):
    name, _ = bundled
    folder = ROOT / "models" / f"marian-{name}"
    assert (folder / "model.safetensors").stat().st_size <= 10_000_000
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["exact_match"] >= 0.995
    assert metrics["alignment_last_layer"] >= 0.95 and metrics["alignment_all_layers"] >= 0.95
    assert "held-out" in (folder / "README.md").read_text()


def test_held_out_sample_exact_and_aligned(bundled):
    """A fast subset of the training report's held-out figures (split by date / by sentence)."""
    name, loaded = bundled
    sample = TASKS[name].sample(300, held_out=True, seed=777)
    result = evaluate(loaded.model, loaded.tokenizer, sample)
    assert result["exact_match"] >= 0.99
    assert result["alignment_last_layer"] >= 0.93 and result["alignment_all_layers"] >= 0.93


def test_tokenizer_round_trip(bundled):
    name, loaded = bundled
    tok = loaded.tokenizer
    target = "2026-11-22" if name == "dates" else "la voiture rouge est rapide"
    ids = tok(text_target=target)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == target
    if name == "dates":
        assert tok.tokenize("the 22nd of November 2026") == ["the", "22", "nd", "of", "november", "2026"]
        assert tok.convert_ids_to_tokens(ids) == ["2026", "-", "11", "-", "22", "</s>"]


def test_app_trace_translates_and_aligns(bundled):
    name, loaded = bundled
    text, expected = (
        ("Sunday, 22 November 2026", "2026-11-22")
        if name == "dates"
        else ("the red car is fast", "la voiture rouge est rapide")
    )
    trace = build_trace(loaded, text)
    assert loaded.tokenizer.decode(trace.tokens["target"].ids.tolist(), skip_special_tokens=True) == expected
    reference = eager_attentions(loaded, trace)
    for stack_name, stack in trace.stacks.items():
        np.testing.assert_allclose(all_attention(stack), reference[stack_name], atol=1e-5)
    mean = alignment(trace).overall_mean()
    source = list(trace.tokens["source"].display)
    produced = list(trace.tokens["target"].display)
    pairs = (
        {"2026": "2026", "11": "november", "22": "22"}
        if name == "dates"
        else {"voiture": "car", "rouge": "red", "rapide": "fast"}
    )
    for out_token, in_token in pairs.items():
        assert source[int(mean[produced.index(out_token)].argmax())] == in_token


def test_word_order_model_writes_correct_french_adjective_placement():
    """Issue 9: it wrote "le chat noir petit". Beauty/age/goodness/size adjectives go before the noun."""
    loaded = load_model("word-order")
    for text, french in (
        ("the small black cat sees the big white dog", "le petit chat noir voit le grand chien blanc"),
        ("the pretty red car is fast", "la jolie voiture rouge est rapide"),
        ("a heavy red box is slow", "une boîte rouge lourde est lente"),  # two after the noun: mirrored (Fig. 3)
    ):
        trace = build_trace(loaded, text)
        assert loaded.tokenizer.decode(trace.tokens["target"].ids.tolist(), skip_special_tokens=True) == french
    trace = build_trace(loaded, "the small black cat sees the big white dog")
    mean = alignment(trace).overall_mean()
    source, produced = list(trace.tokens["source"].display), list(trace.tokens["target"].display)
    for out_token, in_token in {
        "petit": "small",
        "chat": "cat",
        "noir": "black",
        "grand": "big",
        "blanc": "white",
    }.items():
        assert source[int(mean[produced.index(out_token)].argmax())] == in_token
