"""Folding (``explainer.frontend.fold``): constants and shapes are folded at batch size 1 by onnx shape inference and
onnx-graphsurgeon, with the own code paths (Shape/Size folding, the second inference, the ONNX Runtime probe) each
exercised; canonical graphs are batch-agnostic whatever batch size the export baked in."""
from __future__ import annotations

import gc

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import explainer.frontend.fold as fold_module
from explainer import Explainer, ModelError
from explainer.frontend.canonicalise import canonicalise
from explainer.frontend.check import check_model
from explainer.frontend.fold import fold
from tests.support.onnx_graphs import G, run


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _per_sample(model, x):
    return np.concatenate([run(model, x[i:i + 1]) for i in range(len(x))])


def _flatten_chain_model(opset: int) -> onnx.ModelProto:
    """Conv -> Shape->Gather->Unsqueeze->Concat->Reshape flatten (the exporters' dynamic flatten) -> Gemm."""
    g = G(3)
    c = g.node("Relu", [g.conv("x", 3, 4, pads=[1, 1, 1, 1])])
    n = g.node("Gather", [g.node("Shape", [c]), g.w((), value=0, dtype=np.int64)], axis=0)
    axes = {"axes": [0]} if opset < 13 else {}
    n = g.node("Unsqueeze", [n] + ([] if opset < 13 else [g.w((1,), value=[0], dtype=np.int64)]), **axes)
    flat = g.node("Reshape", [c, g.node("Concat", [n, g.w((1,), value=[-1], dtype=np.int64)], axis=0)])
    return g.model(["N", 3, 8, 8], g.node("Gemm", [flat, g.w((4 * 8 * 8, 5)), g.w((5,), 0.1)]), opset=opset)


@pytest.mark.parametrize("opset", [11, 13, 17])
def test_flatten_chains_fold_without_the_probe(opset):
    """Before opset ~15 data propagation cannot follow the chain; folding it first lets inference pin the Reshape."""
    model = _flatten_chain_model(opset)
    folded = fold(model, "x", (1, 3, 8, 8), model.graph.output[0].name, "m")
    assert folded.probed == []
    assert [n.op_type for n in folded.nodes] == ["Conv", "Relu", "Reshape", "Gemm"]
    assert folded.folded_ops == {"Shape": 1, "Gather": 1, "Unsqueeze": 1, "Concat": 1}
    reshape = folded.nodes[2]
    assert folded.shapes[reshape.output[0]] == (1, 256)
    np.testing.assert_array_equal(folded.consts[reshape.input[1]], [1, -1])
    x = _x((3, 3, 8, 8))
    np.testing.assert_allclose(Explainer(model, "gradient").forward(x), run(model, x), rtol=1e-5, atol=1e-5)


def test_shape_with_start_end_and_size_fold_to_the_right_values():
    """onnx-graphsurgeon 0.6 folds Shape(start, end) as the full shape; the own folding honours start/end."""
    g = G(4)
    c = g.node("Relu", [g.conv("x", 3, 4, pads=[1, 1, 1, 1])])
    batch = g.node("Shape", [c], start=0, end=1)
    per_sample = g.node("Div", [g.node("Size", [c]), g.node("Shape", [c], start=-4, end=-3)])
    target = g.node("Concat", [batch, per_sample], axis=0)
    flat = g.node("Reshape", [c, target])
    model = g.model(["N", 3, 8, 8], g.node("Gemm", [flat, g.w((256, 5))]), opset=17)
    folded = fold(model, "x", (1, 3, 8, 8), model.graph.output[0].name, "m")
    np.testing.assert_array_equal(folded.consts[target], [1, 256])
    assert folded.folded_ops == {"Shape": 2, "Size": 1, "Div": 1, "Concat": 1}
    x = _x((3, 3, 8, 8))
    np.testing.assert_allclose(Explainer(model, "gradient").forward(x), run(model, x), rtol=1e-5, atol=1e-5)


def test_probe_pins_the_shapes_inference_leaves_open(monkeypatch):
    """Where ONNX shape inference pins nothing, one ONNX Runtime run exposing just the open tensors decides, and
    Shape nodes reading them fold in a second round."""
    monkeypatch.setattr(fold_module, "infer_shapes", lambda *args: {})
    model = _flatten_chain_model(17)
    cg = canonicalise(model, "m")
    assert [n.op for n in cg.nodes] == ["Conv", "Activation", "Reshape", "Dense"]
    assert cg.shapes[cg.output_name] == (1, 5)
    assert any("shape inference left" in c and "ONNX Runtime run" in c for c in cg.changes), cg.changes
    assert cg.folded_ops == {"Shape": 1, "Gather": 1, "Unsqueeze": 1, "Concat": 1}
    feeds, logits = cg.reference
    x1 = feeds["x"]
    # float32 logits of size ~5 from differently blocked GEMM kernels (the reference run skips weight pre-packing)
    np.testing.assert_allclose(logits, run(model, x1), rtol=1e-5, atol=1e-5)


def test_stale_value_info_and_an_untyped_output_are_not_trusted():
    """Exporter value_info that disagrees with the graph and an output without a type used to end in a raw KeyError
    (or "does not depend on the input"); shapes now come from inference at the pinned input only."""
    g = G()
    r = g.node("Relu", [g.conv("x", 3, 4, pads=[1, 1, 1, 1])])
    f = g.node("Flatten", [r], axis=1)
    s = g.node("Gemm", [f, g.w((5, 4 * 8 * 8)), g.w((5,), 0.1)], transB=1)
    out = g.node("Softmax", [s], axis=1)
    model = g.model(["N", 3, 8, 8], out)
    model.graph.value_info.append(helper.make_tensor_value_info(r, TensorProto.FLOAT, ["N", 4, 9, 9]))
    del model.graph.output[:]
    model.graph.output.append(helper.make_value_info(out, onnx.TypeProto()))
    x = _x((2, 3, 8, 8))
    ours = Explainer(model, "gradient").forward(x)
    e = np.exp(ours - ours.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), run(model, x), rtol=1e-5, atol=1e-6)


def test_an_output_that_folds_to_a_constant_does_not_depend_on_the_input():
    g = G()
    g.node("Relu", [g.conv("x", 3, 4)])
    out = g.node("Add", [g.w((1, 5)), g.w((1, 5))])
    with pytest.raises(ModelError, match=rf"m\.onnx: output '{out}' does not depend on the input"):
        canonicalise(g.model(["N", 3, 8, 8], out), "m.onnx")


def test_nodes_that_do_not_reach_the_output_are_dropped_even_if_unsupported():
    g = G()
    c = g.node("Relu", [g.conv("x", 3, 4, pads=[1, 1, 1, 1])])
    out = g.node("Gemm", [g.node("Flatten", [c]), g.w((256, 5))])
    aux = g.node("Erf", [c])
    model = g.model(["N", 3, 8, 8], out, extra_inputs=[])
    model.graph.output.append(helper.make_tensor_value_info(aux, TensorProto.FLOAT, None))
    ex = Explainer(model, "gradient")
    assert "removed nodes that do not reach the output: Erf×1" in ex.changes
    x = _x((2, 3, 8, 8))
    np.testing.assert_allclose(ex.forward(x), run(model, x), rtol=1e-5, atol=1e-5)
    statuses = {op: status for op, _, status in check_model(model).ops}
    assert statuses["Erf"] == "removed (no effect on the explanation)"


def test_ir3_opset9_caffe2_style_graph_folds_without_the_probe():
    """Caffe2 zoo style: IR 3 (initializers listed as inputs), ConstantOfShape weights, a Dropout with its mask
    output, a Reshape to a constant [1, -1] and a fixed batch of 1."""
    g = G(5)
    w = g.node("ConstantOfShape", [g.w((4,), value=[4, 3, 3, 3], dtype=np.int64)],
               value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.05]))
    r = g.node("Relu", [g.node("Conv", ["x", w, g.w((4,), 0.1)], kernel_shape=[3, 3])])
    d, _ = g.node("Dropout", [r], outputs=2, ratio=0.5)
    flat = g.node("Reshape", [d, g.w((2,), value=[1, -1], dtype=np.int64)])
    out = g.node("Softmax", [g.node("Gemm", [flat, g.w((5, 4 * 6 * 6)), g.w((5,), 0.1)], transB=1)])
    model = g.model([1, 3, 8, 8], out, opset=9)
    model.ir_version = 3
    model.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                             for t in model.graph.initializer)
    folded = fold(model, "x", (1, 3, 8, 8), out, "m")
    assert folded.probed == [] and folded.folded_ops == {"ConstantOfShape": 1}
    np.testing.assert_allclose(folded.consts[w], np.full((4, 3, 3, 3), 0.05, np.float32))
    ex = Explainer(model, "gradient")
    x = _x((3, 3, 8, 8))
    z = ex.forward(x)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), _per_sample(model, x), rtol=1e-5, atol=1e-6)


def test_batch_size_baked_into_the_export_is_folded_away():
    """A declared input of [1, ...], a Reshape to a shape computed at batch 1, a Flatten over axis 0, zeros shaped
    like a data tensor and a constant Concat piece: all fold at batch 1 into batch-agnostic canonical nodes, so
    several samples run in one batch and match the original model run one sample at a time."""
    g = G(6)
    c = g.node("Relu", [g.conv("x", 3, 4, pads=[1, 1, 1, 1])])
    zeros = g.node("ConstantOfShape", [g.node("Shape", [c])],
                   value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]))
    c = g.node("Add", [c, g.node("Add", [zeros, g.w((1, 4, 1, 1), value=[[[[0.1]], [[0.2]], [[0.3]], [[0.4]]]])])])
    c = g.node("Concat", [c, g.w((1, 2, 8, 8), scale=0.5)], axis=1)
    n = g.node("Gather", [g.node("Shape", [c]), g.w((1,), value=[0], dtype=np.int64)], axis=0)
    flat = g.node("Reshape", [c, g.node("Concat", [n, g.w((1,), value=[-1], dtype=np.int64)], axis=0)])
    h = g.node("Relu", [g.node("Gemm", [flat, g.w((6 * 8 * 8, 7))])])
    out = g.node("Gemm", [g.node("Flatten", [h], axis=0), g.w((7, 5))])
    model = g.model([1, 3, 8, 8], out)
    ex = Explainer(model, "epsilon-plus")
    assert not any("batch" in change for change in ex.changes), ex.changes
    x = _x((3, 3, 8, 8))
    np.testing.assert_allclose(ex.forward(x), _per_sample(model, x), rtol=1e-4, atol=1e-5)
    relevance = ex.explain(x, 2).relevance
    for i in range(3):
        np.testing.assert_allclose(relevance[i:i + 1], ex.explain(x[i:i + 1], 2).relevance, rtol=1e-4, atol=1e-6)


def test_a_constant_computation_onnx_runtime_cannot_evaluate_is_a_model_error_naming_the_file():
    g = G()
    bad = g.node("Reshape", [g.w((6,)), g.w((1,), value=[4], dtype=np.int64)])
    c = g.node("Add", [g.node("Flatten", ["x"]), g.node("Reshape", [bad, g.w((2,), value=[1, -1], dtype=np.int64)])])
    model = g.model(["N", 4], g.node("Gemm", [c, g.w((4, 3))]))
    with pytest.raises(ModelError, match=r"^broken\.onnx: ") as info:
        canonicalise(model, "broken.onnx")
    assert "Reshape" in str(info.value)


def test_reference_scores_behind_an_op_outside_the_output_chain():
    """The reference run returns the output chain (Softmax, Identity, Flatten, ...); scores that conversion reads
    from behind another dropped op (an identity Transpose) take one more run."""
    g = G(7)
    scores = g.node("Gemm", [g.node("Flatten", [g.node("Relu", [g.conv("x", 3, 4)])]), g.w((4 * 6 * 6, 5))])
    model = g.model(["N", 3, 8, 8], g.node("Transpose", [scores], perm=[0, 1]))
    cg = canonicalise(model, "m")
    assert cg.output_name == scores
    feeds, logits = cg.reference
    x1 = feeds["x"]
    # float32 logits of size ~5 from differently blocked GEMM kernels (the reference run skips weight pre-packing)
    np.testing.assert_allclose(logits, run(model, x1), rtol=1e-5, atol=1e-5)
    x = _x((2, 3, 8, 8))
    np.testing.assert_allclose(Explainer(model, "gradient").forward(x), run(model, x), rtol=1e-5, atol=1e-5)


def test_folding_holds_no_part_of_a_large_model_in_reference_cycles(monkeypatch):
    """Regression: onnx-graphsurgeon's graph (reference cycles, freed only by a full collection) held the model's
    TensorProtos, and any one keeps the whole protobuf alive: +230 MB resident for AlexNet after ``del model``.
    Automatic collection is off while canonicalising, so only folding's own collection can have freed them."""
    monkeypatch.setattr(fold_module, "_COLLECT_MIN_BYTES", 0)  # this small model stands for a large one
    model = _flatten_chain_model(17)
    gc.collect()
    gc.disable()
    try:
        canonicalise(model, "m")
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        garbage = {id(o) for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert [t.name for t in model.graph.initializer if id(t) in garbage] == []
