"""Public mode and the forward-pass queue (viz.serving), and literal messages on every message path."""

from __future__ import annotations

import threading
import time

import pytest

from tests.apptest import problems, run_page
from viz.errors import AtlasError
from viz.serving import PassQueue, ServingPolicy

MARKS = [
    "![p](http://203.0.113.13/p.png)",
    "[Session expired - sign in again](https://203.0.113.16/login)",
    ":red[**alarm**] :smile: $x^2$ <b>b</b> <script>alert(1)</script> `code` _i_ ~~s~~ # h",
    "www.example.org and admin@example.org",
]


def test_policy_from_environment():
    assert ServingPolicy.from_env({}) == ServingPolicy()  # a local run: no limits, as before
    public = ServingPolicy.from_env({"ATLAS_PUBLIC": "1", "ATLAS_ALLOWED_MODELS": "gpt2, org/m ,gpt2"})
    assert public == ServingPolicy(True, ("gpt2", "org/m"), max_tokens=1024, concurrent_passes=2)
    tuned = ServingPolicy.from_env({"ATLAS_PUBLIC": "yes", "ATLAS_MAX_TOKENS": "256", "ATLAS_CONCURRENT_PASSES": "x"})
    assert (tuned.max_tokens, tuned.concurrent_passes, tuned.token_cap(8192), tuned.token_cap(128)) == (
        256,
        2,
        256,
        128,
    )
    catalog = {"minilm": None}
    for key in ("minilm", "hub:gpt2"):
        public.check_model(key, catalog)
    for key in ("path:/etc", "path:~", "hub:other/model", "hub:", "gpt2"):
        with pytest.raises(AtlasError, match="only offers the models in its list"):
            public.check_model(key, catalog)
    ServingPolicy().check_model("path:/anything", catalog)  # a local run may load anything


def test_pass_queue_bounds_concurrency_and_tells_each_waiter_its_place():
    queue, lock = PassQueue(2), threading.Lock()
    running, most, places = [0], [0], {}

    def one(name: str) -> None:
        with queue.turn(lambda place: places.setdefault(name, []).append(place)):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.3)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=one, args=(f"s{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # arrive in order
    for thread in threads:
        thread.join()
    assert most[0] == 2
    assert (queue.running, queue.waiting) == (0, 0)
    assert "s0" not in places and "s1" not in places  # free slots: no waiting, no notice
    assert places["s2"][0] == 1 and places["s5"][0] == 4  # first come, first served
    assert all(p == sorted(p, reverse=True) for p in places.values())  # a place only ever improves


def test_a_waiter_that_gives_up_leaves_the_line():
    queue, started = PassQueue(1), threading.Event()

    class Stop(Exception):
        pass

    def quit_when_told(place: int) -> None:
        raise Stop

    def hold() -> None:
        with queue.turn():
            started.set()
            time.sleep(0.3)

    holder = threading.Thread(target=hold)
    holder.start()
    started.wait()
    with pytest.raises(Stop):
        with queue.turn(quit_when_told):
            pass
    assert queue.waiting == 0
    holder.join()
    with queue.turn():  # the slot comes free again
        assert queue.running == 1


@pytest.mark.parametrize("mark", MARKS)
def test_error_messages_quote_a_model_id_literally(mark, monkeypatch):
    """The hub id is user text: the message escapes every mark (literal()) so no image, link, colour or
    maths can render; a browser test checks the rendered DOM (tests/test_hostile.py)."""
    from ui.messages import literal

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = run_page(model=f"hub:{mark}", text="hi")
    assert not at.exception
    bodies = [e.value for e in at.error]
    assert bodies and all(literal(f"hub:{mark}") in b or literal(mark) in b for b in bodies), bodies
    assert all("](" not in b.replace("\\](", "") for b in bodies)


def test_public_mode_serves_the_list_only(monkeypatch):
    monkeypatch.setenv("ATLAS_PUBLIC", "1")
    monkeypatch.setenv("ATLAS_ALLOWED_MODELS", "gpt2")
    at = run_page(model="path:/etc", text="hello", max_tokens=5000)
    assert not at.exception and not at.error
    assert at.selectbox(key="model_choice").value == "minilm"
    options = " · ".join(at.selectbox(key="model_choice").options)
    assert "gpt2 (hub)" in options  # the allowlist
    assert "Local model directory" not in options and "Other Hugging Face hub model" not in options
    assert any("only offers the models listed here" in w.value for w in at.warning)
    assert at.number_input(key="max_tokens").value == 512  # MiniLM's own limit, under the cap
    at = run_page(model="smollm2", text="hello", max_tokens=5000)  # a model whose limit is above the cap
    assert at.number_input(key="max_tokens").value == 1024  # the per-session cap, not the URL's 5,000
    assert at.number_input(key="max_tokens").proto.max == 1024


def test_public_mode_hides_library_messages_that_may_name_server_paths(monkeypatch):
    monkeypatch.setenv("ATLAS_PUBLIC", "1")
    import ui.views as views

    def broken(*args, **kwargs):
        raise OSError("[Errno 2] No such file: '/srv/secret/model.safetensors'")

    monkeypatch.setattr(views, "build_trace", broken)
    at = run_page(model="minilm", text="a text no test has traced before: public-mode-error")
    assert problems(at) and all("/srv/secret" not in p for p in problems(at))
    assert any("OSError" in p and "details are in the server" in p for p in problems(at))


def test_generation_on_the_alignment_page_stays_within_max_tokens_and_says_so():
    text = "the cat sat on the mat " * 5  # 30 SmolLM2 tokens
    at = run_page("pages/4_Alignment.py", model="smollm2", text=text, max_tokens=36)
    at.slider(key="continuation").set_value(16).run()
    assert problems(at) == []
    notes = [c.value for c in at.caption if "left room for" in c.value]
    assert notes and "Max tokens (36) left room for" in notes[0] and "of the 16 tokens" in notes[0], notes


def test_models_loaded_by_sessions_at_once_equal_models_loaded_alone(tiny_dirs):
    """Four sessions load four models at the same moment (or the warm-up thread and a first visitor):
    every model gets its checkpoint's weights, tied heads stay tied, and transformers' loading patches
    do not outlive the loads. Unserialized, every round left some model on the meta device."""
    import torch
    from transformers.modeling_utils import PreTrainedModel

    from viz.models import load_model

    keys = [f"path:{tiny_dirs[name]}" for name in ("bert", "gpt2", "llama", "bart")]
    alone = {key: load_model(key).model.state_dict() for key in keys}
    originals = (PreTrainedModel.tie_weights, torch.linspace, torch.get_default_dtype())
    start, loaded, errors = threading.Barrier(len(keys)), {}, []

    def load(key: str) -> None:
        start.wait()
        try:
            loaded[key] = load_model(key).model
        except Exception as err:  # noqa: BLE001 -- reported by the assertion below
            errors.append(f"{key}: {err!r}")

    threads = [threading.Thread(target=load, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for key, model in loaded.items():
        weights = model.state_dict()
        assert weights.keys() == alone[key].keys()
        assert all(torch.equal(weights[name], alone[key][name]) for name in weights), key
        if model.config.tie_word_embeddings and model.get_output_embeddings() is not None:
            assert model.get_output_embeddings().weight is model.get_input_embeddings().weight, key
    assert (PreTrainedModel.tie_weights, torch.linspace, torch.get_default_dtype()) == originals
