"""Render relevance and SR maps as PIL images: colour-mapped heatmaps, overlays on the input image, batch grids,
pictures enlarged to a readable size and colour bars with the value scale.

Colour maps come from ``matplotlib.colormaps``; no figure, window or pyplot backend is ever created.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.colors import Colormap
from PIL import Image, ImageDraw, ImageFont

from explainer.errors import InputError

__all__ = ["heatmap", "heatmap_range", "sr_image", "overlay", "grid", "picture_scale", "enlarge", "colorbar",
           "explanation_pictures"]

MODES = ("signed", "positive", "absolute")
DEFAULT_CMAPS = {"signed": "seismic", "positive": "afmhot", "absolute": "afmhot", "sr": "inferno"}
PICTURE_SIZE = 256
"""The default least length, in pixels, of a written picture's longer side."""


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
    shown, scale = _shown(relevance, mode, vmax, channel_axis, "heatmap")
    if mode == "signed":
        position = 0.5 + 0.5 * np.clip(shown / scale, -1.0, 1.0)
    else:
        position = np.clip(shown / scale, 0.0, 1.0)
    return _colorize(position, cmap if cmap is not None else DEFAULT_CMAPS[mode])


def heatmap_range(
    relevance: np.ndarray, *, mode: str = "signed", vmax: float | None = None, channel_axis: int | None = None
) -> tuple[float, float]:
    """The values at the two ends of :func:`heatmap`'s colour scale for the same arguments: ``(-vmax, vmax)`` for
    ``signed``, ``(0, vmax)`` otherwise (``vmax`` 1 for an all-zero map); what :func:`colorbar` labels."""
    scale = _shown(relevance, mode, vmax, channel_axis, "heatmap_range")[1]
    return (-scale if mode == "signed" else 0.0), scale


def _shown(relevance: np.ndarray, mode: str, vmax: float | None, channel_axis: int | None,
           where: str) -> tuple[np.ndarray, float]:
    """The displayed values of a relevance map in ``mode`` and the magnitude its colour scale ends at."""
    if mode not in MODES:
        raise InputError(f"{where}: mode must be one of {', '.join(MODES)}; got {mode!r}")
    rel = _as_2d(relevance, channel_axis, where)
    shown = {"signed": rel, "positive": np.maximum(rel, 0.0), "absolute": np.abs(rel)}[mode]
    scale = _check_vmax(vmax) if vmax is not None else float(np.abs(shown).max())
    return shown, scale if scale > 0.0 else 1.0  # an all-zero map: every value lands on 0 whatever the scale


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


def picture_scale(height: int, width: int, minimum: int = PICTURE_SIZE) -> int:
    """The whole factor that enlarges a ``height`` x ``width`` picture until its longer side is at least ``minimum``
    pixels; 1 (its own size) when it already is or when ``minimum`` is 0. Pictures are never shrunk, and a whole
    factor keeps every input pixel a square block of the same size."""
    for what, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"picture_scale: {what} must be a positive integer, got {value!r}")
    if isinstance(minimum, bool) or not isinstance(minimum, (int, np.integer)) or minimum < 0:
        raise InputError(f"picture size must be a non-negative integer (0: the model's input size), got {minimum!r}")
    return max(1, -(-int(minimum) // int(max(height, width))))


def enlarge(picture: Image.Image, factor: int) -> Image.Image:
    """``picture`` with every pixel a ``factor`` x ``factor`` block (nearest neighbour: no colour is invented)."""
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise InputError(f"enlarge: factor must be a positive integer, got {factor!r}")
    if factor == 1:
        return picture.copy()
    return picture.resize((picture.width * factor, picture.height * factor), Image.Resampling.NEAREST)


_TICK_TEMPLATE = "-8.88e-88"  # the widest tick label '.3g' writes: panels are as wide whatever their values


def colorbar(
    picture: Image.Image,
    *,
    low: float,
    high: float,
    cmap: str | Colormap,
    label: str,
    middle: float | None = None,
) -> Image.Image:
    """``picture`` with a colour bar appended below it: the colormap from ``low`` (left) to ``high`` (right), tick
    labels at both ends and at ``middle`` (default: halfway; 0 on a signed scale), and ``label`` under them.

    The panel's height and least width depend only on the picture's width, so pictures of one size get bars of
    one size and still line up. A picture narrower than the tick labels is centred on a wider white canvas.
    """
    if not isinstance(picture, Image.Image):
        raise InputError(f"colorbar: expected a PIL image, got {type(picture).__name__}")
    ends = [v for v in (low, high, middle) if v is not None]
    if not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)
               for v in ends) or not low < high:
        raise InputError(f"colorbar: low and high must be finite numbers with low < high, got {low!r}, {high!r}")
    middle = (low + high) / 2.0 if middle is None else float(middle)
    font_px = max(10, min(24, picture.width // 20))
    font = ImageFont.load_default(size=font_px)
    pad = max(2, font_px // 3)
    text_w = math.ceil(font.getlength(_TICK_TEMPLATE))
    line_h = font_px + pad
    width = max(picture.width, 3 * text_w + 4 * pad)
    canvas = Image.new("RGB", (width, picture.height + 3 * pad + font_px + 2 * line_h), (255, 255, 255))
    canvas.paste(picture.convert("RGB"), ((width - picture.width) // 2, 0))
    bar_top, bar_w = picture.height + pad, width - 2 * pad
    positions = np.broadcast_to(np.linspace(0.0, 1.0, bar_w), (font_px, bar_w))
    canvas.paste(_colorize(positions, cmap), (pad, bar_top))
    draw = ImageDraw.Draw(canvas)
    ticks_y = bar_top + font_px + pad
    ink = (0, 0, 0)
    for value, x, anchor in ((low, pad, "la"), (high, width - pad, "ra"),
                             (middle, pad + round((middle - low) / (high - low) * (bar_w - 1)), "ma")):
        draw.text((x, ticks_y), f"{value:.3g}", fill=ink, font=font, anchor=anchor)
    draw.text((width // 2, ticks_y + line_h), label, fill=ink, font=font, anchor="ma")
    return canvas


def explanation_pictures(
    image: np.ndarray | Image.Image,
    relevance: np.ndarray,
    sr: np.ndarray | None = None,
    *,
    minimum: int = PICTURE_SIZE,
    with_colorbar: bool = False,
    alpha: float = 0.5,
) -> dict[str, Image.Image]:
    """The pictures of one explanation, all of one size so that they line up: ``heatmap`` and ``overlay`` of the
    H x W ``relevance`` map (signed scale), and with an SR map ``sr`` and ``sr_overlay``.

    They are enlarged by :func:`picture_scale` (``minimum`` 0: the model's input size) with nearest-neighbour
    pixels, the overlays blending the enlarged model-sized ``image`` with the enlarged map, and with
    ``with_colorbar`` each gets a :func:`colorbar` (relevance in [-max|R|, max|R|], SR in [0, 1])."""
    base = _as_rgb_image(image)
    rel = _as_2d(relevance, None, "explanation_pictures")
    if rel.shape != (base.height, base.width):
        raise InputError(f"explanation_pictures: relevance map of shape {rel.shape} for an image of "
                         f"{base.height}x{base.width}")
    factor = picture_scale(base.height, base.width, minimum)
    base = enlarge(base, factor)
    low, high = heatmap_range(rel)
    maps = {"heatmap": (heatmap(rel), low, high, DEFAULT_CMAPS["signed"], "relevance")}
    if sr is not None:
        maps["sr"] = (sr_image(sr), 0.0, 1.0, DEFAULT_CMAPS["sr"], "SR")
    pictures = {}
    for name, (picture, lo, hi, cmap, label) in maps.items():
        big = enlarge(picture, factor)
        if big.size != base.size:
            raise InputError(f"explanation_pictures: {name} map of {picture.height}x{picture.width} for an image of "
                             f"{base.height // factor}x{base.width // factor}")
        mixed = overlay(base, big, alpha=alpha)
        if with_colorbar:
            big, mixed = (colorbar(p, low=lo, high=hi, cmap=cmap, label=label) for p in (big, mixed))
        pictures[name] = big
        pictures["overlay" if name == "heatmap" else "sr_overlay"] = mixed
    return pictures


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
