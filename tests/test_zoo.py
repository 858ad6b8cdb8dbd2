"""The zoo coverage suite: every graph we can get offline (Caffe2 model zoo from the onnx wheel, both PyTorch
exporters, tf2onnx style, the trained models, and the transformer-era networks of
``tests/support/transformer_models.py``: ViTs, DeiT, MobileNetV3, ConvNeXt) keeps its logits, has a gradient equal to
PyTorch autograd on the original graph in float64, satisfies LRP-0 = gradient×input where piecewise linear (the
transformers are not: their rows say n/a), and every method runs, AttnLRP and CP-LRP included.

Every method's relevance is checked on each graph once: here for the zoo and small graphs; for the full-size
PyTorch exports by ``test_zennit_parity`` (each method against Zennit: finite and correct, which is more than
finite); for EfficientNet-Lite0 by ``test_efficientnet`` (finite, non-zero, of the input's shape). Their rows here
check the logits, the gradient and LRP-0.
"""
from __future__ import annotations

import pytest

from explainer import METHODS
from tests.support.zoo_check import Row, check, model_sources

SOURCES = model_sources()
FAST = ["zoo/squeezenet", "zoo/shufflenet", "torch-legacy/small", "torch-dynamo/small", "tf2onnx/small_nhwc",
        "trained/digits_cnn", "trained/digits_vit", "torch-legacy/convnext-conv"]
#: fast rows where LRP-0 = gradient×input does not hold by design (LayerNorm, softmax, GELU), so it is not checked;
#: on every other fast row it is (squeezenet's final softmax is left out first)
NOT_PIECEWISE_LINEAR = {"trained/digits_vit": "Erf, LayerNormalization, Softmax",
                        "torch-legacy/convnext-conv": "Erf, LayerNormalization, Pow, Sqrt"}
FULL_SIZE = [f"torch-{exporter}/{net}" for net in ("alexnet", "vgg16") for exporter in ("legacy", "dynamo")]
SLOW = [name for name in SOURCES if name not in FAST + FULL_SIZE]
#: rows whose every-method check lives in another test module (see the module docstring)
ELSEWHERE = {"trained/efficientnet_lite0"}
REFERENCE_METHODS = ("gradient", "lrp-0")


def _assert_green(row: Row) -> None:
    assert row.error is None, row.error
    assert not row.methods_failed, row.methods_failed
    assert row.logits_diff <= 1e-4, f"logits differ by {row.logits_diff:.3g} (relative)"
    assert row.gradient_cosine >= 0.999, f"gradient cosine to autograd {row.gradient_cosine}"
    assert row.lrp0_cosine is None or row.lrp0_cosine >= 0.999, f"LRP-0 vs gradient×input {row.lrp0_cosine}"


@pytest.mark.parametrize("name", FAST)
def test_small_models(name):
    row = check(name, SOURCES[name])
    _assert_green(row)
    assert row.methods_ok == list(METHODS)
    assert row.lrp0_na == NOT_PIECEWISE_LINEAR.get(name, "")
    assert (row.lrp0_cosine is None) == (name in NOT_PIECEWISE_LINEAR)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_large_models(name):
    methods = REFERENCE_METHODS if name in ELSEWHERE else tuple(METHODS)
    row = check(name, SOURCES[name], methods=methods)
    _assert_green(row)
    assert row.methods_ok == list(methods)


@pytest.mark.slow
def test_full_size_exports(reference_net):
    """The shared explainer of each full-size export (also used by its Zennit parity test)."""
    row = check(reference_net.label, reference_net.path, methods=REFERENCE_METHODS, explainer=reference_net.explainer)
    _assert_green(row)
    assert row.methods_ok == list(REFERENCE_METHODS)
    assert row.lrp0_cosine is not None  # ReLU/max-pool nets: LRP-0 = gradient×input is checked
