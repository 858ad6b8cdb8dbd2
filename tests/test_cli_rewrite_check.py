"""End-to-end tests of ``explainer rewrite`` and ``explainer check``, in-process through ``explainer.cli.main``.

``rewrite`` must write a standalone relevance graph that plain ONNX Runtime runs (inputs: the image + ``target``;
outputs: ``logits``, ``relevance``) and that agrees with :class:`explainer.Explainer`; ``check`` must report layout,
every op and the canonicalisation, and exit 0 only for explainable models.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto

from explainer import Explainer
from explainer.images.preprocess import load_batch, preprocessing
from explainer.images.spec import InputSpec
from tests.support.cli import run_cli
from tests.support.onnx_graphs import G
from tests.support.paths import DIGITS, EXAMPLES, TF2ONNX


def plain_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def digits_batch() -> np.ndarray:
    spec = InputSpec(layout="NCHW", channels=1, height=32, width=32, name="input")
    x, _ = load_batch([EXAMPLES / f"digit_{k}.png" for k in (1, 4, 6)], spec, preprocessing("unit", channels=1))
    return x


def op_section(stdout: str) -> dict[str, str]:
    """{op: status line} from the 'ops:' section of `explainer check`."""
    lines = stdout.splitlines()
    start = lines.index("ops:") + 1
    ops = {}
    for line in lines[start:]:
        if not line.startswith("  ") or line.startswith("  - "):
            break
        parts = line.split()
        ops[parts[0]] = line
    return ops


def unsupported_model(path: Path) -> str:
    """A small NCHW classifier with an op we have no emitter for (Sin) between two supported layers."""
    g = G(seed=3)
    h = g.conv("x", 1, 4, k=3, pads=[1, 1, 1, 1])
    h = g.node("Sin", [h])
    h = g.node("Flatten", [h], axis=1)
    out = g.node("Gemm", [h, g.w((10, 4 * 8 * 8)), g.w((10,), 0.1)], transB=1)
    model = g.model(["N", 1, 8, 8], out, opset=17)
    onnx.save(model, str(path))
    return next(n.name for n in model.graph.node if n.op_type == "Sin")


# ---------------------------------------------------------------------------------------------- rewrite


def test_rewrite_writes_standalone_relevance_graph(tmp_path):
    path = tmp_path / "x.onnx"
    code, stdout, stderr = run_cli(["rewrite", DIGITS, "--method", "epsilon-plus-flat", "-o", path])
    assert code == 0, stderr
    assert path.is_file() and f"wrote {path}" in stdout and "epsilon-plus-flat" in stdout
    onnx.checker.check_model(str(path))
    session = plain_session(path)
    inputs = {i.name: i for i in session.get_inputs()}
    assert set(inputs) == {"input", "target"}
    assert inputs["target"].type == "tensor(int64)"
    assert [o.name for o in session.get_outputs()] == ["logits", "relevance", "explained_target"]
    x = digits_batch()
    ex = Explainer(str(DIGITS), "epsilon-plus-flat", provider="cpu")
    # the predicted classes and a different, explicit class per image: one graph explains any class
    for target in (None, np.array([9, 0, 2], dtype=np.int64)):
        e = ex.explain(x, target)
        logits, relevance = session.run(["logits", "relevance"], {"input": x, "target": e.target})
        assert relevance.shape == x.shape and logits.shape == (3, 10)
        np.testing.assert_allclose(logits, e.logits, rtol=0, atol=1e-5)
        np.testing.assert_allclose(relevance, e.relevance, rtol=0, atol=1e-5)
    assert list(ex.explain(x).target) == [1, 4, 6]
    # the batch axis stays dynamic in the saved file
    logits1, rel1, _ = session.run(None, {"input": x[:1], "target": np.array([1], dtype=np.int64)})
    np.testing.assert_allclose(rel1, ex.explain(x[:1]).relevance, rtol=0, atol=1e-5)
    # a negative target explains the arg-max class, and the graph says which class it explained
    _, relevance, explained = session.run(None, {"input": x, "target": np.array([-1, 2, -1], dtype=np.int64)})
    assert list(explained) == [1, 2, 6]
    np.testing.assert_allclose(relevance, ex.explain(x, [1, 2, 6]).relevance, rtol=0, atol=1e-5)


def test_rewrite_methods_differ_and_match_api(tmp_path):
    x = digits_batch()
    target = np.array([1, 4, 6], dtype=np.int64)
    maps = {}
    for method, extra in (("gradient", []), ("epsilon-gamma-box", [])):
        path = tmp_path / f"{method}.onnx"
        code, _, stderr = run_cli(["rewrite", DIGITS, "--method", method, "-o", path, *extra])
        assert code == 0, stderr
        _, maps[method], _ = plain_session(path).run(None, {"input": x, "target": target})
        kwargs = {"low": 0.0, "high": 1.0} if method == "epsilon-gamma-box" else {}   # unit preprocessing bounds
        reference = Explainer(str(DIGITS), method, provider="cpu", **kwargs).explain(x, target).relevance
        np.testing.assert_allclose(maps[method], reference, rtol=0, atol=1e-5)
    assert np.abs(maps["gradient"] - maps["epsilon-gamma-box"]).max() > 1e-3


def test_rewrite_large_weights_are_saved_in_the_file(tmp_path):
    """Weights of 1 MB and more go to ONNX Runtime as OrtValues in memory; the saved graph must still hold them."""
    g = G(seed=5)
    h = g.node("Flatten", ["x"], axis=1)
    h = g.node("Gemm", [h, g.w((5000, 64)), g.w((5000,), 0.1)], transB=1)       # 1.28 MB weight
    h = g.node("Relu", [h])
    out = g.node("Gemm", [h, g.w((10, 5000)), g.w((10,), 0.1)], transB=1)
    source = tmp_path / "big.onnx"
    onnx.save(g.model(["N", 1, 8, 8], out, opset=17), str(source))
    path = tmp_path / "big.lrp.onnx"
    code, _, stderr = run_cli(["rewrite", source, "--method", "epsilon-plus-flat", "--preprocess", "unit",
                               "-o", path])
    assert code == 0, stderr
    saved = onnx.load(str(path))
    assert all(t.data_location != TensorProto.EXTERNAL for t in saved.graph.initializer)
    assert max(onnx.numpy_helper.to_array(t).nbytes for t in saved.graph.initializer) >= 1 << 20
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    target = np.array([3, 7], dtype=np.int64)
    logits, relevance = plain_session(path).run(["logits", "relevance"], {"x": x, "target": target})
    e = Explainer(str(source), "epsilon-plus-flat", provider="cpu").explain(x, target)
    np.testing.assert_allclose(logits, e.logits, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(relevance, e.relevance, rtol=1e-4, atol=1e-5)


def test_rewrite_unsupported_model_exits_2(tmp_path):
    model = tmp_path / "sin.onnx"
    node = unsupported_model(model)
    out = tmp_path / "sin.lrp.onnx"
    code, stdout, stderr = run_cli(["rewrite", model, "-o", out])
    assert code == 2
    assert stderr.startswith("explainer: error:") and "Sin" in stderr and node in stderr
    assert len(stderr.strip().splitlines()) == 1 and not out.exists()
    # errors name the file at fault (README: "Errors are one line on stderr naming the file, node, op ...")
    assert str(model) in stderr, stderr


# ---------------------------------------------------------------------------------------------- check


def test_check_digits_model():
    code, stdout, stderr = run_cli(["check", DIGITS])
    assert code == 0, stderr
    assert stdout.splitlines()[0] == "result: can be explained"
    assert "input layout: NCHW" in stdout
    assert "input: float[batch, 1, 32, 32]" in stdout and "logits: float[batch, 10]" in stdout
    ops = op_section(stdout)
    model_ops = {n.op_type for n in onnx.load(str(DIGITS)).graph.node}
    assert set(ops) == model_ops
    for op, line in ops.items():
        count = sum(n.op_type == op for n in onnx.load(str(DIGITS)).graph.node)
        assert f"×{count}" in line and "supported" in line and "UNSUPPORTED" not in line, line


def test_check_tf2onnx_model_reports_nhwc_and_canonicalisation():
    code, stdout, stderr = run_cli(["check", TF2ONNX])
    assert code == 0, stderr
    assert "input layout: NHWC" in stdout and "result: can be explained" in stdout
    model = onnx.load(str(TF2ONNX))
    assert set(op_section(stdout)) == {n.op_type for n in model.graph.node}
    changes = [line[4:] for line in stdout.splitlines() if line.startswith("  - ")]
    assert stdout.splitlines().count("canonicalisation:") == 1 and changes

    def has(*words: str) -> bool:
        return any(all(w in c for w in words) for c in changes)

    softmax = next(n.name for n in model.graph.node if n.op_type == "Softmax")
    reshape = next(n.name for n in model.graph.node if n.op_type == "Reshape")
    assert has("removed", "Softmax", softmax)
    assert has("static Reshape", reshape)
    assert has("folded constant/shape nodes", "Shape")
    # the batch-norm-like Mul/Add after the first dense layer end up folded into that MatMul
    bn_mul = next(n.name for n in model.graph.node if n.op_type == "Mul")
    assert has("merged", bn_mul, "Add")
    assert has("folded Add", "into MatMul")
    assert sum("into MatMul" in c for c in changes) == 2          # both dense biases / the BN folded in


def test_check_unsupported_model_exits_2(tmp_path):
    model = tmp_path / "sin.onnx"
    node = unsupported_model(model)
    code, stdout, _ = run_cli(["check", model])
    assert code == 2
    ops = op_section(stdout)
    assert "UNSUPPORTED" in ops["Sin"] and node in ops["Sin"]
    for op in ("Conv", "Flatten", "Gemm"):
        assert "UNSUPPORTED" not in ops[op], ops[op]
    assert stdout.startswith("result: cannot be explained") and "Sin" in stdout.splitlines()[0]


def test_check_missing_file_exits_2(tmp_path):
    missing = tmp_path / "nope.onnx"
    code, stdout, stderr = run_cli(["check", missing])
    assert code == 2 and str(missing) in stderr and stderr.startswith("explainer: error:")
    assert stdout == ""

