"""Salient Relevance (SR) maps: context-aware saliency (Goferman et al.) run on an LRP relevance map.

Li, Tian, Mueller, Chen (2017), "Beyond saliency", turn a pixel-wise LRP heatmap into attention *areas* by running
Goferman, Zelnik-Manor and Tal's context-aware saliency detector on it.  This module implements that detector with
NumPy/SciPy exactly as specified in ``docs/sr-map.md`` (no approximate nearest-neighbour search is used: the K most
similar patches are found by an exact, chunked, vectorised search).
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

__all__ = ["sr_map", "paper_relevance_image"]

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
    """Patches of one pyramid level: flattened values, centres normalised by the level's longer side, grid shape."""

    values: np.ndarray  # (n, channels * patch_size**2) float32
    rows: np.ndarray  # (n,) float32 centre row / max(h, w)
    cols: np.ndarray  # (n,) float32 centre column / max(h, w)
    grid: tuple[int, int]  # (ny, nx), n == ny * nx
    size: tuple[int, int]  # (h, w) of the level image


def sr_map(
    relevance: np.ndarray,
    *,
    c: float = 3.0,
    k: int = 64,
    scales: Sequence[float] = (1.0, 0.8, 0.5, 0.3),
    patch_size: int = 7,
    foci_threshold: float = 0.8,
    base_size: int = 250,
    stride: int | None = None,
) -> np.ndarray:
    """Salient Relevance map of a relevance map: float32 H x W in [0, 1], deterministic.

    ``relevance`` is either H x W (one relevance channel, e.g. summed over colour channels; min-max scaled) or
    H x W x 3 (the paper's RGB relevance image, see :func:`paper_relevance_image`; uint8 is read as 0..255 sRGB, any
    other dtype is min-max scaled over the whole array, then converted to CIE L*a*b* and min-max scaled per channel).

    Goferman's context-aware saliency, on an image whose longer side is resized to ``base_size``:
    ``patch_size`` x ``patch_size`` patches every ``stride`` pixels (default ``ceil(patch_size / 2)``, i.e. 50 %
    overlap); dissimilarity ``d = d_value / (1 + c * d_position)``; single-scale saliency
    ``S = 1 - exp(-mean of the k smallest d)`` over candidates from scales r, r/2 and r/4 (the patch itself
    excluded); the per-scale maps over ``scales`` are min-max normalised, upsampled and averaged to S_bar; pixels with
    S_bar > ``foci_threshold`` * max(S_bar) are the foci, and ``SR = S_bar * (1 - d_foci)`` with d_foci the Euclidean
    distance to the nearest focus normalised to [0, 1].  A constant map yields all zeros.

    Details the spec leaves open: resizing is bilinear with half-pixel centres (anti-aliased when shrinking); each
    pyramid level is at least one patch high and wide; patch centres are divided by their own level's longer side, so
    positions compare across levels; per-patch saliency is interpolated to pixels from the patch centres.  The
    nearest-neighbour search is exact (blocked matrix products, float32 arithmetic); BLAS is held to one thread
    during the call when threadpoolctl is installed.
    """
    image = _check_relevance(relevance)
    _check_params(c, k, scales, patch_size, foci_threshold, base_size, stride)
    step = stride if stride is not None else math.ceil(patch_size / 2)
    levels = tuple(float(s) for s in scales)
    with _single_thread_blas():
        return _salient_relevance(image, float(c), int(k), levels, int(patch_size), step, foci_threshold, base_size)


def _salient_relevance(
    image: np.ndarray,
    c: float,
    k: int,
    scales: tuple[float, ...],
    patch_size: int,
    step: int,
    foci_threshold: float,
    base_size: int,
) -> np.ndarray:
    """The algorithm of :func:`sr_map` on validated input."""
    height, width = image.shape[:2]
    base = _prepare(image, base_size)
    if np.ptp(base) == 0.0:
        return np.zeros((height, width), dtype=np.float32)

    levels: dict[float, _Patches] = {}

    def level(scale: float) -> _Patches:
        if scale not in levels:
            levels[scale] = _extract_patches(base, scale, patch_size, step)
        return levels[scale]

    base_h, base_w = base.shape[:2]
    mean_saliency = np.zeros((base_h, base_w), dtype=np.float64)
    for r in scales:
        query = level(r)
        candidates = [query, level(r / 2), level(r / 4)]
        saliency = _single_scale_saliency(query, candidates, k=k, c=c).reshape(query.grid)
        mean_saliency += _upsample_grid(_minmax(saliency), query, (base_h, base_w), patch_size, step)
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


def paper_relevance_image(relevance_chw: np.ndarray, *, layout: str = "chw") -> np.ndarray:
    """The heatmap Li et al. feed to the saliency step: |R| per colour channel, min-max scaled over the whole
    tensor to 0..255, returned as an H x W x 3 uint8 RGB image.

    ``layout`` says how the input is laid out: ``"chw"`` (3 x H x W, the network's layout) or ``"hwc"`` (H x W x 3).
    A constant |R| gives an all-zero image.
    """
    arr = np.asarray(relevance_chw)
    if layout not in ("chw", "hwc"):
        raise InputError(f"paper_relevance_image: layout must be 'chw' or 'hwc', got {layout!r}")
    channel_axis = 0 if layout == "chw" else 2
    if arr.ndim != 3 or arr.shape[channel_axis] != 3:
        expected = "3 x H x W" if layout == "chw" else "H x W x 3"
        raise InputError(f"paper_relevance_image: expected {expected} relevance (layout={layout!r}), got {arr.shape}")
    _check_real_finite(arr, "paper_relevance_image")
    magnitude = np.abs(arr.astype(np.float64))
    if layout == "chw":
        magnitude = np.moveaxis(magnitude, 0, -1)
    lo, hi = magnitude.min(), magnitude.max()
    if hi == lo:
        return np.zeros(magnitude.shape, dtype=np.uint8)
    return np.rint((magnitude - lo) * (255.0 / (hi - lo))).astype(np.uint8)


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
    patch_size: int,
    foci_threshold: float,
    base_size: int,
    stride: int | None,
) -> None:
    if not (_is_real(c) and math.isfinite(c) and c >= 0):
        raise InputError(f"sr_map: c must be a finite number >= 0, got {c!r}")
    for name, value in (("k", k), ("patch_size", patch_size), ("base_size", base_size)):
        if not is_positive_int(value):
            raise InputError(f"sr_map: {name} must be a positive integer, got {value!r}")
    if stride is not None and not is_positive_int(stride):
        raise InputError(f"sr_map: stride must be a positive integer or None, got {stride!r}")
    if base_size < patch_size:
        raise InputError(f"sr_map: base_size ({base_size}) must be at least patch_size ({patch_size})")
    listed = tuple(scales) if np.iterable(scales) else ()
    if len(listed) == 0 or not all(_is_real(s) and 0 < s <= 1 for s in listed):
        raise InputError(f"sr_map: scales must be a non-empty sequence of numbers in (0, 1], got {scales!r}")
    if not (_is_real(foci_threshold) and 0 <= foci_threshold < 1):
        raise InputError(f"sr_map: foci_threshold must be in [0, 1), got {foci_threshold!r}")


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
    longer = float(max(size))
    rows = (np.arange(ny) * step + patch_size / 2) / longer
    cols = (np.arange(nx) * step + patch_size / 2) / longer
    grid_rows, grid_cols = np.meshgrid(rows, cols, indexing="ij")
    return _Patches(
        values=values,
        rows=grid_rows.ravel().astype(np.float32),
        cols=grid_cols.ravel().astype(np.float32),
        grid=(ny, nx),
        size=size,
    )


def _single_scale_saliency(query: _Patches, candidates: list[_Patches], *, k: int, c: float) -> np.ndarray:
    """S_i = 1 - exp(-mean of the k smallest d(p_i, q)) for every query patch; exact, in blocks of query rows.

    ``candidates[0]`` must be ``query`` itself: its diagonal (a patch against itself) is excluded.
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
        own = np.arange(m)
        dist[own, start + own] = np.inf
        dist.partition(k_eff - 1, axis=1)
        mean_d[start:stop] = dist[:, :k_eff].sum(axis=1, dtype=np.float64) / k_eff
    return 1.0 - np.exp(-mean_d)


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
