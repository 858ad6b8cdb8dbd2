"""Render relevance and SR maps as PIL images: colour-mapped heatmaps, overlays on the input image, batch grids.

Colour maps come from ``matplotlib.colormaps``; no figure, window or pyplot backend is ever created.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.colors import Colormap
from PIL import Image

from explainer.errors import InputError

__all__ = ["heatmap", "sr_image", "overlay", "grid"]

MODES = ("signed", "positive", "absolute")
DEFAULT_CMAPS = {"signed": "seismic", "positive": "afmhot", "absolute": "afmhot", "sr": "inferno"}


def heatmap(
    relevance: np.ndarray,
    *,
    cmap: str | Colormap | None = None,
    mode: str = "signed",
    vmax: float | None = None,
    channel_axis: int | None = None,
) -> Image.Image:
    """Colour-map a relevance map to an RGB image of the same height and width.

    ``mode``: ``"signed"`` puts 0 at the centre of a diverging colormap on the symmetric scale [-vmax, vmax]
    (default cmap ``"seismic"``); ``"positive"`` clips negatives to 0 and maps [0, vmax] onto a sequential colormap;
    ``"absolute"`` maps |R| on [0, vmax] likewise (default cmap ``"afmhot"`` for both).  ``vmax`` defaults to the
    largest displayed magnitude; values beyond it saturate.  An all-zero map renders as the colormap's centre
    (signed) or bottom (positive, absolute) colour.  ``relevance`` is H x W, or 3-D with ``channel_axis`` naming
    the axis to sum over (e.g. 0 for C x H x W).
    """
    if mode not in MODES:
        raise InputError(f"heatmap: mode must be one of {', '.join(MODES)}; got {mode!r}")
    rel = _as_2d(relevance, channel_axis, "heatmap")
    shown = {"signed": rel, "positive": np.maximum(rel, 0.0), "absolute": np.abs(rel)}[mode]
    scale = _check_vmax(vmax) if vmax is not None else float(np.abs(shown).max())
    if scale == 0.0:
        scale = 1.0  # an all-zero map: every value lands on 0 whatever the scale
    if mode == "signed":
        position = 0.5 + 0.5 * np.clip(shown / scale, -1.0, 1.0)
    else:
        position = np.clip(shown / scale, 0.0, 1.0)
    return _colorize(position, cmap if cmap is not None else DEFAULT_CMAPS[mode])


def sr_image(sr: np.ndarray, *, cmap: str | Colormap = "inferno") -> Image.Image:
    """Colour-map an SR map (H x W, values in [0, 1]) with a sequential colormap; 0 is the bottom colour."""
    arr = _as_2d(sr, None, "sr_image")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-6 or hi > 1.0 + 1e-6:
        raise InputError(f"sr_image: SR map of shape {arr.shape} must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    return _colorize(np.clip(arr, 0.0, 1.0), cmap)


def overlay(
    image: Image.Image | np.ndarray,
    relevance_or_map: np.ndarray | Image.Image,
    *,
    alpha: float = 0.5,
    cmap: str | Colormap | None = None,
    mode: str = "signed",
    vmax: float | None = None,
    channel_axis: int | None = None,
) -> Image.Image:
    """Blend a heatmap over an image: ``(1 - alpha) * image + alpha * heatmap``, at the image's size.

    ``image``: PIL image, or uint8 / float-in-[0, 1] array H x W, H x W x 3 or H x W x 4 (alpha dropped).
    ``relevance_or_map``: a relevance map rendered with :func:`heatmap` (``mode``, ``cmap``, ``vmax``,
    ``channel_axis``), an SR map rendered with :func:`sr_image` when ``mode="sr"``, or an already rendered PIL image.
    The heatmap is resized (bilinear) to the image size when they differ.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise InputError(f"overlay: alpha must be a number in [0, 1], got {alpha!r}")
    base = _as_rgb_image(image)
    if isinstance(relevance_or_map, Image.Image):
        heat = relevance_or_map.convert("RGB")
    elif mode == "sr":
        heat = sr_image(relevance_or_map, cmap=cmap if cmap is not None else DEFAULT_CMAPS["sr"])
    else:
        heat = heatmap(relevance_or_map, cmap=cmap, mode=mode, vmax=vmax, channel_axis=channel_axis)
    if heat.size != base.size:
        heat = heat.resize(base.size, Image.Resampling.BILINEAR)
    return Image.blend(base, heat, float(alpha))


def grid(
    images: Sequence[Image.Image], cols: int = 4, pad: int = 2, background: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    """Tile images row by row into one RGB image, ``cols`` per row, ``pad`` pixels around and between cells.

    Cells are as large as the largest image; smaller images are centred in their cell.
    """
    images = list(images)
    if not images:
        raise InputError("grid: got no images")
    bad = [i for i, img in enumerate(images) if not isinstance(img, Image.Image)]
    if bad:
        raise InputError(f"grid: items {bad} are not PIL images (got {type(images[bad[0]]).__name__})")
    if isinstance(cols, bool) or not isinstance(cols, int) or cols < 1:
        raise InputError(f"grid: cols must be a positive integer, got {cols!r}")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise InputError(f"grid: pad must be a non-negative integer, got {pad!r}")
    cell_w = max(img.width for img in images)
    cell_h = max(img.height for img in images)
    n_cols = min(cols, len(images))
    n_rows = math.ceil(len(images) / n_cols)
    size = (n_cols * cell_w + (n_cols + 1) * pad, n_rows * cell_h + (n_rows + 1) * pad)
    canvas = Image.new("RGB", size, tuple(background))
    for index, img in enumerate(images):
        row, col = divmod(index, n_cols)
        left = pad + col * (cell_w + pad) + (cell_w - img.width) // 2
        top = pad + row * (cell_h + pad) + (cell_h - img.height) // 2
        canvas.paste(img.convert("RGB"), (left, top))
    return canvas


def _as_2d(values: np.ndarray, channel_axis: int | None, where: str) -> np.ndarray:
    """Validate a real, finite map; sum 3-D input over ``channel_axis``; return float64 H x W."""
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(f"{where}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.ndim == 3:
        if channel_axis is None:
            raise InputError(f"{where}: got a 3-D map of shape {arr.shape}; pass channel_axis to sum over channels")
        if not -3 <= channel_axis <= 2:
            raise InputError(f"{where}: channel_axis {channel_axis} is out of range for shape {arr.shape}")
        arr = arr.sum(axis=channel_axis, dtype=np.float64)
    elif arr.ndim == 2:
        if channel_axis is not None:
            raise InputError(f"{where}: channel_axis={channel_axis} given but the map is 2-D, shape {arr.shape}")
    else:
        raise InputError(f"{where}: expected an H x W map (or 3-D with channel_axis), got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{where}: got an empty map of shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{where}: map of shape {arr.shape} has non-finite values (NaN or inf)")
    return arr


def _check_vmax(vmax: float) -> float:
    if isinstance(vmax, bool) or not isinstance(vmax, (int, float, np.number)):
        raise InputError(f"heatmap: vmax must be a positive number, got {vmax!r}")
    if not (math.isfinite(vmax) and vmax > 0):
        raise InputError(f"heatmap: vmax must be finite and > 0, got {vmax!r}")
    return float(vmax)


def _get_cmap(cmap: str | Colormap) -> Colormap:
    if isinstance(cmap, Colormap):
        return cmap
    try:
        return matplotlib.colormaps[cmap]
    except (KeyError, TypeError):
        raise InputError(f"unknown matplotlib colormap {cmap!r}") from None


def _colorize(position: np.ndarray, cmap: str | Colormap) -> Image.Image:
    """Map positions in [0, 1] through a colormap to an RGB image."""
    rgba = _get_cmap(cmap)(position, bytes=True)
    return Image.fromarray(np.ascontiguousarray(rgba[..., :3]))


def _as_rgb_image(image: Image.Image | np.ndarray) -> Image.Image:
    """Accept a PIL image or an H x W / H x W x {1, 3, 4} array (uint8, or float in [0, 1]); return RGB."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        arr = arr[..., :3] if arr.shape[2] != 1 else arr[..., 0]
    elif arr.ndim != 2:
        raise InputError(f"overlay: image must be H x W or H x W x 3 (or 4), got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"overlay: got an empty image of shape {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise InputError(f"overlay: image must be uint8 or float in [0, 1], got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
            raise InputError(f"overlay: float image of shape {arr.shape} must hold finite values in [0, 1]")
        arr = np.rint(arr * 255.0).astype(np.uint8)
    rgb = np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr
    return Image.fromarray(np.ascontiguousarray(rgb))
