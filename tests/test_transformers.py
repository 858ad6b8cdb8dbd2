"""Transformers and transformer-era CNNs, exported by both PyTorch exporters and explained.

Networks and references are in ``tests/support/transformer_models.py``: a small ViT in several variants (class token
or mean pooling, Conv or Linear patch embedding, exact or tanh GELU, attention written out or
``scaled_dot_product_attention``, DeiT-style distillation token, no biases), MobileNetV3- and ConvNeXt-like CNNs, all
with seeded random weights; and the shipped, trained ``graphs/digits_vit.onnx``. Checks:

- the gradient equals float64 torch autograd on the same module;
- AttnLRP and CP-LRP equal LXT's (``lxt.explicit``, float64, same weights) image by image (cosine ≥ 0.99), and their
  relevance totals equal LXT's: what biases, constant shifts (position embedding, class token) and the softmax's
  Taylor rule absorb is the same;
- conservation where nothing absorbs: CP-LRP on a ViT without biases or position embedding (mean pooling), and
  LRP-0 and epsilon-plus-flat on the CNNs without biases;
- the trained digits ViT is explained end to end by the command line.

Only the ViT (class token, legacy export) and the bias-free ViT run in the fast tier; every other network, and every
dynamo export (2 to 5 s each), is slow.
"""
from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from explainer import Explainer, Explanation
from graphs.export import EXPORTERS
from tests.support import cosine_per_sample
from tests.support.cli import run_cli
from tests.support.paths import LABELS, ROOT, digit_path
from tests.support.transformer_models import Exports, inputs, lxt_relevance, model, torch_gradient, torch_logits

VITS = ("vit", "vit-mean", "vit-linear-patch", "vit-tanh", "vit-sdpa", "deit")
CNNS = ("mobilenetv3", "convnext", "convnext-conv")
FAST = {("vit", "legacy"), ("vit-bias-free", "legacy")}
TARGETS = np.array([0, 3, 7])  # one class per sample of inputs(3, ...): any class, not only the top one
DIGITS_VIT = ROOT / "graphs" / "digits_vit.onnx"
DIGITS_VIT_META = ROOT / "graphs" / "digits_vit.json"


def _cases(names: tuple[str, ...]) -> list:
    """(name, exporter) parameters, slow unless listed in FAST."""
    return [pytest.param(n, e, id=f"{n}-{e}", marks=() if (n, e) in FAST else pytest.mark.slow)
            for n in names for e in EXPORTERS]


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    return Exports(tmp_path_factory.mktemp("transformers"))


@pytest.fixture(scope="session")
def explain(exports: Exports) -> Callable[..., Explanation]:
    """explain(name, exporter, method, x, target): the explanation, with explainers built once per network and
    method for the session."""
    explainers: dict[tuple[str, str, str], Explainer] = {}

    def run(name: str, exporter: str, method: str, x: np.ndarray, target: np.ndarray | None = None) -> Explanation:
        key = (name, exporter, method)
        if key not in explainers:
            base = (name, exporter, "gradient")
            if base not in explainers:
                explainers[base] = Explainer(str(exports(name, exporter)), "gradient", provider="cpu")
            explainers[key] = explainers[base].with_method(method)
        return explainers[key].explain(x, target)
    return run


def _totals(relevance: np.ndarray) -> np.ndarray:
    return relevance.reshape(len(relevance), -1).astype(np.float64).sum(1)


# --------------------------------------------------------------------------------------------------- gradient
@pytest.mark.parametrize(("name", "exporter"), _cases(VITS + CNNS))
def test_gradient_equals_autograd(explain, name, exporter):
    """The gradient graph reproduces float64 autograd: every entry within 1e-3 relative or 1e-4 of the largest
    (float32 ONNX Runtime against float64 torch; measured ≤ 1.2e-5 of the largest), and the logits are the
    module's."""
    x = inputs(3, seed=0)
    e = explain(name, exporter, "gradient", x, TARGETS)
    np.testing.assert_allclose(e.logits, torch_logits(model(name), x), rtol=0,
                               atol=1e-4 * max(1.0, np.abs(e.logits).max()))
    expected = torch_gradient(model(name), x, TARGETS)
    np.testing.assert_allclose(e.relevance, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


# --------------------------------------------------------------------------------------------------- AttnLRP / CP-LRP
@pytest.mark.parametrize(("name", "exporter"), _cases(VITS))
@pytest.mark.parametrize("method", ["attn-lrp", "cp-lrp"])
def test_matches_lxt(explain, name, exporter, method):
    """AttnLRP / CP-LRP equal LXT's on the same weights, image by image: cosine ≥ 0.99 (the two methods differ from
    each other with cosines of 0.2 to 0.8 on these networks), every entry within 1e-2 of the sample's largest, and
    the relevance totals within 1e-3 of the total absolute relevance, so biases, constant shifts and the softmax
    rule absorb what they absorb in LXT. Measured: 1 − cosine ≤ 4e-7, totals within 4e-5, entries within 2e-3;
    the entries differ that much only because LXT stabilises with z + ε and the explainer with z + ε·sign(z), which
    matters where a patch-embedding output is within ~1e-3 of 0 (with ε = 1e-9 on both sides: 6e-5)."""
    x = inputs(3, seed=1)
    got = explain(name, exporter, method, x, TARGETS).relevance
    expected = lxt_relevance(model(name), x, TARGETS, cp=method == "cp-lrp")
    cosines = cosine_per_sample(got, expected)
    assert np.all(cosines >= 0.99), cosines
    for g, r in zip(got, expected):
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-2 * np.abs(r).max())
    scale = np.abs(expected).reshape(len(x), -1).sum(1)
    np.testing.assert_array_less(np.abs(_totals(got) - _totals(expected)), 1e-3 * scale)


@pytest.mark.parametrize(("name", "exporter"), _cases(("vit-bias-free",)))
def test_cp_lrp_conserves_without_biases(explain, name, exporter):
    """With no additive constant in the network (no biases, no position embedding, no class token: mean pooling)
    and constant attention weights, every CP-LRP rule conserves relevance, so Σ R = target logit. The tolerance
    (1e-3 relative, 1e-4 of the largest logit) covers the ε = 1e-6 stabilisers against activations of order 1 and
    float32 sums; LXT conserves it exactly (checked too). AttnLRP does not conserve here: its softmax rule is a
    Taylor expansion with a remainder."""
    x = inputs(4, seed=2)
    e = explain(name, exporter, "cp-lrp", x)
    logit = e.logits[np.arange(len(x)), e.target].astype(np.float64)
    atol = 1e-4 * np.abs(logit).max()
    np.testing.assert_allclose(_totals(e.relevance), logit, rtol=1e-3, atol=atol)
    np.testing.assert_allclose(_totals(lxt_relevance(model(name), x, e.target, cp=True)), logit, rtol=1e-3,
                               atol=atol)
    attn = explain(name, exporter, "attn-lrp", x, e.target)
    assert np.abs(_totals(attn.relevance) - logit).max() > 1e-2 * np.abs(logit).max()


# --------------------------------------------------------------------------------------------------- CNNs
@pytest.mark.slow
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", ["mobilenetv3-bias-free", "convnext-bias-free"])
@pytest.mark.parametrize(("method", "rtol"), [("lrp-0", 1e-3), ("epsilon-plus-flat", 1e-2)])
def test_conserves_without_biases(explain, name, exporter, method, rtol):
    """Without biases (BatchNorm shifts zeroed, LayerNorms without shift) Σ R = target logit. LRP-0 conserves it
    exactly (1e-3 covers float32 sums), so every op's rule does. Under epsilon-plus-flat, z⁺ drops the relevance of
    neurons without any positive contribution: depthwise kernels on ReLU outputs make many (about 2000 per
    depthwise layer on these 4 images), and after hard-swish some of them carry relevance; MobileNetV3Like loses
    0.3 to 0.5 % that way, ConvNeXtLike 1e-5, hence 1e-2 (flat, ε and the normalised sums conserve)."""
    x = inputs(4, seed=3)
    e = explain(name, exporter, method, x)
    logit = e.logits[np.arange(len(x)), e.target].astype(np.float64)
    np.testing.assert_allclose(_totals(e.relevance), logit, rtol=rtol, atol=1e-4 * np.abs(logit).max())


# --------------------------------------------------------------------------------------------------- digits ViT
def test_digits_vit_is_shipped_trained_and_small():
    """graphs/digits_vit.onnx: one self-contained file under 1 MB, legacy opset 17, ≥ 95 % held-out accuracy as
    recorded by its training script, and every example digit classified correctly by plain ONNX Runtime."""
    meta = json.loads(DIGITS_VIT_META.read_text())
    assert meta["accuracy"]["test"] >= 0.95 and meta["accuracy"]["n_test"] == 360
    proto = onnx.load(str(DIGITS_VIT))
    assert DIGITS_VIT.stat().st_size < 2**20 and meta["onnx"]["bytes"] == DIGITS_VIT.stat().st_size
    assert not any(t.external_data for t in proto.graph.initializer)
    assert {o.domain: o.version for o in proto.opset_import}[""] == 17 == meta["onnx"]["opset"]
    assert {"MatMul", "Softmax", "LayerNormalization"} <= {n.op_type for n in proto.graph.node}
    x = np.stack([np.asarray(Image.open(digit_path(k)), np.float32)[None] / 255.0 for k in range(10)])
    session = ort.InferenceSession(str(DIGITS_VIT), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"input": x})[0].argmax(1), np.arange(10))


def test_digits_vit_explained_by_cli(tmp_path):
    """`explainer explain graphs/digits_vit.onnx examples/digit_3.png --method attn-lrp --sr` explains class 3 and
    writes the relevance and SR map (.npz) and the four PNGs; the relevance is the API's for the same pixels."""
    code, out, err = run_cli(["explain", DIGITS_VIT, digit_path(3), "--method", "attn-lrp", "--sr", "--labels",
                              LABELS, "--out", tmp_path])
    assert code == 0, err
    assert "method attn-lrp" in out
    written = {p.name for p in tmp_path.iterdir()}
    assert {"digit_3.npz", "digit_3_heatmap.png", "digit_3_overlay.png", "digit_3_sr.png",
            "digit_3_sr_overlay.png"} <= written, written
    with np.load(tmp_path / "digit_3.npz") as data:
        assert int(data["target"]) == 3 and int(np.argmax(data["logits"])) == 3
        relevance, sr = data["relevance"], data["sr"]
    assert relevance.shape == (32, 32) and np.all(np.isfinite(relevance)) and np.abs(relevance).max() > 0
    assert sr.shape == (32, 32) and 0.0 <= sr.min() and sr.max() <= 1.0
    x = np.asarray(Image.open(digit_path(3)), np.float32)[None, None] / 255.0
    expected = Explainer(str(DIGITS_VIT), "attn-lrp", provider="cpu").explain(x).relevance[0, 0]
    np.testing.assert_allclose(relevance, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
