"""Canonicalisation keeps the logits and explains what it changed; unsupported graphs are refused by name."""
from __future__ import annotations

import re

import numpy as np
import pytest
from onnx import TensorProto, helper

from explainer import METHODS, Explainer, InputError, UnsupportedOpError
from explainer.frontend.check import check_model
from tests.support.onnx_graphs import G, run


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _assert_logits_kept(model, x, *, softmax_removed=False):
    ex = Explainer(model, "gradient")
    ours = ex.forward(x)
    ref = run(model, x)
    np.testing.assert_allclose(_softmax(ours) if softmax_removed else ours, ref, rtol=1e-4, atol=1e-5)
    return ex


def test_batchnorm_dropout_softmax_and_shape_flatten():
    g = G()
    x = g.node("Sub", ["x", g.w((1, 3, 1, 1), value=[[[[0.4]], [[0.5]], [[0.6]]]])])
    x = g.node("Div", [x, g.w((1, 3, 1, 1), value=[[[[0.2]], [[0.25]], [[0.3]]]])])
    c = g.conv(x, 3, 6, pads=[1, 1, 1, 1])
    bn = g.node("BatchNormalization", [c, g.w((6,), value=g.rng.uniform(0.5, 2, 6)), g.w((6,), 0.1),
                                       g.w((6,), 0.1), g.w((6,), value=g.rng.uniform(0.5, 2, 6))])
    r = g.node("Relu", [bn])
    d = g.node("Dropout", [r])
    i = g.node("Identity", [d])
    shape = g.node("Shape", [i])
    n = g.node("Gather", [shape, g.w((), value=0, dtype=np.int64)], axis=0)
    n = g.node("Unsqueeze", [n, g.w((1,), value=[0], dtype=np.int64)])
    target = g.node("Concat", [n, g.w((1,), value=[-1], dtype=np.int64)], axis=0)
    flat = g.node("Reshape", [i, target])
    mm = g.node("MatMul", [flat, g.w((6 * 8 * 8, 10))])
    dense = g.node("Add", [mm, g.w((10,), 0.1)])
    out = g.node("Softmax", [dense], axis=1)
    model = g.model(["N", 3, 8, 8], out)
    ex = _assert_logits_kept(model, _x((3, 3, 8, 8)), softmax_removed=True)
    changes = " | ".join(ex.changes)
    assert "folded BatchNormalization" in changes
    assert "removed final Softmax" in changes
    assert "static Reshape" in changes
    assert "dropped Dropout" in changes
    assert [n.op for n in ex.graph.nodes] == ["Affine", "Conv", "Activation", "Reshape", "Dense"]


def test_constant_of_shape_weights_and_fixed_batch_are_handled():
    """Caffe2 zoo graphs store weights as ConstantOfShape and bake in a batch of 1."""
    g = G()
    wshape = g.w((4,), value=[4, 3, 3, 3], dtype=np.int64)
    w = g.node("ConstantOfShape", [wshape], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.05]))
    c = g.node("Conv", ["x", w, g.w((4,), 0.1)], kernel_shape=[3, 3])
    r = g.node("Relu", [c])
    flat = g.node("Reshape", [r, g.w((2,), value=[1, -1], dtype=np.int64)])
    out = g.node("Gemm", [flat, g.w((5, 4 * 6 * 6)), g.w((5,), 0.1)], transB=1)
    model = g.model([1, 3, 8, 8], out)
    ex = Explainer(model, "epsilon-plus")
    x = _x((3, 3, 8, 8))
    np.testing.assert_allclose(ex.forward(x), np.concatenate([run(model, x[i:i + 1]) for i in range(3)]),
                               rtol=1e-4, atol=1e-5)
    assert ex.explain(x).relevance.shape == x.shape


def test_conv_variants_and_merges_keep_logits():
    """Asymmetric pads, strides, dilations, groups, depthwise, SAME padding, residual Add, Concat, Pad, activations."""
    g = G(1)
    a = g.conv("x", 4, 8, k=3, strides=[2, 1], pads=[0, 1, 2, 1])
    a = g.node("Relu", [a])
    b = g.conv(a, 8, 8, k=3, group=8, auto_pad="SAME_UPPER")
    b = g.node("Clip", [b, g.w((), value=0.0), g.w((), value=6.0)])
    c = g.conv(a, 8, 8, k=3, group=2, dilations=[2, 2], pads=[2, 2, 2, 2])
    c = g.node("LeakyRelu", [c], alpha=0.1)
    s = g.node("Add", [b, c])
    cat = g.node("Concat", [s, a], axis=1)
    p = g.node("Pad", [cat, g.w((8,), value=[0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)], mode="constant")
    q = g.node("AveragePool", [p], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0)
    m = g.node("MaxPool", [q], kernel_shape=[2, 2], strides=[1, 1], ceil_mode=1)
    gap = g.node("GlobalAveragePool", [m])
    sq = g.node("Flatten", [gap], axis=1)
    sig = g.node("Sigmoid", [sq])
    sw = g.node("Mul", [sq, sig])
    out = g.node("Gemm", [sw, g.w((16, 7))])
    model = g.model(["N", 4, 11, 9], out)
    x = _x((2, 4, 11, 9))
    ex = _assert_logits_kept(model, x)
    assert "swish" in {n.attrs.get("kind") for n in ex.graph.nodes}
    for method in METHODS:
        assert np.all(np.isfinite(ex.with_method(method, low=-3.0, high=3.0).explain(x).relevance)), method


def _head(g: G, t: str, n: int) -> str:
    return g.node("Gemm", [g.node("Flatten", [t]), g.w((n, 3))])


SMOOTH_CASES = {
    "asymmetric-pads-strides": lambda g: _head(g, g.conv("x", 4, 2, strides=[2, 1], pads=[0, 1, 2, 1]), 2 * 6 * 9),
    "depthwise-same": lambda g: _head(g, g.conv("x", 4, 4, group=4, auto_pad="SAME_UPPER"), 4 * 11 * 9),
    "dilated-grouped": lambda g: _head(g, g.conv("x", 4, 4, group=2, dilations=[2, 2], pads=[2, 2, 2, 2]),
                                       4 * 11 * 9),
    "avgpool-exclude-pad": lambda g: _head(g, g.node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2],
                                                     pads=[1, 1, 1, 1], count_include_pad=0), 4 * 6 * 5),
    "avgpool-include-pad": lambda g: _head(g, g.node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2],
                                                     pads=[1, 1, 1, 1], count_include_pad=1), 4 * 6 * 5),
    "avgpool-ceil": lambda g: _head(g, g.node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2],
                                              ceil_mode=1), 4 * 5 * 4),
    "pad": lambda g: _head(g, g.node("Pad", ["x", g.w((8,), value=[0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)]),
                           4 * 13 * 11),
    "swish": lambda g: _head(g, (lambda s: g.node("Mul", [s, g.node("Sigmoid", [s])]))(
        g.node("Flatten", [g.node("GlobalAveragePool", ["x"])])), 4),
    "tanh-elu-softplus": lambda g: _head(g, g.node("Softplus", [g.node("Elu", [g.node("Tanh", ["x"])])]),
                                         4 * 11 * 9),
    "hardswish-hardsigmoid": lambda g: _head(g, g.node("HardSigmoid", [g.node("HardSwish", ["x"])]), 4 * 11 * 9),
    "concat-transpose": lambda g: _head(g, g.node("Transpose", [g.node("Concat", ["x", g.node("Sigmoid", ["x"])],
                                                                      axis=1)], perm=[0, 2, 3, 1]), 8 * 11 * 9),
    "lrn": lambda g: _head(g, g.node("LRN", ["x"], size=3, alpha=0.5, beta=0.75, bias=1.0), 4 * 11 * 9),
}


@pytest.mark.parametrize("case", list(SMOOTH_CASES))
def test_gradient_matches_finite_differences_per_op(case):
    """⟨∂f/∂x, v⟩ = (f(x+hv) − f(x−hv)) / 2h on graphs that are smooth at x (no kinks for h to cross)."""
    g = G(1)
    model = g.model(["N", 4, 11, 9], SMOOTH_CASES[case](g))
    x = _x((1, 4, 11, 9))
    grad = Explainer(model, "gradient").explain(x, 0).relevance.astype(np.float64)
    rng = np.random.default_rng(10)
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        h = 1e-2
        fd = (run(model, (x + h * v).astype(np.float32))[0, 0] - run(model, (x - h * v).astype(np.float32))[0, 0])
        exact = float((grad * v).sum())
        assert abs(fd / (2 * h) - exact) <= 3e-3 * max(1.0, abs(exact)), (case, fd / (2 * h), exact)


@pytest.mark.parametrize("ceil_mode", [0, 1])
@pytest.mark.parametrize("kernel, stride", [(2, 1), (3, 2)])
def test_maxpool_routes_to_the_argmax_like_autograd(kernel, stride, ceil_mode):
    import torch
    g = G()
    model = g.model(["N", 2, 7, 6], g.node("Flatten", [g.node("MaxPool", ["x"], kernel_shape=[kernel, kernel],
                                                               strides=[stride, stride], ceil_mode=ceil_mode)]))
    x = _x((2, 2, 7, 6))
    ex = Explainer(model, "gradient")
    for target in (0, 5, ex.num_classes - 1):
        xt = torch.from_numpy(x).requires_grad_(True)
        torch.nn.functional.max_pool2d(xt, kernel, stride, ceil_mode=bool(ceil_mode)).flatten(1)[:, target].sum() \
            .backward()
        np.testing.assert_array_equal(ex.explain(x, target).relevance, xt.grad.numpy())


def test_tf2onnx_style_graph_matches_numpy_reference():
    from graphs.tf2onnx_style import GRAPH_PATH, reference_forward
    ex = Explainer(str(GRAPH_PATH), "epsilon-plus-flat")
    assert ex.layout == "NHWC"
    x = np.random.default_rng(0).random((2, *ex.input_shape)).astype(np.float32)
    np.testing.assert_allclose(ex.forward(x), reference_forward(x.astype(np.float64)), rtol=1e-4, atol=1e-4)
    e = ex.explain(x)
    assert e.relevance.shape == x.shape and np.all(np.isfinite(e.relevance))


def test_unsupported_ops_are_all_listed_by_node():
    g = G()
    c = g.conv("x", 3, 4)
    e = g.node("Atan", [c])
    t = g.node("Cos", [e])
    out = g.node("Flatten", [t])
    model = g.model(["N", 3, 8, 8], out)
    with pytest.raises(UnsupportedOpError) as info:
        Explainer(model, "gradient")
    message = str(info.value)
    assert "Atan (node 'Atan_node" in message and "Cos (node 'Cos_node" in message
    assert {op for _, op in info.value.nodes} == {"Atan", "Cos"}
    report = check_model(model)
    assert not report.ok
    statuses = {op: status for op, _, status in report.ops}
    assert statuses["Atan"].startswith("UNSUPPORTED") and statuses["Conv"] == "supported"


def test_several_inputs_need_a_name_and_dense_outputs_are_flattened():
    g = G()
    s = g.node("Add", ["x", "y"])
    model = g.model(["N", 3, 4, 4], s, extra_inputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                    ["N", 3, 4, 4])])
    with pytest.raises(InputError, match="2 inputs .*'x', 'y'.*name the one that receives relevance"):
        Explainer(model, "gradient")
    with pytest.raises(InputError, match="no input 'z'; its inputs are 'x', 'y'"):
        Explainer(model, "gradient", input="z")
    g = G()
    model = g.model(["N", 3, 4, 4], g.conv("x", 3, 2, pads=[1, 1, 1, 1]))
    ex = Explainer(model, "gradient")
    assert ex.output_shape == (2, 4, 4) and ex.num_classes == 32
    assert any("flattened output of shape [2, 4, 4] to one score per value" in c for c in ex.changes)


def test_dynamic_spatial_dims_need_a_size():
    g = G()
    out = g.node("Flatten", [g.node("GlobalAveragePool", [g.conv("x", 3, 5)])])
    model = g.model(["N", 3, "H", "W"], out)
    with pytest.raises(InputError, match=r"dynamic dims \[2, 3\]"):
        Explainer(model, "gradient")
    ex = Explainer(model, "epsilon-plus", input_shape=(3, 12, 10))
    assert ex.input_shape == (3, 12, 10)
    assert ex.explain(_x((2, 3, 12, 10))).relevance.shape == (2, 3, 12, 10)


@pytest.mark.parametrize("constant, reason", [
    (np.array([1.0, 0.0, 2.0, 0.0], np.float32).reshape(1, 4, 1, 1), "division by a constant with 2 zero entries"),
    (np.ones((2, 4, 1, 1), np.float32), "does not broadcast to the data input's shape [1, 4, 11, 9]"),
])
def test_unusable_constant_operands_are_refused_with_the_reason(constant, reason):
    """A Div by a constant with zeros, or a constant that would grow the data tensor (here along the batch axis), is
    no element-wise layer: refused at conversion, naming why, instead of a later 'logits differ'."""
    g = G(seed=5)
    op = "Div" if "division" in reason else "Add"
    out = _head(g, g.node(op, ["x", g.w(constant.shape, value=constant)]), 4 * 11 * 9)
    with pytest.raises(UnsupportedOpError, match=re.escape(reason)):
        Explainer(g.model([1, 4, 11, 9], out), "gradient")


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_ceil_mode_pooling_takes_onnx_runtimes_size(op):
    """With ceil_mode and padding, ONNX shape inference (5 wide, kernel 2, stride 2, pads 1+1 -> 4) and ONNX Runtime
    (-> 3: a last window starting in the padding is dropped) disagree; the canonical graph must hold what ONNX Runtime
    computes, or the relevance is wrong (here the global pool's area). AveragePool, whose relevance graph ONNX
    Runtime would refuse to load in that case, is refused with the reason."""
    g = G(1)
    c = g.conv("x", 1, 2, k=1)
    p = g.node(op, [c], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    out = g.node("Gemm", [g.node("Flatten", [g.node("GlobalAveragePool", [p])]), g.w((2, 3))])
    model = g.model(["N", 1, 5, 5], out)
    if op == "AveragePool":
        with pytest.raises(UnsupportedOpError, match="ONNX Runtime pools to 3, ONNX's shape inference to 4"):
            Explainer(model, "gradient")
        return
    ex = Explainer(model, "gradient")
    assert ex.graph.shapes[p] == (1, 2, 3, 3)
    x = _x((2, 1, 5, 5))
    np.testing.assert_allclose(ex.forward(x), run(model, x), rtol=1e-5, atol=1e-6)
    relevance = ex.explain(x, 1).relevance
    eps = 1e-3
    for i in range(3):
        e = np.zeros_like(x)
        e[0].flat[7 * i + 3] = eps
        fd = (run(model, x + e)[0, 1] - run(model, x - e)[0, 1]) / (2 * eps)
        assert abs(relevance[0].flat[7 * i + 3] - fd) < 1e-3 * max(1.0, abs(fd))
