"""Small models that each break one expectation (no input, two inputs, unsupported ops, a feature-map output,
external weights), for the error tests of the API and the CLI."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.support.onnx_graphs import G


def small_cnn(seed: int = 0) -> onnx.ModelProto:
    """x [N, 3, 8, 8] -> Conv -> Relu -> Flatten -> Gemm -> 5 scores."""
    g = G(seed)
    c = g.conv("x", 3, 4, pads=[1, 1, 1, 1])
    r = g.node("Relu", [c])
    f = g.node("Flatten", [r], axis=1)
    out = g.node("Gemm", [f, g.w((5, 4 * 8 * 8)), g.w((5,), 0.1)], transB=1)
    return g.model(["N", 3, 8, 8], out)


def no_input_model() -> onnx.ModelProto:
    node = helper.make_node("Constant", [], ["scores"], name="const_scores",
                            value=numpy_helper.from_array(np.zeros((1, 10), np.float32)))
    graph = helper.make_graph([node], "no_input", [], [helper.make_tensor_value_info("scores", TensorProto.FLOAT,
                                                                                      [1, 10])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def two_input_model() -> onnx.ModelProto:
    g = G()
    s = g.node("Add", ["image_a", "image_b"])
    c = g.conv(s, 3, 4)
    f = g.node("Flatten", [c], axis=1)
    out = g.node("Gemm", [f, g.w((5, 4 * 6 * 6))], transB=1)
    second = helper.make_tensor_value_info("image_b", TensorProto.FLOAT, ["N", 3, 8, 8])
    return g.model(["N", 3, 8, 8], out, input_name="image_a", extra_inputs=[second])


def unsupported_model() -> tuple[onnx.ModelProto, list[tuple[str, str]]]:
    """Two different unsupported ops (Atan twice, Abs once) between supported ones."""
    g = G()
    c = g.conv("x", 3, 4, pads=[1, 1, 1, 1])
    e1 = g.node("Atan", [c])
    r = g.node("Relu", [e1])
    a = g.node("Abs", [r])
    e2 = g.node("Atan", [a])
    f = g.node("Flatten", [e2], axis=1)
    out = g.node("Gemm", [f, g.w((5, 4 * 8 * 8))], transB=1)
    model = g.model(["N", 3, 8, 8], out)
    bad = [(n.name, n.op_type) for n in model.graph.node if n.op_type in ("Atan", "Abs")]
    assert len(bad) == 3
    return model, bad


def feature_map_model() -> onnx.ModelProto:
    """The output is a [N, 4, 6, 6] feature map, not a score vector."""
    g = G()
    return g.model(["N", 3, 8, 8], g.conv("x", 3, 4))


def x_for(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


def with_external_weight(model: onnx.ModelProto, location: str) -> tuple[onnx.ModelProto, str, bytes]:
    """``model`` with its first initializer's data moved to external ``location``; returns (model, name, bytes)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    tensor = model.graph.initializer[0]
    data = numpy_helper.to_array(tensor).tobytes()
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(data)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return model, tensor.name, data
