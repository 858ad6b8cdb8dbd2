"""CI audit: pass/fail against the random baseline and a stored baseline, and the report files it writes."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from explainer.errors import InputError
from explainer.evaluation.audit import audit_decision, audit_markdown, check_audit_request, write_audit_report
from explainer.evaluation.region_perturbation import compare_heatmaps

SETTINGS = {"steps": 100, "region": 9, "grid": "fixed", "perturb": "uniform", "repeats": 10, "seed": 0,
            "images": 8, "aopc_definition": "mean over the L+1 steps"}


def report(aopcs: dict[str, float], **settings) -> dict:
    methods = {name: {"aopc": value, "abpc": None if name == "random" else value / 2, "curve": [0.0, value]}
               for name, value in aopcs.items()}
    return {"settings": dict(SETTINGS, **settings), "methods": methods}


def test_passes_when_the_gain_over_random_reaches_the_margin() -> None:
    outcome = audit_decision(report({"lrp": 0.75, "random": 0.25}), "lrp", min_gain=0.5)
    assert outcome.passed and outcome.reasons == []
    assert outcome.gain == pytest.approx(0.5, abs=1e-12)
    assert outcome.aopc == 0.75 and outcome.random_aopc == 0.25


def test_fails_when_the_gain_is_below_the_margin() -> None:
    outcome = audit_decision(report({"lrp": 0.7, "random": 0.25}), "lrp", min_gain=0.5)
    assert not outcome.passed
    assert len(outcome.reasons) == 1 and "'lrp'" in outcome.reasons[0] and "0.4500" in outcome.reasons[0]


def test_baseline_drop_within_and_beyond_the_tolerance() -> None:
    current = report({"lrp": 0.8, "random": 0.1})
    assert audit_decision(current, "lrp", min_gain=0.1, baseline=report({"lrp": 0.85}), max_drop=0.1).passed
    failed = audit_decision(current, "lrp", min_gain=0.1, baseline=report({"lrp": 1.0}), max_drop=0.1)
    assert not failed.passed and failed.drop == pytest.approx(0.2, abs=1e-12)
    assert "dropped from 1.0000 (baseline) to 0.8000" in failed.reasons[0]


def test_baseline_without_max_drop_tolerates_no_drop() -> None:
    current = report({"lrp": 0.8, "random": 0.1})
    improved = audit_decision(current, "lrp", min_gain=0.0, baseline=report({"lrp": 0.7}))
    assert improved.passed and improved.max_drop == 0.0 and improved.drop == pytest.approx(-0.1, abs=1e-12)
    assert not audit_decision(current, "lrp", min_gain=0.0, baseline=report({"lrp": 0.81})).passed


def test_every_failed_check_is_listed() -> None:
    outcome = audit_decision(report({"lrp": 0.2, "random": 0.25}), "lrp", min_gain=0.0,
                             baseline=report({"lrp": 0.9}, steps=50), max_drop=0.1)
    assert not outcome.passed and len(outcome.reasons) == 3
    assert any("steps=50" in reason and "steps=100" in reason for reason in outcome.reasons)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(method="sensitivity"), r"method 'sensitivity' is not in the report; it has \['lrp', 'random'\]"),
        (dict(report={"methods": {"lrp": {"aopc": 1.0}}}), "no 'random' baseline"),
        (dict(report={"settings": {}}), "no 'methods' section"),
        (dict(max_drop=0.1), "max_drop needs a baseline"),
        (dict(baseline=report({"random": 0.1})), "method 'lrp' is not in the baseline"),
        (dict(report=report({"lrp": float("nan"), "random": 0.1})), "no finite AOPC for method 'lrp'"),
        (dict(min_gain=float("inf")), "min_gain must be a finite number"),
    ],
)
def test_malformed_requests_raise_input_error(arguments: dict, message: str) -> None:
    call = dict(report=report({"lrp": 0.5, "random": 0.1}), method="lrp", min_gain=0.1)
    call.update(arguments)
    with pytest.raises(InputError, match=message):
        audit_decision(call.pop("report"), call.pop("method"), **call)


@pytest.mark.parametrize("passing", [True, False])
def test_written_report_files(tmp_path, passing: bool) -> None:
    evaluation = report({"lrp": 0.9, "gradient": 0.3, "random": 0.2})
    outcome = audit_decision(evaluation, "lrp", min_gain=0.5 if passing else 0.8)
    json_path, md_path = write_audit_report(outcome, evaluation, tmp_path / "audit")
    assert json_path.name == "report.json" and md_path.name == "report.md"
    stored = json.loads(json_path.read_text(encoding="utf-8"))
    assert stored["audit"]["passed"] is passing and stored["evaluation"] == evaluation
    assert stored["audit"]["gain"] == pytest.approx(0.7, abs=1e-12)
    markdown = md_path.read_text(encoding="utf-8")
    assert markdown == audit_markdown(outcome, evaluation)
    assert markdown.startswith(f"## Explanation audit: {'PASSED' if passing else 'FAILED'}")
    assert "| lrp **(audited)** | 0.9000 | 0.4500 | +0.7000 |" in markdown
    assert "| gradient | 0.3000 | 0.1500 | +0.1000 |" in markdown
    assert "| random | 0.2000 | - | - |" in markdown
    assert "grid=fixed" in markdown and "steps=100" in markdown
    assert ("Failed checks" in markdown) is not passing


def test_written_report_is_both_files_or_neither(tmp_path, monkeypatch) -> None:
    """A write error on report.md (a full disk) leaves no report.json either, and names report.md."""
    evaluation = report({"lrp": 0.9, "random": 0.2})
    outcome = audit_decision(evaluation, "lrp", min_gain=0.5)
    real_write_text = Path.write_text

    def full_disk(self: Path, text: str, *args, **kwargs) -> int:
        if self.name == "report.md":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError) as caught:
        write_audit_report(outcome, evaluation, tmp_path / "audit")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "audit" / "report.md")
    assert list((tmp_path / "audit").iterdir()) == []


@pytest.mark.parametrize(("arguments", "message"), [
    (dict(min_gain=float("nan")), "min_gain must be a finite number"),
    (dict(max_drop=0.1), "max_drop needs a baseline"),
    (dict(baseline=report({"lrp": 0.5}), max_drop=-1.0), "max_drop must be a finite number >= 0"),
    (dict(baseline=report({"gradient": 0.5})), "method 'lrp' is not in the baseline"),
    (dict(baseline={"methods": {"lrp": {"aopc": "high"}}}), "no finite AOPC for method 'lrp'"),
])
def test_requests_are_checked_without_an_evaluation(arguments: dict, message: str) -> None:
    call = dict(min_gain=0.0)
    call.update(arguments)
    with pytest.raises(InputError, match=message):
        check_audit_request("lrp", **call)
    check_audit_request("lrp", min_gain=0.0, baseline=report({"lrp": 0.5}), max_drop=0.0)


def test_audit_of_a_real_evaluation_tells_a_good_heatmap_from_a_bad_one() -> None:
    weights = np.zeros((2, 1, 36, 36))
    weights[0, 0, 18:27, 9:18] = 1.0
    images = np.ones((2, 1, 36, 36), np.float32)
    good = np.repeat(weights[0, 0][None], 2, axis=0)
    bad = -good
    evaluation = compare_heatmaps(lambda x: np.einsum("bchw,kchw->bk", x, weights), images,
                                  {"good": good, "bad": bad}, steps=6, low=0.0, high=1.0, repeats=4,
                                  progress=False)
    assert audit_decision(evaluation, "good", min_gain=5.0).passed
    assert not audit_decision(evaluation, "bad", min_gain=0.0).passed


def test_a_baseline_explained_from_another_seed_is_not_comparable() -> None:
    current, previous = report({"lrp": 0.8, "random": 0.1}), report({"lrp": 0.8})
    current["methods"]["lrp"]["seed"] = "one-hot"
    previous["methods"]["lrp"]["seed"] = "logit"
    outcome = audit_decision(current, "lrp", min_gain=0.0, baseline=previous)
    assert not outcome.passed and len(outcome.reasons) == 1
    assert "from the logit seed, this run from the one-hot seed" in outcome.reasons[0]
    previous["methods"]["lrp"]["seed"] = "one-hot"
    assert audit_decision(current, "lrp", min_gain=0.0, baseline=previous).passed
    del previous["methods"]["lrp"]["seed"]                  # a baseline written before seeds were recorded
    assert audit_decision(current, "lrp", min_gain=0.0, baseline=previous).passed
    assert "Method under audit: `lrp` (relevance seed: one-hot)." in audit_markdown(outcome, current)
