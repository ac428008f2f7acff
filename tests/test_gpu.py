"""The accelerator path (CUDA, half precision). Skipped where there is no GPU, as on CI."""

import numpy as np
import pytest
import torch

from tests.tiny import all_attention, eager_attentions
from viz.models import load_model
from viz.trace import build_trace

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_trace_on_cuda_matches_recomputation(tiny_dirs, dtype):
    loaded = load_model(f"path:{tiny_dirs['llama']}", device="cuda", dtype=dtype)
    assert loaded.device.type == "cuda" and str(loaded.dtype) == f"torch.{dtype}"
    trace = build_trace(loaded, "the cat sat on the mat")
    stack = trace.stacks["decoder"]
    record = stack.layers[0]
    # q/k/v stay on the GPU in the model's dtype; maps are computed there and come back as float32 numpy
    assert record.query.device.type == "cuda" and record.key.dtype == loaded.dtype
    assert trace.device.startswith("cuda") and stack.attention(0).dtype == np.float32
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(all_attention(stack), eager_attentions(loaded, trace)["decoder"], atol=tolerance)
    for head in range(stack.n_heads):
        np.testing.assert_allclose(
            stack.attention(1, head) @ stack.value(1, head), stack.context(1, head), atol=tolerance
        )


def test_smollm2_on_cuda_knows_paris():
    loaded = load_model("smollm2", device="cuda", dtype="float16")
    trace = build_trace(loaded, "The capital of France is")
    assert loaded.tokenizer.decode([int(trace.logits()[-1].argmax())]) == " Paris"
