"""Decomposed activations and LayerNorm, as exporters write them, are fused at canonicalisation
(``frontend/patterns.py``) into one op each: the canonical graph has the fused op, keeps the original model's logits
(ONNX Runtime) and has the gradient of torch autograd (float64); a pattern whose inner tensor is read elsewhere stays
as it is. Also the activation kinds added for them (gelu, mish, erf, sqrt, exp, pow): emission at old and new
opsets, exact derivatives, the identity rule of LRP and the sign rules."""
from __future__ import annotations

import copy
import math
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from explainer import Explainer
from explainer.frontend.fold import fold
from explainer.frontend.ir import CNode
from explainer.frontend.patterns import fuse_patterns
from explainer.ops import OPS
from graphs.export import export
from tests.support.onnx_graphs import G, run

#: ONNX ops a fused pattern becomes (an export that already has one is not a decomposed one)
FUSED = {"Gelu", "Mish", "HardSwish", "HardSigmoid", "LayerNormalization"}


def _x(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _autograd(f, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """d f(x)[target] / dx in float64; ``f`` is a float64 torch function or module."""
    xt = torch.from_numpy(x).double().requires_grad_(True)
    f(xt).gather(1, torch.from_numpy(target)[:, None]).sum().backward()
    return xt.grad.numpy()


def _check(model: onnx.ModelProto, x: np.ndarray, grad_of=None, method: str = "gradient") -> Explainer:
    """The explainer keeps the model's logits and, with ``grad_of`` (a float64 torch function), its gradient."""
    ex = Explainer(model, method)
    np.testing.assert_allclose(ex.forward(x), run(model, x).reshape(len(x), -1), rtol=0, atol=1e-4)
    if grad_of is not None:
        target = np.arange(len(x)) % ex.num_classes
        np.testing.assert_allclose(ex.explain(x, target).relevance, _autograd(grad_of, x, target), rtol=1e-3,
                                   atol=1e-5)
    return ex


def _export(net: nn.Module, path, exporter: str, opset: int | None, input_shape: tuple[int, ...]) -> onnx.ModelProto:
    model = onnx.load(str(export(net, path, exporter=exporter, opset=opset, input_shape=input_shape).path))
    assert not FUSED & {n.op_type for n in model.graph.node}, "the export is not the decomposed form"
    return model


class HardSwishPy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * F.relu6(x + 3) / 6


class HardSigmoidPy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3) / 6


class HandLayerNorm(nn.Module):
    """LayerNorm written out as mean/variance arithmetic over ``dim`` (ConvNeXt's channels-first LayerNorm for
    ``dim=1``, its γ and β broadcast over the spatial axes)."""

    def __init__(self, n: int, dim: int = -1, eps: float = 1e-6) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.rand(n) + 0.5)
        self.bias = nn.Parameter(torch.randn(n) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(self.dim, keepdim=True)
        s = (x - u).pow(2).mean(self.dim, keepdim=True)
        y = (x - u) / torch.sqrt(s + self.eps)
        if self.dim == 1:
            return self.weight[:, None, None] * y + self.bias[:, None, None]
        return y * self.weight + self.bias


def _mlp(middle: nn.Module) -> nn.Module:
    """Linear -> ``middle`` -> Linear, the first layer's weights large enough to reach relu6's and GELU's bends."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), middle, nn.Linear(8, 4)).eval()
    with torch.no_grad():
        net[0].weight.mul_(4)
    return net


_slow = pytest.mark.slow  # the first dynamo export of a session takes ~3 s


@pytest.mark.parametrize(("act", "exporter", "opset", "kind", "label"), [
    pytest.param(nn.GELU(), "legacy", None, "gelu", "GELU pattern", id="gelu-legacy"),
    pytest.param(nn.GELU(approximate="tanh"), "legacy", None, "gelu", "GELU (tanh", id="gelu-tanh-legacy"),
    pytest.param(nn.GELU(), "dynamo", 18, "gelu", "GELU pattern", id="gelu-dynamo18", marks=_slow),
    pytest.param(nn.GELU(approximate="tanh"), "dynamo", 18, "gelu", "GELU (tanh", id="gelu-tanh-dynamo18",
                 marks=_slow),
    pytest.param(nn.Mish(), "legacy", None, "mish", "Mish", id="mish-legacy"),
    pytest.param(HardSwishPy(), "legacy", None, "hardswish", "hard-swish", id="hardswish-legacy"),
    pytest.param(HardSwishPy(), "dynamo", None, "hardswish", "hard-swish", id="hardswish-dynamo", marks=_slow),
    pytest.param(HardSigmoidPy(), "legacy", None, "hardsigmoid", "hard-sigmoid", id="hardsigmoid-legacy"),
])
def test_exported_activation_is_fused(tmp_path, act, exporter, opset, kind, label):
    net = _mlp(act)
    model = _export(net, tmp_path / "m.onnx", exporter, opset, (1, 6))
    ex = _check(model, _x((3, 6)), copy.deepcopy(net).double())
    assert [(n.op, n.attrs.get("kind")) for n in ex.graph.nodes] == [("Dense", None), ("Activation", kind),
                                                                      ("Dense", None)]
    assert any(c.startswith(f"fused 1 decomposed {label}") for c in ex.changes), ex.changes
    if kind == "gelu":  # emitted at opset 17 or 18, where there is no Gelu op: written out with Erf or Tanh
        assert "Gelu" not in {n.op_type for n in ex.relevance_model.full().graph.node}


@pytest.mark.parametrize("exporter", ["legacy", pytest.param("dynamo", marks=_slow)])
def test_hand_written_layernorm_is_fused(tmp_path, exporter):
    net = _mlp(HandLayerNorm(8))
    model = _export(net, tmp_path / "m.onnx", exporter, 18 if exporter == "dynamo" else None, (1, 6))
    ex = _check(model, _x((3, 6)), copy.deepcopy(net).double())
    assert [n.op for n in ex.graph.nodes] == ["Dense", "LayerNorm", "Dense"]
    ln = ex.graph.nodes[1]
    np.testing.assert_array_equal(ln.params["scale"], net[1].weight.detach().numpy())
    np.testing.assert_array_equal(ln.params["bias"], net[1].bias.detach().numpy())
    assert ln.attrs["axis"] == 1 and math.isclose(ln.attrs["epsilon"], 1e-6, rel_tol=1e-6)
    assert "fused 1 decomposed LayerNorm pattern into LayerNormalization" in ex.changes


def test_channels_first_layernorm_is_fused_between_transposes(tmp_path):
    """ConvNeXt's LayerNorm over the channels of [N, C, H, W], then a GELU the legacy exporter writes out."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), HandLayerNorm(5, dim=1), nn.GELU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(5, 4)).eval()
    model = _export(net, tmp_path / "m.onnx", "legacy", None, (1, 3, 6, 6))
    ex = _check(model, _x((2, 3, 6, 6)), copy.deepcopy(net).double())
    ops = [n.op for n in ex.graph.nodes]
    assert ops[:5] == ["Conv", "Transpose", "LayerNorm", "Transpose", "Activation"]
    assert [n.attrs["perm"] for n in ex.graph.nodes[1:4:2]] == [[0, 2, 3, 1], [0, 3, 1, 2]]
    assert ex.graph.nodes[2].attrs["axis"] == 3
    assert "fused 1 decomposed LayerNorm pattern into Transpose + LayerNormalization + Transpose" in ex.changes


def _tf2onnx_style(opset: int) -> tuple[onnx.ModelProto, str, object]:
    """A dense net with the forms TensorFlow/tf2onnx write (constants shaped [] and [1] mixed): a Keras LayerNorm
    as batch_normalization (x·s + (β − mean·s)), tf.nn.gelu(approximate=True) with Pow(x, 3), a LayerNorm as
    d · (Reciprocal(σ) · γ) + β, Keras' hard-swish x · relu6(x + 3) · (1/6), and a hard-sigmoid whose relu6 is
    Min(Max(·, 0), 6). Returns the model, its output and a float64 torch function of the same network."""
    rng = np.random.default_rng(1)
    w = {"w1": rng.standard_normal((8, 12)), "b1": rng.standard_normal(12) * 0.1,
         "g1": rng.uniform(0.5, 1.5, 12), "be1": rng.standard_normal(12) * 0.1,
         "w2": rng.standard_normal((12, 10)) * 0.5, "b2": rng.standard_normal(10) * 0.1,
         "g2": rng.uniform(1.5, 3.0, 10), "be2": rng.standard_normal(10) * 0.1,
         "w3": rng.standard_normal((10, 5)), "b3": rng.standard_normal(5) * 0.1}
    g = G()
    c = {k: g.w(v.shape, value=v) for k, v in w.items()}

    def scalar(value: float, shape: tuple[int, ...] = ()) -> str:
        return g.w(shape, value=np.full(shape, value))

    def mean(t: str) -> str:
        if opset >= 18:
            return g.node("ReduceMean", [t, g.w((1,), value=[-1], dtype=np.int64)], keepdims=1)
        return g.node("ReduceMean", [t], axes=[-1], keepdims=1)

    h = g.node("Add", [g.node("MatMul", ["x", c["w1"]]), c["b1"]])
    m = mean(h)
    d = g.node("Sub", [h, m])
    var = mean(g.node("Mul", [d, d]))
    s = g.node("Mul", [g.node("Reciprocal", [g.node("Sqrt", [g.node("Add", [var, scalar(1e-3)])])]), c["g1"]])
    h = g.node("Add", [g.node("Mul", [h, s]), g.node("Sub", [c["be1"], g.node("Mul", [m, s])])])
    cubic = g.node("Mul", [scalar(0.044715, (1,)), g.node("Pow", [h, scalar(3.0)])])
    u = g.node("Mul", [scalar(0.7978845608028654), g.node("Add", [h, cubic])])
    h = g.node("Mul", [g.node("Mul", [scalar(0.5), h]), g.node("Add", [scalar(1.0, (1,)), g.node("Tanh", [u])])])
    h = g.node("Add", [g.node("MatMul", [h, c["w2"]]), c["b2"]])
    d = g.node("Sub", [h, mean(h)])
    sigma = g.node("Sqrt", [g.node("Add", [scalar(1e-6), mean(g.node("Pow", [d, scalar(2.0, (1,))]))])])
    h = g.node("Add", [g.node("Mul", [d, g.node("Mul", [g.node("Reciprocal", [sigma]), c["g2"]])]), c["be2"]])
    relu6 = g.node("Clip", [g.node("Add", [h, scalar(3.0, (1,))]), scalar(0.0), scalar(6.0)])
    h = g.node("Mul", [g.node("Mul", [h, relu6]), scalar(0.16666667, (1,))])
    relu6 = g.node("Min", [g.node("Max", [g.node("Add", [scalar(3.0), h]), scalar(0.0)]), scalar(6.0)])
    h = g.node("Div", [relu6, scalar(6.0, (1,))])
    out = g.node("Add", [g.node("MatMul", [h, c["w3"]]), c["b3"]])

    t = {k: torch.from_numpy(v.astype(np.float32)).double() for k, v in w.items()}

    def reference(x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x @ t["w1"] + t["b1"], (12,), t["g1"], t["be1"], 1e-3)
        y = F.gelu(y, approximate="tanh") @ t["w2"] + t["b2"]
        y = F.hardsigmoid(F.hardswish(F.layer_norm(y, (10,), t["g2"], t["be2"], 1e-6)))
        return y @ t["w3"] + t["b3"]

    return g.model(["unk__1", 8], out, opset=opset), out, reference


@pytest.mark.parametrize("opset", [13, 18])
def test_tf2onnx_forms_are_fused(opset):
    """ReduceMean's axes are an attribute at opset 13, an input at 18."""
    model, out, reference = _tf2onnx_style(opset)
    folded = fold(model, "x", (1, 8), out, "test")
    changes = fuse_patterns(folded)
    assert Counter(n.op_type for n in folded.nodes) == Counter(
        {"MatMul": 3, "Add": 3, "LayerNormalization": 2, "Gelu": 1, "HardSwish": 1, "HardSigmoid": 1})
    assert sorted(changes) == ["fused 1 decomposed GELU (tanh approximation) pattern into Gelu(approximate='tanh')",
                               "fused 1 decomposed hard-sigmoid pattern into HardSigmoid",
                               "fused 1 decomposed hard-swish pattern into HardSwish",
                               "fused 2 decomposed LayerNorm patterns into LayerNormalization"]
    assert folded.nodes[-1].output[0] == out
    ex = _check(model, _x((3, 8)), reference)
    assert Counter(n.op for n in ex.graph.nodes) == Counter({"Dense": 3, "LayerNorm": 2, "Activation": 3})


def test_pattern_with_an_inner_tensor_read_elsewhere_is_not_fused():
    """relu6(x + 3)/6 whose relu6 also feeds a residual Add, and 0.5·x·(1 + erf(x/√2)) whose erf does: the nodes stay
    (Erf as an activation of its own, x·(1 + erf) as a product) and the logits and gradient still match."""
    rng = np.random.default_rng(2)
    w1, w2, w3 = rng.standard_normal((6, 8)), rng.standard_normal((8, 8)) * 0.5, rng.standard_normal((8, 3))
    g = G()
    h = g.node("MatMul", ["x", g.w(w1.shape, value=w1)])
    relu6 = g.node("Clip", [g.node("Add", [h, g.w((), value=3.0)]), g.w((), value=0.0), g.w((), value=6.0)])
    h = g.node("Add", [g.node("Div", [relu6, g.w((), value=6.0)]), relu6])
    h = g.node("MatMul", [h, g.w(w2.shape, value=w2)])
    erf = g.node("Erf", [g.node("Div", [h, g.w((), value=1.4142135)])])
    gelu = g.node("Mul", [g.node("Mul", [h, g.node("Add", [erf, g.w((), value=1.0)])]), g.w((), value=0.5)])
    out = g.node("MatMul", [g.node("Add", [gelu, erf]), g.w(w3.shape, value=w3)])
    model = g.model(["N", 6], out)

    folded = fold(model, "x", (1, 6), out, "test")
    before = [n.op_type for n in folded.nodes]
    assert fuse_patterns(folded) == [] and [n.op_type for n in folded.nodes] == before

    t1, t2, t3 = (torch.from_numpy(a.astype(np.float32)).double() for a in (w1, w2, w3))

    def reference(x: torch.Tensor) -> torch.Tensor:
        r = F.relu6(x @ t1 + 3)
        y = (r / 6 + r) @ t2
        e = torch.erf(y / 1.4142135)
        return (y * (1 + e) * 0.5 + e) @ t3

    ex = _check(model, _x((3, 6)), reference)
    kinds = [n.attrs["kind"] for n in ex.graph.nodes if n.op == "Activation"]
    assert kinds == ["clip", "erf"] and "Product" in {n.op for n in ex.graph.nodes}


def test_standalone_activations_at_opset_20():
    """Gelu (both approximations) and Mish as ONNX ops, Erf, Sqrt, Exp and Pow with constant exponents (an int64 3,
    a float 2 and -1.5 on a positive base): their exact derivatives, and Gelu emitted as itself from opset 20."""
    rng = np.random.default_rng(3)
    w1, w2 = rng.standard_normal((4, 6)), rng.standard_normal((6 * 7, 3)) * 0.3
    g = G()
    h = g.node("MatMul", ["x", g.w(w1.shape, value=w1)])
    pos = g.node("Exp", [g.node("Mul", [h, g.w((), value=0.5)])])
    parts = [g.node("Gelu", [h]), g.node("Gelu", [h], approximate="tanh"), g.node("Mish", [h]), g.node("Erf", [h]),
             g.node("Sqrt", [pos]), g.node("Pow", [h, g.w((), value=3, dtype=np.int64)]),
             g.node("Add", [g.node("Pow", [h, g.w((1,), value=[2.0])]), g.node("Pow", [pos, g.w((), value=-1.5)])])]
    out = g.node("MatMul", [g.node("Concat", parts, axis=1), g.w(w2.shape, value=w2)])
    model = g.model(["N", 4], out, opset=20)
    t1, t2 = (torch.from_numpy(a.astype(np.float32)).double() for a in (w1, w2))

    def reference(x: torch.Tensor) -> torch.Tensor:
        y = x @ t1
        e = torch.exp(y * 0.5)
        parts = [F.gelu(y), F.gelu(y, approximate="tanh"), F.mish(y), torch.erf(y), torch.sqrt(e), y ** 3,
                 y ** 2 + e ** -1.5]
        return torch.cat(parts, 1) @ t2

    ex = _check(model, _x((3, 4)), reference)
    kinds = Counter(n.attrs["kind"] for n in ex.graph.nodes if n.op == "Activation")
    assert kinds == Counter({"gelu": 2, "pow": 3, "exp": 1, "mish": 1, "erf": 1, "sqrt": 1})
    emitted = Counter(n.op_type for n in ex.relevance_model.full().graph.node)
    assert emitted["Gelu"] == 2 and emitted["Mish"] == 1


def test_lrp_passes_relevance_through_a_fused_gelu(tmp_path):
    """The identity rule: with LRP-0 on bias-free dense layers the relevance sums to the target logit."""
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(6, 8, bias=False), nn.GELU(), nn.Linear(8, 4, bias=False)).eval()
    model = _export(net, tmp_path / "m.onnx", "legacy", None, (1, 6))
    explanation = Explainer(model, "lrp-0").explain(_x((3, 6), seed=5))
    np.testing.assert_allclose(explanation.conservation, 1.0, rtol=1e-4)


def test_sign_rules_of_the_new_activation_kinds():
    activation = OPS["Activation"]

    def nonnegative(kind: str, input_nonnegative: bool, **attrs) -> bool:
        node = CNode("Activation", ["x"], "y", "act", kind, {"kind": kind, **attrs})
        return activation.output_nonnegative(node, [input_nonnegative])

    assert nonnegative("sqrt", False) and nonnegative("exp", False)
    assert nonnegative("pow", False, exponent=2.0) and nonnegative("pow", False, exponent=-2.0)
    assert not nonnegative("pow", False, exponent=3.0) and not nonnegative("pow", False, exponent=0.5)
    for kind in ("gelu", "mish", "erf", "pow"):
        assert nonnegative(kind, True, exponent=3.0) and not nonnegative(kind, False, exponent=3.0)
