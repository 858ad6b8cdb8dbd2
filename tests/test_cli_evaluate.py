"""End-to-end tests of ``explainer evaluate`` and ``explainer audit`` on the shipped digits CNN, in-process through
``explainer.cli.main``: the documented aopc.json / report.json structure, the printed table, exit codes, baselines,
and the science check that LRP beats the random order on the trained model.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explainer import evaluate
from explainer.images.preprocess import load_batch, preprocessing
from tests.support.cli import run_cli
from tests.support.paths import DIGITS, DIGITS_SPEC, EXAMPLES

IMAGES = sorted(EXAMPLES.glob("digit_*.png"))
METHODS = ("epsilon-plus-flat", "gradient", "random")
SMALL = ["--steps", "10", "--region", "4", "--repeats", "2"]


def table_rows(stdout: str) -> dict[str, list[str]]:
    """Rows of the printed AOPC table: {method: [AOPC, ABPC, vs random, PNG bytes, entropy]}."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:3] == ["method", "AOPC", "ABPC"])
    rows = {}
    for line in lines[start + 1:]:
        if line.startswith("L="):
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def check_entry(name: str, entry: dict, steps: int, n_images: int, *, lerf: bool) -> None:
    for key in ("aopc", "abpc", "curve", "per_image", "per_image_aopc", "complexity"):
        assert key in entry, f"{name}: missing {key!r}"
    aopc, curve = entry["aopc"], np.asarray(entry["curve"])
    per_image = np.asarray(entry["per_image"])
    assert isinstance(aopc, float) and math.isfinite(aopc)
    assert curve.shape == (steps + 1,) and curve[0] == 0.0
    assert per_image.shape == (n_images, steps + 1) and np.all(per_image[:, 0] == 0.0)
    assert np.all(np.isfinite(per_image))
    # AOPC is the mean over the L+1 steps (not a trapezoid), averaged over images
    np.testing.assert_allclose(curve, per_image.mean(axis=0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(entry["per_image_aopc"], per_image.mean(axis=1), rtol=0, atol=1e-9)
    assert aopc == pytest.approx(curve.mean(), abs=1e-9)
    if name == "random":
        assert entry["abpc"] is None and entry["complexity"] is None
        return
    complexity = entry["complexity"]
    assert complexity["png_bytes"] > 0 and 0.0 < complexity["entropy"] <= 8.0
    if lerf:
        lerf_curve = np.asarray(entry["curve_lerf"])
        assert lerf_curve.shape == (steps + 1,) and lerf_curve[0] == 0.0
        assert isinstance(entry["abpc"], float) and math.isfinite(entry["abpc"])
        # ABPC = mean gap f(LeRF) - f(MoRF) = AOPC(MoRF) - AOPC(LeRF)
        assert entry["abpc"] == pytest.approx(aopc - entry["aopc_lerf"], abs=1e-6)
    else:
        assert entry["abpc"] is None


# ---------------------------------------------------------------------------------------------- evaluate


@pytest.fixture(scope="module")
def small_evaluation(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    code, stdout, _ = run_cli(["evaluate", DIGITS, EXAMPLES, "--methods", ",".join(METHODS), *SMALL, "--out", out])
    return code, stdout, out


def test_evaluate_writes_documented_aopc_json(small_evaluation):
    code, _, out = small_evaluation
    assert code == 0
    report = json.loads((out / "aopc.json").read_text(encoding="utf-8"))
    assert set(report) == {"settings", "methods"}
    settings = report["settings"]
    assert settings["steps"] == 10 and settings["region"] == 4 and settings["repeats"] == 2
    assert settings["images"] == 10 and settings["orders"] == ["morf"]
    assert settings["perturb"] == "uniform" and settings["grid"] == "fixed" and settings["seed"] == 0
    assert settings["layout"] == "NCHW" and settings["preprocess"] == "unit"
    assert settings["perturb_params"] == {"low": [0.0], "high": [1.0]}     # unit range of a 1-channel model
    assert settings["image_files"] == [str(p) for p in IMAGES]              # the folder expanded, sorted
    assert list(report["methods"]) == list(METHODS)
    for name, entry in report["methods"].items():
        check_entry(name, entry, steps=10, n_images=10, lerf=False)
    with Image.open(out / "aopc.png") as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


def test_evaluate_settings_name_the_model_file(small_evaluation):
    """The report must say which model it evaluated (not a placeholder like '<ModelProto>')."""
    _, _, out = small_evaluation
    settings = json.loads((out / "aopc.json").read_text(encoding="utf-8"))["settings"]
    assert settings["model"] == str(DIGITS)


def test_evaluate_prints_every_method(small_evaluation):
    code, stdout, out = small_evaluation
    assert code == 0
    report = json.loads((out / "aopc.json").read_text(encoding="utf-8"))
    rows = table_rows(stdout)
    assert list(rows) == list(METHODS)
    random_aopc = report["methods"]["random"]["aopc"]
    for name in METHODS:
        aopc = report["methods"][name]["aopc"]
        assert float(rows[name][0]) == pytest.approx(aopc, abs=6e-5)
        assert rows[name][1] == "-"                                 # no ABPC for a MoRF-only run
        if name != "random":
            assert float(rows[name][2]) == pytest.approx(aopc - random_aopc, abs=6e-5)
    assert "L=10 steps, 4x4 regions (fixed grid)" in stdout
    assert f"wrote {out / 'aopc.json'} and {out / 'aopc.png'}" in stdout


def test_evaluate_matches_python_api(small_evaluation):
    """The CLI feeds evaluate() the load_batch input and its settings: identical numbers."""
    _, _, out = small_evaluation
    cli = json.loads((out / "aopc.json").read_text(encoding="utf-8"))
    x, _ = load_batch(IMAGES, DIGITS_SPEC, preprocessing("unit", channels=1))
    api = evaluate(str(DIGITS), x, ["epsilon-plus-flat", "gradient"], low=np.float32(0), high=np.float32(1),
                   steps=10, region=4, repeats=2, provider="cpu", progress=False)
    for name in METHODS:
        np.testing.assert_allclose(cli["methods"][name]["curve"], api["methods"][name]["curve"], rtol=0, atol=1e-5)


def test_evaluate_order_both_fills_abpc(tmp_path):
    out = tmp_path / "both"
    images = [str(p) for p in IMAGES[:4]]
    code, stdout, _ = run_cli(["evaluate", DIGITS, *images, "--methods", "epsilon-plus-flat,random", "--order",
                               "both", "--steps", "6", "--region", "4", "--repeats", "2", "--out", out])
    assert code == 0
    report = json.loads((out / "aopc.json").read_text(encoding="utf-8"))
    assert report["settings"]["orders"] == ["morf", "lerf"] and report["settings"]["images"] == 4
    assert list(report["methods"]) == ["epsilon-plus-flat", "random"]
    for name, entry in report["methods"].items():
        check_entry(name, entry, steps=6, n_images=4, lerf=True)
    rows = table_rows(stdout)
    assert float(rows["epsilon-plus-flat"][1]) == pytest.approx(report["methods"]["epsilon-plus-flat"]["abpc"],
                                                                abs=6e-5)
    assert rows["random"][1] == "-"


def test_evaluate_without_random_and_bad_method(tmp_path):
    out = tmp_path / "noRandom"
    code, stdout, _ = run_cli(["evaluate", DIGITS, IMAGES[0], IMAGES[1], "--methods", "gradient", "--steps", "4",
                               "--region", "4", "--repeats", "1", "--out", out])
    assert code == 0
    report = json.loads((out / "aopc.json").read_text(encoding="utf-8"))
    assert list(report["methods"]) == ["gradient"]
    assert list(table_rows(stdout)) == ["gradient"]
    code, stdout, stderr = run_cli(["evaluate", DIGITS, IMAGES[0], "--methods", "epsilon-plus-flat,bogus",
                                    "--out", tmp_path / "bad"])
    assert code == 2 and "bogus" in stderr and stderr.startswith("explainer: error:")
    assert not (tmp_path / "bad" / "aopc.json").exists()


def test_lrp_beats_random_on_trained_model(tmp_path, capsys):
    """Science check: on the trained digits CNN, removing the most relevant regions first (LRP ordering) destroys
    the class score faster than removing random regions."""
    out = tmp_path / "science"
    code, stdout, _ = run_cli(["evaluate", DIGITS, EXAMPLES, "--methods", "epsilon-plus-flat,gradient,random",
                               "--steps", "20", "--region", "4", "--repeats", "3", "--perturb", "uniform",
                               "--out", out])
    assert code == 0
    methods = json.loads((out / "aopc.json").read_text(encoding="utf-8"))["methods"]
    aopc = {name: entry["aopc"] for name, entry in methods.items()}
    with capsys.disabled():
        print("\nAOPC (digits CNN, 10 images, L=20, 4x4, uniform, 3 repeats): "
              + ", ".join(f"{k} {v:.4f}" for k, v in aopc.items()))
    assert aopc["epsilon-plus-flat"] > aopc["random"], aopc
    # the gap is not a rounding accident: LRP wins on most of the images
    lrp = np.asarray(methods["epsilon-plus-flat"]["per_image_aopc"])
    rnd = np.asarray(methods["random"]["per_image_aopc"])
    assert (lrp > rnd).sum() >= 8, (lrp, rnd)


# ---------------------------------------------------------------------------------------------- audit

AUDIT_IMAGES = [str(p) for p in IMAGES[:4]]
AUDIT_PROTOCOL = ["--steps", "8", "--region", "4", "--repeats", "2"]


def audit(report_dir: Path, *extra) -> tuple[int, str, str]:
    return run_cli(["audit", DIGITS, *AUDIT_IMAGES, "--method", "epsilon-plus-flat", *AUDIT_PROTOCOL,
                    "--report", report_dir, *extra])


@pytest.fixture(scope="module")
def passed_audit(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit_pass")
    code, stdout, stderr = audit(out, "--min-gain", "0")
    return code, stdout, stderr, out


def test_audit_passes_with_zero_min_gain(passed_audit):
    code, stdout, _, out = passed_audit
    assert code == 0
    assert "audit PASSED" in stdout
    payload = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert set(payload) == {"audit", "evaluation"}
    verdict, evaluation = payload["audit"], payload["evaluation"]
    assert verdict["passed"] is True and verdict["method"] == "epsilon-plus-flat" and verdict["reasons"] == []
    methods = evaluation["methods"]
    assert set(methods) == {"epsilon-plus-flat", "random"}
    assert verdict["aopc"] == methods["epsilon-plus-flat"]["aopc"]
    assert verdict["random_aopc"] == methods["random"]["aopc"]
    assert verdict["gain"] == pytest.approx(verdict["aopc"] - verdict["random_aopc"], abs=1e-12)
    assert verdict["gain"] >= 0.0
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "PASSED" in md and "FAILED" not in md and "epsilon-plus-flat" in md


def test_audit_fails_with_impossible_min_gain(tmp_path):
    code, stdout, _ = audit(tmp_path, "--min-gain", "1000")
    assert code == 1
    assert "audit FAILED" in stdout
    payload = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert payload["audit"]["passed"] is False and payload["audit"]["reasons"]
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "FAILED" in md and "1000" in md


def test_audit_baseline_same_settings_is_deterministic(passed_audit, tmp_path):
    _, _, _, first = passed_audit
    code, stdout, _ = audit(tmp_path, "--baseline", first / "report.json", "--max-drop", "0.0")
    assert code == 0, stdout
    verdict = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["audit"]
    previous = json.loads((first / "report.json").read_text(encoding="utf-8"))["audit"]
    assert verdict["aopc"] == previous["aopc"]            # same seed and settings: bit-identical AOPC
    assert verdict["baseline_aopc"] == previous["aopc"] and verdict["drop"] == 0.0
    assert "Baseline AOPC" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_audit_fails_when_baseline_was_much_better(passed_audit, tmp_path):
    _, _, _, first = passed_audit
    payload = json.loads((first / "report.json").read_text(encoding="utf-8"))
    payload["evaluation"]["methods"]["epsilon-plus-flat"]["aopc"] += 100.0
    edited = tmp_path / "better.json"
    edited.write_text(json.dumps(payload), encoding="utf-8")
    out = tmp_path / "report"
    code, stdout, _ = audit(out, "--baseline", edited, "--max-drop", "0.0")
    assert code == 1
    assert "audit FAILED" in stdout and re.search(r"dropped from \d+\.\d+ \(baseline\)", stdout)
    verdict = json.loads((out / "report.json").read_text(encoding="utf-8"))["audit"]
    assert verdict["passed"] is False and verdict["drop"] == pytest.approx(100.0, abs=1e-9)
    assert "FAILED" in (out / "report.md").read_text(encoding="utf-8")
    # a generous max-drop tolerates it
    code, _, _ = audit(tmp_path / "tolerant", "--baseline", edited, "--max-drop", "150")
    assert code == 0


def test_audit_bad_input_exits_2(tmp_path):
    not_json = tmp_path / "baseline.json"
    not_json.write_text("this is { not json", encoding="utf-8")
    code, stdout, stderr = audit(tmp_path / "r1", "--baseline", not_json)
    assert code == 2
    assert stderr.startswith("explainer: error:") and "baseline.json" in stderr and "JSON" in stderr
    assert not (tmp_path / "r1" / "report.json").exists()
    code, _, stderr = audit(tmp_path / "r2", "--max-drop", "0.1")
    assert code == 2 and "--max-drop needs --baseline" in stderr
    assert not (tmp_path / "r2" / "report.json").exists()
