"""The one vocabulary for image layouts: what a model's image input expects (``InputSpec``), the layout names, and
where the channel axis is (so that relevance is summed over channels in one place)."""
from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from explainer.errors import InputError
from explainer.limits import check_tensor

LAYOUTS = ("NCHW", "NHWC")
"""Supported model input layouts."""


def is_positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def check_layout(layout: str) -> str:
    upper = layout.upper() if isinstance(layout, str) else layout
    if upper not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    return upper


def as_hw(size: int | Sequence[int], what: str = "size") -> tuple[int, int]:
    """``224 -> (224, 224)``; ``(h, w) -> (h, w)``; both positive integers."""
    try:
        if isinstance(size, bool):
            raise TypeError
        pair = (operator.index(size),) * 2 if np.ndim(size) == 0 else tuple(operator.index(v) for v in size)
    except TypeError as exc:
        raise InputError(f"{what} must be an integer or a (height, width) pair of integers, got {size!r}") from exc
    if len(pair) != 2 or min(pair) < 1:
        raise InputError(f"{what} must be a positive integer or a (height, width) pair, got {size!r}")
    return pair[0], pair[1]


def channel_sum(relevance: np.ndarray, layout: str, *, batched: bool = True) -> np.ndarray:
    """Relevance summed over the channel axis of ``layout``: (N, H, W) for a batch, (H, W) for one sample."""
    axis = -1 if check_layout(layout) == "NHWC" else (1 if batched else 0)
    return np.asarray(relevance).sum(axis=axis)


@dataclass(frozen=True)
class InputSpec:
    """What a model's image input expects: layout, channels and (possibly dynamic) spatial size.

    ``height``/``width`` of ``None`` mean dynamic; :meth:`resolve` then needs an explicit size.
    """

    layout: str
    channels: int
    height: int | None = None
    width: int | None = None
    name: str = "input"

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", check_layout(self.layout))
        if not is_positive_int(self.channels):
            raise InputError(
                f"model input '{self.name}': channel count must be a positive integer, got {self.channels!r}"
            )
        for what, value in (("height", self.height), ("width", self.width)):
            if value is not None and not is_positive_int(value):
                raise InputError(f"model input '{self.name}': {what} must be a positive integer or None, got {value!r}")

    @classmethod
    def from_shape(
        cls, shape: Sequence[int | str | None], layout: str | None = None, name: str = "input"
    ) -> InputSpec:
        """Build from a 4-D model input shape; non-positive, ``None`` or named dims are dynamic.

        Without ``layout`` it is inferred: NCHW if dim 1 is 1 or 3, else NHWC if dim 3 is 1 or 3.
        """
        dims = [int(d) if is_positive_int(d) else None for d in shape]
        if len(dims) != 4:
            raise InputError(f"model input '{name}' has shape {list(shape)}; expected a 4-D image batch")
        if layout is None:
            if dims[1] in (1, 3):
                layout = "NCHW"
            elif dims[3] in (1, 3):
                layout = "NHWC"
            else:
                raise InputError(
                    f"model input '{name}' has shape {list(shape)}: cannot tell the channel axis; "
                    "give the layout (NCHW or NHWC)"
                )
        layout = check_layout(layout)
        c, h, w = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
        if c is None:
            raise InputError(
                f"model input '{name}' has shape {list(shape)} with a dynamic channel dimension ({layout})"
            )
        return cls(layout=layout, channels=c, height=h, width=w, name=name)

    def resolve(self, size: int | tuple[int, int] | None = None) -> tuple[int, int]:
        """Spatial size (H, W) to feed: ``size`` if given (must agree with static dims), else the static dims.

        One float32 image of that size must fit :func:`explainer.limits.max_bytes` (InputError with the figure)."""
        if size is None:
            if self.height is None or self.width is None:
                dynamic = " and ".join(d for d, v in (("height", self.height), ("width", self.width)) if v is None)
                raise InputError(
                    f"model input '{self.name}' has a dynamic {dynamic}; pass an explicit size (--size, e.g. 224)"
                )
            height, width = self.height, self.width
        else:
            height, width = as_hw(size)
            for what, fixed, wanted in (("height", self.height, height), ("width", self.width, width)):
                if fixed is not None and fixed != wanted:
                    raise InputError(
                        f"model input '{self.name}' has a fixed {what} of {fixed}, but size {size!r} asks for {wanted}"
                    )
        check_tensor(self._shape(1, height, width)[1:], f"model input '{self.name}': one image")
        return height, width

    def batch_shape(self, batch: int, size: int | tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        """Concrete input shape for ``batch`` images at the resolved size, in this spec's layout."""
        return self._shape(batch, *self.resolve(size))

    def _shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        if self.layout == "NCHW":
            return batch, self.channels, height, width
        return batch, height, width, self.channels
