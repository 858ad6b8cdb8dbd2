"""Perturbation functions g for region perturbation: what a removed region's pixels are replaced with.

The paper defines x(k) = g(x(k-1), r_k): region r_k of the *current* image gets new values in every channel.
Regions never overlap, so when the values g writes into r_k depend only on the unperturbed image (and random
draws), x(k) equals x with regions r_1..r_k copied from one *replacement image*. Every perturbation here is
therefore a function ``replacement(image, rng) -> image-shaped array``, evaluated once per image and repetition,
which is what lets all L+1 perturbed images be built with array copies. Built-ins work on one channel-first image
(C, H, W) in model input space:

* ``uniform(low, high)``: i.i.d. uniform noise over the valid input range (the paper's choice); ``low``/``high``
  are scalars or one value per channel.
* ``mean()``: the image's per-channel mean.
* ``zero()``: zeros in model input space.
* ``blur(sigma)``: the unperturbed image blurred with a spatial Gaussian (scipy.ndimage, reflect borders).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from explainer.errors import InputError

Replacement = Callable[[np.ndarray, np.random.Generator], np.ndarray]

BUILTIN = ("uniform", "mean", "zero", "blur")
DEFAULT_BLUR_SIGMA = 4.0


@dataclass(frozen=True)
class Perturbation:
    """A named replacement rule. ``replacement(image_chw, rng)`` returns the (C, H, W) values copied into removed
    regions; ``random`` says whether it draws from ``rng`` (then results are averaged over repetitions);
    ``params`` are recorded in result settings."""

    name: str
    replacement: Replacement
    random: bool
    params: dict[str, Any] = field(default_factory=dict)

    def __call__(self, image_chw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The replacement image for one (C, H, W) image, checked to have the image's shape."""
        values = np.asarray(self.replacement(image_chw, rng))
        if values.shape != image_chw.shape:
            raise InputError(
                f"perturbation {self.name!r} returned shape {values.shape} for an image of shape {image_chw.shape}"
            )
        if not np.isfinite(values).all():
            raise InputError(f"perturbation {self.name!r} returned non-finite values")
        return values


def uniform(low: float | np.ndarray, high: float | np.ndarray) -> Perturbation:
    """Uniform noise in [low, high) per pixel and channel; ``low``/``high`` are scalars or (C,) per channel."""
    low_arr = np.asarray(low, dtype=np.float64)
    high_arr = np.asarray(high, dtype=np.float64)
    for name, value in (("low", low_arr), ("high", high_arr)):
        if value.ndim > 1 or not np.isfinite(value).all():
            raise InputError(f"uniform perturbation: {name} must be a finite scalar or one value per channel; "
                             f"got {value.tolist()}")
    if not np.all(low_arr < high_arr):
        raise InputError(f"uniform perturbation: need low < high; got low={low_arr.tolist()}, high={high_arr.tolist()}")

    def replacement(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        channels = image.shape[0]
        lo = _per_channel(low_arr, channels, "low")
        width = _per_channel(high_arr, channels, "high") - lo
        noise = rng.random(image.shape, dtype=np.float32)
        return (noise * width + lo).astype(np.float32, copy=False)

    return Perturbation("uniform", replacement, True, {"low": low_arr.tolist(), "high": high_arr.tolist()})


def mean() -> Perturbation:
    """Each channel replaced by that channel's mean over the unperturbed image."""

    def replacement(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.broadcast_to(image.mean(axis=(1, 2), keepdims=True, dtype=np.float64), image.shape)

    return Perturbation("mean", replacement, False)


def zero() -> Perturbation:
    """Zeros in model input space (what zero means depends on the model's preprocessing)."""

    def replacement(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(image.shape, dtype=np.float32)

    return Perturbation("zero", replacement, False)


def blur(sigma: float = DEFAULT_BLUR_SIGMA) -> Perturbation:
    """Pixels of the unperturbed image blurred per channel with a spatial Gaussian of ``sigma`` pixels."""
    if not np.isfinite(sigma) or sigma <= 0:
        raise InputError(f"blur perturbation: sigma must be a positive number of pixels; got {sigma!r}")

    def replacement(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), sigma=(0, sigma, sigma), mode="reflect")

    return Perturbation("blur", replacement, False, {"sigma": float(sigma)})


def from_callable(fn: Callable[[np.ndarray, np.random.Generator], np.ndarray], layout: str = "NCHW") -> Perturbation:
    """Wrap a user function ``fn(image, rng) -> replacement`` that sees one image in the caller's layout
    ((C, H, W) for ``"NCHW"``, (H, W, C) for ``"NHWC"``). Treated as random: averaged over repetitions."""
    name = getattr(fn, "__name__", type(fn).__name__)
    if layout == "NCHW":
        return Perturbation(name, fn, True)

    def replacement(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        values = np.asarray(fn(image.transpose(1, 2, 0), rng))
        if values.shape != image.shape[1:] + image.shape[:1]:
            raise InputError(f"perturbation {name!r} returned shape {values.shape} for an image of shape "
                             f"{image.shape[1:] + image.shape[:1]}")
        return values.transpose(2, 0, 1)

    return Perturbation(name, replacement, True)


def resolve_perturbation(
    spec: str | Perturbation | Callable[[np.ndarray, np.random.Generator], np.ndarray],
    *,
    low: float | np.ndarray | None = None,
    high: float | np.ndarray | None = None,
    layout: str = "NCHW",
) -> Perturbation:
    """Turn a name (``"uniform"``, ``"mean"``, ``"zero"``, ``"blur"``), a :class:`Perturbation` or a user callable
    into a :class:`Perturbation`. ``"uniform"`` needs the valid input range ``low``/``high`` (model input space)."""
    if isinstance(spec, Perturbation):
        return spec
    if isinstance(spec, str):
        if spec == "uniform":
            if low is None or high is None:
                raise InputError("perturb='uniform' needs low= and high=: the valid input range in model input "
                                 "space (scalars or one value per channel)")
            return uniform(low, high)
        if spec == "mean":
            return mean()
        if spec == "zero":
            return zero()
        if spec == "blur":
            return blur()
        raise InputError(f"unknown perturbation {spec!r}; expected one of {BUILTIN}, a Perturbation or a callable")
    if callable(spec):
        return from_callable(spec, layout)
    raise InputError(f"perturb must be one of {BUILTIN}, a Perturbation or a callable; got {type(spec).__name__}")


def _per_channel(values: np.ndarray, channels: int, name: str) -> np.ndarray:
    if values.ndim == 0:
        return np.full((channels, 1, 1), values, dtype=np.float32)
    if values.shape != (channels,):
        raise InputError(f"uniform perturbation: {name} has {values.shape[0]} values but the image has "
                         f"{channels} channels")
    return values.astype(np.float32).reshape(channels, 1, 1)
