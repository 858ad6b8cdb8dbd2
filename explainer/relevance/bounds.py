"""Input bounds for the zB rule, given as a scalar, per channel or per sample, brought to the input's shape."""
from __future__ import annotations

import numpy as np

from explainer.errors import ModelError


def expand_bounds(value: np.ndarray | float, shape: tuple[int, ...], layout: str) -> np.ndarray:
    """Bounds given as a scalar, one value per channel, or a full per-sample array -> array of ``shape`` (batch 1)."""
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 1 and arr.size > 1:
        channel_axis = len(shape) - 1 if layout == "NHWC" else 1
        if arr.size != shape[channel_axis]:
            raise ModelError(f"bounds have {arr.size} values but the input has {shape[channel_axis]} channels")
        view = [1] * len(shape)
        view[channel_axis] = arr.size
        arr = arr.reshape(view)
    try:
        return np.ascontiguousarray(np.broadcast_to(arr, shape), dtype=np.float32)
    except ValueError:
        raise ModelError(f"bounds of shape {arr.shape} do not broadcast to the input's shape {list(shape)}") from None
