"""The op registry (``explainer.ops``) is complete: every op declares its conversion, forward, backward, sign rule,
bound rule and layer kind; an op missing one cannot be registered; ONNX op types claimed by several ops dispatch in
the stated order; the analyses ask each op; one model using every registered op gives valid forward and relevance
graphs at every opset from 17 to the newest the installed ONNX Runtime runs. Also the back-end defects found in the
ops: MaxPool indices in the forward graph, an ORT session opened to find AveragePool's divisor, the error for a rule
that cannot apply, and silence when no relevance reaches the input."""
from __future__ import annotations

import ast
import copy
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import explainer
from explainer import METHODS, Explainer, InputError
from explainer.frontend.canonicalise import canonicalise
from explainer.frontend.convert import Alias, ConvertContext, NotSupported, cnode
from explainer.frontend.ir import CanonicalGraph, CNode
from explainer.lrp.composites import KINDS, make_composite
from explainer.ops import CONVERTERS, OPS, Dispatch, Op
from explainer.ops.avgpool import average_pool_divisor
from explainer.ops.base import dispatch_table, registry
from explainer.relevance.analysis import layer_info, nonnegative, propagate_bounds
from explainer.relevance.graph import build_forward_model, build_relevance_model
from tests.support.emitted import check_emitted_graphs, newest_runnable_opset, with_opset
from tests.support.onnx_graphs import G

ABSTRACT = ("converters", "forward", "backward", "output_nonnegative", "propagate_bounds")
LOW, HIGH = -3.0, 3.0


# ---------------------------------------------------------------------------------------------- completeness
@pytest.mark.parametrize("name", list(OPS))
def test_every_op_declares_everything(name):
    op = OPS[name]
    assert isinstance(op, Op) and op.name == name
    assert "kind" in dir(type(op)), f"{name} does not declare its layer kind"
    assert op.kind is None or op.kind in KINDS, op.kind
    for method in ABSTRACT:
        implementation = getattr(type(op), method)
        assert not getattr(implementation, "__isabstractmethod__", False), (name, method)
        assert implementation is not getattr(Op, method), (name, method)
    converters = op.converters()
    assert converters, f"{name} converts no ONNX op type"
    for onnx_op, convert in converters.items():
        assert onnx.defs.has(onnx_op), onnx_op
        assert callable(convert)
        assert name in CONVERTERS[onnx_op].owners


def test_every_emitted_op_is_registered():
    for op in OPS.values():
        assert op.emits <= set(OPS), (op.name, op.emits - set(OPS))


def test_every_onnx_op_maps_to_one_callable():
    assert {"Conv", "Gemm", "MatMul", "Add", "Mul", "Identity", "Softmax"} <= set(CONVERTERS)
    for onnx_op, convert in CONVERTERS.items():
        assert onnx.defs.has(onnx_op), onnx_op
        assert isinstance(convert, Dispatch) and callable(convert)
        assert convert.owners, onnx_op


class _Complete(Op):
    """A minimal op with everything declared, for the negative tests below to take pieces away from."""

    name = "Complete"
    kind = None

    def converters(self) -> Mapping:
        return {"Neg": lambda ctx, node: [cnode("Complete", node, [node.input[0]])]}

    def forward(self, ctx, node) -> None:
        ctx.b.op("Identity", node.inputs, out_names=[node.output])

    def backward(self, ctx, node, rule, r) -> list:
        return [r]

    def output_nonnegative(self, node, inputs_nonnegative: Sequence[bool]) -> bool:
        return all(inputs_nonnegative)

    def propagate_bounds(self, node, low, high):
        return None


def _declared(cls: type, without: str) -> dict:
    return {k: v for k, v in vars(cls).items() if k != without and not k.startswith("_")}


@pytest.mark.parametrize("missing", ABSTRACT)
def test_an_op_missing_a_method_cannot_be_instantiated(missing):
    incomplete = type("Incomplete", (Op,), _declared(_Complete, without=missing))
    with pytest.raises(TypeError, match=missing):
        incomplete()


@pytest.mark.parametrize("missing", ["name", "kind"])
def test_an_op_missing_a_declaration_cannot_be_instantiated(missing):
    incomplete = type("Incomplete", (Op,), _declared(_Complete, without=missing))
    with pytest.raises(TypeError, match=f"does not declare '{missing}'"):
        incomplete()


def test_the_registry_refuses_incomplete_or_inconsistent_ops():
    assert list(registry([_Complete()])) == ["Complete"]
    no_converter = type("NoConverter", (_Complete,), {"converters": lambda self: {}})
    with pytest.raises(TypeError, match="converts no ONNX op type"):
        registry([no_converter()])
    with pytest.raises(TypeError, match="two ops are named 'Complete'"):
        registry([_Complete(), _Complete()])
    stray = type("Stray", (_Complete,), {"also_emits": ("Unregistered",)})
    with pytest.raises(TypeError, match=r"emits unregistered canonical op\(s\) \['Unregistered'\]"):
        registry([stray()])


def test_a_converter_cannot_emit_an_undeclared_op():
    sneaky = type("Sneaky", (_Complete,), {"converters": lambda self: {
        "Neg": lambda ctx, node: [cnode("Conv", node, [node.input[0]])]}})
    table = dispatch_table([sneaky()], {})
    with pytest.raises(TypeError, match="emitted \\['Conv'\\]"):
        table["Neg"](_context(), helper.make_node("Neg", ["x"], ["y"]))


# ---------------------------------------------------------------------------------------------- dispatch order
def _context(consts: dict | None = None, producers: list[onnx.NodeProto] = ()) -> ConvertContext:
    """Data tensors x, y, s (s = Sigmoid(y)) and h (h = HardSigmoid(x)), all of shape [1, 4]."""
    data = {"x", "y", "s", "h", "xs", "xh"}
    return ConvertContext(dict(consts or {}), data, {n: (1, 4) for n in data}, 17,
                          {p.output[0]: p for p in producers}, set())


def test_shared_onnx_ops_dispatch_in_the_stated_order():
    assert CONVERTERS["Add"].owners == ("Affine", "Add")
    assert CONVERTERS["Mul"].owners == ("Affine", "FixedScale", "Activation", "Mul", "Product")
    assert CONVERTERS["Div"].owners == ("Affine", "FixedScale")
    assert CONVERTERS["MatMul"].owners == ("Dense", "MatMul")
    assert CONVERTERS["ReduceMean"].owners == ("GlobalAveragePool", "Reduce")
    assert CONVERTERS["Softmax"].owners == ("Softmax", "alias")
    assert CONVERTERS["Sum"].owners == ("Add",)
    assert CONVERTERS["Identity"].owners == ("alias",)


@pytest.mark.parametrize("onnx_op, inputs, producer, expected", [
    ("Add", ["x", "c"], None, ("Affine", None)),
    ("Add", ["x", "y"], None, ("Add", None)),
    ("Mul", ["c", "x"], None, ("Affine", None)),
    ("Mul", ["x", "xs"], helper.make_node("Sigmoid", ["x"], ["xs"]), ("Activation", "swish")),
    ("Mul", ["xs", "x"], helper.make_node("Sigmoid", ["x"], ["xs"]), ("Activation", "swish")),
    ("Mul", ["x", "xh"], helper.make_node("HardSigmoid", ["x"], ["xh"], alpha=1 / 6), ("Activation", "hardswish")),
    ("Mul", ["x", "xh"], helper.make_node("HardSigmoid", ["x"], ["xh"]), ("Mul", None)),
    ("Mul", ["x", "s"], helper.make_node("Sigmoid", ["y"], ["s"]), ("Mul", None)),
    ("Mul", ["x", "y"], None, ("Product", None)),
])
def test_shared_onnx_ops_pick_the_first_claim_that_applies(onnx_op, inputs, producer, expected):
    ctx = _context({"c": np.full((1, 4), 2.0, np.float32)}, [producer] if producer else [])
    nodes = CONVERTERS[onnx_op](ctx, helper.make_node(onnx_op, inputs, ["out"], name="n"))
    assert [n.op for n in nodes] == [expected[0]]
    assert nodes[0].attrs.get("kind") == expected[1]


def test_when_no_claim_applies_every_reason_is_given():
    with pytest.raises(NotSupported) as info:
        CONVERTERS["Mul"](_context({"c": np.ones((1, 5), np.float32)}), helper.make_node("Mul", ["x", "c"], ["out"]))
    message = str(info.value)
    assert "as Affine: the constant operand of shape [1, 5] does not broadcast" in message
    assert "as FixedScale: no operand is a tensor computed from fixed inputs" in message
    assert "as Activation: an operand is constant" in message and "as Mul: an operand is constant" in message
    assert "as Product: not a product of two non-constant tensors" in message
    with pytest.raises(NotSupported, match="division of a constant by data"):
        CONVERTERS["Div"](_context({"c": np.ones((1, 4), np.float32)}), helper.make_node("Div", ["c", "x"], ["o"]))
    assert isinstance(CONVERTERS["Sum"](_context(), helper.make_node("Sum", ["x"], ["o"])), Alias)


# ---------------------------------------------------------------------------------------------- every op, every opset
def every_op_model(opset: int) -> onnx.ModelProto:
    """An NHWC classifier that uses every registered canonical op once or more (the test below keeps it so)."""
    g = G(seed=4)
    t = g.node("Transpose", ["x"], perm=[0, 3, 1, 2])                                         # Transpose
    bn = g.node("BatchNormalization", [t, g.w((3,), value=[1.2, 0.8, -1.1]), g.w((3,), 0.1), g.w((3,), 0.1),
                                       g.w((3,), value=[1.0, 2.0, 0.5])])                     # Affine
    p = g.node("Pad", [bn, g.w((8,), value=[0, 0, 1, 1, 0, 0, 1, 0], dtype=np.int64)])        # Pad [N, 3, 10, 9]
    r = g.node("Relu", [g.conv(p, 3, 6)])                                                     # Conv, Activation
    m = g.node("MaxPool", [g.node("LRN", [r], size=3)], kernel_shape=[2, 2])                 # LRN, MaxPool
    dilated = {"dilations": [2, 1]} if opset >= 19 else {}
    a = g.node("AveragePool", [m], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 1, 1, 0], ceil_mode=1,
               **dilated)                                                                     # AveragePool
    up = g.node("Resize", [a, "", g.w((4,), value=[1, 1, 2, 2])], mode="nearest")               # ResizeNearest
    up = g.node("Relu", [g.node("ConvTranspose", [up, g.w((6, 6, 2, 2)), g.w((6,), 0.1)], kernel_shape=[2, 2],
                                strides=[2, 2])])                                            # ConvTranspose
    a = g.node("Resize", [up, "", g.w((4,), value=[1, 1, 0.5, 0.5])], mode="linear")            # ResizeLinear
    gated = g.node("Mul", [a, g.node("Sigmoid", [g.conv(a, 6, 6, k=1)])])                     # Mul (gate)
    res = g.node("Add", [gated, a])                                                           # Add
    sl = g.node("Slice", [res, g.w((1,), value=[0], dtype=np.int64), g.w((1,), value=[4], dtype=np.int64),
                          g.w((1,), value=[1], dtype=np.int64)])                              # Slice
    cat = g.node("Concat", [sl, res], axis=1)                                                 # Concat
    flat = g.node("Flatten", [g.node("GlobalAveragePool", [cat])])                            # GAP, Reshape
    tokens = g.node("Transpose", [g.node("Reshape", [cat, g.w((3,), value=[0, 10, -1], dtype=np.int64)])],
                    perm=[0, 2, 1])                                                           # [N, T, 10]
    h = g.node("LayerNormalization", [tokens, g.w((10,), value=np.linspace(0.5, 1.5, 10)), g.w((10,), 0.1)],
               axis=-1)                                                                       # LayerNorm
    q, k, v = (g.node("Add", [g.node("MatMul", [h, g.w((10, 8))]), g.w((8,), 0.1)]) for _ in range(3))
    attention = g.node("Softmax", [g.node("Einsum", [q, k], equation="ntc,nsc->nts")], axis=-1)  # Softmax, MatMul
    mixed = g.node("Mul", [g.node("MatMul", [attention, v]), q])                               # Product
    halves = g.node("Split", [mixed, g.w((2,), value=[4, 4], dtype=np.int64)], outputs=2, axis=2)
    both = g.node("Add", halves)
    axes = {"axes": [1]} if opset < 18 else {}
    pooled = g.node("ReduceMean", [both] + ([] if axes else [g.w((1,), value=[1], dtype=np.int64)]), keepdims=0,
                    **axes)                                                                   # Reduce
    first_token = g.node("Gather", [both, g.w((), value=0, dtype=np.int64)], axis=1)         # Slice, Reshape
    joined = g.node("Concat", [flat, pooled, first_token], axis=1)
    out = g.node("Gemm", [joined, g.w((18, 5)), g.w((5,), 0.1)])                              # Dense
    model = with_opset(g.model(["N", 8, 8, 3], out), opset)
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 5]))
    onnx.checker.check_model(model, full_check=True)
    return model


#: ops that only a model with fixed inputs has (tests/test_token_inputs.py covers them)
_NEEDS_FIXED_INPUTS = {"FixedScale"}


def test_the_every_op_model_uses_every_registered_op():
    graph = canonicalise(every_op_model(17), "every-op")
    assert {n.op for n in graph.nodes} == set(OPS) - _NEEDS_FIXED_INPUTS


@pytest.mark.parametrize("opset", range(17, newest_runnable_opset() + 1))
def test_every_op_every_method_gives_valid_graphs_at_every_opset(opset):
    ex = Explainer(every_op_model(opset), "gradient", provider="cpu", low=LOW, high=HIGH)
    x = np.random.default_rng(opset).uniform(LOW, HIGH, (2, 8, 8, 3)).astype(np.float32)
    for method in METHODS:
        other = ex.with_method(method)
        check_emitted_graphs(other)
        e = other.explain(x, [1, 3])
        assert e.relevance.shape == x.shape and np.all(np.isfinite(e.relevance)), method


def test_the_analyses_ask_each_op():
    """Signs: ReLU/sigmoid/softmax outputs and what only pools, normalises, routes, sums or gates non-negative tensors
    are non-negative; affine maps, linear layers, LayerNorm and a pad of a signed tensor are not. Bounds pass
    Transpose, Affine (swapped where the scale is negative) and Pad, and stop at the first Conv. Layer kinds come from
    the ops."""
    graph = canonicalise(every_op_model(17), "every-op")
    nonneg = nonnegative(graph, input_nonnegative=True)
    signs = [(n.op, n.output in nonneg) for n in graph.nodes]
    assert signs == [("Transpose", True), ("Affine", False), ("Pad", False), ("Conv", False), ("Activation", True),
                     ("LRN", True), ("MaxPool", True), ("AveragePool", True), ("ResizeNearest", True),
                     ("ConvTranspose", False), ("Activation", True), ("ResizeLinear", True), ("Conv", False),
                     ("Activation", True),
                     ("Mul", True), ("Add", True), ("Slice", True), ("Concat", True), ("GlobalAveragePool", True),
                     ("Reshape", True), ("Reshape", True), ("Transpose", True), ("LayerNorm", False), ("Dense", False),
                     ("Dense", False), ("Dense", False), ("MatMul", False), ("Softmax", True), ("MatMul", False),
                     ("Product", False), ("Slice", False), ("Slice", False), ("Add", False), ("Reduce", False),
                     ("Slice", False), ("Reshape", False), ("Concat", False), ("Dense", False)]
    assert not nonnegative(graph, input_nonnegative=False) & {graph.nodes[0].output}
    low, high = np.zeros((1, 8, 8, 3), np.float32), np.ones((1, 8, 8, 3), np.float32)
    bounds = propagate_bounds(graph, low, high)
    assert [n.op for n in graph.nodes if n.output in bounds] == ["Transpose", "Affine", "Pad"]
    affine = graph.nodes[1]
    mapped = np.stack([np.zeros((1, 3, 8, 8)), np.ones((1, 3, 8, 8))]) * affine.params["scale"] + affine.params["shift"]
    np.testing.assert_allclose(bounds[affine.output][0], mapped.min(0), rtol=1e-6)
    np.testing.assert_allclose(bounds[affine.output][1], mapped.max(0), rtol=1e-6)
    pad_low, pad_high = bounds[graph.nodes[2].output]
    assert pad_low.shape == (1, 3, 10, 9) and np.all(pad_low[:, :, 0] == 0) and np.all(pad_high[:, :, 0] == 0)
    layers = layer_info(graph)
    assert [(layers[n.output].kind, layers[n.output].first) for n in graph.nodes if n.op == "Conv"] == \
        [("conv", True), ("conv", False)]
    assert [layers[n.output].activation for n in graph.nodes if n.op == "Activation"] == ["relu", "relu", "sigmoid"]
    assert layers[graph.nodes[0].output].kind == "structural"


# ---------------------------------------------------------------------------------------------- MaxPool indices
def test_only_the_relevance_graph_asks_maxpool_for_indices():
    """The forward graph's MaxPool has one output (ORT's fast kernel); the relevance graph's has the arg-max too;
    building either leaves the shared canonical graph as it was."""
    graph = canonicalise(every_op_model(17), "every-op")
    before = copy.deepcopy([(n.op, n.inputs, n.output, n.attrs) for n in graph.nodes])
    relevance = build_relevance_model(graph, make_composite("epsilon-plus")).skeleton
    forward = build_forward_model(graph).skeleton
    assert [len(n.output) for n in forward.graph.node if n.op_type == "MaxPool"] == [1]
    assert [len(n.output) for n in relevance.graph.node if n.op_type == "MaxPool"] == [2]
    after = [(n.op, n.inputs, n.output, n.attrs) for n in graph.nodes]
    assert repr(after) == repr(before)


# ---------------------------------------------------------------------------------------------- AveragePool divisor
def _ort_average_pool_matrix(spatial: tuple[int, int], attrs: dict) -> tuple[np.ndarray, tuple[int, ...]]:
    """ORT's AveragePool as a matrix A [outputs, inputs] (column j: the pool of the j-th one-hot image), and the
    output's spatial shape."""
    h, w = spatial
    node = helper.make_node("AveragePool", ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [h * w, 1, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    one_hot = np.eye(h * w, dtype=np.float32).reshape(h * w, 1, h, w)
    columns = session.run(None, {"x": one_hot})[0]
    return columns.reshape(h * w, -1).T.astype(np.float64), columns.shape[2:]


_POOLS = [dict(kernel_shape=list(k), strides=list(s), pads=list(p), ceil_mode=c, count_include_pad=i,
               dilations=list(d))
          for k, s, p, c, i, d in itertools.product([(2, 2), (3, 2)], [(1, 1), (2, 3)], [(0, 0, 0, 0), (1, 0, 1, 1)],
                                                    [0, 1], [0, 1], [(1, 1), (2, 1)])]


@pytest.mark.parametrize("attrs", _POOLS, ids=lambda a: "-".join(f"{k[:4]}{v}" for k, v in a.items()))
def test_average_pool_divisor_is_what_onnxruntime_divides_by(attrs):
    """Every output of ORT's AveragePool is (sum of its window's taps inside the input) / divisor: the matrix's
    nonzero entries in a row are all 1/divisor, and pooling ones gives (taps inside the input) / divisor."""
    spatial = (7, 8)
    matrix, out_spatial = _ort_average_pool_matrix(spatial, attrs)
    divisor = average_pool_divisor(attrs, spatial, out_spatial).reshape(-1)
    for row, d in zip(matrix, divisor):
        taps = row[row != 0]
        np.testing.assert_allclose(taps, 1.0 / d, rtol=1e-6)
    np.testing.assert_allclose(matrix.sum(1) * divisor, (matrix != 0).sum(1), rtol=1e-6)


def test_no_onnxruntime_import_in_the_graph_back_end():
    root = Path(explainer.__file__).parent
    for package in ("relevance", "ops"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                assert not any(n.split(".")[0] == "onnxruntime" for n in names), path


# ---------------------------------------------------------------------------------------------- rules and reach
def test_a_rule_that_cannot_apply_is_the_users_input_error():
    with pytest.raises(InputError, match=r"rule 'pass' cannot be applied to ConvTranspose node '.*ConvTranspose_node"):
        Explainer(every_op_model(17), {"conv": "pass"}, provider="cpu")


class _Blocking(_Complete):
    """An op through which no relevance flows back."""

    name = "Blocking"

    def backward(self, ctx, node, rule, r) -> list:
        return [None]


def test_no_relevance_reaching_the_input_is_reported(monkeypatch):
    monkeypatch.setitem(OPS, "Blocking", _Blocking())
    graph = CanonicalGraph("x", (4,), "NCHW", "scores", [CNode("Blocking", ["x"], "scores", "block", "Neg")],
                           {"x": (1, 4), "scores": (1, 4)})
    with pytest.warns(UserWarning, match="no relevance reaches the input 'x' from the output 'scores'"):
        model = build_relevance_model(graph, make_composite("gradient"))
    onnx.checker.check_model(model.full(), full_check=True)
