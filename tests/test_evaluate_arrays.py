"""Region perturbation beyond images (:mod:`explainer.evaluation.units`): ``explainer evaluate`` and ``audit`` on
feature rows (the shipped wine MLP), 1-D signals (a seeded Conv1d net) and token ids, with the image commands'
aopc.json / report.json formats.

What is checked: the report's fields (units, replacement and its source, steps scaled to the units), that after the
last step of a run that removes every unit all methods score the same fully replaced input, the random baseline, a
baseline row given, the report page, one-line errors with exit code 2 before anything is written; units and orders
on the protocol itself (signal windows covering every sample, relevance summed per unit, padding tokens never
removed, the mask token written into exactly the ordered positions).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from explainer.errors import InputError
from explainer.evaluation.region_perturbation import Protocol
from explainer.evaluation.regions import order_regions
from explainer.evaluation.units import Units
from tests.support.cli import run_cli
from tests.support.paths import EXAMPLES

REPO = Path(__file__).resolve().parents[1]
WINE = REPO / "graphs" / "wine_mlp.onnx"
ROWS = EXAMPLES / "wine_rows.npy"
TRAIN_MEAN = json.loads((REPO / "graphs" / "wine_mlp.json").read_text())["standardisation"]["mean"]


@pytest.fixture(scope="module")
def signal_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The seeded Conv1d classifier [N, 2, 32] -> [N, 3] and six seeded signals for it."""
    from tests.support.signal_models import exported

    folder = tmp_path_factory.mktemp("signal")
    signals = folder / "signals.npy"
    np.save(signals, np.random.default_rng(0).normal(size=(6, 2, 32)).astype(np.float32))
    return exported("signal", folder), signals


def _last_scores(entry: dict) -> np.ndarray:
    """f(x0) - f(xL) per sample: the last point of each per-sample curve."""
    return np.asarray(entry["per_image"])[:, -1]


# ---------------------------------------------------------------------------------------------- feature rows


def test_evaluate_feature_rows(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    code, stdout, stderr = run_cli(["evaluate", WINE, ROWS, "--out", out, "--order", "both", "--repeats", "3"])
    assert code == 0, stderr
    assert "one feature a step, 13 steps (scaled to the input" in stdout and "on 3 sample(s) (features)" in stdout
    report = json.loads((out / "aopc.json").read_text())
    settings, methods = report["settings"], report["methods"]
    assert (settings["input"], settings["layout"], settings["unit"]) == ("features", "NC", "one feature")
    assert (settings["steps"], settings["region"], settings["perturb"], settings["images"]) == (13, 1, "baseline", 3)
    rows = np.load(ROWS).astype(np.float64)
    np.testing.assert_allclose(settings["perturb_params"]["row"], rows.mean(axis=0), rtol=1e-6)
    assert "mean of the 3 evaluated row(s)" in settings["perturb_params"]["source"]
    assert "training mean" in settings["replacement"] and settings["input_file"] == str(ROWS)
    assert list(methods) == ["epsilon-plus", "gradient", "random"]  # auto: the feature models' default
    for name, entry in methods.items():
        curve = np.asarray(entry["curve"])
        assert curve.shape == (14,) and curve[0] == 0.0
        low, high = entry["aopc_ci"]
        assert low <= entry["aopc"] <= high
        assert (entry["abpc"] is None) == (name == "random")
    # after 13 steps every feature holds the baseline: every order ends at the same input
    for name in ("gradient", "random"):
        np.testing.assert_allclose(_last_scores(methods[name]), _last_scores(methods["epsilon-plus"]), atol=1e-4)
    # ... and its score is the model's on the baseline row
    from explainer import Explainer
    ex = Explainer(WINE, "gradient")
    f0 = ex.forward(rows)
    targets = f0.argmax(axis=1)
    f_base = ex.forward(rows.mean(axis=0, keepdims=True))[0, targets]
    np.testing.assert_allclose(_last_scores(methods["random"]), f0[np.arange(3), targets] - f_base, atol=1e-3)
    assert (out / "aopc.png").stat().st_size > 0 and (out / "rows.jsonl").exists()
    code, _, stderr = run_cli(["report", out, "-o", tmp_path / "report.html"])
    assert code == 0, stderr
    assert "epsilon-plus" in (tmp_path / "report.html").read_text()


def test_audit_feature_rows_with_a_baseline_row(tmp_path: Path) -> None:
    baseline = tmp_path / "train_mean.npy"
    np.save(baseline, np.asarray(TRAIN_MEAN, np.float32))
    code, stdout, stderr = run_cli(["audit", WINE, ROWS, "--baseline-row", baseline, "--report", tmp_path / "a",
                                    "--repeats", "3", "--min-gain", "0"])
    assert code in (0, 1), stderr
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    settings = report["evaluation"]["settings"]
    assert settings["perturb_params"]["source"] == "the baseline row given"
    np.testing.assert_allclose(settings["perturb_params"]["row"], TRAIN_MEAN, rtol=1e-6)
    gain = report["evaluation"]["methods"]["epsilon-plus"]["aopc"] - report["evaluation"]["methods"]["random"]["aopc"]
    assert ("PASSED" in stdout) == (code == 0) == (gain >= 0)
    code, stdout, _ = run_cli(["audit", WINE, ROWS, "--baseline-row", baseline, "--report", tmp_path / "b",
                               "--repeats", "3", "--min-gain", "1000"])
    assert code == 1 and "audit FAILED" in stdout


def test_resume_feature_rows(tmp_path: Path) -> None:
    """The journal's settings hold the units: a resume with the same request rewrites the same report without
    recomputing, one with another baseline row is refused."""
    out = tmp_path / "eval"
    argv = ["evaluate", WINE, ROWS, "--out", out, "--methods", "gradient,random", "--repeats", "2"]
    assert run_cli(argv)[0] == 0
    first = (out / "aopc.json").read_text()
    (out / "aopc.json").unlink()
    code, stdout, stderr = run_cli([*argv, "--resume"])
    assert code == 0, stderr
    assert (out / "aopc.json").read_text() == first
    baseline = tmp_path / "zeros.npy"
    np.save(baseline, np.zeros(13, np.float32))
    code, _, stderr = run_cli([*argv, "--resume", "--baseline-row", baseline])
    assert code == 2 and "settings" in stderr, stderr


@pytest.mark.parametrize("case", ["image-and-npy", "region-on-features", "baseline-length", "mask-token-on-features",
                                  "perturb-on-features", "sliding-grid", "preprocess-option", "fixed-on-features",
                                  "baseline-row-with-images", "steps-beyond-units", "one-row-not-a-batch"])
def test_bad_array_requests_exit_2(tmp_path: Path, case: str) -> None:
    short = tmp_path / "short.npy"
    np.save(short, np.zeros(12, np.float32))
    mask = tmp_path / "mask.npy"
    np.save(mask, np.ones((3, 13), np.int64))
    image = EXAMPLES / "digit_0.png"
    args, message = {
        "image-and-npy": ([image, ROWS], "give one .npy file"),
        "region-on-features": ([ROWS, "--region-size", "2"], "--region-size 2: features are removed one at a time"),
        "baseline-length": ([ROWS, "--baseline-row", short], "13 finite numbers, one per feature; got shape [12]"),
        "mask-token-on-features": ([ROWS, "--mask-token", "3"], "a mask token replaces token ids"),
        "perturb-on-features": ([ROWS, "--perturb", "mean"], "perturbation 'mean' does not apply to feature rows"),
        "sliding-grid": ([ROWS, "--grid", "sliding"], "the sliding grid is for images"),
        "preprocess-option": ([ROWS, "--preprocess", "unit"], "--preprocess: for images"),
        "fixed-on-features": ([ROWS, "--fixed", f"attention_mask={mask}"], "taken with token ids only"),
        "baseline-row-with-images": ([image, "--baseline-row", short], "--baseline-row is for a .npy input"),
        "steps-beyond-units": ([ROWS, "--steps", "14"], "holds only 13 units"),
        "one-row-not-a-batch": ([short], "expected a batch"),
    }[case]
    for command, folder in (("evaluate", "--out"), ("audit", "--report")):
        code, stdout, stderr = run_cli([command, WINE, *args, folder, tmp_path / command])
        assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, (command, stderr)
        assert not (tmp_path / command).exists()


# ---------------------------------------------------------------------------------------------- 1-D signals


def test_evaluate_signals(signal_model: tuple[Path, Path], tmp_path: Path) -> None:
    model, signals = signal_model
    out = tmp_path / "eval"
    code, stdout, stderr = run_cli(["evaluate", model, signals, "--out", out, "--region-size", "5", "--steps", "7",
                                    "--methods", "epsilon-plus,gradient,random", "--repeats", "2"])
    assert code == 0, stderr
    settings = json.loads((out / "aopc.json").read_text())["settings"]
    methods = json.loads((out / "aopc.json").read_text())["methods"]
    assert (settings["input"], settings["layout"], settings["region"], settings["steps"]) == ("signal", "NCW", 5, 7)
    assert settings["perturb"] == "mean" and "windows of 5 sample(s) (as given)" in settings["region_choice"]
    # 7 windows of 5 cover the 32 samples: after step 7 each channel is its mean everywhere, whatever the order
    for name in ("gradient", "random"):
        np.testing.assert_allclose(_last_scores(methods[name]), _last_scores(methods["epsilon-plus"]), atol=1e-4)
    x = np.load(signals)
    from explainer import Explainer
    ex = Explainer(model, "gradient")
    f0 = ex.forward(x)
    t = f0.argmax(axis=1)
    flat = ex.forward(np.broadcast_to(x.mean(axis=2, keepdims=True), x.shape))
    np.testing.assert_allclose(_last_scores(methods["random"]), (f0 - flat)[np.arange(len(x)), t], atol=1e-3)
    code, _, stderr = run_cli(["evaluate", model, signals, "--out", tmp_path / "u", "--perturb", "uniform",
                               "--methods", "gradient", "--repeats", "2"])
    assert code == 0, stderr
    settings = json.loads((tmp_path / "u" / "aopc.json").read_text())["settings"]
    np.testing.assert_allclose(settings["perturb_params"]["low"], x.min(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(settings["perturb_params"]["high"], x.max(axis=(0, 2)), rtol=1e-6)
    assert (settings["region"], settings["steps"]) == (1, 8)  # scaled: 32 windows of 1 sample, a quarter of them
    code, _, stderr = run_cli(["evaluate", model, signals, "--out", tmp_path / "w", "--region-size", "33"])
    assert code == 2 and "--region-size 33 is longer than the 32-sample signal" in stderr


def test_signal_windows_and_unit_relevance() -> None:
    units = Units("signal", "x", 2, 32, 5)
    maps = units.heatmaps(np.arange(2 * 2 * 32, dtype=np.float64).reshape(2, 2, 32), False, "l2")
    assert maps.shape == (2, 1, 32)
    np.testing.assert_array_equal(maps[0, 0], np.arange(32) + np.arange(32, 64))  # summed over the channels
    rel = np.random.default_rng(1).normal(size=(1, 2, 32))
    np.testing.assert_allclose(units.heatmaps(rel, True, "l2")[0, 0], np.sqrt((rel[0] ** 2).sum(0)), rtol=1e-6)
    np.testing.assert_allclose(units.heatmaps(rel, True, "linf")[0, 0], np.abs(rel[0]).max(0), rtol=1e-6)
    boxes = order_regions(maps, 7, size=5, order="morf")[0]
    covered = np.zeros(32, int)
    for top, left, bottom, right in boxes:
        assert (top, bottom) == (0, 1)
        covered[left:right] += 1
    assert (covered == 1).all()  # 7 windows, centred, the border ones partial: every sample exactly once
    sums = [maps[0, 0, left:right].sum() for _, left, _, right in boxes]
    assert sums == sorted(sums, reverse=True)  # MoRF: the window's summed relevance, highest first


# ---------------------------------------------------------------------------------------------- token ids


@pytest.fixture(scope="module")
def token_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A seeded embedding classifier (nn.Embedding(20, 6), the mean over the real tokens by the attention mask,
    Linear 6 -> 3) exported by PyTorch with inputs input_ids and attention_mask [N, 8] and the metadata entry
    mask_token_id 5; five rows of token ids and their mask (row 0: 5 real tokens, row 3: 3)."""
    import warnings

    import onnx
    import torch
    from torch import nn

    class TokenNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding, self.head = nn.Embedding(20, 6), nn.Linear(6, 3)

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            m = mask.unsqueeze(-1).to(torch.float32)
            return self.head((self.embedding(ids) * m).sum(1) / m.sum(1))

    folder = tmp_path_factory.mktemp("tokens")
    torch.manual_seed(0)
    path, names = folder / "tokens.onnx", ["input_ids", "attention_mask"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TokenNet().eval(), (torch.ones(2, 8, dtype=torch.int64),) * 2, str(path), dynamo=False,
                          opset_version=17, input_names=names, output_names=["logits"],
                          dynamic_axes={name: {0: "batch"} for name in [*names, "logits"]})
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"mask_token_id": "5"})
    onnx.save(model, str(path))
    ids = np.random.default_rng(0).integers(1, 20, (5, 8)).astype(np.int64)
    mask = np.ones((5, 8), np.int64)
    mask[0, 5:], mask[3, 3:] = 0, 0
    np.save(folder / "ids.npy", ids)
    np.save(folder / "mask.npy", mask)
    return path, folder / "ids.npy", folder / "mask.npy"


def test_evaluate_and_audit_token_ids(token_model: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, ids_path, mask_path = token_model
    out = tmp_path / "eval"
    code, stdout, stderr = run_cli(["evaluate", model, ids_path, "--fixed", f"attention_mask={mask_path}", "--out",
                                    out, "--repeats", "2"])
    assert code == 0, stderr
    report = json.loads((out / "aopc.json").read_text())
    settings, methods = report["settings"], report["methods"]
    assert (settings["input"], settings["layout"], settings["perturb"]) == ("tokens", "tokens", "mask-token")
    assert settings["perturb_params"]["id"] == 5 and "mask_token_id" in settings["perturb_params"]["source"]
    assert settings["steps"] == 8 and "padding (attention_mask 0) never removed" in settings["unit"]
    # every real token masked by the end (row 3 after its 3 tokens, then flat), padding kept: one input per row
    from explainer import Explainer
    ids, mask = np.load(ids_path), np.load(mask_path)
    ex = Explainer(model, "gradient")
    f0 = ex.forward({"input_ids": ids, "attention_mask": mask})
    t = f0.argmax(axis=1)
    end = ex.forward({"input_ids": np.where(mask == 1, 5, ids), "attention_mask": mask})
    for name, entry in methods.items():
        curves = np.asarray(entry["per_image"])
        np.testing.assert_allclose(curves[:, -1], (f0 - end)[np.arange(5), t], atol=1e-4, err_msg=name)
        np.testing.assert_allclose(curves[3, 3:], curves[3, -1], atol=1e-5, err_msg=name)
    code, stdout, stderr = run_cli(["audit", model, ids_path, "--fixed", f"attention_mask={mask_path}",
                                    "--mask-token", "0", "--report", tmp_path / "audit", "--repeats", "2"])
    assert code in (0, 1), stderr
    audited = json.loads((tmp_path / "audit" / "report.json").read_text())["evaluation"]["settings"]
    assert audited["perturb_params"] == {"id": 0, "source": "the mask token given"}
    code, _, stderr = run_cli(["evaluate", model, ids_path, "--fixed", f"segments={mask_path}", "--out",
                               tmp_path / "bad"])
    assert code == 2 and "no companion input 'segments'" in stderr and not (tmp_path / "bad").exists()


def test_tokens_padding_never_removed() -> None:
    """Token units on the protocol with a scoring function that records every perturbed batch: only real tokens
    take the mask id, in the heatmap's order (random: only among real tokens), companions never change, and a row
    with fewer real tokens than steps keeps its last input."""
    mask_id, T = 7, 6
    ids = np.array([[3, 4, 5, 6, 0, 0], [8, 9, 10, 11, 12, 13]], np.int64)
    attention = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], np.int64)
    units = Units("tokens", "ids", 1, T, 1, dtype="int64", fixed=(("attention_mask", "int64"),), mask_token=mask_id)
    view = units.pack({"ids": ids, "attention_mask": attention})
    assert view.shape == (2, 2, 1, T)
    fed = units.unpack(view)
    np.testing.assert_array_equal(fed["ids"], ids)
    assert fed["ids"].dtype == np.int64 and fed["attention_mask"].dtype == np.int64
    seen: list[np.ndarray] = []

    def score(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.copy())
        return np.stack([batch[:, 0, 0].sum(axis=1), -batch[:, 0, 0].sum(axis=1)], axis=1)

    heat = np.array([[[0.1, 0.4, 0.3, 0.2, 9.0, 8.0]], [[6, 5, 4, 3, 2, 1]]], np.float64)
    protocol = Protocol.prepare(score, layout="NCHW", steps=5, region=1, perturb=units.perturbation("mask-token"),
                                low=None, high=None, repeats=2, seed=0, grid="fixed", batch_size=64,
                                eligible=units.eligible)
    for order in ("morf", "lerf", "lerf-signed", "random"):
        seen.clear()
        protocol.scores(view, 0, np.zeros(2, np.int64), heat, order, lambda k: None)
        batch = np.concatenate(seen)
        repeats = 2 if order == "random" else 1
        first = batch[:5 * repeats]  # row 0's perturbed inputs
        assert (first[:, 1] == view[0, 1]).all()  # the attention mask travels unchanged
        assert (first[:, 0, 0, 4:] == 0).all()  # padding never replaced
        masked = first[:, 0, 0, :4] == mask_id
        assert masked.sum(axis=1).tolist() == [1, 2, 3, 4, 4] * repeats  # the fifth step has no real token left
        if order != "random":  # MoRF: 0.4, 0.3, 0.2, 0.1 (the padding's 9.0 and 8.0 skipped); LeRF the reverse
            picks = [1, 2, 3, 0] if order == "morf" else [0, 3, 2, 1]
            added = [int(np.flatnonzero(masked[k] & ~(masked[k - 1] if k else False))[0]) for k in range(4)]
            assert added == picks, order
        second = batch[5 * repeats:]
        assert ((second[:, 0, 0] == mask_id).sum(axis=1) == np.tile([1, 2, 3, 4, 5], repeats)).all()


def test_token_mask_default_and_bad_ids() -> None:
    from explainer.evaluation.units import _tokens

    class Stub:
        input_name, fixed_inputs = "ids", {"attention_mask": ((4,), np.dtype(np.int64))}
        metadata = {"pad_token_id": "1"}

    ids = np.ones((2, 4), np.int64)
    assert _tokens(Stub(), {"ids": ids}, ids, None)["mask_token"] == 1
    assert "pad_token_id" in _tokens(Stub(), {"ids": ids}, ids, None)["source"]
    Stub.metadata = {"mask_token_id": "103", "pad_token_id": "0"}
    assert _tokens(Stub(), {"ids": ids}, ids, None)["mask_token"] == 103
    Stub.metadata = {}
    fields = _tokens(Stub(), {"ids": ids}, ids, None)
    assert fields["mask_token"] == 0 and fields["source"].startswith("0:")
    with pytest.raises(InputError, match="no companion input 'segment'"):
        _tokens(Stub(), {"ids": ids, "segment": ids}, ids, None)
    with pytest.raises(InputError, match="integers below"):
        _tokens(Stub(), {"ids": ids * 2 ** 25}, ids * 2 ** 25, None)
    with pytest.raises(InputError, match="shape"):
        _tokens(Stub(), {"ids": ids, "attention_mask": ids[:, :3]}, ids, None)
