"""The explained region of a dense output drawn on an explanation's pictures: the box or the mask outline (the
chosen pixels of the output map, ``explainer.seeds``) on the input picture, its overlay and its heatmap.

The output map's pixels are brought to the input's (nearest neighbour: a stride-2 head's box covers twice the input
pixels along each axis), then to the enlarged picture's; the outline is the chosen pixels' border, drawn inside them
in ``REGION_COLOUR``."""
from __future__ import annotations

import numpy as np
from PIL import Image

from explainer.errors import InputError
from explainer.pictures.heatmaps import DEFAULT_CMAPS, PICTURE_SIZE, colorbar, explanation_pictures, heatmap_range

#: the outline's colour: pure green, apart from the blue-white-red heatmap scale and most photographs' colours
REGION_COLOUR = (0, 255, 0)

__all__ = ["REGION_COLOUR", "border", "draw_outline", "region_pictures", "to_input"]


def to_input(chosen: np.ndarray, height: int, width: int) -> np.ndarray:
    """The [H, W] output-map mask ``chosen`` at the input's ``height`` × ``width`` (nearest neighbour: each input
    pixel takes the output pixel whose cell it lies in)."""
    chosen = np.asarray(chosen, bool)
    rows = np.arange(height) * chosen.shape[0] // height
    cols = np.arange(width) * chosen.shape[1] // width
    return chosen[rows[:, None], cols[None, :]]


def border(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """The pixels of ``mask`` within ``thickness`` steps (up, down, left, right) of a pixel outside it or of the
    picture's edge: the outline drawn inside the chosen pixels."""
    inner = np.asarray(mask, bool)
    for _ in range(thickness):
        padded = np.pad(inner, 1, constant_values=False)
        inner = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return np.asarray(mask, bool) & ~inner


def draw_outline(picture: Image.Image, mask: np.ndarray, colour: tuple[int, int, int] = REGION_COLOUR) -> Image.Image:
    """``picture`` (a whole multiple of ``mask``'s size) with the border of ``mask`` painted in ``colour``, about
    one pixel per 128 of the picture's shorter side thick."""
    mask = np.asarray(mask, bool)
    factor = picture.height // mask.shape[0]
    if factor < 1 or picture.size != (mask.shape[1] * factor, mask.shape[0] * factor):
        raise InputError(f"draw_outline: a {picture.width}×{picture.height} picture is no whole multiple of the "
                         f"{mask.shape[1]}×{mask.shape[0]} mask")
    big = np.kron(mask, np.ones((factor, factor), bool))
    pixels = np.array(picture.convert("RGB"))
    pixels[border(big, max(1, min(picture.size) // 128))] = colour
    return Image.fromarray(pixels)


def region_pictures(image: np.ndarray | Image.Image, relevance: np.ndarray, chosen: np.ndarray,
                    sr: np.ndarray | None = None, *, minimum: int = PICTURE_SIZE,
                    with_colorbar: bool = False) -> dict[str, Image.Image]:
    """``explanation_pictures`` (heatmap and overlay, with an SR map ``sr`` and its overlay) of the H × W
    ``relevance`` map with the output-map pixels ``chosen`` outlined on each (scaled to the input where the map has
    another size), colour bars added last."""
    pictures = explanation_pictures(image, relevance, sr, minimum=minimum)
    rel = np.asarray(relevance)
    outline = to_input(chosen, *rel.shape)
    low, high = heatmap_range(rel)
    scales = {"heatmap": (low, high, DEFAULT_CMAPS["signed"], "relevance"), "sr": (0.0, 1.0, DEFAULT_CMAPS["sr"], "SR")}
    drawn = {}
    for name, picture in pictures.items():
        picture = draw_outline(picture, outline)
        if with_colorbar:
            lo, hi, cmap, label = scales["sr" if name.startswith("sr") else "heatmap"]
            picture = colorbar(picture, low=lo, high=hi, cmap=cmap, label=label)
        drawn[name] = picture
    return drawn
