"""Input bounds for the zB rule (scalar, per channel, per sample or per batch), brought to the input's shape."""
from __future__ import annotations

import numpy as np

from explainer.errors import InputError


def expand_bounds(value: np.ndarray | float, shape: tuple[int, ...], layout: str) -> np.ndarray:
    """Bounds -> an array of ``shape`` (one sample: batch axis 1). Accepted: a scalar, one value per channel, an array
    that broadcasts to one sample, or a batch-shaped array (N, ...) as Zennit users pass them, whose samples must be
    identical: the relevance graph's bounds are constants shared by every sample it explains."""
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 1 and arr.size > 1:
        channel_axis = len(shape) - 1 if layout == "NHWC" else 1
        if arr.size != shape[channel_axis]:
            raise InputError(f"bounds have {arr.size} values but the input has {shape[channel_axis]} channels")
        view = [1] * len(shape)
        view[channel_axis] = arr.size
        arr = arr.reshape(view)
    elif arr.ndim == len(shape) and arr.shape[0] > 1:
        if not np.array_equal(arr, np.broadcast_to(arr[:1], arr.shape)):
            raise InputError(f"bounds of shape {list(arr.shape)} differ between the {arr.shape[0]} samples of the "
                             "batch, but the relevance graph's bounds are constants shared by every sample: pass one "
                             f"sample's bounds (shape {[1, *shape[1:]]}) or explain the samples separately")
        arr = arr[:1]
    try:
        return np.ascontiguousarray(np.broadcast_to(arr, shape), dtype=np.float32)
    except ValueError:
        raise InputError(f"bounds of shape {list(arr.shape)} do not broadcast to the input's shape "
                         f"{list(shape)}") from None
