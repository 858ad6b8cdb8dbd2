"""The CUDA provider gives the CPU provider's relevance (where a CUDA device works; issue 13 asks such tests to skip
cleanly without one), and the GPU check script says why it cannot run where none does."""
from __future__ import annotations

import numpy as np
import pytest

from explainer import Explainer
from explainer.runtime.providers import cuda_works
from tests.support.paths import DIGITS
from tools.bench import gpu


@pytest.mark.skipif(not cuda_works(), reason="needs a working CUDA device (onnxruntime-gpu and a GPU)")
@pytest.mark.parametrize("method", ["gradient", "epsilon-plus-flat", "epsilon-alpha2-beta1"])
def test_cuda_relevance_equals_cpu_relevance(method):
    x = np.random.default_rng(0).uniform(0, 1, (4, 1, 32, 32)).astype(np.float32)
    on_cpu = Explainer(DIGITS, method, provider="cpu").explain(x, [0, 1, 2, 3])
    on_gpu = Explainer(DIGITS, method, provider="cuda").explain(x, [0, 1, 2, 3])
    assert gpu.cosines(on_cpu.relevance, on_gpu.relevance).min() >= gpu.COSINE
    np.testing.assert_allclose(on_gpu.logits, on_cpu.logits, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(cuda_works(), reason="checks the message given where CUDA does not work")
def test_gpu_check_without_cuda_says_why_and_fails(capsys):
    assert gpu.main(["--models", "digits"]) == 1
    err = capsys.readouterr().err
    assert "CUDA does not work here" in err and "onnxruntime-gpu" in err
