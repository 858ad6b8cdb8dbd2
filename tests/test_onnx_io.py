"""``InMemoryModel.from_model``: the copy the front end runs in ONNX Runtime keeps everything the model needs to run
(local functions, sparse initializers) and shares no protobuf memory with the model."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from explainer import Explainer
from explainer.onnx_io import InMemoryModel
from explainer.runtime.sessions import make_session


def _function_model() -> onnx.ModelProto:
    """Conv -> a model-local function (custom.MyRelu, a Relu) -> GlobalAveragePool -> Flatten."""
    relu = helper.make_function("custom", "MyRelu", ["x"], ["y"], [helper.make_node("Relu", ["x"], ["y"])],
                                [helper.make_opsetid("", 17)])
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("MyRelu", ["c"], ["r"], domain="custom"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)],
                             functions=[relu], ir_version=8)


def _run(model: onnx.ModelProto | InMemoryModel, x: np.ndarray) -> np.ndarray:
    return make_session(model if isinstance(model, InMemoryModel) else model.SerializeToString(), "cpu").run(
        None, {"x": x})[0]


def test_copy_keeps_local_functions():
    """Regression: the copy dropped the model's local functions, so ONNX Runtime could not run it."""
    model = _function_model()
    w = numpy_helper.to_array(model.graph.initializer[0])
    copy = InMemoryModel.from_model(model, {"w": w}, min_bytes=0)
    assert list(copy.external) == ["w"]
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(copy, x), _run(model, x), rtol=1e-6, atol=1e-6)


def test_a_model_local_function_of_supported_ops_is_inlined_and_explained():
    """The front end inlines model-local functions (it reported this one, a Relu, as the unsupported op
    'custom.MyRelu' before), and the explainer's forward pass equals the model's own."""
    model = _function_model()
    ex = Explainer(model, "gradient", provider="cpu")
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(ex.forward(x), _run(model, x), rtol=1e-5, atol=1e-5)
    assert "inlined model-local functions: custom.MyRelu×1" in ex.changes


def test_copy_keeps_sparse_initializers():
    """Regression: the copy dropped sparse initializers, so a node reading one had no input."""
    dense = np.zeros((4, 3), np.float32)
    dense[1, 2], dense[3, 0] = 2.0, -1.0
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.array([2.0, -1.0], np.float32), "b"),
                                       numpy_helper.from_array(np.array([5, 9], np.int64), "b_indices"), [4, 3])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "b"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              sparse_initializer=[sparse])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(_run(InMemoryModel.from_model(model, {}), x), x @ dense, rtol=1e-6, atol=1e-6)


def test_copy_shares_no_message_with_the_model():
    """Every message of the copy is its own (a part of the model held by the copy would keep the whole model's
    protobuf alive), and the large initializer travels as a reference to the given array."""
    model = _function_model()
    w = numpy_helper.to_array(model.graph.initializer[0])
    copy = InMemoryModel.from_model(model, {"w": w}, min_bytes=0)
    copy.skeleton.graph.node[0].name = "renamed"
    copy.skeleton.functions[0].name = "Renamed"
    assert model.graph.node[0].name == "" and model.functions[0].name == "MyRelu"
    assert copy.external["w"] is w and copy.skeleton.graph.initializer[0].data_location == TensorProto.EXTERNAL
