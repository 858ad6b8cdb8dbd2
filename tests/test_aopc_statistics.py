"""Paired bootstrap intervals of a region-perturbation report, and the audit gate on their lower bound."""
from __future__ import annotations

import numpy as np
import pytest

from explainer.errors import InputError
from explainer.evaluation.audit import audit_decision, audit_markdown
from explainer.evaluation.statistics import Resamples, add_statistics, interval


def report_from(per_image_aopc: dict[str, np.ndarray], steps: int = 3) -> dict:
    """A report whose per-image curves are flat at each image's AOPC (so the curve means equal the AOPCs)."""
    methods = {}
    for name, values in per_image_aopc.items():
        values = np.asarray(values, dtype=np.float64)
        methods[name] = {"aopc": float(values.mean()), "per_image_aopc": values.tolist(),
                         "per_image": np.repeat(values[:, None], steps + 1, axis=1).tolist()}
    return {"settings": {"steps": steps}, "methods": methods}


def paired_example(images: int = 40) -> dict[str, np.ndarray]:
    """Image difficulty varies a lot (sd 3) and is shared by both methods; "good" beats "random" by 0.2 +- 0.05 on
    every image."""
    rng = np.random.default_rng(11)
    difficulty = rng.normal(5.0, 3.0, size=images)
    return {"good": difficulty + 0.2 + rng.normal(0, 0.05, size=images), "random": difficulty}


def test_interval_contains_the_point_estimate_and_narrows_with_confidence() -> None:
    values = np.random.default_rng(0).exponential(size=(25, 4))
    weights = Resamples(25, seed=3)
    wide, narrow = interval(values, weights, 0.99), interval(values, weights, 0.5)
    for k in range(4):
        assert wide["low"][k] < narrow["low"][k] <= wide["mean"][k] <= narrow["high"][k] < wide["high"][k]
    np.testing.assert_allclose(wide["mean"], values.mean(axis=0), atol=1e-12)
    np.testing.assert_array_equal(weights.means(values), weights.means(values))  # the same resamples every call


def test_resamples_are_drawn_a_block_at_a_time_with_the_same_result(monkeypatch) -> None:
    """Memory stays flat in the number of images (a block of resamples at a time), and the blocks change nothing."""
    import explainer.evaluation.statistics as statistics

    values = np.random.default_rng(1).normal(size=(40, 3))
    whole = statistics.Resamples(40, 200, seed=5).means(values)
    monkeypatch.setattr(statistics, "_BLOCK_BYTES", 40 * 32 * 7)  # 7 resamples per block
    np.testing.assert_array_equal(statistics.Resamples(40, 200, seed=5).means(values), whole)
    assert whole.shape == (200, 3) and np.all(whole.min(axis=0) >= values.min(axis=0))


def test_the_gain_over_random_is_paired_per_image() -> None:
    """Each method's own interval is wide (image difficulty) and the two overlap; the paired difference's interval
    is narrow and excludes zero."""
    report = add_statistics(report_from(paired_example()))
    good, rand = report["methods"]["good"], report["methods"]["random"]
    assert good["aopc_ci"][0] < rand["aopc_ci"][1]
    gain = good["aopc_vs_random"]
    assert gain["mean"] == pytest.approx(good["aopc"] - rand["aopc"], abs=1e-12)
    assert 0.15 < gain["low"] < gain["mean"] < gain["high"] < 0.25
    band = good["curve_vs_random"]
    assert len(band["mean"]) == 4 and band["low"][2] == pytest.approx(gain["low"], abs=1e-12)
    unpaired = (good["aopc_ci"][1] - good["aopc_ci"][0]) + (rand["aopc_ci"][1] - rand["aopc_ci"][0])
    assert gain["high"] - gain["low"] < unpaired / 20


def test_pairwise_intervals_cover_every_pair_of_methods_but_random() -> None:
    values = paired_example()
    values["other"] = values["random"] + 0.5
    report = add_statistics(report_from(values))
    pairs = {(p["a"], p["b"]): p for p in report["pairwise"]}
    assert set(pairs) == {("good", "other")}
    assert pairs["good", "other"]["mean"] == pytest.approx(-0.3, abs=0.02)
    assert pairs["good", "other"]["high"] < 0
    assert report["settings"]["bootstrap"]["resamples"] == 2000


def test_the_bootstrap_is_deterministic_given_the_seed() -> None:
    values = paired_example(15)
    first, again = (add_statistics(report_from(values), seed=4) for _ in range(2))
    other = add_statistics(report_from(values), seed=5)
    assert first["methods"]["good"]["aopc_vs_random"] == again["methods"]["good"]["aopc_vs_random"]
    assert first["methods"]["good"]["aopc_vs_random"] != other["methods"]["good"]["aopc_vs_random"]


def test_mismatched_or_missing_per_image_values_are_refused() -> None:
    with pytest.raises(InputError, match="different numbers of images"):
        add_statistics(report_from({"a": [1.0, 2.0], "random": [1.0]}))
    broken = report_from({"a": [1.0, 2.0]})
    del broken["methods"]["a"]["per_image_aopc"]
    with pytest.raises(InputError, match="no 'per_image_aopc'"):
        add_statistics(broken)


def test_the_lower_bound_gate_fails_a_noisy_gain_that_the_mean_gate_passes() -> None:
    rng = np.random.default_rng(2)
    base = rng.normal(5.0, 1.0, size=12)
    noisy = add_statistics(report_from({"lrp": base + 0.1 + rng.normal(0, 1.0, size=12), "random": base}))
    assert noisy["methods"]["lrp"]["aopc"] > noisy["methods"]["random"]["aopc"]
    assert audit_decision(noisy, "lrp", min_gain=0.0).passed
    outcome = audit_decision(noisy, "lrp", min_gain=0.0, gate="lower-ci")
    assert not outcome.passed and "lower 95% confidence bound" in outcome.reasons[0]
    assert outcome.gain_ci[0] < 0 < outcome.gain_ci[1]
    assert "gated on the lower bound" in audit_markdown(outcome, noisy)
    clear = add_statistics(report_from(paired_example()))
    assert audit_decision(clear, "good", min_gain=0.1, gate="lower-ci").passed


def test_the_lower_bound_gate_needs_intervals_and_a_known_gate() -> None:
    plain = report_from(paired_example())
    with pytest.raises(InputError, match="needs the report's confidence interval"):
        audit_decision(plain, "good", min_gain=0.0, gate="lower-ci")
    with pytest.raises(InputError, match="gate must be one of"):
        audit_decision(plain, "good", min_gain=0.0, gate="median")
