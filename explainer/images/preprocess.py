"""Turn uint8 images into the float batch a CNN expects, and back, under named presets.

A :class:`Preprocessing` maps a pixel ``p`` (0..255, RGB) of channel ``c`` to the model input

    x = (p * scale / 255 - mean[c]) / std[c]

after reordering the channels to BGR when ``bgr`` is set. ``mean`` and ``std`` are stored in
the preset's own scale (0..1 when ``scale == 1``, 0..255 when ``scale == 255``) and in the
model's channel order. Presets:

=========  =====  ===  =====================================================
name       scale  bgr  normalisation
=========  =====  ===  =====================================================
imagenet   1      no   (p/255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
unit       1      no   p/255, i.e. [0, 1]
caffe      255    yes  p - [103.939, 116.779, 123.68] (BGR order), i.e. VGG/Caffe
raw        255    no   p, i.e. [0, 255]
=========  =====  ===  =====================================================

For one-channel models ``imagenet`` (and ``caffe``) use the average of the three channel
means and of the three stds (mean 0.449, std 0.226 for ``imagenet``), and no BGR swap.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from explainer.errors import InputError
from explainer.images.io import load_image
from explainer.images.spec import InputSpec, as_hw, check_layout, is_positive_int
from explainer.limits import check_bytes

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

# name -> (mean, std, scale, bgr) for a three-channel model
_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...], float, bool]] = {
    "imagenet": (_IMAGENET_MEAN, _IMAGENET_STD, 1.0, False),
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 1.0, False),
    "caffe": (_CAFFE_BGR_MEAN, (1.0, 1.0, 1.0), 255.0, True),
    "raw": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 255.0, False),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1.0, False),
}
PRESETS: tuple[str, ...] = tuple(_PRESETS)
"""Names accepted by :func:`preprocessing`."""

_RESIZE_RATIO = 256 / 224  # torchvision's ImageNet evaluation transform: Resize(256), CenterCrop(224)
_PILLOW_BYTES = {1: 1, 3: 4}  # bytes per pixel Pillow stores for L and RGB images (RGB is padded to 4)


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become model inputs: ``(p * scale / 255 - mean) / std``, channels in model order.

    ``mean``/``std`` are per channel, in the scale given by ``scale`` (1: [0, 1] data, 255: 0..255
    data) and in the model's channel order (BGR when ``bgr``).
    """

    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float
    bgr: bool = False

    def __post_init__(self) -> None:
        if len(self.mean) == 0 or len(self.mean) != len(self.std):
            raise InputError(
                f"preprocessing {self.name!r}: mean has {len(self.mean)} values and std {len(self.std)}; "
                "they need one value per channel each"
            )
        if not all(np.isfinite(self.mean)):
            raise InputError(f"preprocessing {self.name!r}: mean {self.mean} has non-finite values")
        if not all(np.isfinite(s) and s > 0 for s in self.std):
            raise InputError(f"preprocessing {self.name!r}: std {self.std} must be finite and > 0")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise InputError(f"preprocessing {self.name!r}: scale must be finite and > 0, got {self.scale}")
        if self.bgr and len(self.mean) != 3:
            raise InputError(f"preprocessing {self.name!r}: BGR order needs 3 channels, got {len(self.mean)}")

    @property
    def channels(self) -> int:
        """Number of channels this preprocessing is defined for."""
        return len(self.mean)


def preprocessing(
    name: str,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channels: int = 3,
) -> Preprocessing:
    """Build the named preset for a ``channels``-channel model, optionally overriding mean/std.

    Overrides are on the [0, 1] pixel scale (like torchvision's ``Normalize``) and are converted
    to the preset's scale; give one value per channel in the model's channel order (BGR for
    ``caffe``), or a single value for all channels. Only the one given is replaced, so
    ``caffe`` with ``mean=[0.5]`` subtracts 127.5 from 0..255 data.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _PRESETS:
        raise InputError(f"unknown preprocessing {name!r}; choose one of {', '.join(PRESETS)}")
    if not is_positive_int(channels) or channels not in (1, 3):
        raise InputError(f"preprocessing {key!r}: models with {channels} input channels are not supported (1 or 3)")
    base_mean, base_std, scale, bgr = _PRESETS[key]
    if channels == 1:
        base_mean, base_std, bgr = (float(np.mean(base_mean)),), (float(np.mean(base_std)),), False
    new_mean = base_mean if mean is None else tuple(v * scale for v in _per_channel(mean, channels, "mean", key))
    new_std = base_std if std is None else tuple(v * scale for v in _per_channel(std, channels, "std", key))
    return Preprocessing(
        name=key, mean=tuple(map(float, new_mean)), std=tuple(map(float, new_std)), scale=scale, bgr=bgr
    )


def _per_channel(values: Sequence[float], channels: int, what: str, preset: str) -> tuple[float, ...]:
    """Validate a user mean/std override: ``channels`` numbers, or one number broadcast to all."""
    try:
        numbers = tuple(float(v) for v in np.atleast_1d(np.asarray(values, dtype=np.float64)))
    except (TypeError, ValueError) as exc:
        raise InputError(f"preprocessing {preset!r}: {what} override {values!r} is not a list of numbers") from exc
    if len(numbers) == 1:
        numbers = numbers * channels
    if len(numbers) != channels:
        raise InputError(
            f"preprocessing {preset!r}: {what} override has {len(numbers)} values but the model has "
            f"{channels} channel(s); give {channels} values (model channel order) or 1 for all channels"
        )
    return numbers


def resize_center_crop(
    image: np.ndarray, size: int | tuple[int, int], *, resize: int | None = None
) -> np.ndarray:
    """Resize (PIL bilinear) so the image covers the crop with a margin, then centre-crop to ``size``.

    For a square ``size`` this is torchvision's evaluation transform: the shorter side becomes
    ``resize`` (default ``round(size * 256 / 224)``, i.e. 256 for 224), the longer side
    ``int(resize * long / short)``, then the central ``size x size`` window is cut (offsets
    rounded as torchvision's ``CenterCrop``). For ``size = (h, w)`` the crop box is enlarged
    to ``resize`` on its shorter side (keeping its aspect) and the image is scaled, keeping its
    own aspect, until it covers that box. An image that already has the crop's size is returned
    unchanged (no resampling), so model-sized inputs keep their own pixels. ``image`` is uint8
    ``H x W``, ``H x W x 1`` or ``H x W x 3``; the result has the same number of dimensions.
    A resize whose intermediate image would not fit :func:`explainer.limits.max_bytes` (a thin strip
    scaled up to cover the crop) is refused with an InputError giving the figure.
    """
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise InputError(f"resize_center_crop: expected a uint8 image, got dtype {array.dtype}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3)):
        raise InputError(
            f"resize_center_crop: expected an H x W, H x W x 1 or H x W x 3 image, got shape {array.shape}"
        )
    if min(array.shape[:2]) < 1:
        raise InputError(f"resize_center_crop: image of shape {array.shape} is empty")
    crop_h, crop_w = as_hw(size)
    if array.shape[:2] == (crop_h, crop_w) and resize is None:
        return np.ascontiguousarray(array)
    short_crop = min(crop_h, crop_w)
    if resize is not None and np.ndim(resize) != 0:
        raise InputError(f"resize must be one integer (the shorter side), got {resize!r}")
    cover_short = round(short_crop * _RESIZE_RATIO) if resize is None else as_hw(resize, "resize")[0]
    if cover_short < short_crop:
        raise InputError(f"resize ({cover_short}) must be at least the crop's shorter side ({short_crop})")
    cover_h = cover_short if crop_h == short_crop else round(cover_short * crop_h / short_crop)
    cover_w = cover_short if crop_w == short_crop else round(cover_short * crop_w / short_crop)
    height, width = array.shape[:2]
    if cover_h * width >= cover_w * height:
        new_h, new_w = cover_h, int(width * cover_h / height)
    else:
        new_h, new_w = int(height * cover_w / width), cover_w
    new_h, new_w = max(new_h, crop_h), max(new_w, crop_w)
    channels = 1 if array.ndim == 2 else array.shape[2]
    check_bytes(new_h * new_w * (_PILLOW_BYTES[channels] + channels),
                f"resizing a {width}x{height} image to {new_w}x{new_h} (to cover the {crop_w}x{crop_h} crop)")
    pixels = array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array
    resized = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.BILINEAR))
    top = int(round((new_h - crop_h) / 2.0))
    left = int(round((new_w - crop_w) / 2.0))
    cropped = resized[top : top + crop_h, left : left + crop_w]
    if array.ndim == 3 and cropped.ndim == 2:
        cropped = cropped[:, :, None]
    return np.ascontiguousarray(cropped)


def _stack_uint8(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """One ``HxW``/``HxWxC`` image, an ``NxHxWxC`` batch or a list of equal-shape images -> uint8 NHWC."""
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            batch = images
        elif images.ndim in (2, 3):
            batch = _as_hwc(images, 0)[None]
        else:
            raise InputError(f"expected an image (H x W [x C]) or a batch (N x H x W x C), got shape {images.shape}")
    else:
        items = [_as_hwc(np.asarray(item), i) for i, item in enumerate(images)]
        if not items:
            raise InputError("no images to convert")
        shapes = {item.shape for item in items}
        if len(shapes) > 1:
            raise InputError(f"images in one batch must share a shape; got {sorted(shapes)} (resize/crop them first)")
        batch = np.stack(items)
    if batch.dtype != np.uint8:
        raise InputError(f"expected uint8 images (0..255), got dtype {batch.dtype}")
    return batch


def _as_hwc(image: np.ndarray, index: int) -> np.ndarray:
    if image.ndim == 2:
        return image[:, :, None]
    if image.ndim != 3:
        raise InputError(f"image {index}: expected H x W or H x W x C, got shape {image.shape}")
    return image


def to_model_input(
    images: np.ndarray | Sequence[np.ndarray], prep: Preprocessing, layout: str = "NCHW"
) -> np.ndarray:
    """Normalise uint8 RGB/gray images into a float32 model batch in ``layout`` (NCHW or NHWC).

    ``images`` is one image (``H x W`` or ``H x W x C``), an ``N x H x W x C`` uint8 array or a
    list of equal-shape images; ``C`` must equal ``prep.channels``.
    """
    layout = check_layout(layout)
    batch = _stack_uint8(images)
    if batch.shape[3] != prep.channels:
        raise InputError(
            f"images have {batch.shape[3]} channel(s) but preprocessing {prep.name!r} is for {prep.channels}"
        )
    values = batch.astype(np.float64) * (prep.scale / 255.0)
    if prep.bgr:
        values = values[..., ::-1]
    values = (values - np.asarray(prep.mean)) / np.asarray(prep.std)
    if layout == "NCHW":
        values = values.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(values, dtype=np.float32)


def from_model_input(x: np.ndarray, prep: Preprocessing, layout: str = "NCHW") -> np.ndarray:
    """Invert :func:`to_model_input`: float batch -> uint8 ``N x H x W x C`` RGB/gray (rounded, clipped)."""
    layout = check_layout(layout)
    values = np.asarray(x, dtype=np.float64)
    if values.ndim != 4:
        raise InputError(f"from_model_input: expected a 4-D {layout} batch, got shape {values.shape}")
    if layout == "NCHW":
        values = values.transpose(0, 2, 3, 1)
    if values.shape[3] != prep.channels:
        raise InputError(
            f"from_model_input: {layout} batch of shape {np.shape(x)} has {values.shape[3]} channel(s) "
            f"but preprocessing {prep.name!r} is for {prep.channels}"
        )
    values = (values * np.asarray(prep.std) + np.asarray(prep.mean)) * (255.0 / prep.scale)
    if prep.bgr:
        values = values[..., ::-1]
    return np.ascontiguousarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def input_bounds(prep: Preprocessing, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (low, high) model-input values of pixels 0 and 255, in the model's channel order.

    These bound the input domain: the zB (box) rule's ``l``/``h`` and the range for uniform-noise
    perturbation. Returned as float32 arrays of shape ``(channels,)``, bit-identical to what
    :func:`to_model_input` produces for black and white pixels.
    """
    if channels != prep.channels:
        raise InputError(
            f"input_bounds: model has {channels} channel(s) but preprocessing {prep.name!r} is for {prep.channels}"
        )
    extremes = np.empty((1, 1, 2, channels), dtype=np.uint8)
    extremes[:, :, 0, :] = 0
    extremes[:, :, 1, :] = 255
    values = to_model_input(extremes, prep, layout="NHWC")[0, 0]
    return values[0].copy(), values[1].copy()


def load_batch(
    paths: Sequence[str | Path],
    spec: InputSpec,
    prep: Preprocessing,
    *,
    size: int | tuple[int, int] | None = None,
    resize: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load, resize/centre-crop and normalise image files for a model.

    Returns ``(x, pixels)``: the float32 model batch in ``spec.layout`` and the cropped uint8
    ``N x H x W x C`` images it was made from (for overlays).
    """
    if len(paths) == 0:
        raise InputError("load_batch: no image paths given")
    if spec.channels != prep.channels:
        raise InputError(
            f"model input '{spec.name}' has {spec.channels} channel(s) "
            f"but preprocessing {prep.name!r} is for {prep.channels}"
        )
    target = spec.resolve(size)
    crops = []
    for path in paths:
        image = load_image(path, channels=spec.channels)
        try:
            crops.append(resize_center_crop(image, target, resize=resize))
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
    pixels = np.stack(crops)
    return to_model_input(pixels, prep, spec.layout), pixels


#: model metadata key naming the preprocessing preset a model expects (written by our export scripts)
METADATA_PREPROCESS = "explainer.preprocess"


def model_preprocessing(metadata: dict[str, str], channels: int, name: str | None = None, *,
                        mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Preprocessing:
    """The preprocessing a model expects: preset ``name`` if given, else the model's ``explainer.preprocess``
    metadata entry, else ``imagenet`` for 3-channel and ``unit`` for other models; ``mean``/``std`` override."""
    preset = name or metadata.get(METADATA_PREPROCESS) or ("imagenet" if channels == 3 else "unit")
    return preprocessing(preset, mean=mean, std=std, channels=channels)


def load_images(paths: Sequence[str | Path], explainer: Any, *, preprocess: str | None = None,
                mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image files as ``explainer``'s model input: ``(x, pixels)``, the float32 batch in the model's layout and
    the centre-cropped uint8 images (N, H, W, C) it came from. The preprocessing is the model's own (see
    :func:`model_preprocessing`) unless ``preprocess``/``mean``/``std`` say otherwise."""
    spec = InputSpec.from_shape([1, *explainer.input_shape], layout=explainer.layout, name=explainer.input_name)
    prep = model_preprocessing(explainer.metadata, spec.channels, preprocess, mean=mean, std=std)
    return load_batch([Path(p) for p in paths], spec, prep)
