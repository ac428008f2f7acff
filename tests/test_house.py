"""The house (issue 20): ui/ split by concern without cycles, one mechanism for derived views, one streamed
pass for every head statistic, logits on request."""

import ast
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.tiny import TINY, build_tiny, eager_attentions, model_logits
from ui import views
from viz.heads import PATTERNS, head_stats, pattern_cells
from viz.models import load_model
from viz.trace import build_trace

UI = ROOT / "ui"


def _ui_imports(path: Path) -> set[str]:
    """The ui modules a file imports anywhere in it (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "ui":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ui."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("ui.")}
    return found


def test_no_module_of_ui_imports_one_that_imports_it_back():
    graph = {path.stem: _ui_imports(path) for path in UI.glob("*.py") if path.stem != "__init__"}
    assert graph["cold_start"] <= {"views"}  # pages read it before the model stack: nothing else of ui/

    def reaches(start: str, goal: str, seen: frozenset = frozenset()) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    cycles = [name for name in graph if reaches(name, name)]
    assert cycles == [], f"import cycles through {cycles}: {graph}"


def test_no_module_of_ui_is_over_300_lines_and_each_says_what_it_holds():
    for path in UI.glob("*.py"):
        if path.stem == "__init__":
            continue
        assert len(path.read_text().splitlines()) <= 300, path.name
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path.name} does not say what it holds"


def test_pages_are_found_not_listed():
    from ui.page import pages

    files = sorted((ROOT / "pages").glob("*.py"), key=lambda p: int(p.name.split("_")[0]))
    assert [path for path, _, _ in pages()] == ["attention_maps.py", *(f"pages/{f.name}" for f in files)]
    labels = {path: label for path, label, _ in pages()}
    assert labels["pages/1_Model_view.py"] == "Model view" and labels["pages/90_Guided_walk.py"] == "Guided walk"


def test_a_derived_view_is_computed_once_per_trace_and_arguments(tiny_dirs):
    """The mechanism a new page uses: keyed by the Trace's identity and the arguments, shared by sessions."""
    loaded = load_model(f"path:{tiny_dirs['gpt2']}")
    first, second = build_trace(loaded, "the cat sat on the mat"), build_trace(loaded, "the dog sat on the mat")
    calls = []

    def longest_row(trace, layer, head=0):
        calls.append((trace.text, layer, head))
        return trace.stacks["decoder"].attention(layer, head).max()

    views.view_cache().clear()
    a = views.derived(longest_row, first, 1)
    assert views.derived(longest_row, first, 1) == a and len(calls) == 1  # a second session: a cache hit
    views.derived(longest_row, build_trace(loaded, "the cat sat on the mat"), 1)  # same identity, new object
    assert len(calls) == 1
    views.derived(longest_row, second, 1)
    views.derived(longest_row, first, 0)
    views.derived(longest_row, first, 1, head=2)
    assert calls == [("the cat sat on the mat", 1, 0), ("the dog sat on the mat", 1, 0),
                     ("the cat sat on the mat", 0, 0), ("the cat sat on the mat", 1, 2)]  # fmt: skip


def _reference_stats(attention: np.ndarray, ids: np.ndarray, causal: bool, exclude_first: bool) -> dict:
    """TransformerLens's detector score Σ A⊙P / Σ A, entropy and distance, straight from full attention maps."""
    layers, heads, t, _ = attention.shape
    a = attention.astype(np.float64).copy()
    i, j = np.arange(t)[:, None], np.arange(t)[None, :]
    visible = np.broadcast_to((j <= i) if causal else np.ones((t, t), bool), (t, t))
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(a > 0, a * np.log(a), 0.0).sum(-1)
    seen = visible.sum(-1)
    entropy = (-plogp[..., seen > 1] / np.log(seen[seen > 1])).mean(-1)
    distance = (a * np.abs(i - j)).sum((-2, -1)) / t
    if exclude_first:
        a[..., 0] = 0.0
    out = {"entropy": entropy, "distance": distance}
    for name, rule in PATTERNS.items():
        pattern = np.zeros((t, t))
        r, c = pattern_cells(rule, ids, range(t), t, causal, exclude_first)
        pattern[r, c] = 1.0
        out[name] = (a * pattern).sum((-2, -1)) / a.sum((-2, -1))
    return out


@pytest.mark.parametrize("name", ["llama", "bert"])
def test_the_one_pass_equals_separate_computations_from_eager_attention(name, tmp_path, monkeypatch):
    """Thumbnails, both variants of every pattern score, entropy and distance from one streamed pass (blocks
    smaller than a pixel row here) equal each computed on its own from the model's eager attention maps."""
    monkeypatch.setattr("viz.trace.BLOCK_CELLS", 6 * 190 * 5)
    directory = build_tiny(name, tmp_path, max_position_embeddings=512)
    loaded = load_model(f"path:{directory}")
    text = "the cat sat on the mat and the dog sat on the cat , time flies like an arrow " * 10
    trace = build_trace(loaded, text, max_tokens=190)
    stack_name = trace.self_stacks[0]
    stack, ids = trace.stacks[stack_name], trace.tokens["source"].ids
    stats = head_stats(stack, ids, cell=64)
    eager = eager_attentions(loaded, trace)[stack_name]
    size = -(-len(ids) // 64)
    padded = np.zeros((*eager.shape[:2], -(-len(ids) // size) * size, -(-len(ids) // size) * size))
    padded[..., : len(ids), : len(ids)] = eager
    pooled = padded.reshape(*eager.shape[:2], padded.shape[2] // size, size, -1, size).max(axis=(3, 5))
    np.testing.assert_allclose(stats.thumbnails.weights, pooled, atol=1e-6)
    for exclude_first in (False, True):
        reference = _reference_stats(eager, ids, stack.causal, exclude_first)
        scores = stats.scored(exclude_first)
        for pattern in PATTERNS:
            np.testing.assert_allclose(scores.scores[pattern], reference[pattern], atol=1e-5, err_msg=pattern)
        np.testing.assert_allclose(scores.entropy, reference["entropy"], atol=1e-5)
        np.testing.assert_allclose(scores.distance, reference["distance"], atol=1e-3)
    assert (stats.scores.scores["first token"] > 0).all()  # the two variants really differ here
    assert (stats.scores_without_first.scores["first token"] == 0).all()


def test_the_model_view_and_head_roles_share_one_pass(monkeypatch):
    """Whichever page asks first streams every head once; the other reads the cache."""
    import viz.heads
    from tests.apptest import problems, run_page

    calls = []
    original = viz.heads.head_stats
    monkeypatch.setattr(viz.heads, "head_stats", lambda *a, **kw: calls.append(a[4]) or original(*a, **kw))
    text = "One pass for two pages, read by both of them."
    at = run_page("pages/1_Model_view.py", model="minilm", text=text)
    assert problems(at) == [] and calls == [64]  # with thumbnails
    at.switch_page("pages/7_Head_roles.py").run()
    assert problems(at) == [] and calls == [64]  # the Model view's pass: no second one
    at.checkbox(key="roles_exclude_first").check().run()
    assert problems(at) == [] and calls == [64]  # both variants came with it


@pytest.mark.parametrize("name", [*TINY, "smollm2", "minilm-mlm", "word-order"])
def test_logits_on_request_equal_the_models_own(name, tiny_dirs, smollm2):
    if name in TINY:
        loaded = load_model(f"path:{tiny_dirs[name]}")
    else:
        loaded = smollm2 if name == "smollm2" else load_model(name)
    target = "la voiture rouge" if loaded.family == "encoder-decoder" else None
    trace = build_trace(loaded, "the cat sat on the mat , time flies like an arrow", target_text=target)
    assert trace.readout is not None and "logits" not in trace.outputs  # nothing [T × vocabulary] is kept
    reference = model_logits(loaded, trace)
    np.testing.assert_allclose(trace.logits(), reference, atol=1e-4)
    np.testing.assert_allclose(trace.logits(slice(2, 4)), reference[2:4], atol=1e-4)
    assert trace.output_shapes["logits"] == reference.shape
