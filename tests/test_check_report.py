"""A model with hundreds of unsupported nodes gets a short, readable verdict: ``UnsupportedOpError``'s message and
``explainer check``'s first line stay one bounded line (ops with counts, an example node per op), the check table
shows one example node per op, and the report says which family of network the ops point to."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from explainer import UnsupportedOpError
from explainer.frontend.check import model_family
from tests.support.cli import run_cli
from tests.support.onnx_graphs import G
from tests.support.paths import DIGITS, TF2ONNX, digit_path

#: the unsupported nodes of :func:`many_unsupported`, by op: 300 in all, Pad refused by its converter with a reason
COUNTS = {"Cos": 150, "Sin": 90, "Pad": 40, "Atan": 15, "Tan": 5}
PAD_REASON = "Pad mode 'reflect'"


def many_unsupported(path) -> onnx.ModelProto:
    """A small conv net over 32×32 grey images with 300 unsupported element-wise nodes chained on its data path."""
    g = G(seed=7)
    h = g.conv("x", 1, 2, pads=[1, 1, 1, 1])
    zeros = g.w((8,), value=np.zeros(8), dtype=np.int64)
    order = [op for op, n in COUNTS.items() for _ in range(n)]
    for op in np.random.default_rng(0).permutation(order):   # interleaved, so the first of each op is not node 1
        h = g.node("Pad", [h, zeros], mode="reflect") if op == "Pad" else g.node(str(op), [h])
    out = g.node("Gemm", [g.node("Flatten", [h], axis=1), g.w((10, 2 * 32 * 32)), g.w((10,), 0.1)], transB=1)
    model = g.model(["N", 1, 32, 32], out, opset=17)
    onnx.save(model, str(path))
    return model


def nodes_of(model: onnx.ModelProto, op: str) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type == op]


def test_check_of_hundreds_of_unsupported_nodes_is_short_and_counts_right(tmp_path):
    path = tmp_path / "many.onnx"
    model = many_unsupported(path)
    code, stdout, stderr = run_cli(["check", path])
    assert code == 2
    lines = stdout.splitlines()
    first = lines[0]
    assert len(first) <= 500, first
    assert first.startswith("result: cannot be explained: unsupported op(s): Cos ×150, Sin ×90, Pad ×40, Atan ×15, …"
                            " (5 ops, 300 nodes); e.g. Cos (node '"), first
    assert "run `explainer check MODEL` for every node" in first
    assert lines[1] == f"model: {path}"
    assert max(len(line) for line in lines) <= 500
    table = {line.split()[0]: line for line in lines if line.startswith("  ") and "×" in line}
    for op, count in COUNTS.items():
        names = nodes_of(model, op)
        shown = [name for name in names if f"'{name}'" in table[op]]
        assert shown == [names[0]], (op, table[op])                   # one example: the op's first node
        assert f"×{count} " in table[op] and f"and {count - 1} more" in table[op], table[op]
        assert table[op].split()[2].startswith("UNSUPPORTED")
    assert PAD_REASON in table["Pad"] and "no converter for Cos" in table["Cos"]
    for op in ("Conv", "Flatten", "Gemm"):
        assert table[op].endswith("supported") and "UNSUPPORTED" not in table[op]
    # stderr: the same verdict, one line, with the source
    assert stderr.count("\n") == 1 and len(stderr) <= 500 and str(path) in stderr
    assert "Cos ×150" in stderr and "(5 ops, 300 nodes)" in stderr


def test_explain_of_hundreds_of_unsupported_nodes_fails_in_one_short_line(tmp_path):
    path = tmp_path / "many.onnx"
    model = many_unsupported(path)
    code, stdout, stderr = run_cli(["explain", path, digit_path(3), "--out", tmp_path / "out"])
    assert code == 2 and stdout == ""
    assert stderr.startswith(f"explainer: error: {path}: unsupported op(s): ") and stderr.count("\n") == 1
    assert len(stderr) <= 500, stderr
    assert all(f"{op} ×{count}" in stderr for op, count in COUNTS.items() if op != "Tan")   # the 5th op: "…"
    assert "(5 ops, 300 nodes)" in stderr and f"Cos (node '{nodes_of(model, 'Cos')[0]}')" in stderr
    assert nodes_of(model, "Cos")[1] not in stderr                   # one example per op, not every node


def test_error_message_is_bounded_and_groups_by_op():
    """300 nodes with long op names, node names and reasons (whitespace and newlines in them too)."""
    nodes = [(f"block {i}\n" + "n" * 200, f"com.acme.{'Very' * 20}Op{i % 7}") for i in range(300)]
    err = UnsupportedOpError(nodes, "m.onnx", {name: "why\n" * 100 for name, _ in nodes})
    message = str(err)
    assert message.startswith("m.onnx: unsupported op(s): ") and len(message) <= 400 and "\n" not in message
    assert "… (7 ops, 300 nodes); e.g. " in message and message.endswith("for every node")
    assert err.nodes == nodes and len(err.reasons) == 300                     # the full lists stay readable
    groups = err.by_op
    assert [len(names) for names in groups.values()] == [43] * 6 + [42]
    assert list(groups)[:2] == [f"com.acme.{'Very' * 20}Op0", f"com.acme.{'Very' * 20}Op1"]   # ties: first seen
    assert groups[f"com.acme.{'Very' * 20}Op3"][:2] == [nodes[3][0], nodes[10][0]]


def test_few_nodes_are_all_listed_and_the_most_frequent_op_comes_first():
    err = UnsupportedOpError([("a", "Abs"), ("e1", "Erf"), ("e2", "Erf")], "m.onnx", {"e2": "a reason"})
    assert str(err) == ("m.onnx: unsupported op(s): Erf ×2, Abs ×1 (3 nodes); "
                        "Erf (node 'e1'); Erf (node 'e2'): a reason; Abs (node 'a')")
    assert err.by_op == {"Erf": ["e1", "e2"], "Abs": ["a"]}
    lone = str(UnsupportedOpError([("p", "Pad")], "m.onnx", {"p": "x " * 400}))
    assert lone.startswith("m.onnx: unsupported op(s): Pad (node 'p'): x x") and lone.endswith("x x…")
    assert len(lone) <= 400


# ---------------------------------------------------------------------------------------------- model families
def _value(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _weight(name: str, shape: tuple) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.full(shape, 0.1, np.float32), name)


def attention_block() -> onnx.ModelProto:
    """Tokens [N, 4, 8] → LayerNorm → single-head self-attention → mean over tokens → 3 class scores."""
    d = 8
    node = helper.make_node
    nodes = [
        node("LayerNormalization", ["x", "gamma", "beta"], ["h"], axis=-1),
        node("MatMul", ["h", "wq"], ["q"]), node("MatMul", ["h", "wk"], ["k"]), node("MatMul", ["h", "wv"], ["v"]),
        node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        node("MatMul", ["q", "kt"], ["scores"]),
        node("Softmax", ["scores"], ["attn"], axis=-1),
        node("MatMul", ["attn", "v"], ["ctx"]),
        node("ReduceMean", ["ctx"], ["pooled"], axes=[1], keepdims=0),
        node("Gemm", ["pooled", "head"], ["logits"]),
    ]
    inits = [_weight("gamma", (d,)), _weight("beta", (d,)), _weight("wq", (d, d)), _weight("wk", (d, d)),
             _weight("wv", (d, d)), _weight("head", (d, 3))]
    graph = helper.make_graph(nodes, "attention", [_value("x", ["N", 4, d])], [_value("logits", ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def lstm_classifier() -> onnx.ModelProto:
    """A batch-first sequence [N, 6, 4] through an LSTM of 5 units, its last state to 3 class scores."""
    node = helper.make_node
    nodes = [node("Transpose", ["x"], ["steps"], perm=[1, 0, 2]),           # ONNX Runtime's LSTM: time first
             node("LSTM", ["steps", "w", "r"], ["", "h_last"], name="lstm", hidden_size=5),
             node("Transpose", ["h_last"], ["h_batch"], perm=[1, 0, 2]),
             node("Flatten", ["h_batch"], ["h"], axis=1),
             node("Gemm", ["h", "head"], ["logits"])]
    inits = [_weight("w", (1, 20, 4)), _weight("r", (1, 20, 5)), _weight("head", (5, 3))]
    graph = helper.make_graph(nodes, "lstm", [_value("x", ["N", 6, 4])], [_value("logits", ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_transformer_is_recognised_by_its_attention():
    model = attention_block()
    assert model_family(model) == "a transformer (LayerNormalization, Softmax, MatMul between activations)"
    # the same ops with every MatMul against a weight (no query-by-key product) are no transformer
    for n in model.graph.node:
        if n.op_type == "MatMul" and n.input[1] in ("kt", "v"):
            n.input[1] = "wq"
    assert model_family(model) is None


def test_a_product_with_a_weight_reshaped_by_the_input_shape_is_not_attention():
    """Shape(x) depends on the input's shape only: a weight reshaped with it is still a weight."""
    g = G()
    flat = g.node("Flatten", ["x"], axis=1)
    batch = g.node("Shape", [flat])
    shape = g.node("Concat", [g.node("Slice", [batch, g.w((1,), value=[1], dtype=np.int64),
                                               g.w((1,), value=[2], dtype=np.int64)]),
                              g.w((1,), value=[3], dtype=np.int64)], axis=0)
    weight = g.node("Reshape", [g.w((16 * 3,)), shape])
    model = g.model(["N", 1, 4, 4], g.node("MatMul", [flat, weight]))
    assert model_family(model) is None


@pytest.mark.parametrize("build, family", [
    (lstm_classifier, "a recurrent network (LSTM)"),
    (attention_block, "a transformer (LayerNormalization, Softmax, MatMul between activations)"),
])
def test_check_names_the_family(tmp_path, build, family):
    path = tmp_path / "m.onnx"
    onnx.save(build(), str(path))
    _, stdout, _ = run_cli(["check", path])
    assert f"family: looks like {family}" in stdout.splitlines()
    if build is lstm_classifier:
        assert stdout.startswith("result: cannot be explained: unsupported op(s): ") and "LSTM (node 'lstm')" in stdout


def test_a_detection_model_is_recognised_and_cnn_classifiers_have_no_family():
    g = G()
    boxes, scores = g.w((1, 6, 4)), g.w((1, 1, 6))
    model = g.model(["N", 3, 8, 8], g.node("NonMaxSuppression", [boxes, scores]))
    assert model_family(model) == "a detection model (NonMaxSuppression)"
    for path in (DIGITS, TF2ONNX):          # tf2onnx_small ends in Softmax and has MatMuls, all against weights
        assert model_family(onnx.load(str(path))) is None
        code, stdout, _ = run_cli(["check", path])
        assert code == 0 and "family:" not in stdout
