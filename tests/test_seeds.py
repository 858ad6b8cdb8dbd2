"""What relevance starts from at the output beyond one class: a multi-label head's pre-sigmoid logits (its final
Sigmoid found behind reshapes and skipped), a regressor's single value, and any seed array (API ``seed=``, CLI
``--seed-file``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from explainer import Explainer
from explainer.errors import InputError
from explainer.frontend.check import check_model
from tests.support.cli import run_cli
from tests.support.signal_models import FEATURES, TabularNet, export, exported, seeded, seeded_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("seeds")


def _features(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, FEATURES)).astype(np.float32)


def _pre_sigmoid(x: np.ndarray) -> torch.Tensor:
    """The multi-label model's logits before its Sigmoid (its body; the reshapes around the Sigmoid keep order)."""
    return seeded_model("multilabel").body(torch.from_numpy(x))


def test_multilabel_sigmoid_behind_reshapes_is_skipped(folder: Path) -> None:
    ex = Explainer(str(exported("multilabel", folder)), "gradient", cache=False)
    x = _features()
    assert any("skipped the final Sigmoid" in c and "pre-sigmoid logits" in c for c in ex.changes)
    assert np.allclose(ex.forward(x), _pre_sigmoid(x).detach().numpy(), atol=1e-5)
    xt = torch.from_numpy(x).requires_grad_(True)
    (grad,) = torch.autograd.grad(seeded_model("multilabel").body(xt)[:, 4].sum(), xt)
    e = ex.explain(x, target=4)
    np.testing.assert_allclose(e.relevance, grad.numpy(), rtol=0, atol=1e-5 * np.abs(grad.numpy()).max())
    report = check_model(exported("multilabel", folder))
    assert report.ok and report.outputs[0].endswith("explained (pre-sigmoid logits: its final Sigmoid is skipped)")
    assert ("Sigmoid", 1, "removed (the final Sigmoid: explained from the pre-sigmoid logits)") in report.ops


def test_inner_sigmoid_is_kept(folder: Path) -> None:
    """A Sigmoid followed by a layer is part of the network, not a head: the logits stay the model's own."""
    model = seeded(torch.nn.Sequential(torch.nn.Linear(FEATURES, 6), torch.nn.Sigmoid(), torch.nn.Linear(6, 3)))
    ex = Explainer(str(export(model, (FEATURES,), folder / "inner.onnx")), "gradient", cache=False)
    x = _features()
    assert not any("Sigmoid" in c for c in ex.changes)
    assert np.allclose(ex.forward(x), model(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("squeeze", [True, False], ids=["N", "N1"])
def test_regressor_explains_its_value(folder: Path, squeeze: bool) -> None:
    """[N] and [N, 1] outputs are one value per sample, the seed is that value whatever its sign, and without
    biases LRP-0 hands all of it to the features."""
    model = seeded(TabularNet(1, squeeze=squeeze))
    with torch.no_grad():
        for layer in (model.body[0], model.body[2]):
            layer.bias.zero_()
    path = export(model, (FEATURES,), folder / f"regressor_{squeeze}.onnx")
    x = _features(6)
    value = model(torch.from_numpy(x)).detach().numpy().reshape(-1)
    assert (value < 0).any() and (value > 0).any()
    ex = Explainer(str(path), "lrp-0", cache=False)
    e = ex.explain(x)
    assert ex.num_classes == 1 and e.logits.shape == (6, 1) and list(e.target) == [0] * 6
    np.testing.assert_allclose(e.logits[:, 0], value, atol=1e-5)
    np.testing.assert_allclose(e.relevance.sum(axis=1), value, rtol=1e-4, atol=1e-6)
    with pytest.raises(InputError, match="target index 1 is out of range: the model has 1 classes"):
        ex.explain(x, target=1)


def test_seed_array_is_the_gradient_of_the_weighted_outputs(folder: Path) -> None:
    ex = Explainer(str(exported("tabular", folder)), "gradient", cache=False)
    x = _features()
    weights = np.array([[1.0, 0, 0, 1], [0, 2, 0, 0], [0.5, 0.5, -1, 0]], np.float32)
    e = ex.explain(x, seed=weights)
    xt = torch.from_numpy(x).requires_grad_(True)
    (grad,) = torch.autograd.grad((seeded_model("tabular")(xt) * torch.from_numpy(weights)).sum(), xt)
    np.testing.assert_allclose(e.relevance, grad.numpy(), rtol=0, atol=1e-5 * np.abs(grad.numpy()).max())
    assert e.seed == "array" and list(e.target) == [-1, -1, -1] and e.conservation is None


def test_seed_array_for_every_sample_and_lrp_linearity(folder: Path) -> None:
    """One row for every sample; LRP-ε is linear in its seed, so seeding two classes at once is the sum of each
    class's one-hot explanation."""
    ex = Explainer(str(exported("multilabel", folder)), "lrp-epsilon", seed="one-hot", cache=False)
    x = _features()
    both = ex.explain(x, seed=[1, 0, 0, 0, 0, 1])
    parts = ex.explain(x, target=0).relevance + ex.explain(x, target=5).relevance
    np.testing.assert_allclose(both.relevance, parts, rtol=0, atol=1e-5 * np.abs(parts).max())
    np.testing.assert_allclose(both.conservation, both.relevance.sum(axis=1) / 2, rtol=1e-5)


@pytest.mark.parametrize("seed, message", [
    (np.ones((3, 5)), r"seed of shape \[3, 5\] does not fit the output for a batch of 3: expected \[3, 6\]"),
    (np.ones(6, bool), "seed must be an array of real numbers, got bool"),
    (np.array([np.nan] * 6), "the seed contains NaN or Inf"),
])
def test_bad_seed_arrays(folder: Path, seed: np.ndarray, message: str) -> None:
    ex = Explainer(str(exported("multilabel", folder)), "gradient", cache=False)
    with pytest.raises(InputError, match=message):
        ex.explain(_features(), seed=seed)
    with pytest.raises(InputError, match="pass target or seed, not both"):
        ex.explain(_features(), target=1, seed=np.ones(6))


def test_cli_seed_file(folder: Path, tmp_path: Path) -> None:
    x = _features(2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "seed.npy", np.array([0, 1, 0, 0, 0, 1], np.float32))
    model = str(exported("multilabel", folder))
    code, stdout, stderr = run_cli(["explain", model, str(tmp_path / "x.npy"), "--seed-file",
                                    str(tmp_path / "seed.npy"), "--method", "gradient", "--out", str(tmp_path / "o")])
    assert code == 0, stderr
    assert "6 labels (multi-label: pre-sigmoid logits explained)" in stdout and "seed array" in stdout
    assert "skipped the final Sigmoid" in stdout and "sigmoid 0." in stdout
    expected = Explainer(model, "gradient", cache=False).explain(x, seed=np.array([0, 1, 0, 0, 0, 1]))
    saved = np.load(tmp_path / "o" / "x_1.npz")
    np.testing.assert_allclose(saved["relevance"], expected.relevance[1], rtol=1e-5, atol=1e-7)
    assert str(saved["seed"]) == "array" and int(saved["target"]) == -1
    np.save(tmp_path / "bad.npy", np.ones((2, 3), np.float32))
    code, _, stderr = run_cli(["explain", model, str(tmp_path / "x.npy"), "--seed-file", str(tmp_path / "bad.npy"),
                               "--out", str(tmp_path / "o2")])
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "seed of shape [2, 3] does not fit the output for a batch of 2" in stderr
    code, _, stderr = run_cli(["explain", model, str(tmp_path / "x.npy"), "--seed-file", str(tmp_path / "seed.npy"),
                               "--target", "1", "--out", str(tmp_path / "o3")])
    assert code == 2 and "pass --target or --seed-file, not both" in stderr


def test_cli_regressor_prints_its_value(folder: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", _features(1))
    code, stdout, stderr = run_cli(["explain", str(exported("regressor", folder)), str(tmp_path / "x.npy"),
                                    "--out", str(tmp_path / "o")])
    value = float(seeded_model("regressor")(torch.from_numpy(_features(1))).detach()[0])
    assert code == 0, stderr
    assert "one output value" in stdout and f"output value {value:.4g}  <- explained" in stdout
    assert "p 1.000" not in stdout


@pytest.mark.slow
def test_multilabel_dynamo_export(folder: Path) -> None:
    x = _features()
    ex = Explainer(str(exported("multilabel", folder, dynamo=True)), "gradient", cache=False)
    assert any("skipped the final Sigmoid" in c for c in ex.changes)
    assert np.allclose(ex.forward(x), _pre_sigmoid(x).detach().numpy(), atol=1e-5)
