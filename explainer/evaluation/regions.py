"""Rank the square regions of heatmaps for region perturbation (Samek et al., arXiv 1509.06321).

A heatmap (one value per pixel) is cut into non-overlapping ``size`` x ``size`` squares (9 x 9 in the paper). Two
tilings are offered:

* ``grid="fixed"`` (the default): a grid of ceil(H / size) x ceil(W / size) cells that covers **every pixel**. When
  H (or W) is not a multiple of ``size``, the grid is centred: the ``size - H % size`` missing rows are split between
  the first and the last row of cells (the larger half after), which are then partial cells inside the image. On
  224 x 224 with 9 x 9 cells that is 25 x 25 cells, the last row and column 8 px wide. This is a zero-padded grid as
  in iNNvestigate and current Quantus, with the padding never perturbed or scored.
* ``grid="sliding"``: every window position inside the image is a candidate; regions are picked greedily in the
  requested order and every window overlapping a picked one is dropped (older Quantus). Greedy picks leave gaps, so
  an image holds fewer sliding regions than grid cells (about 60-85 % of a 224 x 224 image's); running out is an
  error.

A region's score is the **sum** of the heatmap over its pixels (a partial border cell sums over its pixels inside the
image, so it scores like a full cell whose padding holds zero relevance). Orders:

* ``"morf"``: most relevant first, the highest signed score first (Samek et al.).
* ``"lerf"``: least relevant first, the smallest sum of **|h|** first: regions with the least evidence either way.
* ``"lerf-signed"``: the lowest signed score first, i.e. the most *negative* regions first (the reverse of MoRF; on
  signed maps this is not "least relevant", and ABPC computed with it is about zero when strongly positive and
  strongly negative regions lie on the same object).
* ``"random"``: a random order drawn from the given generator.

Ties keep row-major position order. Regions are returned as boxes (top, left, bottom, right), bottom and right
exclusive, inside the image.

The paper's 9 x 9 regions and L = 100 steps are sized for 224 x 224 inputs (a 32 x 32 input holds only 16 such
regions). :func:`plan_regions` scales what is not given to the input and refuses, naming values that would work,
what cannot.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from explainer.errors import InputError

GRIDS = ("fixed", "sliding")
ORDERS = ("morf", "lerf", "lerf-signed", "random")


def _grid_axis(length: int, size: int) -> tuple[int, int]:
    """The fixed grid along one axis of ``length`` pixels: ceil(length / size) cells, and the padding before the
    first, half of the missing ``size - length % size`` pixels (the larger half goes after the last cell)."""
    count = -(-length // size)
    return count, (count * size - length) // 2


def grid_cells(length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop (exclusive) of the fixed grid's cells along one axis of ``length`` pixels, inside the image."""
    count, before = _grid_axis(length, size)
    starts = np.arange(count) * size - before
    return np.clip(starts, 0, length), np.clip(starts + size, 0, length)


def grid_region_scores(heatmaps: np.ndarray, size: int) -> np.ndarray:
    """Sum of each (N, H, W) heatmap over the cells of the fixed grid: (N, ceil(H / size), ceil(W / size)),
    float64; a partial border cell sums over its pixels inside the image."""
    n, h, w = heatmaps.shape
    (gh, top), (gw, left) = _grid_axis(h, size), _grid_axis(w, size)
    padded = np.zeros((n, gh * size, gw * size), dtype=np.float64)
    padded[:, top:top + h, left:left + w] = heatmaps
    return padded.reshape(n, gh, size, gw, size).sum(axis=(2, 4))


def window_region_scores(heatmaps: np.ndarray, size: int) -> np.ndarray:
    """Sum of each (N, H, W) heatmap over every ``size`` x ``size`` window: (N, H - size + 1, W - size + 1).

    Separable window sums, so windows with identical content get bit-identical scores (no integral-image round-off
    that would break ties arbitrarily).
    """
    values = np.asarray(heatmaps, dtype=np.float64)
    rows = sliding_window_view(values, size, axis=1).sum(axis=-1)
    return sliding_window_view(rows, size, axis=2).sum(axis=-1)


def max_regions(height: int, width: int, size: int) -> int:
    """How many regions the fixed grid cuts an image of this size into (partial border cells included)."""
    return _grid_axis(height, size)[0] * _grid_axis(width, size)[0]


#: the paper's protocol: 9 x 9 regions and L = 100 steps on 224 x 224 inputs
PAPER_SIDE, PAPER_REGION, PAPER_STEPS = 224, 9, 100


def scaled_region(height: int, width: int) -> int:
    """The paper's 9-pixel region scaled to the shorter side (9 on 224), rounded up so that the grid is never finer
    than the paper's (about 25 regions a side), and at least 1."""
    return max(1, -(-min(height, width) * PAPER_REGION // PAPER_SIDE))


def scaled_steps(height: int, width: int, region: int, grid: str = "fixed") -> int:
    """The paper's L = 100 steps, but at most a quarter of the image's regions (at least 1): on a 224 x 224 input
    100 of 576; on 32 x 32 with 2 x 2 regions 64 of 256. On the sliding grid, also at most what its greedy exclusion
    always finds (each pick blocks at most (2 size - 1)^2 windows), so the default never runs out."""
    steps = min(PAPER_STEPS, max_regions(height, width, region) // 4)
    if grid == "sliding":
        windows = (height - region + 1) * (width - region + 1)
        steps = min(steps, -(-windows // (2 * region - 1) ** 2))
    return max(1, steps)


@dataclass(frozen=True)
class RegionPlan:
    """The steps and region size of a region-perturbation run on ``height`` x ``width`` inputs, and which of them
    were scaled to the input rather than given."""

    height: int
    width: int
    steps: int
    region: int
    grid: str
    steps_scaled: bool
    region_scaled: bool

    def describe(self) -> str:
        """In words, e.g. 'region 2×2 px and 64 steps, scaled to the 32×32 input'."""
        region, steps = f"region {self.region}×{self.region} px", f"{self.steps} steps"
        scaled = f"scaled to the {self.height}×{self.width} input"
        if self.steps_scaled and self.region_scaled:
            return f"{region} and {steps}, {scaled}"
        if not (self.steps_scaled or self.region_scaled):
            return f"{region} and {steps}, as given"
        if self.region_scaled:
            return f"{region} ({scaled}) and {steps} (as given)"
        return f"{region} (as given) and {steps} ({scaled})"


def plan_regions(height: int, width: int, *, steps: int | None = None, region: int | None = None,
                 grid: str = "fixed", names: tuple[str, str] = ("steps", "region")) -> RegionPlan:
    """Steps and region size for ``height`` x ``width`` inputs: the given ones, else scaled to the input
    (:func:`scaled_region`, :func:`scaled_steps`). Values that cannot work (more steps than the image holds regions,
    a region larger than the image) are an InputError naming the values that would, written with ``names`` (the
    options: ``("--steps", "--region")`` on the command line). Call it before any explanation is computed.

    The sliding grid's greedy exclusion may find fewer regions than the fixed grid's count checked here; it reports
    running out when it does."""
    if grid not in GRIDS:
        raise InputError(f"grid must be one of {GRIDS}; got {grid!r}")
    for what, value in (("height", height), ("width", width), (names[0], steps), (names[1], region)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise InputError(f"{what} must be a positive integer; got {value!r}")
    height, width = int(height), int(width)
    side = min(height, width)

    def option(index: int, value: int) -> str:
        return f"{names[index]} {value}" if names[index].startswith("-") else f"{names[index]}={value}"

    if region is not None and region > side:
        raise InputError(f"{option(1, region)} is larger than the {height}×{width} input; use {option(1, side)} or "
                         f"less, or leave it out for the region scaled to the input ({scaled_region(height, width)} "
                         "px)")
    chosen = int(region) if region is not None else scaled_region(height, width)
    available = max_regions(height, width, chosen)
    if steps is not None and steps > available:
        fits = next((s for s in range(chosen - 1, 0, -1) if max_regions(height, width, s) >= steps), None)
        ways = [f"{option(0, available)} or fewer"]
        if fits is not None:
            ways.append(f"{option(1, fits)} ({max_regions(height, width, fits)} regions)")
        if region is not None:
            default = scaled_region(height, width)
            ways.append(f"leave both out for values scaled to the input ({option(1, default)}, "
                        f"{option(0, scaled_steps(height, width, default, grid))})")
        which = "" if region is not None else " (the region scaled to the input)"
        raise InputError(f"a {height}×{width} input holds only {available} non-overlapping {chosen}×{chosen} "
                         f"regions{which}; {option(0, steps)} needs at least that many: pass " + " or ".join(ways))
    chosen_steps = int(steps) if steps is not None else scaled_steps(height, width, chosen, grid)
    return RegionPlan(height, width, chosen_steps, chosen, grid, steps is None, region is None)


def order_regions(
    heatmaps: np.ndarray,
    steps: int,
    *,
    size: int = 9,
    order: str = "morf",
    grid: str = "fixed",
    rng: np.random.Generator | None = None,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """The first ``steps`` regions of each heatmap in perturbation order: int64 (N, steps, 4) boxes (top, left,
    bottom, right), bottom and right exclusive.

    ``heatmaps`` is (N, H, W). ``grid`` is ``"fixed"`` (default, the grid covering the whole image) or ``"sliding"``
    (greedy exclusion of overlapping windows). ``order`` is one of :data:`ORDERS`; ``"random"`` needs ``rng``.
    ``eligible`` (N, H, W) bool, fixed grid only: cells without an eligible pixel (padding tokens) come after every
    other cell, in every order. Raises :class:`InputError` if an image holds fewer than ``steps`` regions.
    """
    heatmaps = np.asarray(heatmaps)
    _check_arguments(heatmaps, steps, size, order, grid, rng)
    if eligible is not None and (grid != "fixed" or np.shape(eligible) != heatmaps.shape):
        raise InputError(f"eligible must be (N, H, W) = {heatmaps.shape} bool on the fixed grid; got shape "
                         f"{np.shape(eligible)} on the {grid} grid")
    if grid == "fixed":
        return _order_fixed(heatmaps, steps, size, order, rng, eligible)
    if order == "lerf":
        keys = -window_region_scores(np.abs(heatmaps), size)
    elif order == "random":
        keys = rng.random((heatmaps.shape[0], heatmaps.shape[1] - size + 1, heatmaps.shape[2] - size + 1))
    else:
        keys = window_region_scores(heatmaps, size) * (1 if order == "morf" else -1)
    origins = _greedy_windows(keys, steps, size)
    return np.concatenate([origins, origins + size], axis=-1)


def _check_arguments(
    heatmaps: np.ndarray, steps: int, size: int, order: str, grid: str, rng: np.random.Generator | None
) -> None:
    if heatmaps.ndim != 3:
        raise InputError(f"heatmaps must be (N, H, W); got shape {heatmaps.shape}")
    if not np.issubdtype(heatmaps.dtype, np.number) or not np.isfinite(heatmaps).all():
        raise InputError(f"heatmaps must be finite numbers (dtype {heatmaps.dtype}, shape {heatmaps.shape})")
    if order not in ORDERS:
        raise InputError(f"order must be one of {ORDERS}; got {order!r}")
    if grid not in GRIDS:
        raise InputError(f"grid must be one of {GRIDS}; got {grid!r}")
    if order == "random" and rng is None:
        raise InputError("order='random' needs a seeded numpy.random.Generator (rng=)")
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise InputError(f"region size must be a positive integer; got {size!r}")
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InputError(f"steps must be a positive integer; got {steps!r}")
    _, h, w = heatmaps.shape
    available = max_regions(h, w, size)
    if available < steps:
        raise InputError(
            f"a {h}x{w} image holds only {available} {size}x{size} regions; "
            f"steps={steps} needs at least that many (use fewer steps or a smaller region)"
        )


def _order_fixed(
    heatmaps: np.ndarray, steps: int, size: int, order: str, rng: np.random.Generator | None,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    n, h, w = heatmaps.shape
    if order == "random":
        ranking = np.argsort(rng.random((n, max_regions(h, w, size))), axis=1)
    else:
        scores = grid_region_scores(np.abs(heatmaps) if order == "lerf" else heatmaps, size).reshape(n, -1)
        ranking = np.argsort(-scores if order == "morf" else scores, axis=1, kind="stable")
    if eligible is not None:
        last = np.take_along_axis(grid_region_scores(eligible.astype(np.float64), size).reshape(n, -1) == 0,
                                  ranking, axis=1)
        ranking = np.take_along_axis(ranking, np.argsort(last, axis=1, kind="stable"), axis=1)
    (row_start, row_stop), (col_start, col_stop) = grid_cells(h, size), grid_cells(w, size)
    rows, cols = np.divmod(ranking[:, :steps], len(col_start))
    return np.stack([row_start[rows], col_start[cols], row_stop[rows], col_stop[cols]], axis=-1).astype(np.int64)


def _greedy_windows(keys: np.ndarray, steps: int, size: int) -> np.ndarray:
    """Pick the window with the largest key, drop every window overlapping it, repeat; vectorised over images."""
    keys = np.array(keys, dtype=np.float64)
    n, p, q = keys.shape
    flat = keys.reshape(n, -1)
    images = np.arange(n)
    span = np.arange(-size + 1, size)
    origins = np.empty((n, steps, 2), dtype=np.int64)
    for k in range(steps):
        best = flat.argmax(axis=1)
        exhausted = np.isneginf(flat[images, best])
        if exhausted.any():
            raise InputError(
                f"image {int(np.argmax(exhausted))}: the sliding-window order ran out of non-overlapping "
                f"{size}x{size} windows after {k} of steps={steps} (use grid='fixed' or fewer steps)"
            )
        rows, cols = np.divmod(best, q)
        origins[:, k, 0] = rows
        origins[:, k, 1] = cols
        blocked_rows = np.clip(rows[:, None] + span, 0, p - 1)
        blocked_cols = np.clip(cols[:, None] + span, 0, q - 1)
        keys[images[:, None, None], blocked_rows[:, :, None], blocked_cols[:, None, :]] = -np.inf
    return origins
