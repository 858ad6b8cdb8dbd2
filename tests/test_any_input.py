"""Models on feature vectors [N, F] and 1-D signals [N, C, L], and models with several outputs, from the API and the
CLI: gradients equal PyTorch autograd's, LRP-0 conserves on bias-free nets, epsilon-plus matches Zennit on the Conv1d
net, ``output=`` / ``--output`` pick the explained output, ``check`` lists every input and output, and the CLI
writes a line plot per signal and a bar chart per feature row."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explainer import Explainer
from explainer.errors import InputError, ModelError
from explainer.frontend.check import check_model
from explainer.pictures.signals import feature_names, plot_features
from tests.support.cli import run_cli
from tests.support.signal_models import FEATURES, MODELS, exported, int_input_model, seeded_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("any_input")


def _batch(name: str, n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *MODELS[name][1])).astype(np.float32)


def _autograd(model: torch.nn.Module, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    xt = torch.from_numpy(x).requires_grad_(True)
    out = model(xt)
    (grad,) = torch.autograd.grad(out[torch.arange(len(x)), torch.from_numpy(target)].sum(), xt)
    return grad.numpy()


@pytest.mark.parametrize("name", ["signal", "tabular"])
def test_gradient_equals_autograd(folder: Path, name: str) -> None:
    ex = Explainer(str(exported(name, folder)), "gradient", cache=False)
    x = _batch(name)
    e = ex.explain(x, target=[0, 1, 2])
    expected = _autograd(seeded_model(name), x, np.array([0, 1, 2]))
    assert e.relevance.shape == x.shape and ex.layout == {"signal": "NCW", "tabular": "NC"}[name]
    np.testing.assert_allclose(e.relevance, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    assert np.allclose(e.logits, seeded_model(name)(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


@pytest.mark.parametrize("name", ["signal", "tabular"])
def test_lrp_zero_conserves_without_biases(folder: Path, name: str) -> None:
    """Without biases every share of a logit reaches the input under LRP-0 (ReLU, max-pooling and dense layers
    pass it on whole); with them the gap is what the biases took."""
    x = _batch(name, 4)
    e = Explainer(str(exported(name, folder, biases=False)), "lrp-0", cache=False).explain(x)
    np.testing.assert_allclose(e.conservation, 1.0, atol=1e-4)
    with_bias = Explainer(str(exported(name, folder)), "lrp-0", cache=False).explain(x)
    assert np.abs(with_bias.conservation - 1.0).max() > 1e-2  # the biases do take a share: the check above can fail


def test_epsilon_plus_matches_zennit_on_conv1d(folder: Path) -> None:
    from tests.support.zennit_methods import zennit_relevance

    x = _batch("signal", 4, seed=3)
    e = Explainer(str(exported("signal", folder)), "epsilon-plus", cache=False).explain(x)
    expected = zennit_relevance(seeded_model("signal"), "epsilon-plus", x, e.target)
    np.testing.assert_allclose(e.relevance, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_feature_models_default_to_epsilon_plus(folder: Path) -> None:
    """The flat rule at the first layer would give every feature the same relevance: auto picks epsilon-plus."""
    ex = Explainer(str(exported("tabular", folder)), cache=False)
    rel = ex.explain(_batch("tabular")).relevance
    assert ex.method == "epsilon-plus" and np.ptp(rel, axis=1).min() > 1e-3
    assert Explainer(str(exported("signal", folder)), cache=False).method == "epsilon-plus-flat"


def test_output_by_name(folder: Path) -> None:
    path = str(exported("two_heads", folder))
    x = _batch("two_heads")
    scores, embedding = seeded_model("two_heads")(torch.from_numpy(x))
    first = Explainer(path, "gradient", cache=False)
    second = Explainer(path, "gradient", output="embedding", cache=False)
    assert (first.num_classes, second.num_classes) == (3, 5)
    assert np.allclose(second.forward(x), embedding.detach().numpy(), atol=1e-5)
    assert "explained output 'embedding' (of 2: scores, embedding)" in second.changes
    e = second.explain(x, target=4)
    expected = torch.autograd.functional.jacobian(lambda t: seeded_model("two_heads")(t)[1][:, 4].sum(),
                                                  torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(e.relevance, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    assert np.allclose(first.forward(x), scores.detach().numpy(), atol=1e-5)
    with pytest.raises(InputError, match=r"has no output 'nope'; its outputs are 'scores', 'embedding'$"):
        Explainer(path, output="nope", cache=False)


def test_int_input_is_refused(folder: Path) -> None:
    path = int_input_model(folder / "ids.onnx")
    message = ("input 'ids' holds integers (INT64) and feeds no embedding lookup (a Gather from a float table); "
               "relevance needs a float input or token ids")
    with pytest.raises(ModelError, match=re.escape(message)):
        Explainer(str(path), cache=False)
    report = check_model(path)
    assert not report.ok and report.inputs == [f"ids: int64[N, 4]: no relevance ({message})"]


def test_check_lists_inputs_and_outputs(folder: Path) -> None:
    path = exported("two_heads", folder)
    report = check_model(path)
    assert report.ok and report.inputs == ["x: float[batch, 8]: receives relevance"]
    assert report.outputs == ["scores: float[batch, 3]: explained",
                              "embedding: float[batch, 5]: can be explained with --output embedding"]
    picked = check_model(path, output="embedding")
    assert picked.outputs[0].endswith("can be explained with --output scores")
    assert picked.outputs[1].endswith(": explained")
    with pytest.raises(InputError, match="no output 'nope'"):
        check_model(path, output="nope")


def test_cli_check_output(folder: Path) -> None:
    path = str(exported("two_heads", folder))
    code, stdout, _ = run_cli(["check", path, "--output", "embedding"])
    assert code == 0 and "  embedding: float[batch, 5]: explained" in stdout.splitlines()
    code, _, stderr = run_cli(["check", path, "--output", "nope"])
    assert code == 2 and stderr.strip().splitlines() == [
        f"explainer: error: {path}: the model has no output 'nope'; its outputs are 'scores', 'embedding'"]


def test_cli_explains_signals(folder: Path, tmp_path: Path) -> None:
    x = _batch("signal", 2)
    np.save(tmp_path / "beats.npy", x)
    code, stdout, stderr = run_cli(["explain", str(exported("signal", folder)), str(tmp_path / "beats.npy"),
                                    "--out", str(tmp_path / "out"), "--method", "lrp-epsilon"])
    assert code == 0, stderr
    assert "input 'x' NCW [2, 32], 3 classes, method lrp-epsilon" in stdout
    expected = Explainer(str(exported("signal", folder)), "lrp-epsilon", cache=False).explain(x)
    for j in range(2):
        saved = np.load(tmp_path / "out" / f"beats_{j}.npz")
        np.testing.assert_allclose(saved["relevance"], expected.relevance[j], rtol=1e-5, atol=1e-6)
        assert int(saved["target"]) == expected.target[j] and str(saved["layout"]) == "NCW"
        with Image.open(tmp_path / "out" / f"beats_{j}.png") as picture:
            assert picture.size[0] > 300 and picture.size[1] > 200


def test_cli_explains_one_feature_row_with_names(folder: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "row.npy", _batch("tabular", 1)[0])  # one sample, no batch axis
    (tmp_path / "names.txt").write_text("\n".join(f"feature {i}" for i in range(FEATURES)) + "\n")
    code, stdout, stderr = run_cli(["explain", str(exported("tabular", folder)), str(tmp_path / "row.npy"),
                                    "--out", str(tmp_path / "out"), "--feature-names", str(tmp_path / "names.txt"),
                                    "--target", "2"])
    assert code == 0, stderr
    assert "(class 2): logit" in stdout and "<- explained" in stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["row_0.npz", "row_0.png"]
    (tmp_path / "names.txt").write_text("a\nb\n")
    code, _, stderr = run_cli(["explain", str(exported("tabular", folder)), str(tmp_path / "row.npy"),
                               "--out", str(tmp_path / "out2"), "--feature-names", str(tmp_path / "names.txt")])
    assert code == 2 and "2 feature names for a model input of 8 features" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "out2").exists()


@pytest.mark.parametrize("case", ["rank", "int", "output", "images"])
def test_cli_bad_combinations(folder: Path, tmp_path: Path, case: str) -> None:
    np.save(tmp_path / "x.npy", _batch("tabular"))
    model = str(exported("two_heads" if case == "output" else "tabular", folder))
    args = {"rank": [model, str(tmp_path / "x.npy")[:-4] + "_3d.npy"],
            "int": [str(int_input_model(tmp_path / "ids.onnx")), str(tmp_path / "x.npy")],
            "output": [model, str(tmp_path / "x.npy"), "--output", "nope"],
            "images": [model, str(tmp_path / "x.npy"), str(tmp_path / "picture.png")]}[case]
    np.save(tmp_path / "x_3d.npy", np.zeros((2, 3, 4, 5), np.float32))
    code, _, stderr = run_cli(["explain", *args, "--out", str(tmp_path / "out")])
    expected = {"rank": "does not fit input 'x' of rank 2", "int": "relevance needs a float input or token ids",
                "output": "no output 'nope'; its outputs are 'scores', 'embedding'",
                "images": "give one .npy file (one sample or a batch), or image files and folders, not both"}[case]
    assert code == 2 and expected in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bar_chart_names_and_limit(tmp_path: Path) -> None:
    assert feature_names(3) == ["f0", "f1", "f2"]
    rel = np.linspace(-1, 2, 40)
    path = plot_features(rel, tmp_path / "bars.png", title="t")
    with Image.open(path) as picture:
        assert picture.size[1] > 600  # one row per bar, 30 bars shown
    with pytest.raises(InputError, match="2 feature names for 40 features"):
        plot_features(rel, tmp_path / "bad.png", names=["a", "b"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["signal", "tabular"])
def test_dynamo_exports_match_legacy(folder: Path, name: str) -> None:
    x = _batch(name)
    legacy = Explainer(str(exported(name, folder)), "lrp-epsilon", cache=False).explain(x)
    dynamo = Explainer(str(exported(name, folder, dynamo=True)), "lrp-epsilon", cache=False).explain(x)
    np.testing.assert_allclose(dynamo.relevance, legacy.relevance, rtol=0, atol=1e-5 * np.abs(legacy.relevance).max())
