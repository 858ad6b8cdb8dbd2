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
    shows each method's AOPC.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = report.get("methods") if isinstance(report, Mapping) else None
    if not methods:
        raise InputError("cannot plot: the report has no 'methods' with curves")
    figure = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    colours = cycle(_PALETTE)
    for name, entry in methods.items():
        colour = "0.5" if name == "random" else next(colours)
        curve = entry["curve"]
        label = f"{name} (AOPC {entry['aopc']:.3g})"
        axes.plot(range(len(curve)), curve, color=colour, linestyle="-", linewidth=1.6, label=label)
        if entry.get("curve_lerf") is not None:
            lerf = entry["curve_lerf"]
            axes.plot(range(len(lerf)), lerf, color=colour, linestyle="--", linewidth=1.2, label=f"{name} LeRF")
    settings = report.get("settings", {})
    axes.set_xlabel("perturbation step k (regions removed)")
    axes.set_ylabel("f(x(0)) - f(x(k)), mean over images")
    axes.set_title(title or f"Region perturbation: {settings.get('perturb', '?')} replacement, "
                            f"{settings.get('region', '?')}x{settings.get('region', '?')} regions, "
                            f"{settings.get('grid', '?')} grid")
    axes.axhline(0.0, color="black", linewidth=0.5)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", loc="best")
    figure.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png")
    return out

