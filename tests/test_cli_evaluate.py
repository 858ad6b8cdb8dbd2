"""End-to-end tests of ``explainer evaluate`` and ``explainer audit`` on the shipped digits CNN, in-process through
``explainer.cli.main``: the documented aopc.json / report.json structure, the printed table, exit codes, baselines,
and the science check that LRP beats the random order on the trained model. Then what a new user meets: steps and
region scaled to the input (and impossible ones refused before any explanation), the forward passes announced, the
random baseline computed only when asked for, the relevance seed (``--seed-mode``, ``Explainer(seed=...)``),
``check --size``, defaults in every ``--help``, and no output folder left by a failed run.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import explainer.cli.evaluate
import explainer.evaluation.compare
from explainer import Explainer, InputError, evaluate
from explainer.api import LowConservationWarning
from explainer.cli import COMMANDS, build_parser
from explainer.evaluation.compare import evaluation_sizes, heatmap_from_relevance
from explainer.evaluation.region_perturbation import compare_heatmaps, forward_passes
from explainer.evaluation.regions import max_regions, order_regions, plan_regions, scaled_region, scaled_steps
from explainer.images.preprocess import load_batch, preprocessing
from tests.support.cli import run_cli
from tests.support.paths import DIGITS, DIGITS_SPEC, EXAMPLES, digit_path

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
    for key in ("aopc", "abpc", "curve", "per_image", "per_image_aopc", "complexity", "aopc_ci",
                "class_switch_curve", "class_switch_rate"):
        assert key in entry, f"{name}: missing {key!r}"
    low, high = entry["aopc_ci"]
    assert low <= entry["aopc"] <= high and len(entry["class_switch_curve"]) == steps + 1
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
    gain = entry.get("aopc_vs_random")  # present when the run has a random baseline
    if gain is not None:
        assert gain["low"] <= gain["mean"] <= gain["high"] and len(entry["curve_vs_random"]["low"]) == steps + 1
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
    assert set(report) == {"settings", "methods", "pairwise"}
    settings = report["settings"]
    assert settings["bootstrap"]["resamples"] == 2000 and settings["bootstrap"]["confidence"] == 0.95
    assert [(pair["a"], pair["b"]) for pair in report["pairwise"]] == [("epsilon-plus-flat", "gradient")]
    assert settings["signal_norm"] == "l2"
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
    assert "not part of it" in report["settings"]["abpc_definition"]
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


def test_audit_gates_on_the_lower_confidence_bound_when_asked(passed_audit, tmp_path):
    """A required gain between the interval's lower bound and the mean passes the mean gate and fails the
    lower-bound gate, on the same images and protocol."""
    _, _, _, first = passed_audit
    verdict = json.loads((first / "report.json").read_text(encoding="utf-8"))["audit"]
    low, _ = verdict["gain_ci"]
    assert low < verdict["gain"]
    between = f"{(low + verdict['gain']) / 2:.6f}"
    assert audit(tmp_path / "mean", "--min-gain", between)[0] == 0
    code, stdout, _ = audit(tmp_path / "lower", "--min-gain", between, "--gate", "lower-ci")
    assert code == 1 and "lower 95% confidence bound" in stdout and "of the lower bound" in stdout


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


# ---------------------------------------------------------------------------------- protocol scaled to the input


def test_scaled_protocol_keeps_the_paper_at_224_and_fits_small_inputs():
    assert (scaled_region(224, 224), scaled_steps(224, 224, 9)) == (9, 100)         # Samek et al.'s protocol
    assert (scaled_region(32, 32), scaled_steps(32, 32, 2)) == (2, 64)              # 64 of the 256 2×2 regions
    assert scaled_region(299, 400) == 13 and scaled_region(1, 1) == 1 and scaled_steps(1, 1, 1) == 1
    assert plan_regions(32, 32).describe() == "region 2×2 px and 64 steps, scaled to the 32×32 input"
    assert plan_regions(32, 32, region=4).describe() == \
        "region 4×4 px (as given) and 16 steps (scaled to the 32×32 input)"
    assert plan_regions(32, 32, steps=10).describe() == \
        "region 2×2 px (scaled to the 32×32 input) and 10 steps (as given)"
    assert plan_regions(32, 32, steps=10, region=4).describe() == "region 4×4 px and 10 steps, as given"
    with pytest.raises(InputError, match=r"only 16 non-overlapping 9×9 regions; steps=100 needs .*steps=16 or fewer or "
                                         r"region=3 \(121 regions\) or leave both out .*\(region=2, steps=64\)"):
        plan_regions(32, 32, steps=100, region=9)


@pytest.mark.parametrize("height, width", [(8, 8), (28, 28), (32, 48), (64, 64), (100, 37), (224, 224)])
def test_scaled_steps_never_run_out_of_regions(height, width):
    """The default steps fit the fixed grid (a quarter of its regions) and the sliding grid's greedy exclusion,
    whatever the heatmap: random ones, and ramps that make the greedy picks as scattered as they get."""
    region = scaled_region(height, width)
    assert scaled_steps(height, width, region) <= max(1, max_regions(height, width, region) // 4)
    steps = scaled_steps(height, width, region, "sliding")
    rows, cols = np.mgrid[:height, :width]
    heatmaps = np.concatenate([np.random.default_rng(0).random((3, height, width)),
                               np.stack([rows + cols, (rows * 7 + cols * 13) % 11, -(rows - cols) ** 2])])
    for order in ("morf", "lerf"):
        origins = order_regions(heatmaps, steps, size=region, order=order, grid="sliding")
        assert origins.shape == (6, steps, 4)


@pytest.mark.parametrize("perturb, orders, include_random", [("uniform", ("morf",), True),
                                                               ("zero", ("morf", "lerf"), True),
                                                               ("uniform", ("morf", "lerf"), False)])
def test_forward_passes_are_what_the_comparison_scores(perturb, orders, include_random):
    weights = np.random.default_rng(1).normal(size=(3, 1, 12, 12))
    scored = []

    def model(x):
        scored.append(len(x))
        return np.einsum("bchw,kchw->bk", x, weights)

    images = np.random.default_rng(2).random((3, 1, 12, 12)).astype(np.float32)
    maps = np.random.default_rng(3).random((3, 12, 12))
    compare_heatmaps(model, images, {"a": maps, "b": -maps}, orders=orders, include_random=include_random, steps=4,
                     region=3, perturb=perturb, low=0.0, high=1.0, repeats=3, batch_size=5, progress=False)
    assert sum(scored) == forward_passes(3, 4, methods=2, orders=len(orders), repeats=3,
                                         random_perturbation=perturb == "uniform", include_random=include_random)


def test_evaluate_defaults_scale_to_the_input_and_skip_an_unasked_random_baseline(tmp_path):
    out = tmp_path / "scaled"
    code, stdout, stderr = run_cli(["evaluate", DIGITS, IMAGES[3], IMAGES[7], "--methods", "gradient", "--repeats", "1",
                                    "--out", out])
    assert code == 0, stderr
    report = json.loads((out / "aopc.json").read_text(encoding="utf-8"))
    settings = report["settings"]
    assert (settings["steps"], settings["region"]) == (64, 2)
    assert settings["region_choice"] == "region 2×2 px and 64 steps, scaled to the 32×32 input"
    announced = stdout.splitlines()[0]
    assert "region 2×2 px and 64 steps, scaled to the 32×32 input" in announced
    assert announced.endswith(": 130 forward passes")                   # 2 images × (1 + 64 steps × 1 run)
    assert list(report["methods"]) == ["gradient"] and "random" not in announced
    assert "gradient:" in stderr and "random" not in stderr              # the baseline was never computed
    check_entry("gradient", report["methods"]["gradient"], steps=64, n_images=2, lerf=False)


@pytest.mark.parametrize("command", ["evaluate", "audit"])
@pytest.mark.parametrize("options, fragments", [
    (["--steps", "100", "--region", "9"], ["a 32×32 input holds only 16 non-overlapping 9×9 regions; --steps 100",
                                           "--steps 16 or fewer", "--region 3 (121 regions)",
                                           "leave both out for values scaled to the input (--region 2, --steps 64)"]),
    (["--steps", "300"], ["256 non-overlapping 2×2 regions (the region scaled to the input); --steps 300",
                          "--steps 256 or fewer or --region 1 (1024 regions)"]),
    (["--region", "40"], ["--region 40 is larger than the 32×32 input; use --region 32 or less"]),
])
def test_a_protocol_that_cannot_work_fails_before_any_explanation(tmp_path, monkeypatch, command, options, fragments):
    def never(*args, **kwargs):
        pytest.fail("images were loaded or explained before the protocol was checked")

    monkeypatch.setattr(explainer.cli.evaluate, "load_batch", never)
    monkeypatch.setattr(explainer.evaluation.compare, "Explainer", never)
    folder = "--report" if command == "audit" else "--out"
    code, stdout, stderr = run_cli([command, DIGITS, EXAMPLES, *options, folder, tmp_path / "out"])
    assert code == 2 and stdout == "" and stderr.count("\n") == 1 and stderr.startswith("explainer: error: ")
    for fragment in fragments:
        assert fragment in stderr, (fragment, stderr)
    assert not (tmp_path / "out").exists()


def test_evaluate_api_checks_the_protocol_before_explaining(monkeypatch):
    x, _ = load_batch(IMAGES[:2], DIGITS_SPEC, preprocessing("unit", channels=1))
    monkeypatch.setattr(Explainer, "explain", lambda *a, **k: pytest.fail("explained before the protocol check"))
    with pytest.raises(InputError, match=r"steps=100 needs .* region=3 \(121 regions\)"):
        evaluate(str(DIGITS), x, ["gradient"], low=0.0, high=1.0, steps=100, region=9, provider="cpu",
                 progress=False)


def test_progress_bars_name_the_method_and_order(capsys):
    maps = np.random.default_rng(0).random((2, 9, 9))
    images = np.ones((2, 1, 9, 9), np.float32)
    compare_heatmaps(lambda x: x.reshape(len(x), -1)[:, :2], images, {"lrp": maps}, steps=2, region=3,
                     perturb="zero", repeats=2, progress=True)
    err = capsys.readouterr().err
    assert "lrp MoRF" in err and "random order" in err and "random random" not in err


# ---------------------------------------------------------------------------------------------- memory


def test_chunks_and_batches_leave_the_report_unchanged(tmp_path):
    """Images are read, explained and perturbed a chunk at a time, with random draws seeded per image: chunks of 1,
    3 (uneven: 3 + 2) and all 5 images, and batches of 3 perturbed images (a 1 MiB budget), write the same
    aopc.json to the last digit of every float."""
    common = ["evaluate", DIGITS, *IMAGES[:5], "--methods", "epsilon-plus-flat,gradient,random", "--order", "both",
              "--steps", "6", "--region", "4", "--repeats", "2"]
    texts, memory = [], []
    for option in (["--chunk", "1"], ["--chunk", "3"], ["--chunk", "5"], ["--max-memory", "1M"]):
        out = tmp_path / "-".join(option)
        code, stdout, stderr = run_cli([*common, *option, "--out", out])
        assert code == 0, stderr
        texts.append((out / "aopc.json").read_text(encoding="utf-8"))
        memory.append(next(line for line in stdout.splitlines() if line.startswith("memory: ")))
    assert texts[1:] == texts[:1] * 3
    report = json.loads(texts[0])
    assert report["settings"]["images"] == 5 and np.shape(report["methods"]["gradient"]["per_image"]) == (5, 7)
    # the digits CNN explains an image in about 273 KiB and scores a perturbed one in about 164 KiB; each gets half
    # of the budget
    assert [line.split(" image(s) at a time")[0] for line in memory] == ["memory: 1", "memory: 3", "memory: 5",
                                                                         "memory: 1"]
    assert "scored 36 at a time" in memory[1]                       # all that a chunk makes: 3 images × 6 steps × 2
    assert "scored 3 at a time" in memory[3] and "within 1 MiB" in memory[3]


def _conv_explainer(tmp_path: Path, side: int) -> Explainer:
    return Explainer(_dynamic_model(tmp_path), "gradient", input_shape=(1, side, side), provider="cpu")


def test_the_memory_budget_picks_smaller_batches_for_a_larger_model(tmp_path):
    small, large = _conv_explainer(tmp_path, 32), _conv_explainer(tmp_path, 256)
    sizes = [evaluation_sizes(ex, 100, steps=10, repeats=2, max_memory="16M") for ex in (small, large)]
    # every activation of this convolution grows with the pixels: 64 times as many bytes per image
    assert sizes[1].score_bytes == 64 * sizes[0].score_bytes and sizes[1].explain_bytes > 60 * sizes[0].explain_bytes
    for s in sizes:
        assert s.budget == 16 * 2**20                                       # half for each session's batches
        assert s.batch == min(128, 2**23 // s.score_bytes) and s.chunk == min(32, 2**23 // s.explain_bytes)
    assert (sizes[0].batch, sizes[0].chunk) == (128, 32)                   # capped by --batch-size and MAX_CHUNK
    assert sizes[1].batch < 10 and sizes[1].chunk < 5
    one = evaluation_sizes(large, 100, steps=10, repeats=2, max_memory=1, batch_size=50)
    assert (one.batch, one.chunk) == (1, 1)                                 # one image that alone exceeds the budget
    few = evaluation_sizes(small, 3, steps=2, repeats=1, chunk=8)
    assert (few.chunk, few.batch) == (3, 6)                                 # no more than the run has


def test_vanishing_relevance_warns_once_per_method_with_indices_in_the_run(monkeypatch):
    explain = Explainer.explain

    def vanishing(self, x, target=None, batch_size=None):
        warnings.warn(LowConservationWarning(self, np.array([0]), np.array([0.01])), stacklevel=2)
        return explain(self, x, target, batch_size)

    monkeypatch.setattr(Explainer, "explain", vanishing)
    x, _ = load_batch(IMAGES[:5], DIGITS_SPEC, preprocessing("unit", channels=1))
    with pytest.warns(LowConservationWarning) as caught:
        evaluate(str(DIGITS), x, ["gradient", "lrp-epsilon"], low=0.0, high=1.0, steps=2, region=8, repeats=1,
                 include_random=False, chunk=2, provider="cpu", progress=False)
    assert [(w.message.method, w.message.samples.tolist()) for w in caught] == [("gradient", [0, 2, 4]),
                                                                               ("lrp-epsilon", [0, 2, 4])]


@pytest.mark.parametrize("command", ["evaluate", "audit"])
@pytest.mark.parametrize("value", ["0", "lots", "-1", "2X", "1e9", ""])
def test_a_bad_max_memory_is_a_one_line_error(tmp_path, command, value):
    folder = "--report" if command == "audit" else "--out"
    code, stdout, stderr = run_cli([command, DIGITS, IMAGES[0], "--max-memory", value, folder, tmp_path / "out"])
    assert code == 2 and stdout == "" and stderr.count("\n") == 1
    assert stderr.startswith("explainer: error: argument --max-memory: expected a byte count such as 512M")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["lots", 0, -5, True, 1.5])
def test_evaluate_api_refuses_a_bad_budget_before_loading_the_model(value):
    with pytest.raises(InputError, match="max_memory"):
        evaluate("no-such-model.onnx", np.zeros((1, 1, 32, 32), np.float32), ["gradient"], low=0.0, high=1.0,
                 max_memory=value, progress=False)


# ---------------------------------------------------------------------------------------------- relevance seed


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_gradient_channel_reductions(layout):
    """Relevance is summed over channels; gradient-like signals take the L2 norm or max |g| (Simonyan's saliency)."""
    g = np.array([[3.0, -4.0, 0.0], [-1.0, 1.0, 1.0]]).reshape(2, 3, 1, 1)
    if layout == "NHWC":
        g = g.transpose(0, 2, 3, 1)
    assert heatmap_from_relevance(g, layout, signal=False).ravel().tolist() == [-1.0, 1.0]
    np.testing.assert_allclose(heatmap_from_relevance(g, layout, signal=True).ravel(), [5.0, 3 ** 0.5], rtol=1e-6)
    assert heatmap_from_relevance(g, layout, signal=True, signal_norm="linf").ravel().tolist() == [4.0, 1.0]
    with pytest.raises(InputError, match="signal_norm must be one of"):
        heatmap_from_relevance(g, layout, signal=True, signal_norm="l1")


def test_one_hot_seed_is_the_logit_seed_divided_by_the_logit():
    """With a negative target logit, the logit seed flips the map's sign; the one-hot seed does not."""
    x, _ = load_batch([digit_path(3)], DIGITS_SPEC, preprocessing("unit", channels=1))
    logit_seeded = Explainer(DIGITS, provider="cpu")
    one_hot = Explainer(DIGITS, provider="cpu", seed="one-hot")
    assert (logit_seeded.seed, one_hot.seed, one_hot.method) == ("logit", "one-hot", "epsilon-plus-flat")
    logits = logit_seeded.forward(x)[0]
    for target in (int(np.argmax(logits)), int(np.argmin(logits))):
        a, b = logit_seeded.explain(x, target), one_hot.explain(x, target)
        assert (a.seed, b.seed) == ("logit", "one-hot")
        scale = float(np.abs(a.relevance).max())
        np.testing.assert_allclose(a.relevance, logits[target] * b.relevance, rtol=0, atol=1e-5 * scale)
        np.testing.assert_allclose(a.conservation, b.conservation, rtol=1e-4)
    assert logits.min() < 0 and np.sign(a.relevance.sum()) == -np.sign(b.relevance.sum())
    gradient = one_hot.with_method("gradient")
    assert gradient.seed == "one-hot" and gradient.with_method("gradient", seed="logit").seed == "logit"
    times_logit = logit_seeded.with_method("gradient", seed="logit").explain(x)
    plain = logit_seeded.with_method("gradient").explain(x)
    np.testing.assert_allclose(times_logit.relevance, logits.max() * plain.relevance, rtol=0,
                               atol=1e-5 * float(np.abs(times_logit.relevance).max()))


def test_a_bad_seed_is_refused_before_loading_the_model():
    with pytest.raises(InputError, match="seed must be 'logit', 'one-hot' or None"):
        Explainer("no-such-model.onnx", seed="zero")


def test_evaluate_records_the_seed_of_every_method(tmp_path):
    common = [DIGITS, IMAGES[3], IMAGES[7], "--methods", "epsilon-plus-flat,gradient", "--steps", "4", "--region",
              "4", "--repeats", "1"]
    code, _, stderr = run_cli(["evaluate", *common, "--out", tmp_path / "own"])
    assert code == 0, stderr
    own = json.loads((tmp_path / "own" / "aopc.json").read_text(encoding="utf-8"))
    assert own["settings"]["seed_mode"] == "method default"
    assert {m: e["seed"] for m, e in own["methods"].items()} == {"epsilon-plus-flat": "logit", "gradient": "one-hot"}
    code, _, stderr = run_cli(["evaluate", *common, "--seed-mode", "one-hot", "--out", tmp_path / "one"])
    assert code == 0, stderr
    one = json.loads((tmp_path / "one" / "aopc.json").read_text(encoding="utf-8"))
    assert one["settings"]["seed_mode"] == "one-hot"
    assert {m: e["seed"] for m, e in one["methods"].items()} == {"epsilon-plus-flat": "one-hot", "gradient": "one-hot"}
    # the predicted logits are positive: dividing the heatmaps by them leaves the MoRF order and the curve as they are
    curves = [report["methods"]["epsilon-plus-flat"]["curve"] for report in (one, own)]
    np.testing.assert_allclose(*curves, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------- flags


def _dynamic_model(tmp_path: Path) -> Path:
    import onnx

    from tests.support.onnx_graphs import G
    g = G()
    pooled = g.node("GlobalAveragePool", [g.node("Relu", [g.conv("x", 1, 2, pads=[1, 1, 1, 1])])])
    out = g.node("Gemm", [g.node("Flatten", [pooled], axis=1), g.w((4, 2))], transB=1)
    path = tmp_path / "dynamic.onnx"
    onnx.save(g.model(["N", 1, "H", "W"], out), path)
    return path


def test_check_takes_size_like_the_other_commands(tmp_path):
    model = _dynamic_model(tmp_path)
    code, stdout, stderr = run_cli(["check", model])
    assert code == 2 and "--size" in stderr and stdout.startswith("result: cannot be explained")
    for size in (["--size", "32"], ["--size", "16x24"], ["--input-shape", "1", "32", "32"]):
        code, stdout, stderr = run_cli(["check", model, *size])
        assert code == 0 and stdout.startswith("result: can be explained"), (size, stderr)
    code, _, stderr = run_cli(["check", model, "--size", "32", "--input-shape", "1", "32", "32"])
    assert code == 2 and "not allowed with" in stderr
    code, _, stderr = run_cli(["check", DIGITS, "--size", "30"])
    assert code == 2 and "fixed height of 32" in stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_shows_its_default_in_help(command):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    missing = [a.option_strings[-1] for a in sub._actions
               if a.option_strings and a.nargs != 0 and not a.required and "default" not in (a.help or "")]
    assert missing == []
    text = " ".join(sub.format_help().split())
    expected = {"evaluate": ["default morf", "most perturbed images per ONNX Runtime run (default 128;",
                             "--max-memory BYTES", "(default 1G)", "--seed-mode"],
                "audit": ["method under audit (default: epsilon-plus-flat)", "--seed-mode"],
                "check": ["--size N|HxW", "--input-shape"]}
    for fragment in expected.get(command, []):
        assert fragment in text, fragment


# ---------------------------------------------------------------------------------------------- failed runs


@pytest.mark.parametrize("command", ["explain", "evaluate", "audit"])
@pytest.mark.parametrize("broken", ["model", "image"])
@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_run_leaves_no_output_folder_behind(tmp_path, command, broken, existing):
    """A folder that did not exist before a failed run does not exist after it; one that did is left as it was."""
    model, image = tmp_path / "model.onnx", tmp_path / "image.png"
    model.write_bytes(DIGITS.read_bytes() if broken == "image" else b"not a model")
    image.write_bytes(digit_path(3).read_bytes() if broken == "model" else b"not an image")
    out = tmp_path / "results" / "nested"
    if existing:
        out.mkdir(parents=True)
    folder = "--report" if command == "audit" else "--out"
    code, _, stderr = run_cli([command, model, image, folder, out])
    assert code == 2 and stderr.startswith("explainer: error: ")
    assert (model if broken == "model" else image).name in stderr
    if existing:
        assert out.is_dir() and not any(out.iterdir())
    else:
        assert not (tmp_path / "results").exists()
