"""Final Softmax/LogSoftmax/Sigmoid heads behind reshapes and concatenations (explainer.frontend.heads): two-head
models built with onnx.helper are explained from their pre-activation scores, and activations inside the network
(attention's Softmax, one whose values something else reads) are left alone."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from explainer import Explainer
from explainer.frontend.check import check_model
from explainer.frontend.heads import final_heads, skip_heads

FEATURES = 6
W_A = np.random.default_rng(0).standard_normal((FEATURES, 3)).astype(np.float32)
W_B = np.random.default_rng(1).standard_normal((FEATURES, 4)).astype(np.float32)


def _model(nodes: list[onnx.NodeProto], extra: list[onnx.TensorProto] = ()) -> onnx.ModelProto:
    """x [N, 6] -> the two dense heads a = x W_A [N, 3], b = x W_B [N, 4] -> ``nodes`` -> y."""
    nodes = [helper.make_node("MatMul", ["x", "wa"], ["a"], name="dense_a"),
             helper.make_node("MatMul", ["x", "wb"], ["b"], name="dense_b"), *nodes]
    graph = helper.make_graph(nodes, "heads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", FEATURES])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(W_A, "wa"), numpy_helper.from_array(W_B, "wb"), *extra])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _x() -> np.ndarray:
    return np.random.default_rng(2).standard_normal((3, FEATURES)).astype(np.float32)


def _explained(model: onnx.ModelProto) -> tuple[Explainer, list[str]]:
    """``model``'s heads skipped on a copy, which is then explained with the gradient."""
    work = onnx.ModelProto()
    work.CopyFrom(model)
    changes = skip_heads(work, "y")
    assert not [n for n in work.graph.node if n.op_type in ("Softmax", "LogSoftmax", "Sigmoid")]
    return Explainer(work, "gradient", cache=False), changes


@pytest.mark.parametrize("op", ["Softmax", "Sigmoid"])
def test_two_concatenated_heads_are_skipped(op: str) -> None:
    attrs = {"axis": 1} if op == "Softmax" else {}
    model = _model([helper.make_node(op, ["a"], ["pa"], name="head_a", **attrs),
                    helper.make_node(op, ["b"], ["pb"], name="head_b", **attrs),
                    helper.make_node("Concat", ["pa", "pb"], ["y"], name="both", axis=1)])
    assert [h.label for h in final_heads(model, "y")] == ["head_a", "head_b"]
    assert all(h.concatenated for h in final_heads(model, "y"))
    ex, changes = _explained(model)
    x = _x()
    logits = np.concatenate([x @ W_A, x @ W_B], axis=1)  # the pre-activation scores
    np.testing.assert_allclose(ex.forward(x), logits, rtol=1e-5, atol=1e-5)
    e = ex.explain(x, target=4)  # head b's second score
    np.testing.assert_allclose(e.logits, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(e.relevance, np.broadcast_to(W_B[:, 1], x.shape), rtol=1e-5, atol=1e-6)
    if op == "Sigmoid":
        assert changes == ["skipped the final Sigmoid 'head_a', Sigmoid 'head_b' of output 'y' (2 heads "
                           "concatenated): a multi-label head is explained from its pre-sigmoid logits"]
    else:
        assert changes == ["removed final Softmax 'head_a', Softmax 'head_b' of output 'y' (2 heads concatenated) "
                           "(relevance starts from the pre-softmax logits)"]
    assert [n.op_type for n in model.graph.node[2:4]] == [op, op]  # the caller's model is not changed


def test_log_softmax_behind_a_reshape_and_a_softmax_beside_it() -> None:
    """Concat(Reshape(LogSoftmax(Reshape(a))), Softmax(b)): a grouped head (two groups of 3 per row is one LogSoftmax
    over the last axis of [N, 1, 3]) and a plain one."""
    shape = numpy_helper.from_array(np.int64([-1, 1, 3]), "grouped")
    flat = numpy_helper.from_array(np.int64([-1, 3]), "flat")
    model = _model([helper.make_node("Reshape", ["a", "grouped"], ["ga"]),
                    helper.make_node("LogSoftmax", ["ga"], ["la"], name="log_head", axis=-1),
                    helper.make_node("Reshape", ["la", "flat"], ["fa"]),
                    helper.make_node("Softmax", ["b"], ["pb"], name="soft_head", axis=-1),
                    helper.make_node("Concat", ["fa", "pb"], ["y"], axis=-1)], [shape, flat])
    ex, changes = _explained(model)
    x = _x()
    np.testing.assert_allclose(ex.forward(x), np.concatenate([x @ W_A, x @ W_B], axis=1), rtol=1e-5, atol=1e-5)
    assert changes == ["removed final LogSoftmax 'log_head', Softmax 'soft_head' of output 'y' (2 heads "
                       "concatenated) (relevance starts from the pre-softmax logits)"]


def test_single_log_softmax_behind_a_reshape() -> None:
    flat = numpy_helper.from_array(np.int64([-1, 3]), "flat")
    grouped = numpy_helper.from_array(np.int64([-1, 1, 3]), "grouped")
    model = _model([helper.make_node("Reshape", ["a", "grouped"], ["ga"]),
                    helper.make_node("LogSoftmax", ["ga"], ["la"], name="log_head", axis=-1),
                    helper.make_node("Reshape", ["la", "flat"], ["y"])], [flat, grouped])
    ex, changes = _explained(model)
    x = _x()
    np.testing.assert_allclose(ex.forward(x), x @ W_A, rtol=1e-5, atol=1e-5)
    assert changes == ["removed final LogSoftmax 'log_head' of output 'y' (relevance starts from the pre-softmax "
                       "logits)"]


def test_head_that_is_the_output_becomes_an_identity() -> None:
    model = _model([helper.make_node("Sigmoid", ["a"], ["y"], name="labels")])
    ex, changes = _explained(model)
    np.testing.assert_allclose(ex.forward(_x()), _x() @ W_A, rtol=1e-5, atol=1e-5)
    assert changes == ["skipped the final Sigmoid 'labels' of output 'y': a multi-label head is explained from its "
                       "pre-sigmoid logits"]  # as the single-Sigmoid case has always read


def test_softmax_inside_the_network_is_kept() -> None:
    """Attention-like: softmax(x W_A) weights the values (x W_A) before the output: not a head."""
    model = _model([helper.make_node("Softmax", ["a"], ["p"], name="attention", axis=1),
                    helper.make_node("Mul", ["p", "a"], ["y"])])
    assert final_heads(model, "y") == []
    work = onnx.ModelProto()
    work.CopyFrom(model)
    assert skip_heads(work, "y") == [] and [n.op_type for n in work.graph.node] == [n.op_type for n in
                                                                                     model.graph.node]


def test_head_whose_values_are_read_elsewhere_is_kept() -> None:
    """Concat(Softmax(a), 2 * Softmax(a), Sigmoid(b)): the Softmax's probabilities also feed a Mul, so turning it
    into an Identity would change that branch; only the Sigmoid is a head."""
    two = numpy_helper.from_array(np.float32(2.0), "two")
    model = _model([helper.make_node("Softmax", ["a"], ["pa"], name="shared", axis=1),
                    helper.make_node("Mul", ["pa", "two"], ["twice"]),
                    helper.make_node("Sigmoid", ["b"], ["pb"], name="labels"),
                    helper.make_node("Concat", ["pa", "twice", "pb"], ["y"], axis=1)], [two])
    assert [h.label for h in final_heads(model, "y")] == ["labels"]
    work = onnx.ModelProto()
    work.CopyFrom(model)
    assert skip_heads(work, "y") == ["skipped the final Sigmoid 'labels' of output 'y' (behind a Concat): a "
                                     "multi-label head is explained from its pre-sigmoid logits"]
    assert [n.op_type for n in work.graph.node] == ["MatMul", "MatMul", "Softmax", "Mul", "Concat"]
    assert list(work.graph.node[-1].input) == ["pa", "twice", "b"]  # the Concat reads the logits b


def test_sigmoid_behind_an_integer_cast_is_kept() -> None:
    """A Cast to an integer type thresholds or truncates the probabilities: what follows is no score."""
    model = _model([helper.make_node("Sigmoid", ["a"], ["p"], name="head"),
                    helper.make_node("Cast", ["p"], ["y"], to=TensorProto.INT64)])
    assert final_heads(model, "y") == []


def test_concatenated_softmax_heads_through_explainer_and_check() -> None:
    model = _model([helper.make_node("Softmax", ["a"], ["pa"], name="head_a", axis=1),
                    helper.make_node("Softmax", ["b"], ["pb"], name="head_b", axis=1),
                    helper.make_node("Concat", ["pa", "pb"], ["y"], name="both", axis=1)])
    ex = Explainer(model, "gradient", cache=False)
    assert any(c.startswith("removed final Softmax 'head_a', Softmax 'head_b'") for c in ex.changes)
    np.testing.assert_allclose(ex.forward(_x()), np.concatenate([_x() @ W_A, _x() @ W_B], axis=1), atol=1e-5)
    report = check_model(model)
    assert report.ok and report.outputs[0].endswith("explained (pre-softmax logits: its 2 final Softmax heads are "
                                                    "skipped)")
    assert ("Softmax", 2, "removed (the final Softmax: explained from the pre-softmax logits)") in report.ops
