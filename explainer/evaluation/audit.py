"""CI audit of explanation quality: decide pass/fail from a region-perturbation report and write the verdict.

The report is the dict of :func:`explainer.evaluation.region_perturbation.compare_heatmaps` (same structure as its
JSON).
A method passes when

* its gain over the random-order baseline is at least ``min_gain``; with ``gate="mean"`` (the default) the gain is
  AOPC(method) - AOPC(random), with ``gate="lower-ci"`` it is the lower bound of that difference's paired bootstrap
  confidence interval (``aopc_vs_random`` in the report, :mod:`explainer.evaluation.statistics`), so a gain that
  could be noise over the audited images fails; and
* with a stored baseline report: AOPC(method) >= AOPC_baseline(method) - ``max_drop``, and the baseline was
  computed with the same protocol settings (otherwise the numbers are not comparable).

Everything here is a pure function of its arguments apart from :func:`read_baseline`, which reads a stored report
with bounds on its size and nesting, and the two files :func:`write_audit_report` writes.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from explainer.errors import InputError
from explainer.files import JSON_MAX_DEPTH, FileGroup, read_json

COMPARABLE_SETTINGS = ("steps", "region", "grid", "perturb", "perturb_params", "repeats", "seed", "layout",
                       "images", "score")
GATES = ("mean", "lower-ci")
BASELINE_MAX_DEPTH = JSON_MAX_DEPTH
"""Deepest nesting of lists and objects :func:`read_baseline` accepts (``explainer.files.read_json``)."""


@dataclass(frozen=True)
class AuditOutcome:
    """Verdict of :func:`audit_decision`; ``reasons`` lists every failed check (empty when ``passed``)."""

    passed: bool
    method: str
    aopc: float
    random_aopc: float
    gain: float
    min_gain: float
    baseline_aopc: float | None = None
    drop: float | None = None
    max_drop: float | None = None
    reasons: list[str] = field(default_factory=list)
    gate: str = "mean"
    gain_ci: list[float] | None = None


def audit_decision(report: Mapping[str, Any], method: str, *, min_gain: float,
                   baseline: Mapping[str, Any] | None = None, max_drop: float | None = None,
                   gate: str = "mean") -> AuditOutcome:
    """Check ``method`` in ``report`` against the random baseline and, optionally, a stored ``baseline`` report.

    ``gate`` (:data:`GATES`) is what must reach ``min_gain``: the mean gain over random, or the lower bound of its
    confidence interval. ``max_drop`` (default 0 when a baseline is given) is the largest tolerated AOPC decrease
    from the baseline. Raises :class:`InputError` for a malformed report (``gate="lower-ci"`` needs the report's
    ``aopc_vs_random``), an unknown method or ``max_drop`` without a baseline.
    """
    methods = _methods(report, "report")
    if method not in methods:
        raise InputError(f"method {method!r} is not in the report; it has {sorted(methods)}")
    if "random" not in methods:
        raise InputError("the report has no 'random' baseline; evaluate with include_random=True")
    check_audit_request(method, min_gain=min_gain, baseline=baseline, max_drop=max_drop, gate=gate)
    aopc = _aopc(methods, method, "report")
    random_aopc = _aopc(methods, "random", "report")
    gain = aopc - random_aopc
    gain_ci = _gain_ci(methods[method], method)
    reasons = []
    if gate == "lower-ci":
        if gain_ci is None:
            raise InputError(f"gate 'lower-ci' needs the report's confidence interval of AOPC({method}) - "
                             "AOPC(random) ('aopc_vs_random'); evaluate again with this version")
        confidence = report.get("settings", {}).get("bootstrap", {}).get("confidence", 0.95)
        if not gain_ci[0] >= min_gain:
            reasons.append(f"the lower {confidence:.0%} confidence bound of AOPC({method}) - AOPC(random) is "
                           f"{gain_ci[0]:.4f} (mean {gain:.4f}), less than the required {min_gain:.4f}")
    elif not gain >= min_gain:
        reasons.append(f"AOPC of {method!r} ({aopc:.4f}) beats random ({random_aopc:.4f}) by {gain:.4f}, "
                       f"less than the required {min_gain:.4f}")
    baseline_aopc = drop = None
    if baseline is not None:
        max_drop = 0.0 if max_drop is None else float(max_drop)
        base_methods = _methods(baseline, "baseline")
        baseline_aopc = _aopc(base_methods, method, "baseline")
        drop = baseline_aopc - aopc
        if not drop <= max_drop:
            reasons.append(f"AOPC of {method!r} dropped from {baseline_aopc:.4f} (baseline) to {aopc:.4f}: "
                           f"by {drop:.4f}, more than the allowed {max_drop:.4f}")
        reasons.extend(_settings_mismatches(report.get("settings", {}), baseline.get("settings", {})))
        seeds = [_seed(m[method]) for m in (methods, base_methods)]
        if None not in seeds and seeds[0] != seeds[1]:
            reasons.append(f"baseline explained {method!r} from the {seeds[1]} seed, this run from the {seeds[0]} "
                           "seed; AOPC values are not comparable (regenerate the baseline or pass --seed-mode)")
    return AuditOutcome(not reasons, method, aopc, random_aopc, gain, float(min_gain), baseline_aopc, drop,
                        max_drop, reasons, gate, gain_ci)


def check_audit_request(method: str, *, min_gain: float, baseline: Mapping[str, Any] | None = None,
                        max_drop: float | None = None, gate: str = "mean") -> None:
    """The checks of :func:`audit_decision` that need no evaluation (thresholds, gate, the baseline's entry for
    ``method``): call it before a long evaluation to fail at once. Raises :class:`InputError`."""
    if gate not in GATES:
        raise InputError(f"gate must be one of {GATES}; got {gate!r}")
    if not _is_number(min_gain):
        raise InputError(f"min_gain must be a finite number; got {min_gain!r}")
    if max_drop is not None and baseline is None:
        raise InputError("max_drop needs a baseline report to compare against")
    if max_drop is not None and (not _is_number(max_drop) or max_drop < 0):
        raise InputError(f"max_drop must be a finite number >= 0; got {max_drop!r}")
    if baseline is not None:
        base_methods = _methods(baseline, "baseline")
        if method not in base_methods:
            raise InputError(f"method {method!r} is not in the baseline report; it has {sorted(base_methods)}")
        _aopc(base_methods, method, "baseline")


def read_baseline(path: str | os.PathLike) -> dict[str, Any]:
    """The evaluation stored in a ``report.json`` (its ``evaluation`` part) or an ``aopc.json``.

    Read with bounds (``explainer.files.read_json``: ``/dev/zero`` or a deeply nested file is refused, not read
    forever or recursed into); :class:`InputError` naming the file otherwise.
    """
    where = f"baseline '{path}'"
    parsed = read_json(path, where)
    if isinstance(parsed, dict) and isinstance(parsed.get("evaluation"), dict):
        parsed = parsed["evaluation"]
    if not isinstance(parsed, dict) or not isinstance(parsed.get("methods"), dict):
        raise InputError(f"{where}: expected a report.json or aopc.json written by explainer")
    return parsed


def write_audit_report(outcome: AuditOutcome, report: Mapping[str, Any], directory: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` (verdict + the full evaluation) and ``report.md`` (a short summary for a CI comment)
    into ``directory`` (created if needed); atomically, both files or neither (see :mod:`explainer.files`)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with FileGroup(out) as files:
        audit_report_files(outcome, report, files)
    return out / "report.json", out / "report.md"


def audit_report_files(outcome: AuditOutcome, report: Mapping[str, Any], files: FileGroup) -> None:
    """Write ``report.json`` and ``report.md`` into a :class:`~explainer.files.FileGroup` (committed by the caller)."""
    payload = json.dumps({"audit": asdict(outcome), "evaluation": report}, indent=2, allow_nan=False) + "\n"
    markdown = audit_markdown(outcome, report)
    files.path("report.json").write_text(payload, encoding="utf-8")
    files.path("report.md").write_text(markdown, encoding="utf-8")


def audit_markdown(outcome: AuditOutcome, report: Mapping[str, Any]) -> str:
    """Markdown summary: verdict, AOPC/ABPC/gain table of every method, failed checks and protocol settings."""
    methods = _methods(report, "report")
    random_aopc = outcome.random_aopc
    verdict = "PASSED" if outcome.passed else "FAILED"
    lines = [f"## Explanation audit: {verdict}", ""]
    seed = _seed(methods.get(outcome.method))
    seeded = f" (relevance seed: {seed})" if seed else ""
    lines.append(f"Method under audit: `{outcome.method}`{seeded}. AOPC gain over random: **{outcome.gain:.4f}** "
                 f"(required >= {outcome.min_gain:.4f}).")
    if outcome.gain_ci is not None:
        gated = " (gated on the lower bound)" if outcome.gate == "lower-ci" else ""
        lines.append(f"Paired bootstrap confidence interval of the gain: [{outcome.gain_ci[0]:.4f}, "
                     f"{outcome.gain_ci[1]:.4f}]{gated}.")
    if outcome.baseline_aopc is not None:
        lines.append(f"Baseline AOPC {outcome.baseline_aopc:.4f}, change {-outcome.drop:+.4f} "
                     f"(allowed drop {outcome.max_drop:.4f}).")
    lines += ["", "| method | AOPC | ABPC | gain vs random | gain CI |", "|---|---:|---:|---:|---:|"]
    for name, entry in methods.items():
        aopc = entry.get("aopc")
        abpc = entry.get("abpc")
        gain = "-" if name == "random" or aopc is None else f"{aopc - random_aopc:+.4f}"
        ci = _gain_ci(entry, name) if name != "random" else None
        shown = "-" if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"
        marker = " **(audited)**" if name == outcome.method else ""
        lines.append(f"| {name}{marker} | {_cell(aopc)} | {_cell(abpc)} | {gain} | {shown} |")
    if outcome.reasons:
        lines += ["", "Failed checks:", ""] + [f"- {reason}" for reason in outcome.reasons]
    settings = report.get("settings", {})
    if settings:
        shown = ", ".join(f"{key}={settings[key]}" for key in COMPARABLE_SETTINGS if key in settings)
        lines += ["", f"Settings: {shown}."]
        if "aopc_definition" in settings:
            lines.append(f"AOPC = {settings['aopc_definition']}.")
    return "\n".join(lines) + "\n"


def _methods(report: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    methods = report.get("methods") if isinstance(report, Mapping) else None
    if not isinstance(methods, Mapping) or not methods:
        raise InputError(f"the {what} has no 'methods' section; expected the JSON written by compare_heatmaps")
    return methods


def _aopc(methods: Mapping[str, Any], name: str, what: str) -> float:
    value = methods[name].get("aopc") if isinstance(methods[name], Mapping) else None
    if not _is_number(value):
        raise InputError(f"the {what} has no finite AOPC for method {name!r}; got {value!r}")
    return float(value)


def _gain_ci(entry: Any, name: str) -> list[float] | None:
    """[low, high] of the entry's ``aopc_vs_random`` interval, None when the report has none."""
    value = entry.get("aopc_vs_random") if isinstance(entry, Mapping) else None
    if value is None:
        return None
    bounds = [value.get(key) for key in ("low", "high")] if isinstance(value, Mapping) else [None]
    if not all(_is_number(bound) for bound in bounds):
        raise InputError(f"the report's 'aopc_vs_random' of method {name!r} is malformed; got {value!r}")
    return [float(bound) for bound in bounds]


def _settings_mismatches(current: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    differing = [key for key in COMPARABLE_SETTINGS if key in current and key in stored and current[key] != stored[key]]
    return [f"baseline was computed with {key}={stored[key]!r}, this run with {key}={current[key]!r}; "
            "AOPC values are not comparable (regenerate the baseline)" for key in differing]


def _seed(entry: Any) -> str | None:
    """The relevance seed a method's entry records (reports written before seeds were recorded have none)."""
    seed = entry.get("seed") if isinstance(entry, Mapping) else None
    return seed if isinstance(seed, str) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if _is_number(value) else "-"
