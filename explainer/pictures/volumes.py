"""A picture of a volume's relevance ([C, D, H, W] inputs: CT, MRI, video clips): a montage of axial slices of the
input (grey) beside the same slices of the relevance summed over channels (red positive, blue negative, on one colour
scale shared by every slice, with its colour bar).

Every k-th slice is shown, k chosen so that at most ``MAX_TILES`` tiles are drawn; each input tile is labelled with
its slice index (the relevance tiles, laid out alike, are left clear). Built from ``heatmaps``' helpers; no figure
or pyplot backend is created.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from explainer.errors import InputError
from explainer.pictures.heatmaps import DEFAULT_CMAPS, colorbar, enlarge, grid, heatmap, picture_scale

#: the most slices a montage shows
MAX_TILES = 16
#: the least length, in pixels, of a tile's longer side (tiles are enlarged by a whole factor up to it)
TILE_SIZE = 64
#: pixels around and between tiles
PAD = 2
#: the height of the title row and of the captions row above the montages
_TITLE_HEIGHT = 22
#: the colour between relevance tiles (white is a relevance of 0)
_BORDER = (200, 200, 200)


def volume_slices(depth: int, max_tiles: int = MAX_TILES) -> list[int]:
    """The slice indices shown for a volume of ``depth`` slices: every k-th from the first, k the least step that
    keeps them at most ``max_tiles``."""
    if depth < 1 or max_tiles < 1:
        raise InputError(f"a volume montage needs at least one slice and one tile, got depth {depth}, "
                         f"{max_tiles} tiles")
    return list(range(0, depth, math.ceil(depth / max_tiles)))


def montage_columns(count: int) -> int:
    """The number of tile columns for ``count`` tiles: the least that makes the montage no taller than wide."""
    return math.ceil(math.sqrt(count))


@dataclass
class VolumePicture:
    """A volume picture, the slices it shows, and where each slice's input and relevance tiles lie in it (left, top,
    right, bottom in pixels, one per slice)."""

    image: Image.Image
    slices: list[int]
    input_boxes: list[tuple[int, int, int, int]]
    relevance_boxes: list[tuple[int, int, int, int]]


def volume_picture(volume: np.ndarray, relevance: np.ndarray, *, title: str = "",
                   max_tiles: int = MAX_TILES, tile_size: int = TILE_SIZE) -> VolumePicture:
    """One sample's input ``volume`` ([C, D, H, W]) and ``relevance`` (same shape) as two montages side by side: the
    chosen axial slices (``volume_slices``) of the input, channels averaged and scaled to the volume's range, and of
    the relevance summed over channels on one signed colour scale, [-max|R|, max|R|] over the whole volume, shown by
    a colour bar under it. Tiles are enlarged by a whole factor (``picture_scale``) until their longer side is at
    least ``tile_size``; ``title`` goes on top."""
    volume, relevance = np.asarray(volume, np.float64), np.asarray(relevance, np.float64)
    if volume.ndim != 4 or volume.shape != relevance.shape:
        raise InputError(f"a volume picture needs an input and relevance of one shape [C, D, H, W], got "
                         f"{list(volume.shape)} and {list(relevance.shape)}")
    if not (np.all(np.isfinite(volume)) and np.all(np.isfinite(relevance))):
        raise InputError("a volume picture needs finite input and relevance values")
    grey, summed = volume.mean(axis=0), relevance.sum(axis=0)
    low, high = float(grey.min()), float(grey.max())
    grey = (grey - low) / (high - low) if high > low else np.zeros_like(grey)
    slices = volume_slices(summed.shape[0], max_tiles)
    vmax = float(np.abs(summed).max()) or 1.0  # an all-zero map: every value lands on 0 whatever the scale
    factor = picture_scale(*summed.shape[1:], minimum=tile_size)
    inputs = [_labelled(enlarge(Image.fromarray(np.rint(grey[d] * 255).astype(np.uint8)).convert("RGB"), factor), d)
              for d in slices]
    maps = [enlarge(heatmap(summed[d], vmax=vmax), factor) for d in slices]
    cols = montage_columns(len(slices))
    left, montage = grid(inputs, cols=cols, pad=PAD), grid(maps, cols=cols, pad=PAD, background=_BORDER)
    right = colorbar(montage, low=-vmax, high=vmax, cmap=DEFAULT_CMAPS["signed"],
                     label="relevance (sum over channels)")
    top, gap = (2 if title else 1) * _TITLE_HEIGHT, 4 * PAD
    canvas = Image.new("RGB", (left.width + gap + right.width, top + max(left.height, right.height)),
                       (255, 255, 255))
    canvas.paste(left, (0, top))
    canvas.paste(right, (left.width + gap, top))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size=14)
    step = slices[1] - slices[0] if len(slices) > 1 else 1
    shown = f"{len(slices)} of {summed.shape[0]} slices" + (f", one in {step}" if step > 1 else "")
    for text, x in ((f"input ({shown})", left.width // 2), ("relevance", left.width + gap + right.width // 2)):
        draw.text((x, top - _TITLE_HEIGHT + 3), text, fill=(0, 0, 0), font=font, anchor="ma")
    if title:
        draw.text((canvas.width // 2, 3), title, fill=(0, 0, 0), font=font, anchor="ma")
    tile_w, tile_h = maps[0].size
    shift = left.width + gap + (right.width - montage.width) // 2  # colorbar centres a narrow montage

    def boxes(x0: int) -> list[tuple[int, int, int, int]]:
        corners = [(x0 + PAD + c * (tile_w + PAD), top + PAD + r * (tile_h + PAD))
                   for r, c in (divmod(i, cols) for i in range(len(slices)))]
        return [(x, y, x + tile_w, y + tile_h) for x, y in corners]

    return VolumePicture(canvas, slices, boxes(0), boxes(shift))


def plot_volume(volume: np.ndarray, relevance: np.ndarray, path: str | Path, *, title: str = "") -> Path:
    """``volume_picture`` written as a PNG to ``path`` (returned)."""
    out = Path(path)
    volume_picture(volume, relevance, title=title).image.save(out, format="PNG")
    return out


def _labelled(tile: Image.Image, index: int) -> Image.Image:
    """``tile`` with its slice index in its top-left corner, on a small white box so that it reads on any grey."""
    draw = ImageDraw.Draw(tile)
    font = ImageFont.load_default(size=max(8, min(14, tile.height // 6)))
    text = str(index)
    box = draw.textbbox((1, 1), text, font=font)
    draw.rectangle(box, fill=(255, 255, 255))
    draw.text((1, 1), text, fill=(0, 0, 0), font=font)
    return tile
