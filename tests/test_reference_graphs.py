"""Reference graphs: torch-vs-ONNX Runtime parity of exports, the tf2onnx-style graph, the committed digits model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from graphs import cache, tf2onnx_style
from graphs.export import export
from graphs.reference_models import BIAS_SCALE, build

REPO = Path(__file__).resolve().parents[1]
GRAPHS = REPO / "graphs"
EXAMPLES = REPO / "examples"


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = _session(path)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _ops(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node}


# --- reference models ---------------------------------------------------------------------------------------------

def test_build_is_deterministic_per_seed_and_has_mixed_sign_biases() -> None:
    a, b, c = build("small", seed=0), build("small", seed=0), build("small", seed=1)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name
    biases = torch.cat([p for n, p in a.named_parameters() if n.endswith("bias")])
    assert (biases > 0).any() and (biases < 0).any()
    assert biases.abs().max() <= BIAS_SCALE
    assert not a.training


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="resnet"):
        build("resnet")
    with pytest.raises(ValueError, match="exporter"):
        cache.reference_graph("small", "tf2onnx")


# --- exports of the small net -------------------------------------------------------------------------------------

def test_small_legacy_export_matches_torch(tmp_path: Path) -> None:
    model = build("small", seed=3)
    result = export(model, tmp_path / "small.onnx", exporter="legacy", input_shape=(1, 3, 32, 32))
    graph = onnx.load(str(result.path))
    assert [i.name for i in graph.graph.input] == ["input"]
    assert [o.name for o in graph.graph.output] == ["logits"]
    assert isinstance(_dims(graph.graph.input[0])[0], str)
    assert result.opset == 17
    assert "Flatten" in _ops(graph)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    expected = _torch_logits(model, x)
    np.testing.assert_allclose(_run(result.path, x), expected, rtol=0, atol=1e-4)
    assert np.abs(expected).max() > 0.5  # logits are not trivially small, so the tolerance means something


def test_small_dynamo_export_matches_torch(tmp_path: Path) -> None:
    model = build("small", seed=3)
    result = export(model, tmp_path / "small.onnx", exporter="dynamo", input_shape=(1, 3, 32, 32))
    graph = onnx.load(str(result.path), load_external_data=False)
    assert "Reshape" in _ops(graph) and "Flatten" not in _ops(graph)
    assert len(cache.graph_files(result.path)) == 2  # weights live in an external .data file
    assert isinstance(_dims(graph.graph.input[0])[0], str)
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_run(result.path, x), _torch_logits(model, x), rtol=0, atol=1e-4)


def test_cache_builds_once_and_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    path = cache.reference_graph("small", "legacy", seed=5)
    assert path.parent == tmp_path and torch.__version__.split("+")[0] in path.name
    stamp = path.stat().st_mtime_ns
    assert cache.reference_graph("small", "legacy", seed=5) == path
    assert path.stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".build-*"))
    x = np.random.default_rng(2).random((2, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(_run(path, x), _torch_logits(cache.reference_model("small", 5), x), rtol=0, atol=1e-4)


def test_cache_lives_outside_the_work_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from graphs.efficientnet import default_path
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "explainer" / "graphs"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "explainer" / "graphs"
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"
    assert default_path() == tmp_path / "mine" / "efficientnet_lite0.onnx"


# --- tf2onnx-style graph ------------------------------------------------------------------------------------------

def test_tf2onnx_graph_is_committed_up_to_date_and_tf2onnx_shaped() -> None:
    committed = onnx.load(str(tf2onnx_style.GRAPH_PATH))
    assert committed.SerializeToString() == tf2onnx_style.build_model().SerializeToString()
    assert committed.opset_import[0].version == 13
    assert [i.name for i in committed.graph.input] == ["input_1"]
    dims = _dims(committed.graph.input[0])
    assert isinstance(dims[0], str) and dims[1:] == [32, 32, 3]
    assert _ops(committed) == {
        "Transpose", "Conv", "Relu", "MaxPool", "Shape", "Gather", "Unsqueeze", "Concat", "Reshape",
        "MatMul", "Add", "Mul", "Softmax",
    }


@pytest.mark.parametrize("batch", [1, 5])
def test_tf2onnx_graph_matches_numpy_reference(batch: int) -> None:
    x = np.random.default_rng(batch).random((batch, 32, 32, 3), dtype=np.float32)
    probs = _run(tf2onnx_style.GRAPH_PATH, x)
    logits = tf2onnx_style.reference_forward(x)
    assert probs.shape == logits.shape == (batch, 10)
    np.testing.assert_allclose(probs, tf2onnx_style.softmax(logits), rtol=0, atol=1e-6)
    # log-probabilities recover the logits up to a per-row constant: a sharper check than on flat softmax outputs
    centred = np.log(probs) - np.log(probs).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(centred, logits - logits.mean(axis=1, keepdims=True), rtol=0, atol=1e-4)
    assert np.ptp(logits, axis=1).min() > 0.1


# --- committed digits model ---------------------------------------------------------------------------------------

def test_digits_model_interface_and_metadata() -> None:
    path = GRAPHS / "digits_cnn.onnx"
    assert path.stat().st_size < 2 * 2**20
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "input" and out.name == "logits"
    in_dims, out_dims = _dims(inp), _dims(out)
    assert isinstance(in_dims[0], str) and in_dims[1:] == [1, 32, 32]
    assert isinstance(out_dims[0], str) and out_dims[1:] == [10]
    assert _ops(model) <= {"Conv", "Relu", "MaxPool", "Flatten", "Gemm"}
    meta = json.loads((GRAPHS / "digits_cnn.json").read_text())
    assert meta["accuracy"]["test"] >= 0.95
    assert meta["data"]["licence"] and meta["data"]["source"]
    labels = (EXAMPLES / "digits_labels.txt").read_text().split("\n")
    assert labels[:10] == [str(k) for k in range(10)] and not any(labels[10:])


def test_digits_model_classifies_shipped_examples() -> None:
    images = np.stack([
        np.asarray(Image.open(EXAMPLES / f"digit_{k}.png").convert("L"), dtype=np.float32) / 255.0
        for k in range(10)
    ])[:, None]
    assert images.shape == (10, 1, 32, 32)
    logits = _run(GRAPHS / "digits_cnn.onnx", images)
    assert logits.shape == (10, 10)
    np.testing.assert_array_equal(logits.argmax(axis=1), np.arange(10))


# --- full-size reference networks (slow) ---------------------------------------------------------------------------

@pytest.mark.slow
def test_full_size_reference_graph_matches_torch(reference_net) -> None:
    graph = onnx.load(str(reference_net.path), load_external_data=False)
    flatten = "Flatten" if reference_net.exporter == "legacy" else "Reshape"
    assert _ops(graph) == {"Conv", "Relu", "MaxPool", "AveragePool", "Gemm", flatten}
    assert sum(n.op_type == "Conv" for n in graph.graph.node) == {"alexnet": 5, "vgg16": 13}[reference_net.name]
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    expected = _torch_logits(reference_net.torch_model, x)
    assert expected.shape == (2, 1000)
    got = _run(reference_net.path, x)
    scale = np.abs(expected).max()
    assert scale > 1.0
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)
