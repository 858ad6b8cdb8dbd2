"""The zoo coverage suite: every graph we can get offline (Caffe2 model zoo from the onnx wheel, both PyTorch
exporters, tf2onnx style, the trained models) keeps its logits, has a gradient equal to PyTorch autograd on the
original graph in float64, satisfies LRP-0 = gradient×input where piecewise linear, and every method runs."""
from __future__ import annotations

import pytest

from tools.zoo_report import check, model_sources

SOURCES = model_sources()
FAST = ["zoo/squeezenet", "zoo/shufflenet", "torch-legacy/small", "torch-dynamo/small", "tf2onnx/small_nhwc",
        "trained/digits_cnn"]
SLOW = [name for name in SOURCES if name not in FAST]


def _assert_green(name: str) -> None:
    row = check(name, SOURCES[name])
    assert row.error is None, row.error
    assert not row.methods_failed, row.methods_failed
    assert row.logits_diff <= 1e-4, f"logits differ by {row.logits_diff:.3g} (relative)"
    assert row.gradient_cosine >= 0.999, f"gradient cosine to autograd {row.gradient_cosine}"
    assert row.lrp0_cosine is None or row.lrp0_cosine >= 0.999, f"LRP-0 vs gradient×input {row.lrp0_cosine}"


@pytest.mark.parametrize("name", FAST)
def test_small_models(name):
    _assert_green(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_large_models(name):
    _assert_green(name)
