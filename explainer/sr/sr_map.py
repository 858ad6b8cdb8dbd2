"""Salient Relevance (SR) maps: context-aware saliency (Goferman et al.) run on an LRP relevance map.

Li, Tian, Mueller, Chen (2017), "Beyond saliency", turn a pixel-wise LRP heatmap into attention *areas* by running
Goferman, Zelnik-Manor and Tal's context-aware saliency detector on it.  This module implements that detector with
NumPy/SciPy, and the relevance image it runs on (``sr_input``: |R| as in the paper, or its positive part).
``docs/sr-map.md`` is the specification: every step, constant and option, and where they differ from Goferman's text,
Tsai and Chang's CAS code and Li et al.'s code.  The K most similar patches are found by an exact, blocked,
vectorised search (no approximate nearest neighbours).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import distance_transform_edt

from explainer.errors import InputError
from explainer.images.spec import is_positive_int
from explainer.sr.lab import srgb_to_lab

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # optional: without it BLAS keeps its default thread count
    threadpool_limits = None

__all__ = ["sr_map", "paper_relevance_image", "sr_input", "describe_sr_input", "SR_PARTS"]

# Lab channels whose range is below this (in L*a*b* units, far below one uint8 step) count as constant, so that
# min-max scaling does not blow rounding noise (e.g. a*, b* of a grey image) up to [0, 1].
_LAB_FLAT = 1e-6

# Query rows per block of the exact search: a block of distances (64 x ~5000 float32) stays in L2 cache.
_CHUNK_ROWS = 64


def _single_thread_blas() -> contextlib.AbstractContextManager:
    """Pin BLAS to one thread (if threadpoolctl is installed): sr_map makes ~200 small matrix products, and
    multi-threaded OpenBLAS ran them 3-100x slower than one thread on a loaded 2-core machine."""
    return threadpool_limits(limits=1, user_api="blas") if threadpool_limits is not None else contextlib.nullcontext()


@dataclass(frozen=True)
class _Patches:
    """Patches of one pyramid level: flattened values, centres normalised by the level's longer side, grid shape.

    ``own[i]`` is the index among the level's grid patches of the patch identical to patch i (same window), or -1:
    a query is never its own neighbour.
    """

    values: np.ndarray  # (n, channels * patch_size**2) float32
    rows: np.ndarray  # (n,) float32 centre row / max(h, w)
    cols: np.ndarray  # (n,) float32 centre column / max(h, w)
    grid: tuple[int, int]  # (ny, nx), n == ny * nx
    size: tuple[int, int]  # (h, w) of the level image
    own: np.ndarray  # (n,) int64
    image: np.ndarray  # (h, w, channels) float32, the level image


def sr_map(
    relevance: np.ndarray,
    *,
    c: float = 3.0,
    k: int = 64,
    scales: Sequence[float] = (1.0, 0.8, 0.5, 0.3),
    patch_size: int | Sequence[int] = 7,
    foci_threshold: float = 0.8,
    base_size: int = 250,
    stride: int | None = None,
    queries: str = "grid",
) -> np.ndarray:
    """Salient Relevance map of a relevance map: float32 H x W in [0, 1], deterministic. Specification with every
    step, constant and deviation from Goferman et al. and from Li et al.'s code: ``docs/sr-map.md``.

    ``relevance`` is either H x W (one relevance channel, e.g. |R| summed over colour channels; min-max scaled) or
    H x W x 3 (the paper's RGB relevance image, see :func:`paper_relevance_image`; uint8 is read as 0..255 sRGB, any
    other dtype is min-max scaled over the whole array, then converted to CIE L*a*b* and min-max scaled per channel).

    Goferman's context-aware saliency, on an image whose longer side is resized to ``base_size``: patches of
    ``patch_size`` x ``patch_size`` (one size for every scale, or one per scale), candidate patches every ``stride``
    pixels (default ``ceil(patch_size / 2)``, i.e. 50 % overlap); dissimilarity ``d = d_value / (1 + c * d_position)``;
    single-scale saliency ``S = 1 - exp(-f * mean of the k smallest d)`` over candidates from scales r, r/2 and r/4
    (the query patch itself excluded; ``f = (patch_size of the first scale / patch_size)**2`` as in Tsai and Chang's
    CAS code, 1 when all scales use one size); the per-scale maps over ``scales`` are min-max normalised, upsampled
    and averaged to S_bar; pixels with S_bar > ``foci_threshold`` * max(S_bar) are the foci, and
    ``SR = S_bar * (1 - d_foci)`` with d_foci the Euclidean distance to the nearest focus normalised to [0, 1].
    A constant map yields all zeros.

    ``queries`` says where saliency is scored: ``"grid"`` (default, fast) at the candidate patches' centres, then
    interpolated bilinearly to pixels; ``"pixels"`` at every pixel of every scale (patches centred on the pixel,
    reflect-padded at the borders), as Goferman's definition and the CAS code do: about 15x slower, and equal to
    ``"grid"`` at the grid points (``docs/sr-map.md`` gives the measured difference between the two).

    Resizing is bilinear with half-pixel centres (anti-aliased when shrinking); each pyramid level is at least one
    patch high and wide; patch centres are divided by their own level's longer side, so positions compare across
    levels.  The nearest-neighbour search is exact (blocked matrix products, float32 arithmetic); BLAS is held to
    one thread during the call when threadpoolctl is installed.
    """
    image = _check_relevance(relevance)
    sizes = _check_params(c, k, scales, patch_size, foci_threshold, base_size, stride, queries)
    levels = tuple(float(s) for s in scales)
    steps = tuple(stride if stride is not None else math.ceil(size / 2) for size in sizes)
    with _single_thread_blas():
        return _salient_relevance(image, float(c), int(k), levels, sizes, steps, foci_threshold, base_size,
                                  queries == "pixels")


def _salient_relevance(
    image: np.ndarray,
    c: float,
    k: int,
    scales: tuple[float, ...],
    sizes: tuple[int, ...],
    steps: tuple[int, ...],
    foci_threshold: float,
    base_size: int,
    every_pixel: bool,
) -> np.ndarray:
    """The algorithm of :func:`sr_map` on validated input (one patch size and stride per scale)."""
    height, width = image.shape[:2]
    base = _prepare(image, base_size)
    if np.ptp(base) == 0.0:
        return np.zeros((height, width), dtype=np.float32)

    levels: dict[tuple[float, int, int], _Patches] = {}

    def level(scale: float, size: int, step: int) -> _Patches:
        if (scale, size, step) not in levels:
            levels[(scale, size, step)] = _extract_patches(base, scale, size, step)
        return levels[(scale, size, step)]

    base_h, base_w = base.shape[:2]
    mean_saliency = np.zeros((base_h, base_w), dtype=np.float64)
    for r, size, step in zip(scales, sizes, steps):
        candidates = [level(r, size, step), level(r / 2, size, step), level(r / 4, size, step)]
        query = _pixel_queries(candidates[0], size, step) if every_pixel else candidates[0]
        saliency = _single_scale_saliency(query, candidates, k=k, c=c, factor=(sizes[0] / size) ** 2)
        saliency = _minmax(saliency.reshape(query.grid))
        if every_pixel:  # a value per pixel of the level: resize it to the base
            mean_saliency += _resize(saliency[..., None], (base_h, base_w))[..., 0]
        else:  # a value per grid patch: interpolate it from the patch centres
            mean_saliency += _upsample_grid(saliency, query, (base_h, base_w), size, step)
    mean_saliency /= len(scales)

    peak = mean_saliency.max()
    if peak <= 0.0:
        return np.zeros((height, width), dtype=np.float32)
    distance = distance_transform_edt(mean_saliency <= foci_threshold * peak)
    far = distance.max()
    d_foci = distance / far if far > 0 else np.zeros_like(distance)
    salient = mean_saliency * (1.0 - d_foci)

    out = _resize(salient[..., None], (height, width))[..., 0]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


#: what the SR map can be computed on, per channel of the relevance: |R| (Li et al.) or its positive part
SR_PARTS = {"abs": "|R|", "positive": "max(R, 0)"}


def paper_relevance_image(relevance_chw: np.ndarray, *, layout: str = "chw", part: str = "abs") -> np.ndarray:
    """The heatmap Li et al. feed to the saliency step: |R| per colour channel, min-max scaled over the whole
    tensor to 0..255, returned as an H x W x 3 uint8 RGB image.

    ``layout`` says how the input is laid out: ``"chw"`` (3 x H x W, the network's layout) or ``"hwc"`` (H x W x 3).
    ``part="positive"`` takes max(R, 0) in place of |R| (only evidence for the class counts; not the paper's).
    A constant result gives an all-zero image.
    """
    arr = np.asarray(relevance_chw)
    _check_layout_part(layout, part, "paper_relevance_image")
    channel_axis = 0 if layout == "chw" else 2
    if arr.ndim != 3 or arr.shape[channel_axis] != 3:
        expected = "3 x H x W" if layout == "chw" else "H x W x 3"
        raise InputError(f"paper_relevance_image: expected {expected} relevance (layout={layout!r}), got {arr.shape}")
    _check_real_finite(arr, "paper_relevance_image")
    magnitude = _part(arr, part)
    if layout == "chw":
        magnitude = np.moveaxis(magnitude, 0, -1)
    lo, hi = magnitude.min(), magnitude.max()
    if hi == lo:
        return np.zeros(magnitude.shape, dtype=np.uint8)
    return np.rint((magnitude - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def sr_input(relevance: np.ndarray, *, layout: str = "chw", part: str = "abs") -> np.ndarray:
    """What an SR map is computed on, from one sample's relevance (C x H x W, or H x W x C with ``layout="hwc"``):
    for three (colour) channels the paper's RGB image of |R| (:func:`paper_relevance_image`), for any other channel
    count the H x W map sum_c |R_c|. ``part="positive"`` takes max(R, 0) in place of |R|. Either way zero relevance
    is the darkest value and negative relevance is never scored as the opposite of positive (:func:`describe_sr_input`
    says which was used)."""
    arr = np.asarray(relevance)
    _check_layout_part(layout, part, "sr_input")
    if arr.ndim != 3:
        raise InputError(f"sr_input: expected one sample's relevance with a channel axis, got shape {arr.shape}")
    channels = arr.shape[0 if layout == "chw" else 2]
    if channels == 3:
        return paper_relevance_image(arr, layout=layout, part=part)
    _check_real_finite(arr, "sr_input")
    return _part(arr, part).sum(axis=0 if layout == "chw" else 2)


def describe_sr_input(part: str, channels: int) -> str:
    """A line saying what :func:`sr_input` computes the SR map on, for labels in files and output."""
    _check_layout_part("chw", part, "describe_sr_input")
    what = SR_PARTS[part]
    if channels == 3:
        source = " (Li et al.)" if part == "abs" else " (Li et al.'s image with max(R, 0) in place of |R|)"
        return f"{what} per colour channel, min-max scaled over the 3 channels to an RGB image{source}"
    summed = f" summed over the {channels} channels" if channels > 1 else ""
    return f"{what}{summed}, min-max scaled"


def _check_layout_part(layout: str, part: str, where: str) -> None:
    if layout not in ("chw", "hwc"):
        raise InputError(f"{where}: layout must be 'chw' or 'hwc', got {layout!r}")
    if part not in SR_PARTS:
        raise InputError(f"{where}: part must be one of {', '.join(map(repr, SR_PARTS))}, got {part!r}")


def _part(arr: np.ndarray, part: str) -> np.ndarray:
    values = arr.astype(np.float64)
    return np.abs(values) if part == "abs" else np.maximum(values, 0.0)


def _check_real_finite(arr: np.ndarray, where: str) -> None:
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{where}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise InputError(f"{where}: got an empty array of shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InputError(f"{where}: relevance of shape {arr.shape} has {bad} non-finite value(s) (NaN or inf)")


def _check_relevance(relevance: np.ndarray) -> np.ndarray:
    arr = np.asarray(relevance)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise InputError(
            f"sr_map: relevance must be H x W or H x W x 3 (channel last), got shape {arr.shape}; "
            "sum a C x H x W relevance over C, or use paper_relevance_image for the paper's RGB heatmap"
        )
    _check_real_finite(arr, "sr_map")
    return arr


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_params(
    c: float,
    k: int,
    scales: Sequence[float],
    patch_size: int | Sequence[int],
    foci_threshold: float,
    base_size: int,
    stride: int | None,
    queries: str,
) -> tuple[int, ...]:
    """Validate the parameters of :func:`sr_map`; the patch size of each scale."""
    if not (_is_real(c) and math.isfinite(c) and c >= 0):
        raise InputError(f"sr_map: c must be a finite number >= 0, got {c!r}")
    for name, value in (("k", k), ("base_size", base_size)):
        if not is_positive_int(value):
            raise InputError(f"sr_map: {name} must be a positive integer, got {value!r}")
    if stride is not None and not is_positive_int(stride):
        raise InputError(f"sr_map: stride must be a positive integer or None, got {stride!r}")
    listed = tuple(scales) if np.iterable(scales) else ()
    if len(listed) == 0 or not all(_is_real(s) and 0 < s <= 1 for s in listed):
        raise InputError(f"sr_map: scales must be a non-empty sequence of numbers in (0, 1], got {scales!r}")
    sizes = tuple(patch_size) if np.iterable(patch_size) else (patch_size,) * len(listed)
    if len(sizes) != len(listed) or not all(is_positive_int(size) for size in sizes):
        raise InputError(f"sr_map: patch_size must be a positive integer or one per scale ({len(listed)}), "
                         f"got {patch_size!r}")
    if base_size < max(sizes):
        raise InputError(f"sr_map: base_size ({base_size}) must be at least patch_size ({max(sizes)})")
    if not (_is_real(foci_threshold) and 0 <= foci_threshold < 1):
        raise InputError(f"sr_map: foci_threshold must be in [0, 1), got {foci_threshold!r}")
    if queries not in ("grid", "pixels"):
        raise InputError(f"sr_map: queries must be 'grid' or 'pixels', got {queries!r}")
    return tuple(int(size) for size in sizes)


def _minmax(arr: np.ndarray, flat: float = 0.0) -> np.ndarray:
    """Scale to [0, 1]; an array whose range is not above ``flat`` becomes zeros (no division by zero)."""
    lo, hi = arr.min(), arr.max()
    return (arr - lo) / (hi - lo) if hi - lo > flat else np.zeros_like(arr)


def _prepare(image: np.ndarray, base_size: int) -> np.ndarray:
    """Resize so the longer side is ``base_size`` and scale values: float32 (h, w, 1) or (h, w, 3) Lab in [0, 1]."""
    height, width = image.shape[:2]
    factor = base_size / max(height, width)
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    if image.ndim == 2:
        return _minmax(_resize(image.astype(np.float64)[..., None], size)).astype(np.float32)
    rgb = image / 255.0 if image.dtype == np.uint8 else _minmax(image.astype(np.float64))
    lab = srgb_to_lab(np.clip(_resize(rgb, size), 0.0, 1.0))
    return np.stack([_minmax(lab[..., i], _LAB_FLAT) for i in range(3)], axis=-1).astype(np.float32)


def _triangle_matrix(centers: np.ndarray, n_in: int, support: float) -> np.ndarray:
    """Rows of linear-interpolation weights (triangle filter of half-width ``support``) at ``centers``."""
    centers = np.clip(centers, 0.0, n_in - 1)
    weights = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None, :] - centers[:, None]) / support)
    return weights / weights.sum(axis=1, keepdims=True)


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Bilinear resampling matrix (n_out x n_in), half-pixel centres, filter widened when shrinking (anti-aliased)."""
    ratio = n_in / n_out
    centers = (np.arange(n_out) + 0.5) * ratio - 0.5
    return _triangle_matrix(centers, n_in, max(1.0, ratio))


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an (h, w, C) array to ``size`` = (h_out, w_out) as two matrix products."""
    height, width = image.shape[:2]
    if (height, width) == tuple(size):
        return image
    dtype = image.dtype if np.issubdtype(image.dtype, np.floating) else np.float64
    rows = _resize_matrix(height, size[0]).astype(dtype)
    cols = _resize_matrix(width, size[1]).astype(dtype)
    return np.moveaxis(rows @ np.moveaxis(image, -1, 0) @ cols.T, 0, -1)


def _extract_patches(base: np.ndarray, scale: float, patch_size: int, step: int) -> _Patches:
    """Resize the base image by ``scale`` (never below one patch) and cut patches every ``step`` pixels."""
    base_h, base_w = base.shape[:2]
    size = (max(patch_size, round(base_h * scale)), max(patch_size, round(base_w * scale)))
    image = np.ascontiguousarray(_resize(base, size), dtype=np.float32)
    windows = sliding_window_view(image, (patch_size, patch_size), axis=(0, 1))[::step, ::step]
    ny, nx = windows.shape[:2]
    values = np.ascontiguousarray(windows.reshape(ny * nx, -1), dtype=np.float32)
    rows, cols = _centres(np.arange(ny) * step, np.arange(nx) * step, patch_size, size)
    return _Patches(values=values, rows=rows, cols=cols, grid=(ny, nx), size=size, own=np.arange(ny * nx),
                    image=image)


def _centres(tops: np.ndarray, lefts: np.ndarray, patch_size: int, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """Flattened centre rows and columns of the windows with these top-left corners, over the level's longer side."""
    longer = float(max(size))
    grid_rows, grid_cols = np.meshgrid((tops + patch_size / 2) / longer, (lefts + patch_size / 2) / longer,
                                       indexing="ij")
    return grid_rows.ravel().astype(np.float32), grid_cols.ravel().astype(np.float32)


def _pixel_queries(level: _Patches, patch_size: int, step: int) -> _Patches:
    """A patch centred on every pixel of ``level``'s image (reflect-padded by half a patch); ``own`` points at the
    grid patch with the same window, so that at the grid points the saliency is the grid's."""
    height, width = level.size
    before = patch_size // 2
    pad = ((before, patch_size - 1 - before), (before, patch_size - 1 - before), (0, 0))
    padded = np.pad(level.image, pad, mode="reflect")  # levels are at least one patch wide
    windows = sliding_window_view(padded, (patch_size, patch_size), axis=(0, 1))
    values = np.ascontiguousarray(windows.reshape(height * width, -1), dtype=np.float32)
    tops, lefts = np.arange(height) - before, np.arange(width) - before
    rows, cols = _centres(tops, lefts, patch_size, level.size)
    ny, nx = level.grid
    grid_row = np.where((tops >= 0) & (tops % step == 0) & (tops // step < ny), tops // step, -1)
    grid_col = np.where((lefts >= 0) & (lefts % step == 0) & (lefts // step < nx), lefts // step, -1)
    own = np.where((grid_row[:, None] >= 0) & (grid_col[None, :] >= 0), grid_row[:, None] * nx + grid_col[None, :], -1)
    return _Patches(values=values, rows=rows, cols=cols, grid=(height, width), size=level.size, own=own.ravel(),
                    image=level.image)


def _single_scale_saliency(
    query: _Patches, candidates: list[_Patches], *, k: int, c: float, factor: float = 1.0
) -> np.ndarray:
    """S_i = 1 - exp(-factor * mean of the k smallest d(p_i, q)) for every query patch; exact, in blocks of query
    rows. ``candidates[0]`` is the query's own level: the candidate ``query.own[i]`` (patch i itself) is excluded.
    """
    values = np.concatenate([cand.values for cand in candidates])
    centre = values.mean(axis=0, dtype=np.float64).astype(np.float32)  # centring limits float32 cancellation
    cand_values = values - centre
    query_values = query.values - centre
    n_query, n_cand = len(query_values), len(cand_values)
    ones_q = np.ones((n_query, 1), dtype=np.float32)
    ones_c = np.ones((n_cand, 1), dtype=np.float32)
    # |q - x|^2 = |q|^2 + |x|^2 - 2 q.x as one matrix product of augmented vectors.
    query_aug = np.hstack([-2.0 * query_values, ones_q, np.einsum("ij,ij->i", query_values, query_values)[:, None]])
    cand_aug_t = np.ascontiguousarray(
        np.hstack([cand_values, np.einsum("ij,ij->i", cand_values, cand_values)[:, None], ones_c]).T
    )
    cand_rows = np.concatenate([cand.rows for cand in candidates])
    cand_cols = np.concatenate([cand.cols for cand in candidates])
    k_eff = min(k, n_cand - 1)
    mean_d = np.empty(n_query, dtype=np.float64)
    # Preallocated blocks: fresh multi-megabyte temporaries per block would cost more in page faults than the maths.
    rows_buf = min(_CHUNK_ROWS, n_query)
    dist_buf = np.empty((rows_buf, n_cand), dtype=np.float32)
    denom_buf = np.empty((rows_buf, n_cand), dtype=np.float32)
    work_buf = np.empty((rows_buf, n_cand), dtype=np.float32)
    for start in range(0, n_query, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, n_query)
        m = stop - start
        dist, denom, work = dist_buf[:m], denom_buf[:m], work_buf[:m]
        np.matmul(query_aug[start:stop], cand_aug_t, out=dist)
        np.abs(dist, out=dist)  # rounding can leave -tiny where the true squared distance is ~0
        np.sqrt(dist, out=dist)
        np.subtract.outer(query.rows[start:stop], cand_rows, out=denom)
        np.square(denom, out=denom)
        np.subtract.outer(query.cols[start:stop], cand_cols, out=work)
        np.square(work, out=work)
        np.add(denom, work, out=denom)
        np.sqrt(denom, out=denom)
        np.multiply(denom, c, out=denom)
        np.add(denom, 1.0, out=denom)
        np.divide(dist, denom, out=dist)
        own = query.own[start:stop]
        mine = own >= 0
        dist[np.flatnonzero(mine), own[mine]] = np.inf
        dist.partition(k_eff - 1, axis=1)
        mean_d[start:stop] = dist[:, :k_eff].sum(axis=1, dtype=np.float64) / k_eff
    return 1.0 - np.exp(-factor * mean_d)


def _upsample_grid(
    grid_map: np.ndarray, level: _Patches, base_shape: tuple[int, int], patch_size: int, step: int
) -> np.ndarray:
    """Linearly interpolate a per-patch map to every base pixel, each patch value sitting at its patch centre."""
    mats = []
    for axis in (0, 1):
        n_base, n_level, n_grid = base_shape[axis], level.size[axis], level.grid[axis]
        pixel = (np.arange(n_base) + 0.5) * (n_level / n_base)
        mats.append(_triangle_matrix((pixel - patch_size / 2) / step, n_grid, 1.0))
    return mats[0] @ grid_map @ mats[1].T
