"""Seeds for dense outputs: which values of an output map [K, H, W] (segmentation logits, a saliency or heat map) an
explanation starts from, as a seed array [N, K, H, W] for ``Explainer.explain(x, seed=...)``.

What is explained is the SUM of the chosen output values: one channel (``channel``) over a box (``region``), over a
mask (``mask``) or over the whole map (neither). Without a channel every pixel contributes its own arg-max class:
the sum of the winning logits over the chosen pixels, i.e. the net's predicted label map (a single-channel map: that
channel). The seed is the indicator of the chosen values (1 there, 0 elsewhere): relevance of the sum under a
one-hot seed, and, times the logits (``dense_seed`` with ``seed="logit"``), the logit seed whose LRP relevance sums
to the chosen logits' sum where nothing is absorbed, as a class's logit seed does.

Coordinates are output-map pixels, x along the width and y along the height; a region (x0, y0, x1, y1) is
half-open, as Python slices and PIL's boxes are: columns x0..x1-1 and rows y0..y1-1, so (0, 0, W, H) is the whole
map. Every bad value is an ``InputError`` naming it."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from explainer.errors import InputError

#: a box in output-map pixels: (x0, y0, x1, y1), half-open
Region = tuple[int, int, int, int]

__all__ = ["Region", "argmax_seed", "check_mask", "dense_seed", "describe", "is_map", "map_shape", "pixels",
           "region_mask", "region_seed"]


def is_map(output_shape: Sequence[int]) -> bool:
    """Whether an output of per-sample shape ``output_shape`` is a map [K, H, W] that regions and masks apply to (a
    [classes, 1, 1] output, as convolutional heads without a final flatten have, is a score vector)."""
    shape = tuple(output_shape)
    return len(shape) == 3 and shape[1] * shape[2] > 1


def map_shape(output_shape: Sequence[int]) -> tuple[int, int, int]:
    """(K, H, W) of an output map; an InputError for any other output (a class-score vector, a regressor)."""
    shape = tuple(int(d) for d in output_shape)
    if not is_map(shape):
        raise InputError(f"a region, mask or channel of an output map needs an output of shape [N, K, H, W]; the "
                         f"explained output is [N, {', '.join(map(str, shape))}]")
    return shape  # type: ignore[return-value]


def _whole(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def region_mask(output_shape: Sequence[int], region: Any) -> np.ndarray:
    """The [H, W] boolean mask of the box ``region`` = (x0, y0, x1, y1) (half-open, output-map pixels)."""
    _, height, width = map_shape(output_shape)
    try:
        box = tuple(region)
    except TypeError:
        box = ()
    if len(box) != 4 or not all(_whole(v) for v in box):
        raise InputError(f"region must be 4 integers (x0, y0, x1, y1) in output-map pixels, got {region!r}")
    x0, y0, x1, y1 = (int(v) for v in box)
    shown = f"region (x0, y0, x1, y1) = ({x0}, {y0}, {x1}, {y1})"
    if x0 >= x1 or y0 >= y1:
        raise InputError(f"{shown} is empty or reversed: it needs x0 < x1 and y0 < y1 (half-open: columns x0..x1-1, "
                         "rows y0..y1-1)")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise InputError(f"{shown} is outside the output map of {width}×{height} (width × height): it needs "
                         f"0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}")
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def check_mask(output_shape: Sequence[int], mask: Any) -> np.ndarray:
    """``mask`` (booleans, or numbers that are all 0 or 1) as an [H, W] boolean mask of the output map."""
    _, height, width = map_shape(output_shape)
    try:
        values = np.asarray(mask)
    except (ValueError, TypeError):
        values = np.asarray(None)
    if values.dtype.kind not in "biuf":
        raise InputError(f"mask must be an array of booleans or of 0 and 1, got dtype {values.dtype}")
    if values.shape != (height, width):
        raise InputError(f"mask of shape {list(values.shape)} does not fit the output map: expected [{height}, "
                         f"{width}] (height, width)")
    if values.dtype.kind != "b":
        stray = values[(values != 0) & (values != 1)]
        if stray.size:
            raise InputError(f"mask holds values other than 0 and 1 (e.g. {stray.reshape(-1)[0]!r}); give a boolean "
                             "or 0/1 mask")
    chosen = values.astype(bool)
    if not chosen.any():
        raise InputError("mask selects no pixel of the output map (it is all zero)")
    return chosen


def pixels(output_shape: Sequence[int], region: Any = None, mask: Any = None) -> np.ndarray:
    """The chosen [H, W] pixels: the box ``region``, the ``mask``, or (neither) the whole map."""
    if region is not None and mask is not None:
        raise InputError("pass region or mask, not both")
    if region is not None:
        return region_mask(output_shape, region)
    if mask is not None:
        return check_mask(output_shape, mask)
    _, height, width = map_shape(output_shape)
    return np.ones((height, width), bool)


def _channels(output_shape: Sequence[int], channel: Any, n: int) -> np.ndarray:
    """``channel`` (one for every sample, or one per sample) as n checked channel indices."""
    classes = map_shape(output_shape)[0]
    values = np.asarray(channel)
    if values.dtype.kind not in "iu" or values.ndim > 1:
        raise InputError(f"the channel (target) of an output map must be an integer or one per sample, got "
                         f"{channel!r}")
    if values.size not in (1, n):
        raise InputError(f"target has {values.size} channels for a batch of {n} samples")
    bad = values[(values < 0) | (values >= classes)]
    if bad.size:
        raise InputError(f"channel {int(bad.reshape(-1)[0])} is out of range: the output map has {classes} "
                         f"channel(s) (0..{classes - 1})")
    return np.broadcast_to(values.reshape(-1), (n,)).astype(np.int64)


def region_seed(output_shape: Sequence[int], channel: Any, region: Any = None, mask: Any = None,
                n: int = 1) -> np.ndarray:
    """Indicator seed [n, K, H, W] (float32) of channel ``channel`` (one, or one per sample) over the box
    ``region``, the ``mask`` or (neither) the whole map."""
    chosen = pixels(output_shape, region, mask)
    channels = _channels(output_shape, channel, n)
    seed = np.zeros((n, *map_shape(output_shape)), np.float32)
    seed[np.arange(n), channels] = chosen
    return seed


def argmax_seed(output_shape: Sequence[int], logits: Any, region: Any = None, mask: Any = None) -> np.ndarray:
    """Indicator seed [N, K, H, W] (float32) of each chosen pixel's arg-max channel in ``logits`` ([N, K·H·W] or
    [N, K, H, W]): the predicted label map over the box, the mask or the whole map."""
    shape = map_shape(output_shape)
    chosen = pixels(output_shape, region, mask)
    scores = np.asarray(logits).reshape(-1, *shape)
    winners = np.argmax(scores, axis=1)
    return ((np.arange(shape[0])[None, :, None, None] == winners[:, None]) & chosen).astype(np.float32)


def dense_seed(output_shape: Sequence[int], logits: Any, channel: Any = None, region: Any = None, mask: Any = None,
               seed: str = "logit") -> np.ndarray:
    """The seed [N, K, H, W] that explains the sum of the chosen output values (see the module's docstring): channel
    ``channel`` (None: each pixel's arg-max) over ``region``, ``mask`` or the whole map, times ``logits`` for a
    'logit' seed, the indicator itself for 'one-hot'."""
    if seed not in ("logit", "one-hot"):
        raise InputError(f"seed must be 'logit' or 'one-hot', got {seed!r}")
    shape = map_shape(output_shape)
    scores = np.asarray(logits, np.float32).reshape(-1, *shape)
    if channel is None:
        indicator = argmax_seed(shape, scores, region, mask)
    else:
        indicator = region_seed(shape, channel, region, mask, n=len(scores))
    return indicator * scores if seed == "logit" else indicator


def describe(output_shape: Sequence[int], channel: int | None = None, region: Any = None, mask: Any = None,
             mask_name: str = "the mask") -> str:
    """What ``dense_seed`` explains, in words: the channel and the pixels (the box as half-open ranges)."""
    _, height, width = map_shape(output_shape)
    chosen = pixels(output_shape, region, mask)
    what = "each pixel's arg-max channel (the predicted label map)" if channel is None else f"channel {channel}"
    if region is not None:
        x0, y0, x1, y1 = (int(v) for v in region)
        where = f"box x {x0}..{x1 - 1}, y {y0}..{y1 - 1} (x0 y0 x1 y1 = {x0} {y0} {x1} {y1}, half-open)"
    elif mask is not None:
        where = mask_name
    else:
        where = "the whole map"
    return f"sum of {what} over {where}: {int(chosen.sum())} of the {width}×{height} output map's pixels"
