"""One copy of the weights: ``InMemoryModel.from_loaded`` moves large initializers out of the protobuf (which frees its
memory only as a whole), the front end folds and converts from those arrays, and ONNX Runtime reads GEMM weights
from them in place (fed as inputs) rather than copying them."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from explainer import Explainer
from explainer.errors import ModelError
from explainer.frontend.canonicalise import canonicalise
from explainer.onnx_io import EXTERNAL_MIN_BYTES, InMemoryModel
from explainer.runtime.sessions import Session, make_session, run_bound
from tests.support.onnx_graphs import G

IN, HIDDEN = 640, 512  # the first Dense weight (1.25 MiB) passes EXTERNAL_MIN_BYTES, the other weights do not


def _mlp() -> onnx.ModelProto:
    """Flatten -> Gemm (transB, a large weight) -> Relu -> Gemm (small) -> Softmax."""
    g = G(3)
    flat = g.node("Flatten", ["x"], axis=1)
    h = g.node("Relu", [g.node("Gemm", [flat, g.w((HIDDEN, IN)), g.w((HIDDEN,), 0.1)], transB=1)])
    out = g.node("Softmax", [g.node("Gemm", [h, g.w((HIDDEN, 10)), g.w((10,), 0.1)])], axis=1)
    return g.model(["N", 10, 8, 8], out)


def test_large_initializers_leave_the_protobuf():
    model = _mlp()
    split = InMemoryModel.from_loaded(model, "mlp.onnx")
    large = [t for t in model.graph.initializer if np.prod(t.dims) * 4 >= EXTERNAL_MIN_BYTES]
    assert [t.name for t in large] == list(split.external)
    np.testing.assert_array_equal(split.external[large[0].name], numpy_helper.to_array(large[0]))
    kept = {t.name: t for t in split.skeleton.graph.initializer}
    assert kept[large[0].name].data_location == TensorProto.EXTERNAL and not kept[large[0].name].raw_data
    assert sum(len(t.raw_data) for t in kept.values()) < EXTERNAL_MIN_BYTES  # the small weights stay inline
    assert split.skeleton.ByteSize() < model.ByteSize() - IN * HIDDEN * 4 + 4096


def test_damaged_large_initializer_is_named():
    model = _mlp()
    tensor = next(t for t in model.graph.initializer if len(t.raw_data) >= EXTERNAL_MIN_BYTES)
    tensor.raw_data = tensor.raw_data[:-4]
    with pytest.raises(ModelError, match=f"initializer '{tensor.name}' declares shape .* the model file is damaged"):
        InMemoryModel.from_loaded(model, "mlp.onnx")


def test_canonical_graph_from_split_weights_is_the_same():
    """Folding and conversion read the arrays handed over instead of the protobuf's data: same graph, same values."""
    model = _mlp()
    split = InMemoryModel.from_loaded(model, "mlp.onnx")
    full = canonicalise(model, "mlp.onnx")
    from_split = canonicalise(split.skeleton, "mlp.onnx", weights=split.external)
    assert [(n.op, n.inputs, n.output) for n in full.nodes] == [(n.op, n.inputs, n.output) for n in from_split.nodes]
    for a, b in zip(full.nodes, from_split.nodes):
        assert a.params.keys() == b.params.keys()
        for key in a.params:
            np.testing.assert_array_equal(a.params[key], b.params[key])
    np.testing.assert_array_equal(full.reference[1], from_split.reference[1])


def _gemm_model(w: np.ndarray) -> InMemoryModel:
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", w.shape[1]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", w.shape[0]])])
    return InMemoryModel.from_arrays(graph, {"w": w}, 17, 8)


def test_gemm_weights_are_fed_in_place():
    """A large GEMM weight is a run-time input read from the caller's array (changing the array changes the result:
    ONNX Runtime holds no copy of it); the session's own interface and both run paths hide that."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((HIDDEN, IN)).astype(np.float32)
    x = rng.standard_normal((3, IN)).astype(np.float32)
    sess = make_session(_gemm_model(w), "cpu", threads=1)
    assert isinstance(sess, Session) and list(sess.fed) == ["w"]
    assert [i.name for i in sess.get_inputs()] == ["x"]
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], x @ w.T, rtol=1e-4, atol=1e-4)
    w *= 2
    np.testing.assert_allclose(run_bound(sess, ["y"], {"x": x}, "cpu")[0], x @ w.T, rtol=1e-4, atol=1e-4)


def test_conv_weights_are_fed_only_in_one_shot_sessions():
    """Convolutions keep their weights as initializers where ONNX Runtime optimises fully (its NCHWc rewrite needs
    them constant); a one-shot session (basic optimisation) feeds them too."""
    w = np.random.default_rng(1).standard_normal((64, 64, 8, 8)).astype(np.float32)  # 1 MiB
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[8, 8])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = InMemoryModel.from_arrays(graph, {"w": w}, 17, 8)
    x = np.random.default_rng(2).standard_normal((2, 64, 8, 8)).astype(np.float32)
    full, one_shot = make_session(model, "cpu"), make_session(model, "cpu", optimize="basic", one_shot=True)
    assert not isinstance(full, Session) and list(one_shot.fed) == ["w"]
    np.testing.assert_allclose(one_shot.run(None, {"x": x})[0], full.run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_explainer_of_a_model_with_a_large_dense_layer():
    """End to end: the explainer's forward equals the original model's, and gradient × input of the Dense stack is
    what NumPy computes."""
    model = _mlp()
    ex = Explainer(model, "gradient", provider="cpu")
    x = np.random.default_rng(4).standard_normal((2, 10, 8, 8)).astype(np.float32)
    w1, b1, w2, b2 = (numpy_helper.to_array(t) for t in model.graph.initializer)
    hidden = x.reshape(2, -1) @ w1.T + b1
    np.testing.assert_allclose(ex.forward(x), np.maximum(hidden, 0) @ w2 + b2, rtol=1e-4, atol=1e-4)
    e = ex.explain(x, 3)
    expected = ((hidden > 0) * w2[:, 3]) @ w1
    np.testing.assert_allclose(e.relevance.reshape(2, -1), expected, rtol=1e-4, atol=1e-4)


def test_bfloat16_weights_stay_in_the_protobuf():
    """A weight of a type no OrtValue can hold (bfloat16, cast to float in the graph) stays in the protobuf; the
    reference run and the explainer handle it (it used to fail the reference run once past EXTERNAL_MIN_BYTES)."""
    bits = (np.random.default_rng(5).standard_normal((HIDDEN, IN)).astype(np.float32).view(np.uint32) >> 16)
    w = (bits << 16).view(np.float32)  # the float32 values of the bfloat16 weight
    nodes = [helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["wf"], ["wt"]), helper.make_node("MatMul", ["x", "wt"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", IN])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [helper.make_tensor("w", TensorProto.BFLOAT16, w.shape,
                                                  bits.astype(np.uint16).tobytes(), raw=True)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert not InMemoryModel.from_loaded(model, "bf16.onnx").external
    x = np.random.default_rng(6).standard_normal((2, IN)).astype(np.float32)
    logits = Explainer(model, "gradient", provider="cpu").forward(x)
    np.testing.assert_allclose(logits, x @ w.T, rtol=1e-4, atol=1e-3)
