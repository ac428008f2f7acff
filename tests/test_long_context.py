"""Long inputs in the app: thousands of tokens on a tiny model (cheap), every page, exact numbers.

The offline models at 4,096 tokens are measured by hand in bench/ (bench/RESULTS.md)."""

import threading

import numpy as np
import pytest

from tests.apptest import decode, plotly_specs, problems, run_page
from tests.tiny import build_tiny, eager_attentions
from ui import views
from ui.page import pages as all_pages
from viz.cache import ByteBudgetCache
from viz.models import load_model
from viz.trace import build_trace

TOKENS = 3000
WORDS = "the cat sat on the mat time flies like an arrow paris is the capital of france".split()
TEXT = " ".join(WORDS[i % len(WORDS)] for i in range(TOKENS + 50))
# Every page but the two that compare or teach on other models (they read the catalog's models).
PAGES = [path for path, _, _ in all_pages() if not path.endswith(("8_Encoder_vs_decoder.py", "90_Guided_walk.py"))]


@pytest.fixture(scope="module")
def long_llama(tmp_path_factory):
    directory = build_tiny("llama", tmp_path_factory.mktemp("long-llama"), max_position_embeddings=4096)
    loaded = load_model(f"path:{directory}")
    loaded.tokenizer.model_max_length = 8192
    loaded.tokenizer.save_pretrained(directory)  # so the app's own load sees the same limit
    return f"path:{directory}", loaded


def _max_pool(a: np.ndarray, size: int, fill: float = 0.0) -> np.ndarray:
    rows, cols = -(-a.shape[0] // size) * size, -(-a.shape[1] // size) * size
    padded = np.full((rows, cols), fill)
    padded[: a.shape[0], : a.shape[1]] = a
    return padded.reshape(rows // size, size, cols // size, size).max(axis=(1, 3))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_at_thousands_of_tokens(long_llama, page):
    key, _ = long_llama
    at = run_page(page, model=key, text=TEXT, max_tokens=TOKENS, continuation=8)
    assert problems(at) == []
    assert any(f"{TOKENS} tokens" in c.value for c in at.caption)
    for spec in plotly_specs(at):  # no figure sends more cells than a 512 × 512 overview
        for data in spec["data"]:
            if data["type"] == "heatmap":
                assert decode(data["z"]).size <= 512 * 512


def test_overview_is_the_max_pooled_model_attention_and_zoom_is_full_resolution(long_llama):
    key, loaded = long_llama
    at = run_page("attention_maps.py", model=key, text=TEXT, max_tokens=TOKENS, layer=1, head=4)
    assert problems(at) == []
    trace = build_trace(loaded, TEXT, max_tokens=TOKENS)
    reference = eager_attentions(loaded, trace)["decoder"][1, 4]
    spec = plotly_specs(at)[0]
    assert spec["layout"]["title"]["text"] == "Layer 1, head 4 · each cell: max of a 6×6 token block"
    z = decode(spec["data"][0]["z"])
    assert z.shape == (500, 500)
    visible = ~np.isnan(z)  # cells whose whole block is masked are drawn grey
    np.testing.assert_allclose(z[visible], _max_pool(reference, 6)[visible], atol=1e-5)
    all_masked = _max_pool(np.tril(np.ones((TOKENS, TOKENS))), 6) == 0  # grey only where no cell is visible
    assert (~visible == all_masked).all()
    assert decode(spec["data"][0]["y"])[100] == 600  # the axes are token positions
    assert "text" not in at.query_params  # ~15,000 characters: kept in the session, not in the link
    assert any("too long for the page's link" in c.value for c in at.caption)

    at.slider(key="zoom_rows").set_value((1000, 1400))
    at.slider(key="zoom_cols").set_value((900, 1300)).run()
    assert problems(at) == []
    spec = plotly_specs(at)[0]
    assert spec["layout"]["title"]["text"] == "Layer 1, head 4"  # full resolution: no pooling
    z = decode(spec["data"][0]["z"])
    assert z.shape == (401, 401) and decode(spec["data"][0]["y"])[0] == 1000
    region = reference[1000:1401, 900:1301]
    np.testing.assert_allclose(np.nan_to_num(z), region, atol=1e-5)

    line = next(s for s in plotly_specs(at) if s["data"][0]["type"] == "scatter")
    at.select_slider(key="query").set_value(2500).run()
    line = next(s for s in plotly_specs(at) if s["data"][0]["type"] == "scatter")
    np.testing.assert_allclose(decode(line["data"][0]["y"]), reference[2500], atol=1e-5)


def test_model_view_thumbnails_at_thousands_of_tokens(long_llama):
    key, loaded = long_llama
    at = run_page("pages/1_Model_view.py", model=key, text=TEXT, max_tokens=TOKENS)
    assert problems(at) == []
    grid = plotly_specs(at)[0]
    assert grid["data"][0]["type"] == "image" and len(decode(grid["data"][1]["x"])) == 2 * 6  # a marker per head


# ------------------------------------------------------------------ the byte-budget cache
def test_cache_evicts_least_recently_used_by_bytes():
    computed = []

    def value(name, size):
        def compute():
            computed.append(name)
            return (name, size)

        return compute

    cache = ByteBudgetCache(10, size_of=lambda v: v[1])
    cache.get("a", value("a", 4))
    cache.get("b", value("b", 4))
    cache.get("a", value("a", 4))  # a is now the most recent
    cache.get("c", value("c", 4))  # 12 > 10: b (least recent) goes
    assert "a" in cache and "c" in cache and "b" not in cache and cache.used == 8
    cache.get("big", value("big", 50))  # larger than the budget: kept alone, everything else goes
    assert len(cache) == 1 and "big" in cache
    assert computed == ["a", "b", "c", "big"]


def test_cache_budgets_each_device_on_its_own():
    """A GPU trace keeps q/k/v on the GPU and hidden states in RAM: either pool overflowing evicts."""
    cache = ByteBudgetCache({"cpu": 10, "cuda": 5}, size_of=lambda v: v)
    cache.get("a", lambda: {"cpu": 2, "cuda": 3})
    cache.get("b", lambda: {"cpu": 2})
    assert len(cache) == 2
    cache.get("b", lambda: None)  # b is now the most recent, a the least
    cache.get("c", lambda: {"cpu": 1, "cuda": 3})  # cuda 6 > 5: a goes (it holds GPU bytes)
    assert "a" not in cache and "b" in cache and cache.used_by_device() == {"cpu": 3, "cuda": 3}
    cache.get("d", lambda: {"cpu": 1, "cuda": 3})  # cuda over again: c goes, cpu-only b stays though older
    assert list(cache._entries) == ["b", "d"]


def test_cache_computes_a_key_once_for_concurrent_sessions():
    calls = []
    gate = threading.Event()

    def slow():
        calls.append(1)
        gate.wait(5)
        return "trace"

    cache = ByteBudgetCache(100, size_of=lambda v: 1)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("k", slow))) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert results == ["trace"] * 8 and calls == [1]


def test_a_failed_computation_is_not_cached():
    cache = ByteBudgetCache(100, size_of=lambda v: 1)
    with pytest.raises(ValueError):
        cache.get("k", lambda: (_ for _ in ()).throw(ValueError("bad input")))
    assert cache.get("k", lambda: "fine") == "fine"


def test_trace_cache_budget_and_sizes_shown(monkeypatch):
    """The app's Trace cache is bounded by ATLAS_TRACE_CACHE_GB and every page says what a Trace weighs."""
    monkeypatch.setenv("ATLAS_TRACE_CACHE_GB", "0.5")
    views.trace_cache.clear()
    try:
        at = run_page("attention_maps.py", model="minilm", text="The cat sat on the mat.")
        assert problems(at) == []
        caption = next(c.value for c in at.caption if "trace" in c.value)
        assert "cpu: trace 0.4 MB, cache 0.4 MB of 0.50 GB" in caption and "limit 256" in caption
        assert views.trace_cache().budget == 2**29
    finally:
        views.trace_cache.clear()


def test_a_prompt_that_fills_the_cap_generates_nothing_and_says_so(long_llama):
    """Alignment on a decoder at the cap raised 'max_new_tokens must be greater than 0'."""
    from viz.alignment import alignment
    from viz.errors import AtlasError

    _, loaded = long_llama
    trace = build_trace(loaded, TEXT, max_tokens=TOKENS, continuation=8)
    assert trace.prompt_length == len(trace.tokens["source"]) == TOKENS
    with pytest.raises(AtlasError, match="length cap is full"):
        alignment(trace)


def test_block_wise_surprisal_and_kl_equal_the_whole_computation(long_llama, monkeypatch):
    """[T, vocabulary] float64 softmaxes are taken a block of positions at a time: same numbers."""
    from viz import ablation, predictions
    from viz.predictions import softmax

    _, loaded = long_llama
    trace = build_trace(loaded, TEXT, max_tokens=300)
    ablated = build_trace(loaded, TEXT, max_tokens=300, ablate=(("decoder", 1, 2),))
    logits, ids = trace.logits(), trace.tokens["source"].ids
    probs = softmax(logits[:-1])
    p = probs[np.arange(len(ids) - 1), ids[1:]]
    q = softmax(ablated.logits())
    kl = (softmax(logits) * (np.log2(softmax(logits)) - np.log2(q))).sum(-1)
    monkeypatch.setattr(predictions, "ROWS_AT_ONCE", 7)
    monkeypatch.setattr(ablation, "ROWS_AT_ONCE", 7)
    s = predictions.surprisal(trace)
    # The logits come through the model's float32 head a block of rows at a time: another block size is another
    # matmul shape, whose float32 rounding may differ (6e-8 relative seen on one CPU), so float32's tolerance.
    np.testing.assert_allclose(s.probability, p, rtol=1e-6)
    np.testing.assert_array_equal(s.rank, (probs > p[:, None]).sum(1) + 1)
    np.testing.assert_allclose(ablation.kl_divergence(logits, ablated.logits()), kl, rtol=1e-9, atol=1e-12)


def test_pca_axes_are_the_principal_components():
    from viz.hidden import pca_2d

    hidden = np.random.default_rng(0).normal(size=(4, 50, 16)) * np.linspace(3, 0.1, 16)
    projection = pca_2d(hidden)
    flat = hidden.reshape(-1, 16) - hidden.reshape(-1, 16).mean(0)
    _, singular, vt = np.linalg.svd(flat, full_matrices=False)
    reference = (flat @ vt[:2].T).reshape(4, 50, 2)
    np.testing.assert_allclose(np.abs(projection.coords), np.abs(reference), atol=1e-9)  # axes up to sign
    np.testing.assert_allclose(projection.explained, (singular[:2] ** 2 / (singular**2).sum()), atol=1e-12)
