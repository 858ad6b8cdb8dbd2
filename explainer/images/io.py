"""Read image files into uint8 arrays, robustly and safely, and expand image paths.

Every file is decoded in full inside one guarded block, so a missing, empty, corrupt,
truncated or oversized file surfaces as an :class:`~explainer.errors.InputError` that
names the file, never as a Pillow traceback half way through an explanation.

Conversions applied by :func:`load_image`:

* EXIF orientation is honoured (the pixels are rotated/flipped as a viewer shows them).
* Animated or multi-page files (GIF, APNG, WebP, TIFF): only the first frame is used.
* Transparency (RGBA, LA, PA, or a palette/colour-key ``transparency``) is composited on white.
* 16-bit integer data (modes ``I;16*`` and ``I`` within 0..65535) is divided by 257, which
  maps 0..65535 exactly onto 0..255; ``I`` data outside that range and float (``F``) data
  are scaled by their own min..max range (``F`` data already in 0..1 is multiplied by 255).
* CMYK, YCbCr and other colour modes are converted to RGB by Pillow.
* RGB is reduced to one channel with Pillow's ITU-R 601 luma when ``channels=1``;
  grayscale is replicated into three equal channels when ``channels=3``.

Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) stays in force, and its
warning level counts as an error too.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from explainer.errors import InputError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)
"""File extensions (lower case) that :func:`list_images` picks up from a directory."""

_WHITE = (255, 255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def load_image(path: str | Path, *, channels: int = 3) -> np.ndarray:
    """Decode the first frame of an image file to a uint8 ``H x W x channels`` array.

    ``channels=3`` gives RGB, ``channels=1`` grayscale (shape ``H x W x 1``). See the module
    docstring for the conversions applied. Raises :class:`InputError` naming the file for a
    missing, empty, unreadable, corrupt, truncated or decompression-bomb-sized file.
    """
    if channels not in (1, 3):
        raise InputError(f"load_image: channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    path = Path(path)
    if not path.exists():
        raise InputError(f"image file not found: {path}")
    if not path.is_file():
        raise InputError(f"image path is not a regular file: {path}")
    if path.stat().st_size == 0:
        raise InputError(f"image file is empty (0 bytes): {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as opened:
                opened.load()
                upright = ImageOps.exif_transpose(opened)
            return _to_uint8(upright, channels)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputError(
                f"{path}: refusing to decode, image exceeds Pillow's decompression-bomb limit "
                f"(PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}): {exc}"
            ) from exc
        except UnidentifiedImageError as exc:
            raise InputError(f"{path}: not an image file in a format Pillow can read") from exc
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from exc
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, zlib.error...
            raise InputError(
                f"{path}: cannot decode image, file is corrupt or truncated ({type(exc).__name__}: {exc})"
            ) from exc


def _to_uint8(image: Image.Image, channels: int) -> np.ndarray:
    """Convert a loaded Pillow image of any mode to uint8 RGB (``channels=3``) or L (``channels=1``)."""
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    elif image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        image = Image.fromarray(_high_depth_to_uint8(np.asarray(image)), mode="L")
    elif image.mode not in ("L", "RGB"):
        try:
            image = image.convert("RGB")
        except ValueError as exc:
            raise InputError(f"unsupported image mode {image.mode!r}: {exc}") from exc
    target = "RGB" if channels == 3 else "L"
    if image.mode != target:
        image = image.convert(target)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array)


def _high_depth_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale 16-bit, 32-bit integer or float pixel data to uint8 (see the module docstring)."""
    data = values.astype(np.float64)
    if not np.all(np.isfinite(data)):
        raise InputError("image has non-finite (NaN or infinite) pixel values")
    low, high = float(data.min()), float(data.max())
    if values.dtype.kind in "ui" and low >= 0 and high <= 65535:
        scaled = data / 257.0
    elif values.dtype.kind == "f" and low >= 0 and high <= 1:
        scaled = data * 255.0
    elif high > low:
        scaled = (data - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(data)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def list_images(paths: Sequence[str | Path]) -> list[Path]:
    """Expand ``paths`` into image files, in the order given.

    A file is taken as is (whatever its extension; :func:`load_image` judges it). A directory
    contributes its image files (extensions in :data:`IMAGE_EXTENSIONS`, any case; hidden files
    skipped; not recursive), sorted by name; a quoted glob pattern its matching files, sorted
    (see :func:`explainer.images.sources.gather_images`, which also reads manifests and recurses).
    Raises :class:`InputError` for a path that does not exist, a directory or pattern without
    images, or an empty ``paths``.
    """
    from explainer.images.sources import gather_images

    return gather_images(paths).paths
