"""The two packaged models work with no network."""

import numpy as np

from tests.tiny import all_attention, eager_attentions
from viz.trace import build_trace


def test_minilm_traces_real_text(minilm):
    trace = build_trace(minilm, "The cat sat on the mat.")
    stack = trace.stacks["encoder"]
    assert trace.family == "encoder" and trace.model_class == "BertModel"
    assert (stack.n_layers, stack.n_heads, stack.n_queries, stack.n_keys) == (6, 12, 9, 9)
    assert trace.tokens["source"].display == ("[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]")
    assert trace.tokens["source"].special.tolist() == [True] + [False] * 7 + [True]
    assert trace.hidden_states["encoder"].shape == (7, 9, 384)
    np.testing.assert_allclose(all_attention(stack), eager_attentions(minilm, trace)["encoder"], atol=1e-5)


def test_smollm2_is_llama_with_gqa_and_knows_paris(smollm2):
    trace = build_trace(smollm2, "The capital of France is")
    stack = trace.stacks["decoder"]
    assert trace.model_class == "LlamaForCausalLM"
    assert (stack.n_layers, stack.n_heads, stack.kv_heads) == (30, 9, 3)
    assert trace.tokens["source"].raw[1] == "Ġcapital" and trace.tokens["source"].display[1] == "capital"
    next_id = int(trace.logits()[-1].argmax())
    assert smollm2.tokenizer.decode([next_id]) == " Paris"
    generated = smollm2.model.generate(
        **smollm2.tokenizer("The capital of France is", return_tensors="pt"), max_new_tokens=1, do_sample=False
    )
    assert int(generated[0, -1]) == next_id


def test_smollm2_chat_turn_and_reply(smollm2):
    """Instruct models read the text as a user turn; the reply is generated, then read in one pass."""
    trace = build_trace(smollm2, "What is the capital of France?", chat=True, continuation=8)
    raw = trace.tokens["source"].raw
    assert raw[0] == "<|im_start|>" and raw.count("<|im_start|>") == 3  # system, user, assistant
    reply = smollm2.tokenizer.decode(trace.tokens["source"].ids[trace.prompt_length :].tolist())
    assert "Paris" in reply
    np.testing.assert_allclose(
        all_attention(trace.stacks["decoder"]), eager_attentions(smollm2, trace)["decoder"], atol=1e-5
    )


def test_first_smollm2_load_reports_real_progress(tmp_path, monkeypatch):
    """Issue 9: the first load took ~100 s under load behind a spinner promising ~25 s. Progress now
    counts the GGUF tensors as transformers dequantizes them, with an estimate from the rate so far."""
    from viz.models import load_model, needs_slow_first_load, prepare_first_load

    monkeypatch.setenv("ATLAS_CACHE_DIR", str(tmp_path))  # a cold cache: the conversion really runs
    assert needs_slow_first_load("smollm2")
    heard: list[tuple[float, str]] = []
    prepare_first_load("smollm2", lambda done, what: heard.append((done, what)))  # what the page calls
    loaded = load_model("smollm2")
    counts = [what for _, what in heard if "tensors" in what]
    total = int(counts[0].split(" of ")[1].split()[0])
    assert total > 200 and len(counts) == total  # every tensor, once
    assert [int(c.split(": ")[1].split()[0]) for c in counts] == list(range(1, total + 1))
    assert [done for done, _ in heard] == sorted(done for done, _ in heard) and heard[-1][0] == 1.0
    assert "s left)" in counts[0] and counts[-1].endswith("(about 0 s left)")
    assert not needs_slow_first_load("smollm2")
    next_id = int(build_trace(loaded, "The capital of France is").logits()[-1].argmax())
    assert loaded.tokenizer.decode([next_id]) == " Paris"


def test_a_damaged_smollm2_conversion_is_converted_again(tmp_path, monkeypatch):
    """Issue 10: a truncated model.safetensors, an edited config or a missing tokenizer failed on every
    visit with a raw library message, and a killed conversion left a 538 MB temp folder behind. The
    conversion (~25 s, tested above) is replaced by a small writer so each damage is cheap to try."""
    import viz.models as M

    monkeypatch.setenv("ATLAS_CACHE_DIR", str(tmp_path))
    conversions = []

    def convert(folder, progress):
        conversions.append(folder)
        (folder / "config.json").write_text('{"model_type": "llama"}')
        (folder / "tokenizer.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"w" * 1000)

    monkeypatch.setattr(M, "_convert_smollm2", convert)
    stale = tmp_path / ".smollm2-killed"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    target = M.smollm2_dir()
    assert len(conversions) == 1 and not stale.exists() and M.conversion_damage(target) is None
    assert M.smollm2_dir() == target and len(conversions) == 1  # intact: used as it is

    damages = {
        "has 500 of its 1,000 bytes": lambda: (target / "model.safetensors").write_bytes(b"w" * 500),
        "config.json was changed": lambda: (target / "config.json").write_text('{"model_type": "bloom"}'),
        "tokenizer.json is missing": lambda: (target / "tokenizer.json").unlink(),
        "file list is missing": lambda: (target / M.MANIFEST).unlink(),
    }
    for why, damage in damages.items():
        damage()
        assert why in M.conversion_damage(target)
        assert M.needs_slow_first_load("smollm2")
        heard: list[str] = []
        assert M.smollm2_dir(lambda done, what, heard=heard: heard.append(what)) == target
        assert why in heard[0] and "converting it again" in heard[0]
        assert M.conversion_damage(target) is None and not M.needs_slow_first_load("smollm2")
    assert len(conversions) == 1 + len(damages)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".smollm2-")] == []
