"""Issue 24: the guided walk's new chapters -- positions, causal masking, cross-attention, the three families --
measured on the models' own numbers, checked against plain transformers; and the walk as one lesson."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.apptest import problems, run_page
from viz.models import load_model
from viz.predictions import cosine
from viz.trace import build_trace
from viz.walk import POSITION_TEXT, attention_kinds, future_share, same_token_two_places

WALK_TEXT = "the small black cat sees the big white dog"


@pytest.fixture(scope="module")
def marian():
    return load_model("word-order")


def _plain(loaded, text: str):
    """transformers' own forward: its hidden states."""
    encoded = loaded.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        out = loaded.model(**encoded, output_hidden_states=True)
    return encoded["input_ids"][0].tolist(), out


def test_rope_leaves_a_repeated_words_inputs_identical_and_its_queries_apart(smollm2):
    repeat = same_token_two_places(build_trace(smollm2, POSITION_TEXT))
    ids, out = _plain(smollm2, POSITION_TEXT)
    assert (repeat.token, ids[repeat.first]) == ("the", ids[repeat.second])
    embeddings = smollm2.model.get_input_embeddings().weight[ids[repeat.first]].detach().numpy()
    np.testing.assert_allclose(out.hidden_states[0][0, repeat.first].numpy(), embeddings)
    assert repeat.input_cosine == pytest.approx(1.0, abs=1e-6)
    assert repeat.query_cosine < 0.95  # the rotation by position is all that tells them apart


def test_added_positions_make_the_inputs_differ_by_transformers_own_numbers(minilm):
    repeat = same_token_two_places(build_trace(minilm, POSITION_TEXT))
    ids, out = _plain(minilm, POSITION_TEXT)
    assert ids[repeat.first] == ids[repeat.second] and (repeat.first, repeat.second) == (1, 4)
    inputs = out.hidden_states[0][0].numpy()
    assert repeat.input_cosine == pytest.approx(cosine(inputs[1], inputs[4]), abs=1e-6)
    assert repeat.input_cosine < 0.95


def test_future_share_is_zero_under_the_causal_mask_and_the_encoders_own_otherwise(minilm, smollm2):
    assert future_share(build_trace(smollm2, POSITION_TEXT).stacks["decoder"], 0) == 0.0
    from transformers import BertModel

    from viz.models import minilm_dir

    eager = BertModel.from_pretrained(minilm_dir(), attn_implementation="eager").eval()  # transformers' own
    with torch.inference_mode():
        out = eager(**minilm.tokenizer(POSITION_TEXT, return_tensors="pt"), output_attentions=True)
    mean = out.attentions[0][0].mean(0).numpy()
    expected = np.mean([mean[i, i + 1 :].sum() for i in range(len(mean))])
    assert future_share(build_trace(minilm, POSITION_TEXT).stacks["encoder"], 0) == pytest.approx(expected, abs=1e-6)
    assert expected > 0.1


def test_an_encoder_decoder_has_three_attentions(marian):
    kinds = {row["attention"]: row for row in attention_kinds(build_trace(marian, WALK_TEXT))}
    assert set(kinds) == {"encoder", "decoder", "cross"}
    assert kinds["encoder"]["each token sees"] == "every token, both sides"
    assert kinds["decoder"]["each token sees"] == "only earlier tokens (causal mask)"
    assert (kinds["cross"]["queries from"], kinds["cross"]["keys and values from"]) == ("target", "source")


def test_the_walk_runs_ten_chapters_on_the_models_numbers(smollm2):
    at = run_page("pages/90_Guided_walk.py", model="word-order", text=WALK_TEXT)
    assert problems(at) == []
    headings = [h.value for h in at.header]
    assert [h.split(" · ")[0] for h in headings] == [str(n) for n in range(1, 11)]
    positions = next(d.value for d in at.dataframe if "inputs alike: cos(x₁, x₂)" in d.value.columns)
    by_model = dict(zip(positions["model"], positions["inputs alike: cos(x₁, x₂)"], strict=True))
    assert by_model["SmolLM2-135M-Instruct"] == 1.0 and by_model["all-MiniLM-L6-v2"] < 0.95
    families = next(d.value for d in at.dataframe if "each token sees" in d.value.columns)
    assert len(families) == 5  # MiniLM's one, SmolLM2's one, the encoder-decoder's three
    text = " ".join(m.value for m in at.markdown)
    assert "is 0.0000 on average" in text
