"""Float16 and bfloat16 models computed in float32 (explainer.frontend.precision): seeded torch CNNs exported in half
and bfloat16 precision, a mixed-precision export (float32 input, a Cast to float16 around the convolution) and a
hand-built graph with float16 Constant/ConstantOfShape values, an EyeLike dtype and weights held outside the
protobuf."""
from __future__ import annotations

import io
import re
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from explainer import Explainer
from explainer.frontend.canonicalise import canonicalise
from explainer.frontend.check import check_model
from explainer.frontend.precision import REDUCED, Float32Model, to_float32
from explainer.onnx_io import InMemoryModel
from tests.support.signal_models import seeded

SHAPE = (1, 3, 8, 8)


class Mixed(torch.nn.Module):
    """Mixed precision: a float32 input cast to float16 for the convolution, cast back for the head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3).half()
        self.head = torch.nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x.half())).float().mean((2, 3)))


def _cnn() -> torch.nn.Module:
    return seeded(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3),
                                      torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(64, 5)))


def _export(net: torch.nn.Module, dtype: torch.dtype) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(SHAPE, dtype=dtype),), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    return onnx.load_from_string(buffer.getvalue())


def _x(n: int = 2) -> np.ndarray:
    return np.random.default_rng(3).standard_normal((n, *SHAPE[1:])).astype(np.float32)


def _run(model: onnx.ModelProto, x: np.ndarray, weights: dict[str, np.ndarray] | None = None) -> np.ndarray:
    full = InMemoryModel(model, weights or {}).full()
    session = ort.InferenceSession(full.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0], np.float64)


def _reduced_left(model: onnx.ModelProto) -> list[str]:
    """Everything in ``model`` still declaring float16 or bfloat16."""
    graph = model.graph
    left = [t.name for t in graph.initializer if t.data_type in REDUCED]
    values = [*graph.input, *graph.output, *graph.value_info]
    left += [v.name for v in values if v.type.tensor_type.elem_type in REDUCED]
    for node in graph.node:
        for a in node.attribute:
            if (a.type == onnx.AttributeProto.INT and a.name in ("to", "dtype") and a.i in REDUCED) \
                    or (a.type == onnx.AttributeProto.TENSOR and a.t.data_type in REDUCED):
                left.append(f"{node.op_type}.{a.name}")
    return left


def _gap(line: str) -> float:
    return float(re.search(r"by up to ([0-9.e+-]+)", line).group(1))


def _check_canonical(converted: Float32Model) -> None:
    """The converted model is accepted by ``canonicalise``, and the reference scores it records are the float32
    copy's."""
    cg = canonicalise(converted.model, "m", weights=converted.weights)
    feeds, scores = cg.reference
    assert cg.input_shape == SHAPE[1:]
    np.testing.assert_allclose(scores, _run(converted.model, feeds["x"], converted.weights), rtol=1e-5, atol=1e-5)


def test_float16_cnn_is_computed_in_float32() -> None:
    net = _cnn().half()
    model = _export(net, torch.float16)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    converted = to_float32(model, source="half.onnx")
    assert _reduced_left(converted.model) == []
    assert model.graph.initializer[0].data_type == TensorProto.FLOAT16  # the original is left as it was
    assert converted.changes == ["computed in float32 (the model is float16): 6 float16 initializers; input 'x' "
                                 "(its values are cast to float32); output 'y'"]
    x = _x().astype(np.float16).astype(np.float32)  # values the float16 model can take
    ours = _run(converted.model, x)
    net.float()  # the float16 weights, computed in float32
    exact = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-5 * np.abs(exact).max())
    theirs = _run(model, x.astype(np.float16))
    scale = np.abs(theirs).max()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-3 * scale)  # float16 output rounding: 2^-11 relative
    line = converted.deviation({"x": _x(1)})
    assert line.startswith("the float32 scores differ from the float16 model's")
    gap = _gap(line)
    assert 0 < gap <= 2e-3 * scale
    _check_canonical(converted)
    ex = Explainer(InMemoryModel(converted.model, converted.weights).full(), "gradient", cache=False)
    xt = torch.from_numpy(x).requires_grad_(True)
    (grad,) = torch.autograd.grad(net(xt)[:, 2].sum(), xt)
    e = ex.explain(x, target=2)
    np.testing.assert_allclose(e.logits, exact, rtol=0, atol=1e-5 * np.abs(exact).max())
    np.testing.assert_allclose(e.relevance, grad.numpy(), rtol=0, atol=1e-5 * np.abs(grad.numpy()).max())


def test_mixed_precision_casts_become_float32() -> None:
    net = seeded(Mixed())
    model = _export(net, torch.float32)
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert [helper.get_attribute_value(c.attribute[0]) for c in casts] == [TensorProto.FLOAT16, TensorProto.FLOAT]
    converted = to_float32(model)
    assert _reduced_left(converted.model) == []
    assert converted.changes == ["computed in float32 (the model is float16): 1 Cast to float16; 2 float16 "
                                 "initializers"]  # the float32 input and output are not named
    x = _x()
    ours = _run(converted.model, x)
    conv = torch.nn.functional.conv2d(torch.from_numpy(x), net.conv.weight.float(), net.conv.bias.float())
    exact = net.head(torch.relu(conv).mean((2, 3))).detach().numpy()  # the float16 weights, computed in float32
    np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-5 * np.abs(exact).max())
    theirs = _run(model, x)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-3 * np.abs(theirs).max())
    assert _gap(converted.deviation({"x": _x(1)})) <= 2e-3 * np.abs(theirs).max()
    _check_canonical(converted)


def test_bfloat16_cnn_is_computed_in_float32() -> None:
    net = _cnn().to(torch.bfloat16)
    model = _export(net, torch.bfloat16)
    converted = to_float32(model, source="bf16.onnx")
    assert _reduced_left(converted.model) == []
    assert converted.changes[0].startswith("computed in float32 (the model is bfloat16): 6 bfloat16 initializers")
    x = _x()
    x_bf16 = torch.from_numpy(x).to(torch.bfloat16)
    ours = _run(converted.model, x_bf16.float().numpy())
    in_bf16 = net(x_bf16).float().detach().numpy()  # torch's own bfloat16 computation
    net.float()  # the bfloat16 weights, computed in float32
    exact = net(x_bf16.float()).detach().numpy()
    np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-5 * np.abs(exact).max())
    np.testing.assert_allclose(ours, in_bf16, rtol=0, atol=3e-2 * np.abs(exact).max())  # 8-bit mantissa sums
    # ONNX Runtime has no bfloat16 convolution on the CPU: the line says the comparison could not be made, and why
    line = converted.deviation({"x": _x(1)})
    assert line.startswith("the float32 scores were not compared with the bfloat16 model's") and "Conv" in line
    _check_canonical(converted)


def _constants_model() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """x [N, 4] float16 -> + Constant -> * ConstantOfShape -> MatMul W (held outside the protobuf) -> + EyeLike
    row 0 -> y [N, 4] float16."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4)).astype(np.float16)
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.float16([0.5, -1, 2, 0.25]), "c")),
        helper.make_node("Add", ["x", "c"], ["a"]),
        helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(np.int64([4]), "shape")),
        helper.make_node("ConstantOfShape", ["shape"], ["k"], value=numpy_helper.from_array(np.float16([1.5]), "v")),
        helper.make_node("Mul", ["a", "k"], ["m"]),
        helper.make_node("MatMul", ["m", "w"], ["h"]),
        helper.make_node("EyeLike", ["eye_of"], ["eye"], dtype=TensorProto.FLOAT16),
        helper.make_node("Gather", ["eye", "zero"], ["row"], axis=0),
        helper.make_node("Add", ["h", "row"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "constants", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["n", 4])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros((4, 4), np.int32),
                                                                                        "eye_of"),
                               numpy_helper.from_array(np.int64(0), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    split = InMemoryModel.from_loaded(model, "m", min_bytes=16)  # w (32 bytes) is held outside the protobuf
    assert set(split.external) == {"w", "eye_of"}
    return split.skeleton, split.external


def test_constants_dtype_attributes_and_held_weights_are_converted() -> None:
    skeleton, weights = _constants_model()
    converted = to_float32(skeleton, weights)
    assert _reduced_left(converted.model) == []
    assert converted.changes == ["computed in float32 (the model is float16): 1 Constant value; 1 ConstantOfShape "
                                 "value; 1 EyeLike dtype=float16; 1 float16 initializer; input 'x' (its values are "
                                 "cast to float32); output 'y'"]
    assert weights["w"].dtype == np.float16 and "w" not in converted.weights  # the caller's unchanged; w is small
    held = next(t for t in converted.model.graph.initializer if t.name == "w")
    np.testing.assert_array_equal(numpy_helper.to_array(held), weights["w"].astype(np.float32))
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float16)
    ours = _run(converted.model, x.astype(np.float32), converted.weights)
    w = weights["w"].astype(np.float64)
    exact = (x.astype(np.float64) + [0.5, -1, 2, 0.25]) * 1.5 @ w + np.eye(4)[0]
    np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-5 * np.abs(exact).max())
    # ONNX Runtime has no float16 EyeLike on the CPU: the float32 copy runs where the original cannot
    line = converted.deviation({"x": x[:1].astype(np.float32)})
    assert line.startswith("the float32 scores were not compared with the float16 model's") and "EyeLike" in line


def test_float32_model_is_returned_unchanged() -> None:
    model = _export(_cnn(), torch.float32)
    converted = to_float32(model)
    assert converted.model is model and converted.changes == [] and converted.deviation({"x": _x(1)}) == ""


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT16, TensorProto.BFLOAT16])
def test_value_info_and_function_casts_are_converted(dtype: int) -> None:
    """A Cast inside a model-local function and the value infos of the main graph become float32."""
    body = helper.make_function("local", "half", ["a"], ["b"], [helper.make_node("Cast", ["a"], ["b"], to=dtype)],
                                [helper.make_opsetid("", 17)])
    nodes = [helper.make_node("half", ["x"], ["h"], domain="local"),
             helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "f", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
                              value_info=[helper.make_tensor_value_info("h", dtype, ["n", 3])])
    model = helper.make_model(graph, functions=[body], opset_imports=[helper.make_opsetid("", 17),
                                                                       helper.make_opsetid("local", 1)])
    model.ir_version = 8
    converted = to_float32(model)
    name = REDUCED[dtype]
    assert converted.changes == [f"computed in float32 (the model is {name}): 1 Cast to {name}"]
    assert converted.model.functions[0].node[0].attribute[0].i == TensorProto.FLOAT
    assert converted.model.graph.value_info[0].type.tensor_type.elem_type == TensorProto.FLOAT
    x = np.float32([[1 / 3, 1e-4, 70000.0]])  # not representable in float16/bfloat16; float16 overflows
    np.testing.assert_array_equal(_run(converted.model, x), x)


def test_large_float16_weights_stay_outside_the_protobuf() -> None:
    """A converted initializer of at least EXTERNAL_MIN_BYTES (a float16 one given in ``weights`` or in the protobuf)
    is held as a float32 array beside the copy's protobuf, as InMemoryModel keeps it."""
    w = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float16)  # 1 MiB in float32
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "big",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["n", 512])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["n", 512])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.random.default_rng(1).standard_normal((2, 512)).astype(np.float16)
    exact = x.astype(np.float64) @ w.astype(np.float64)
    for skeleton, weights in ((model, None), (InMemoryModel.from_loaded(model, "m", min_bytes=1024).skeleton,
                                              {"w": w})):
        converted = to_float32(skeleton, weights)
        assert converted.weights["w"].dtype == np.float32 and converted.model.graph.initializer[0].data_type == \
            TensorProto.FLOAT and converted.model.graph.initializer[0].data_location == TensorProto.EXTERNAL
        ours = _run(converted.model, x.astype(np.float32), converted.weights)
        np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-5 * np.abs(exact).max())


def test_float16_model_through_explainer_and_check() -> None:
    import ml_dtypes

    net = _cnn().half()
    model = _export(net, torch.float16)
    ex = Explainer(model, "gradient", cache=False)
    assert ex.changes[0].startswith("computed in float32 (the model is float16)")
    assert ex.changes[1].startswith("the float32 scores differ from the float16 model's")
    x = _x().astype(np.float16)
    net.float()
    exact = net(torch.from_numpy(x.astype(np.float32))).detach().numpy()
    e = ex.explain(x, target=2)  # float16 input values are cast
    np.testing.assert_allclose(e.logits, exact, rtol=0, atol=1e-5 * np.abs(exact).max())
    assert ex.explain(x.astype(ml_dtypes.bfloat16), target=2).relevance.shape == x.shape
    report = check_model(model)
    assert report.ok and report.inputs[0].endswith("receives relevance (computed in float32; the input is float16)")
