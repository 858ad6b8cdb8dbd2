"""A region-perturbation comparison as people read it: a plain-text table, and the report written as JSON with a
plot of its curves."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from explainer.evaluation.region_perturbation import AOPC_DEFINITION
from explainer.files import FileGroup


def format_table(report: Mapping[str, Any]) -> str:
    """Plain-text table of a :func:`compare_heatmaps` report: AOPC, ABPC, gain over random with its paired
    bootstrap interval, PNG bytes, entropy."""
    methods = report["methods"]
    random_aopc = methods["random"]["aopc"] if "random" in methods else None
    header = ("method", "AOPC", "ABPC", "vs random", "95% CI", "PNG bytes", "entropy")
    rows = [header]
    for name, entry in methods.items():
        complexity = entry.get("complexity") or {}
        gain = entry.get("aopc_vs_random")
        rows.append((
            name,
            _fmt(entry.get("aopc")),
            _fmt(entry.get("abpc")),
            _fmt(None if random_aopc is None or name == "random" else entry["aopc"] - random_aopc, signed=True),
            "-" if not gain else f"[{gain['low']:+.4f}, {gain['high']:+.4f}]",
            _fmt(complexity.get("png_bytes"), digits=0),
            _fmt(complexity.get("entropy"), digits=3),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    settings = report.get("settings", {})
    if settings.get("unit"):  # feature rows, signals, token ids (explainer.evaluation.units)
        units, samples = f"units: {settings['unit']}", "samples"
    else:
        units, samples = f"{settings.get('region')}x{settings.get('region')} regions ({settings.get('grid')} grid)", \
            "images"
    lines.append(f"L={settings.get('steps')} steps, {units}, perturbation {settings.get('perturb')}, "
                 f"{settings.get('images')} {samples}; AOPC = {AOPC_DEFINITION}; CI: paired bootstrap over {samples}")
    return "\n".join(lines)


def write_comparison(report: Mapping[str, Any], directory: str | Path, *, json_name: str = "aopc.json",
                     plot_name: str = "aopc.png") -> tuple[str, str]:
    """Write a :func:`compare_heatmaps` report as JSON and its curves as a PNG plot into ``directory`` (created if
    needed); returns both paths. The pair is written atomically: both files or neither (see :mod:`explainer.files`)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with FileGroup(out) as files:
        comparison_files(report, files, json_name, plot_name)
    return str(out / json_name), str(out / plot_name)


def comparison_files(report: Mapping[str, Any], files: FileGroup, json_name: str = "aopc.json",
                     plot_name: str = "aopc.png") -> None:
    """Write the report's JSON and plot into a :class:`~explainer.files.FileGroup` (committed by the caller)."""
    from explainer.pictures.curves import plot_curves  # matplotlib: loaded only when a plot is written

    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    files.path(json_name).write_text(text, encoding="utf-8")
    plot_curves(report, files.path(plot_name))


def _fmt(value: float | None, *, digits: int = 4, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
