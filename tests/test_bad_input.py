"""Bad input gives a message the user can act on (AtlasError), never a crash."""

import time

import pytest
import transformers

from tests.tiny import tokenizer_for
from viz.errors import AtlasError
from viz.models import load_model
from viz.trace import build_trace


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text(minilm, text):
    with pytest.raises(AtlasError, match="empty"):
        build_trace(minilm, text)


def test_long_text_is_truncated_and_says_how_much(minilm):
    text = "word " * 300  # 300 words + [CLS] + [SEP]
    trace = build_trace(minilm, text, max_tokens=64)
    assert len(trace.tokens["source"]) == 64
    assert trace.dropped_tokens == 302 - 64
    assert trace.tokens["source"].raw[-1] == "[SEP]"  # truncation keeps the special tokens
    trace = build_trace(minilm, "word " * 600, max_tokens=1024)  # model limit: 512 positions
    assert len(trace.tokens["source"]) == 512 and trace.token_limit == 512


def test_unknown_model_offline_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(AtlasError, match="cache.*no network|no network"):
        load_model("hub:bert-base-uncased")
    assert time.perf_counter() - start < 10


def test_unknown_key_and_missing_directory(tmp_path):
    with pytest.raises(AtlasError, match="Unknown model"):
        load_model("no-such-thing")
    with pytest.raises(AtlasError, match="no config.json"):
        load_model(f"path:{tmp_path}")


def test_vision_model_is_refused(tmp_path):
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37, image_size=32, patch_size=8
    )
    transformers.ViTModel(config).save_pretrained(tmp_path)
    with pytest.raises(AtlasError, match="not a text transformer"):
        load_model(f"path:{tmp_path}")


def test_model_whose_attention_cannot_be_captured(tmp_path):
    """DeBERTa-v2 computes attention in its own code: we say so instead of showing wrong numbers."""
    config = transformers.DebertaV2Config(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    transformers.DebertaV2Model(config).save_pretrained(tmp_path)
    tokenizer_for("cls-sep").save_pretrained(tmp_path)
    with pytest.raises(AtlasError, match="can't be inspected"):
        build_trace(load_model(f"path:{tmp_path}"), "the cat sat")
