"""Pictures of relevance for inputs that are not images: a line plot over a 1-D signal, a sorted bar chart of
tabular features.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global state), imported on first use.
Positive relevance (evidence for the explained output) is drawn red, negative blue, as in the heatmaps.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from explainer.errors import InputError

_POSITIVE, _NEGATIVE = "tab:red", "tab:blue"
#: the most features a bar chart shows (the most relevant by magnitude; the title says how many were left out)
MAX_BARS = 30


def _figure(size: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | Path) -> Path:
    figure.tight_layout()
    out = Path(path)
    figure.savefig(out, format="png")
    return out


def plot_signal(signal: np.ndarray, relevance: np.ndarray, path: str | Path, *, title: str = "") -> Path:
    """One sample of a 1-D signal ([C, L]) above its relevance summed over channels, both over the position axis;
    written as a PNG to ``path`` (returned)."""
    signal, relevance = np.asarray(signal, np.float64), np.asarray(relevance, np.float64)
    if signal.ndim != 2 or signal.shape != relevance.shape:
        raise InputError(f"a signal plot needs a signal and relevance of one shape [C, L], got {list(signal.shape)} "
                         f"and {list(relevance.shape)}")
    figure = _figure((8, 4.5))
    top, bottom = figure.subplots(2, 1, sharex=True)
    steps = np.arange(signal.shape[1])
    for c, channel in enumerate(signal):
        top.plot(steps, channel, linewidth=1.0, label=f"channel {c}")
    top.set_ylabel("signal")
    if len(signal) > 1:
        top.legend(fontsize="x-small", loc="best", ncol=min(len(signal), 4))
    total = relevance.sum(axis=0)
    bottom.plot(steps, total, color="black", linewidth=0.8)
    bottom.fill_between(steps, total, 0, where=total >= 0, color=_POSITIVE, alpha=0.5, linewidth=0,
                        interpolate=True)
    bottom.fill_between(steps, total, 0, where=total < 0, color=_NEGATIVE, alpha=0.5, linewidth=0,
                        interpolate=True)
    bottom.axhline(0.0, color="black", linewidth=0.5)
    bottom.set_ylabel("relevance (sum over channels)" if len(signal) > 1 else "relevance")
    bottom.set_xlabel("position")
    for axes in (top, bottom):
        axes.grid(True, alpha=0.3)
    if title:
        top.set_title(title)
    return _save(figure, path)


def plot_features(relevance: np.ndarray, path: str | Path, *, names: Sequence[str] | None = None,
                  values: np.ndarray | None = None, title: str = "") -> Path:
    """One sample's feature relevance ([F]) as horizontal bars sorted by magnitude, largest on top, labelled with
    ``names`` (default f0, f1, ...) and the feature's ``values`` where given; at most ``MAX_BARS`` bars. Written as
    a PNG to ``path`` (returned)."""
    relevance = np.asarray(relevance, np.float64).reshape(-1)
    count = len(relevance)
    names = feature_names(count) if names is None else list(names)
    if len(names) != count:
        raise InputError(f"{len(names)} feature names for {count} features")
    order = np.argsort(-np.abs(relevance), kind="stable")[:MAX_BARS]
    labels = [names[i] if values is None else f"{names[i]} = {float(np.ravel(values)[i]):.3g}" for i in order]
    shown = relevance[order]
    figure = _figure((7, 1.2 + 0.28 * len(order)))
    axes = figure.add_subplot(1, 1, 1)
    rows = np.arange(len(order))[::-1]
    axes.barh(rows, shown, color=[_POSITIVE if r >= 0 else _NEGATIVE for r in shown])
    axes.set_yticks(rows, labels, fontsize="small")
    axes.axvline(0.0, color="black", linewidth=0.5)
    axes.set_xlabel("relevance")
    axes.grid(True, axis="x", alpha=0.3)
    left = count - len(order)
    axes.set_title((title + " " if title else "") + (f"({len(order)} most relevant of {count} features)" if left
                                                     else ""))
    return _save(figure, path)


def feature_names(count: int, path: str | Path | None = None) -> list[str]:
    """The names of ``count`` features: one per line of the text file at ``path`` (blank lines ignored), or f0,
    f1, ... without one; a file with another number of names is an InputError."""
    if path is None:
        return [f"f{i}" for i in range(count)]
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the feature names ({exc.__class__.__name__}: {exc})") from None
    names = [line.strip() for line in lines if line.strip()]
    if len(names) != count:
        raise InputError(f"{path}: {len(names)} feature names for a model input of {count} features")
    return names
