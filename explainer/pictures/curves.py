"""Plot region-perturbation curves of a :func:`explainer.evaluation.region_perturbation.compare_heatmaps` report to a
PNG.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global state), so it is safe in CI and
in threads.
"""
from __future__ import annotations

from collections.abc import Mapping
from itertools import cycle
from pathlib import Path
from typing import Any

from explainer.errors import InputError

_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
            "tab:olive", "tab:cyan")


def plot_curves(report: Mapping[str, Any], path: str | Path, *, title: str | None = None) -> Path:
    """Draw every method's MoRF curve (solid) and LeRF curve (dashed, when present) to ``path``; returns it.

    The y axis is f(x0) - f(xk) averaged over images; the random-order baseline is drawn in grey. The legend
    shows each method's AOPC. When the report has bootstrap fields (``curve_vs_random``, see
    :mod:`explainer.evaluation.statistics`), a second panel shows each method's curve minus the random baseline's,
    paired per image, with its confidence band.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = report.get("methods") if isinstance(report, Mapping) else None
    if not methods:
        raise InputError("cannot plot: the report has no 'methods' with curves")
    relative = {name: entry["curve_vs_random"] for name, entry in methods.items() if entry.get("curve_vs_random")}
    figure = Figure(figsize=(7, 8.5 if relative else 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(2 if relative else 1, 1, 1)
    colours = dict(zip([name for name in methods if name != "random"], cycle(_PALETTE)))
    for name, entry in methods.items():
        colour = colours.get(name, "0.5")
        curve = entry["curve"]
        label = f"{name} (AOPC {entry['aopc']:.3g})"
        axes.plot(range(len(curve)), curve, color=colour, linestyle="-", linewidth=1.6, label=label)
        if entry.get("curve_lerf") is not None:
            lerf = entry["curve_lerf"]
            axes.plot(range(len(lerf)), lerf, color=colour, linestyle="--", linewidth=1.2, label=f"{name} LeRF")
    settings = report.get("settings", {})
    units = settings.get("input")  # feature rows, signals, token ids: explainer.evaluation.units
    axes.set_xlabel(f"perturbation step k ({'units' if units else 'regions'} removed)")
    axes.set_ylabel(f"f(x(0)) - f(x(k)), mean over {'samples' if units else 'images'}")
    cut = f"{units}, {settings.get('region', '?')} sample(s) a unit" if units else \
        f"{settings.get('region', '?')}x{settings.get('region', '?')} regions, {settings.get('grid', '?')} grid"
    axes.set_title(title or f"Region perturbation: {settings.get('perturb', '?')} replacement, {cut}")
    axes.axhline(0.0, color="black", linewidth=0.5)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", loc="best")
    if relative:
        _plot_relative(figure.add_subplot(2, 1, 2), relative, colours, settings)
    figure.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png")
    return out


def _plot_relative(axes: Any, relative: Mapping[str, Mapping[str, list[float]]], colours: Mapping[str, str],
                   settings: Mapping[str, Any]) -> None:
    """Each method's per-step gain over the random order with its bootstrap band."""
    bootstrap = settings.get("bootstrap", {})
    confidence = bootstrap.get("confidence")
    for name, band in relative.items():
        steps = range(len(band["mean"]))
        axes.plot(steps, band["mean"], color=colours.get(name, "0.5"), linewidth=1.4, label=name)
        axes.fill_between(steps, band["low"], band["high"], color=colours.get(name, "0.5"), alpha=0.15, linewidth=0)
    axes.axhline(0.0, color="black", linewidth=0.5)
    axes.set_xlabel("perturbation step k (regions removed)")
    axes.set_ylabel("curve minus random, mean over images")
    shown = f"{confidence:.0%} " if isinstance(confidence, float) else ""
    axes.set_title(f"Gain over random per step ({shown}paired bootstrap band)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="x-small", loc="best", ncol=2)
