"""Issue 25: the RNN chapter on real recurrent models (viz/recurrent.py, trained by training/rnn.py)."""

import json

import numpy as np
import pytest
import torch

from tests.apptest import decode, plotly_specs, problems, run_page
from training import rnn
from ui.page import pages, recurrent_pages
from ui.views import cached_model
from viz.bottleneck import bottleneck
from viz.models import REPO_MODELS, load_model, task_models
from viz.recurrent import greedy, read
from viz.trace import build_trace

TASKS = ("dates", "word-order")
RNNS = [getattr(task_models(task), role) for task in TASKS for role in ("without_attention", "with_attention")]
DATE = "the 3rd of march 1999"


# ------------------------------------------------------------------ the model's own numbers
def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _gru(x, h, w_ih, w_hh, b_ih, b_hh):
    """PyTorch's GRU cell: r, z gates, candidate n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))."""
    gi, gh, n = w_ih @ x + b_ih, w_hh @ h + b_hh, len(h)
    r, z = _sigmoid(gi[:n] + gh[:n]), _sigmoid(gi[n : 2 * n] + gh[n : 2 * n])
    return (1 - z) * np.tanh(gi[2 * n :] + r * gh[2 * n :]) + z * h


def _reference(model, inputs: list[int], outputs: list[int], start: int):
    """Bahdanau et al. (2015) step by step in float64 from the weights: α_t = softmax_i(vᵀ tanh(W s_t−1 + U h_i)),
    c_t = Σ_i α_t,i h_i, s_t = GRU([E y_t−1; c_t], s_t−1), logits_t = W_o [s_t; c_t]; s_0 = h_n."""
    w = {k: v.double().numpy() for k, v in model.state_dict().items()}
    enc = [w[f"encoder.{p}_l0"] for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    dec = [w[f"decoder.{p}"] for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    h, states = np.zeros(model.config.hidden), []
    for token in inputs:
        h = _gru(w["embed.weight"][token], h, *enc)
        states.append(h)
    states, s, y, alphas, logits = np.array(states), h, start, [], []
    for token in outputs:
        e = np.tanh(w["W.weight"] @ s + states @ w["U.weight"].T) @ w["v.weight"][0]
        alpha = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
        context = alpha @ states
        s = _gru(np.concatenate([w["embed.weight"][y], context]), s, *dec)
        logits.append(w["out.weight"] @ np.concatenate([s, context]) + w["out.bias"])
        alphas.append(alpha)
        y = token
    return np.array(alphas), np.array(logits)


@pytest.mark.parametrize(
    "key, text", [("rnn-dates-attention", DATE), ("rnn-word-order-attention", "the red car is fast")]
)
def test_the_rnns_alpha_is_bahdanaus_computed_from_its_weights(key, text):
    loaded = load_model(key)
    trace = build_trace(loaded, text)
    alpha = trace.stacks["cross"].attention(0, 0)
    tok = loaded.tokenizer
    ref_alpha, ref_logits = _reference(loaded.model, trace.tokens["source"].ids, trace.tokens["target"].ids,
                                       tok.pad_token_id)  # fmt: skip
    np.testing.assert_allclose(alpha, ref_alpha, atol=1e-5)
    np.testing.assert_allclose(alpha.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(trace.logits(), ref_logits, atol=1e-4)
    assert alpha.shape == (len(trace.tokens["target"]), len(trace.tokens["source"]))


def test_a_forced_target_is_what_the_decoder_reads():
    loaded = load_model("rnn-dates-attention")
    trace = build_trace(loaded, DATE, target_text="2000-01-01")
    assert loaded.tokenizer.decode(trace.tokens["target"].ids, skip_special_tokens=True) == "2000-01-01"
    ref_alpha, _ = _reference(loaded.model, trace.tokens["source"].ids, trace.tokens["target"].ids,
                              loaded.tokenizer.pad_token_id)  # fmt: skip
    np.testing.assert_allclose(trace.stacks["cross"].attention(0, 0), ref_alpha, atol=1e-5)


def test_without_attention_the_decoder_reads_only_the_last_encoder_state(monkeypatch):
    """Scramble every encoder state but the last: the model without attention writes the very same logits;
    the one with attention does not (so the test can tell the two apart)."""
    changed = {}
    for key in ("rnn-dates", "rnn-dates-attention"):
        model, tok = load_model(key).model, load_model(key).tokenizer
        inputs = tok(DATE)["input_ids"]
        before = read(model, inputs, tok.pad_token_id, tok.eos_token_id).logits
        encode = model.encode

        def scrambled(ids, lengths, encode=encode):
            states, last = encode(ids, lengths)
            noise = torch.randn(states.shape, generator=torch.Generator().manual_seed(0)) * 3
            return torch.cat([states[:, :-1] + noise[:, :-1], states[:, -1:]], 1), last

        monkeypatch.setattr(model, "encode", scrambled)
        after = read(model, inputs, tok.pad_token_id, tok.eos_token_id, forced=None).logits
        changed[key] = float(np.abs(after[: len(before)] - before[: len(after)]).max())
    assert changed["rnn-dates"] == 0.0 and changed["rnn-dates-attention"] > 0.1


@pytest.mark.parametrize("task", TASKS)
def test_held_out_figures_recomputed_from_the_shipped_weights_equal_the_cards(task):
    examples, measured = rnn.held_out(task), bottleneck(task)
    for key in (task_models(task).without_attention, task_models(task).with_attention):
        loaded, card = load_model(key), json.loads((REPO_MODELS / key / "metrics.json").read_text())
        again = rnn.evaluate(loaded.model, loaded.tokenizer, examples)
        assert again["exact_match"] == card["exact_match"] == measured.exact_match[key]
        assert again["by_input_length"] == card["by_input_length"]
        assert {int(n): tuple(v) for n, v in card["by_input_length"].items()} == measured.by_length[key]
        assert again.get("alignment") == card.get("alignment")
        assert f"**{card['exact_match']:.4f}**" in (REPO_MODELS / key / "README.md").read_text()
    assert set(measured.by_length) == {task_models(task).without_attention, task_models(task).with_attention, task}


def test_batched_greedy_decoding_writes_what_one_input_at_a_time_writes():
    loaded = load_model("rnn-word-order-attention")
    tok = loaded.tokenizer
    inputs = [tok(ex.source_text)["input_ids"] for ex in rnn.held_out("word-order")[:60]]
    one_by_one = [read(loaded.model, ids, tok.pad_token_id, tok.eos_token_id).outputs for ids in inputs]
    assert greedy(loaded.model, inputs, tok.pad_token_id, tok.eos_token_id) == one_by_one


def test_the_bottleneck_shows_on_long_inputs_and_attention_removes_it():
    """The measured claim the walk makes: on word order, the model without attention falls with input length
    while its twin with attention holds; long examples only the attention model gets right are listed."""
    measured = bottleneck("word-order")
    plain, attending = (measured.by_length[k] for k in RNNS[2:])
    longest = max(plain)
    assert plain[longest][0] < plain[min(plain)][0] - 0.3 and attending[longest][0] > 0.9
    for row in measured.only_attention_right:
        assert row["without attention"] != row["target"] == row["with attention"]


# ------------------------------------------------------------------ the pages
def _title(spec: dict) -> str:
    return spec["layout"].get("title", {}).get("text", "")


@pytest.mark.parametrize("key", ["rnn-dates-attention", "rnn-word-order-attention"])
def test_the_alignment_page_draws_the_rnns_alpha(key):
    text = DATE if "dates" in key else "the small black cat sees the big white dog"
    at = run_page("pages/4_Alignment.py", model=key, text=text)
    assert problems(at) == []
    heatmaps = [s for s in plotly_specs(at) if s["data"][0]["type"] == "heatmap"]
    assert len(heatmaps) == 1 and "α" in heatmaps[0]["layout"]["title"]["text"]
    alpha = build_trace(load_model(key), text).stacks["cross"].attention(0, 0)
    np.testing.assert_allclose(decode(heatmaps[0]["data"][0]["z"]), alpha, atol=1e-6)
    assert not at.slider  # one attention: no layer or head to pick


def test_the_alignment_page_says_the_rnn_without_attention_has_none():
    at = run_page("pages/4_Alignment.py", model="rnn-dates", text=DATE)
    assert problems(at) == [] and any("has no attention" in w.value for w in at.warning)


@pytest.mark.parametrize("key", ["rnn-dates", "rnn-dates-attention"])
def test_predictions_show_each_steps_output_distribution(key):
    at = run_page("pages/5_Predictions.py", model=key, text=DATE, output_step=1)
    assert problems(at) == []
    assert any("1999-03-03" in m.value.replace("\\", "") for m in at.markdown)
    bars = [s for s in plotly_specs(at) if s["data"][0]["type"] == "bar"]
    trace = build_trace(load_model(key), DATE)
    probs = np.exp(trace.logits()[1] - trace.logits()[1].max())
    probs /= probs.sum()
    np.testing.assert_allclose(decode(bars[1]["data"][0]["y"]), np.sort(probs)[::-1][:10], atol=1e-5)


def test_choosing_another_output_step_runs_the_rnn_zero_times():
    at = run_page("pages/5_Predictions.py", model="rnn-dates-attention", text=DATE, output_step=0)
    loaded = cached_model("rnn-dates-attention", "auto", "float32")
    before = loaded.forward_count
    at.selectbox(key="output_step").set_value(3).run()
    assert problems(at) == [] and loaded.forward_count == before
    at.text_area(key="text").set_value("22/11/26").run()
    assert problems(at) == [] and loaded.forward_count == before + 1  # a new text is read once


def test_pages_about_layers_and_heads_say_why_they_do_not_apply_to_an_rnn():
    readers = recurrent_pages()
    reading = {path for path, _, _ in readers}
    assert reading == {"pages/4_Alignment.py", "pages/5_Predictions.py", "pages/90_Guided_walk.py"}
    for path, _, _ in pages():
        at = run_page(path, model="rnn-dates-attention", text=DATE)
        assert problems(at) == [], path
        if path not in reading and not path.endswith("Encoder_vs_decoder.py"):  # that page reads other models
            assert any("does not apply" in i.value for i in at.info), path
            links = [link.proto.label for link in at.main.get("page_link")]  # the first page has one of its own
            assert links[-len(readers) :] == [label for _, label, _ in readers]


@pytest.mark.parametrize("key, text", [("rnn-dates-attention", DATE), ("word-order", "the red car is fast")])
def test_the_guided_walk_starts_from_the_rnns(key, text):
    at = run_page("pages/90_Guided_walk.py", model=key, text=text)
    assert problems(at) == []
    specs = plotly_specs(at)
    task = "dates" if "dates" in key else "word-order"
    measured = bottleneck(task)
    lines = next(s for s in specs if "by input length" in _title(s))
    for line, (model, curve) in zip(lines["data"], measured.by_length.items(), strict=True):
        assert list(line["x"]) == list(curve) and np.allclose(decode(line["y"]), [s for s, _ in curve.values()])
        assert line["name"].endswith(f"(overall {measured.exact_match[model]:.3f})")
    last_state = next(s for s in specs if "last state" in _title(s))
    plain = build_trace(load_model(task_models(task).without_attention), text)
    np.testing.assert_allclose(decode(last_state["data"][0]["z"])[0], plain.hidden_states["encoder"][0][-1], 1e-6)
    heatmaps = [s for s in specs if s["data"] and s["data"][0]["type"] == "heatmap"]
    pair = [s for s in heatmaps if "GRU +" in _title(s) or _title(s).endswith(", cross-attention")]
    assert len(pair) == 2 and pair[0]["data"][0]["zmax"] == pair[1]["data"][0]["zmax"]  # one colour scale
