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

Any preset can be given another channel order (``channel_order="bgr"`` for an ImageNet model trained on
OpenCV's BGR images, ``"rgb"`` for a Caffe-normalised model fed RGB): the preset's mean and std are then
reversed with the channels. Images are brought to the model's size by one of :data:`RESIZE_MODES`:
centre-crop (torchvision's evaluation transform), letterbox (the whole image, scaled to fit, padded with a
fill colour) or stretch (scaled to the size, aspect ratio not kept). A model can name its own defaults in
its metadata: ``explainer.preprocess``, ``explainer.channel_order``, ``explainer.resize`` and ``explainer.fill``.
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
CHANNEL_ORDERS: tuple[str, ...] = ("rgb", "bgr")
"""The channel orders a three-channel model may expect."""
RESIZE_MODES: tuple[str, ...] = ("center-crop", "letterbox", "stretch")
"""How :func:`fit_image` brings an image to the model's size."""

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

    @property
    def channel_order(self) -> str:
        """The channel order of the model input: ``"bgr"`` or ``"rgb"`` (also for one-channel models)."""
        return "bgr" if self.bgr else "rgb"

    def describe(self) -> str:
        """One phrase for messages: the preset, its mean and std in model order, and a BGR channel order."""
        order = ", BGR channel order" if self.bgr else ""
        return f"{self.name} (mean {[round(v, 6) for v in self.mean]}, std {[round(v, 6) for v in self.std]}{order})"


def preprocessing(
    name: str,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channels: int = 3,
    channel_order: str | None = None,
) -> Preprocessing:
    """Build the named preset for a ``channels``-channel model, optionally overriding mean/std and channel order.

    ``channel_order`` (``"rgb"`` or ``"bgr"``) is the order the model expects; ``None`` keeps the
    preset's own (BGR for ``caffe``, RGB otherwise). Giving a preset the other order reverses its
    mean and std with the channels. One-channel models have no order to change. Overrides are on the
    [0, 1] pixel scale (like torchvision's ``Normalize``) and are converted to the preset's scale;
    give one value per channel in the model's channel order (BGR for ``caffe``), or a single value for
    all channels. Only the one given is replaced, so ``caffe`` with ``mean=[0.5]`` subtracts 127.5
    from 0..255 data.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _PRESETS:
        raise InputError(f"unknown preprocessing {name!r}; choose one of {', '.join(PRESETS)}")
    if not is_positive_int(channels) or channels not in (1, 3):
        raise InputError(f"preprocessing {key!r}: models with {channels} input channels are not supported (1 or 3)")
    base_mean, base_std, scale, bgr = _PRESETS[key]
    if channel_order is not None:
        wanted = check_channel_order(channel_order) == "bgr"
        if wanted != bgr:
            base_mean, base_std, bgr = base_mean[::-1], base_std[::-1], wanted
    if channels == 1:
        base_mean, base_std, bgr = (float(np.mean(base_mean)),), (float(np.mean(base_std)),), False
    new_mean = base_mean if mean is None else tuple(v * scale for v in _per_channel(mean, channels, "mean", key))
    new_std = base_std if std is None else tuple(v * scale for v in _per_channel(std, channels, "std", key))
    return Preprocessing(
        name=key, mean=tuple(map(float, new_mean)), std=tuple(map(float, new_std)), scale=scale, bgr=bgr
    )


def check_channel_order(order: str) -> str:
    """``order`` as one of :data:`CHANNEL_ORDERS` (any case), else an InputError naming the choices."""
    lower = order.lower() if isinstance(order, str) else order
    if lower not in CHANNEL_ORDERS:
        raise InputError(f"unknown channel order {order!r}; choose one of {', '.join(CHANNEL_ORDERS)}")
    return lower


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
    array = _check_image(image, "resize_center_crop")
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
    resized = _resized(array, new_h, new_w)
    top = int(round((new_h - crop_h) / 2.0))
    left = int(round((new_w - crop_w) / 2.0))
    return np.ascontiguousarray(resized[top : top + crop_h, left : left + crop_w])


def fit_image(image: np.ndarray, size: int | tuple[int, int], *, mode: str = "center-crop",
              fill: int | Sequence[int] = 0, resize: int | None = None) -> np.ndarray:
    """Bring a uint8 image (``H x W``, ``H x W x 1`` or ``H x W x 3``) to ``size`` by one of :data:`RESIZE_MODES`.

    ``center-crop``: :func:`resize_center_crop` (``resize`` is its shorter side before the crop). ``letterbox``: the
    whole image scaled (PIL bilinear) to fit inside ``size`` keeping its aspect ratio, centred on a canvas of the
    ``fill`` colour (one value, or one per image channel, 0..255). ``stretch``: scaled to ``size`` exactly, the
    aspect ratio not kept. An image that already has the size is returned unchanged by every mode.
    """
    mode = check_resize_mode(mode)
    if mode == "center-crop":
        return resize_center_crop(image, size, resize=resize)
    if resize is not None:
        raise InputError(f"resize (the shorter side before a centre crop) does not apply to resize mode '{mode}'")
    array = _check_image(image, f"fit_image ({mode})")
    height, width = as_hw(size)
    if array.shape[:2] == (height, width):
        return np.ascontiguousarray(array)
    if mode == "stretch":
        return _resized(array, height, width)
    colour = fill_colour(fill, 1 if array.ndim == 2 else array.shape[2])
    scale = min(height / array.shape[0], width / array.shape[1])
    inner_h = min(height, max(1, round(array.shape[0] * scale)))
    inner_w = min(width, max(1, round(array.shape[1] * scale)))
    canvas = np.empty((height, width, len(colour)), np.uint8)
    canvas[...] = colour
    top, left = (height - inner_h) // 2, (width - inner_w) // 2
    inner = _resized(array, inner_h, inner_w)
    canvas[top : top + inner_h, left : left + inner_w] = inner if inner.ndim == 3 else inner[:, :, None]
    return np.ascontiguousarray(canvas[:, :, 0] if array.ndim == 2 else canvas)


def check_resize_mode(mode: str) -> str:
    """``mode`` as one of :data:`RESIZE_MODES` (any case; ``center_crop`` and ``centre-crop`` too), else an
    InputError naming the choices."""
    key = mode.lower().replace("_", "-").replace("centre", "center") if isinstance(mode, str) else mode
    if key not in RESIZE_MODES:
        raise InputError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}")
    return key


def fill_colour(fill: int | Sequence[int], channels: int) -> tuple[int, ...]:
    """A letterbox fill as one 0..255 value per channel: one value is used for every channel."""
    values = np.atleast_1d(np.asarray(fill, dtype=object)).tolist()
    ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in values)
    if not ok or len(values) not in (1, channels):
        raise InputError(f"fill {fill!r}: expected one integer 0..255 or {channels} (one per image channel)")
    return tuple(int(v) for v in values) * (channels if len(values) == 1 else 1)


def _check_image(image: np.ndarray, where: str) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise InputError(f"{where}: expected a uint8 image, got dtype {array.dtype}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3)):
        raise InputError(f"{where}: expected an H x W, H x W x 1 or H x W x 3 image, got shape {array.shape}")
    if min(array.shape[:2]) < 1:
        raise InputError(f"{where}: image of shape {array.shape} is empty")
    return array


def _resized(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """``array`` (uint8, 2-D or H x W x 1/3) scaled by PIL bilinear to ``height`` x ``width``, same dimensions."""
    pixels = array[:, :, 0] if array.ndim == 3 and array.shape[2] == 1 else array
    resized = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
    return resized[:, :, None] if array.ndim == 3 and resized.ndim == 2 else resized


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
    resize_mode: str = "center-crop",
    fill: int | Sequence[int] = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Load, bring to the model's size (:func:`fit_image` with ``resize_mode``, ``fill``, ``resize``) and
    normalise image files for a model.

    Returns ``(x, pixels)``: the float32 model batch in ``spec.layout`` and the model-sized uint8
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
    mode = check_resize_mode(resize_mode)
    fill_colour(fill, spec.channels)  # a bad fill is refused before any file is read
    crops = []
    for path in paths:
        image = load_image(path, channels=spec.channels)
        try:
            crops.append(fit_image(image, target, mode=mode, fill=fill, resize=resize))
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
    pixels = np.stack(crops)
    return to_model_input(pixels, prep, spec.layout), pixels


#: model metadata keys naming the preprocessing preset, channel order, resize mode and letterbox fill a model
#: expects (written by our export scripts, or by anyone with ``onnx.helper.set_model_props``)
METADATA_PREPROCESS = "explainer.preprocess"
METADATA_CHANNEL_ORDER = "explainer.channel_order"
METADATA_RESIZE = "explainer.resize"
METADATA_FILL = "explainer.fill"


def model_preprocessing(metadata: dict[str, str], channels: int, name: str | None = None, *,
                        mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                        channel_order: str | None = None) -> Preprocessing:
    """The preprocessing a model expects: preset ``name`` if given, else the model's ``explainer.preprocess``
    metadata entry, else ``imagenet`` for 3-channel and ``unit`` for other models; ``mean``/``std`` override; the
    channel order is ``channel_order``, else the ``explainer.channel_order`` entry, else the preset's own."""
    preset = name or metadata.get(METADATA_PREPROCESS) or ("imagenet" if channels == 3 else "unit")
    if channel_order is None and metadata.get(METADATA_CHANNEL_ORDER):
        channel_order = _from_metadata(METADATA_CHANNEL_ORDER, metadata, check_channel_order)
    return preprocessing(preset, mean=mean, std=std, channels=channels, channel_order=channel_order)


def model_resize(metadata: dict[str, str], mode: str | None = None,
                 fill: int | Sequence[int] | None = None) -> tuple[str, int | tuple[int, ...]]:
    """The resize mode and letterbox fill for a model: ``mode``/``fill`` if given, else its ``explainer.resize`` and
    ``explainer.fill`` metadata entries (the fill as ``114`` or ``114,114,114``), else centre-crop and 0."""
    if mode is None:
        mode = _from_metadata(METADATA_RESIZE, metadata, check_resize_mode) if metadata.get(METADATA_RESIZE) \
            else RESIZE_MODES[0]
    if fill is None:
        fill = _from_metadata(METADATA_FILL, metadata, _parse_fill) if metadata.get(METADATA_FILL) else 0
    return check_resize_mode(mode), fill


def _parse_fill(text: str) -> tuple[int, ...]:
    parts = text.strip().strip("[]()").replace(",", " ").split()
    if not parts or not all(p.isdigit() and int(p) <= 255 for p in parts):
        raise InputError("expected one integer 0..255 or one per channel, e.g. 114 or 114,114,114")
    return tuple(int(p) for p in parts)


def _from_metadata(key: str, metadata: dict[str, str], parse: Any) -> Any:
    """``parse(metadata[key])``; a bad entry is an InputError naming the metadata key and its value."""
    try:
        return parse(metadata[key])
    except InputError as exc:
        raise InputError(f"model metadata '{key}' is {metadata[key][:80]!r}: {exc}") from None


def load_images(paths: Sequence[str | Path], explainer: Any, *, preprocess: str | None = None,
                mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                channel_order: str | None = None, resize_mode: str | None = None,
                fill: int | Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image files as ``explainer``'s model input: ``(x, pixels)``, the float32 batch in the model's layout and
    the model-sized uint8 images (N, H, W, C) it came from. Preprocessing, channel order, resize mode and fill are
    the model's own (see :func:`model_preprocessing`, :func:`model_resize`) unless the keywords say otherwise."""
    spec = InputSpec.from_shape([1, *explainer.input_shape], layout=explainer.layout, name=explainer.input_name)
    prep = model_preprocessing(explainer.metadata, spec.channels, preprocess, mean=mean, std=std,
                               channel_order=channel_order)
    mode, fill = model_resize(explainer.metadata, resize_mode, fill)
    return load_batch([Path(p) for p in paths], spec, prep, resize_mode=mode, fill=fill)
