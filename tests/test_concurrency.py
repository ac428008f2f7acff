"""Browser sessions share one cached model: concurrent traces must not leak into each other."""

import threading

import numpy as np
import pytest

from viz.models import load_model
from viz.trace import build_trace

TEXTS = [
    "the cat sat on the mat .",
    "time flies like an arrow",
    "i looked at my dog and saw that it was late",
    "transformers are great !",
    "paris is the capital of france",
    "a red car is fast",
    "what where who",
    "i ve been waiting for a huggingface course my whole life",
]


def _compare(a, b):
    assert a.tokens["source"].raw == b.tokens["source"].raw
    for name, stack in a.stacks.items():
        other = b.stacks[name]
        for layer in range(stack.n_layers):
            np.testing.assert_array_equal(stack.attention(layer), other.attention(layer))
            for head in range(stack.n_heads):
                for read in ("query", "key", "value", "context"):
                    np.testing.assert_array_equal(getattr(stack, read)(layer, head), getattr(other, read)(layer, head))


@pytest.mark.parametrize("which", ["llama", "marian"])
def test_eight_threads_get_their_single_thread_results(tiny_dirs, minilm, which):
    loaded = load_model(f"path:{tiny_dirs[which]}")
    cases = [(loaded, t) for t in TEXTS] + [(minilm, t) for t in TEXTS[:4]]
    alone = [build_trace(m, t) for m, t in cases]
    together: list = [None] * len(cases)
    barrier = threading.Barrier(8)

    def work(i):
        barrier.wait() if i < 8 else None
        together[i] = build_trace(*cases[i])

    for _ in range(3):  # several rounds: interleavings differ
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(cases))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for a, b in zip(alone, together, strict=True):
            _compare(a, b)
