"""The shipped tabular model ``graphs/wine_mlp.onnx`` (``python -m graphs.train_wine_mlp``): its accuracy on the
held-out split is the one its JSON states, its example rows and names fit it, the README's command explains the rows
with a bar chart each, epsilon-plus relevance is taken relative to the training mean (the in-graph standardisation
passes it through) and keeps most of the logit, and the gradient equals PyTorch autograd's on the rebuilt module."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from PIL import Image

from explainer import Explainer
from graphs.train_wine_mlp import LABELS, TrainSettings, WineMLP, load_data, split
from tests.support.cli import run_cli
from tests.support.paths import EXAMPLES, ROOT

MODEL = ROOT / "graphs" / "wine_mlp.onnx"
META = json.loads((ROOT / "graphs" / "wine_mlp.json").read_text())
ROWS = EXAMPLES / "wine_rows.npy"
FEATURES = EXAMPLES / "wine_features.txt"


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, ...]:
    """x_train, x_test, y_train, y_test as the training script split them (settings from the JSON)."""
    x, y, _ = load_data()
    training = META["training"]
    settings = TrainSettings(seed=training["seed"], test_fraction=training["test_fraction"])
    return split(x, y, settings)


def _logits(x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(np.float32)})[0]


def _rebuilt() -> WineMLP:
    """The torch module with the ONNX file's weights (initializer names are the module's state-dict keys)."""
    graph = onnx.load(str(MODEL)).graph
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    model = WineMLP(weights["standardise.mean"].numpy(), weights["standardise.std"].numpy())
    model.load_state_dict(weights)
    return model.eval()


def test_accuracy_matches_the_json(data: tuple[np.ndarray, ...]) -> None:
    """Within one sample of the stated figures (ONNX Runtime may round a borderline logit differently)."""
    x_train, x_test, y_train, y_test = data
    accuracy = META["accuracy"]
    assert (len(y_test), len(y_train)) == (accuracy["n_test"], accuracy["n_train"]) == (36, 142)
    test = float(np.mean(_logits(x_test).argmax(1) == y_test))
    train = float(np.mean(_logits(x_train).argmax(1) == y_train))
    assert abs(test - accuracy["test"]) <= 1 / len(y_test) + 1e-9 and test >= 0.9
    assert abs(train - accuracy["train"]) <= 1 / len(y_train) + 1e-9


def test_examples_and_names_fit_the_model(data: tuple[np.ndarray, ...]) -> None:
    """One held-out row per class, in class order, classified as its class; names match the data set and metadata."""
    _, x_test, _, y_test = data
    rows = np.load(ROWS)
    assert rows.dtype == np.float32 and rows.shape == (3, 13)
    indices = META["examples"]["test_indices"]
    np.testing.assert_array_equal(rows, x_test[indices])
    assert list(y_test[indices]) == [0, 1, 2]
    assert list(_logits(rows).argmax(1)) == [0, 1, 2]
    assert FEATURES.read_text().splitlines() == load_data()[2]
    assert (EXAMPLES / "wine_labels.txt").read_text().splitlines() == list(LABELS)
    meta = {p.key: p.value for p in onnx.load(str(MODEL)).metadata_props}
    assert json.loads(meta["explainer.labels"]) == list(LABELS)


def test_readme_command_writes_a_bar_chart_per_row(tmp_path: Path) -> None:
    code, stdout, stderr = run_cli(["explain", MODEL, ROWS, "--feature-names", FEATURES, "--out", tmp_path / "out"])
    assert code == 0, stderr
    assert "input 'input' NC [13], 3 classes, method epsilon-plus" in stdout
    expected = Explainer(str(MODEL), "epsilon-plus", cache=False).explain(np.load(ROWS))
    for k in range(3):
        assert f"cultivar {k} (class {k}): logit" in stdout
        saved = np.load(tmp_path / "out" / f"wine_rows_{k}.npz")
        assert int(saved["target"]) == k
        np.testing.assert_allclose(saved["relevance"], expected.relevance[k], rtol=1e-5, atol=1e-6)
        with Image.open(tmp_path / "out" / f"wine_rows_{k}.png") as picture:
            assert picture.size[0] >= 500 and picture.size[1] >= 300


def test_epsilon_plus_is_relative_to_the_training_mean(data: tuple[np.ndarray, ...]) -> None:
    """The standardisation layer passes relevance through: the relevance of the raw rows equals that of the bare MLP
    (the graph without its Sub/Div) on the standardised rows. It keeps most of each logit (the biases take the
    rest) and tells features apart."""
    _, x_test, _, _ = data
    proto = onnx.load(str(MODEL))
    assert [n.op_type for n in proto.graph.node[:2]] == ["Sub", "Div"]
    bare = onnx.load(str(MODEL))
    standardised = bare.graph.node[1].output[0]
    del bare.graph.node[:2]
    for node in bare.graph.node:
        node.input[:] = ["input" if name == standardised else name for name in node.input]
    raw = Explainer(proto, "epsilon-plus", cache=False).explain(x_test)
    mean, std = (numpy_helper.to_array(t) for t in proto.graph.initializer[:2])
    scaled = Explainer(bare, "epsilon-plus", cache=False).explain((x_test - mean) / std)
    assert Explainer(proto, cache=False).method == "epsilon-plus"
    np.testing.assert_array_equal(raw.target, scaled.target)
    np.testing.assert_allclose(raw.relevance, scaled.relevance, rtol=0, atol=1e-4 * np.abs(raw.relevance).max())
    assert 0.7 <= raw.conservation.min() and raw.conservation.max() <= 1.3, raw.conservation
    spread = np.ptp(raw.relevance, axis=1) / np.abs(raw.relevance).max(axis=1)
    assert spread.min() > 0.5


def test_gradient_equals_autograd_on_the_rebuilt_module() -> None:
    x = np.load(ROWS)
    model = _rebuilt()
    xt = torch.from_numpy(x).requires_grad_(True)
    out = model(xt)
    np.testing.assert_allclose(out.detach().numpy(), _logits(x), rtol=0, atol=1e-4)
    (expected,) = torch.autograd.grad(out[torch.arange(3), torch.tensor([2, 0, 1])].sum(), xt)
    e = Explainer(str(MODEL), "gradient", cache=False).explain(x, target=[2, 0, 1])
    np.testing.assert_allclose(e.relevance, expected.numpy(), rtol=0, atol=1e-5 * np.abs(expected.numpy()).max())
