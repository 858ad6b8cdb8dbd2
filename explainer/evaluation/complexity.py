"""Heatmap complexity as in Samek et al. (arXiv 1509.06321): compressed PNG size and 256-bin histogram entropy.

Both measures work on the heatmap rendered as an 8-bit grayscale image, the same way for signed and unsigned maps:
``u = round(255 * |h| / max|h|)`` per heatmap, so zero relevance is black, the strongest value of either sign white;
an all-zero heatmap is uniformly 0. Rendering |h| puts a signed map (LRP) and a non-negative one (a gradient norm) on
the same 0..255 scale: a symmetric signed rendering would give non-negative maps only the grey levels 128..255 and
bias the comparison against signed maps. Dividing by max|h| makes both measures independent of the heatmap's scale.
The sign is dropped: a map and its negation have the same complexity. Lower values mean a sparser, less noisy
heatmap. Samek et al. measure the file size of their (colour) heatmap images; the exact rendering they compressed is
not reproduced here.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from explainer.errors import InputError

PNG_COMPRESS_LEVEL = 9


def heatmap_to_uint8(heatmaps: np.ndarray) -> np.ndarray:
    """Render (H, W) or (N, H, W) heatmaps as uint8 grayscale: |h| scaled by max|h| per heatmap (see above)."""
    values = np.abs(_as_batch(heatmaps))
    scale = values.max(axis=(1, 2), keepdims=True)
    safe = np.where(scale > 0, scale, 1.0)
    grey = np.rint(255.0 * values / safe)
    return grey.clip(0, 255).astype(np.uint8).reshape(np.shape(heatmaps))


def png_bytes(heatmaps: np.ndarray) -> np.ndarray:
    """Size in bytes of each heatmap saved as an 8-bit grayscale PNG (zlib level 9): int64 (N,) for (N, H, W)."""
    grey = heatmap_to_uint8(_as_batch(heatmaps))
    sizes = np.empty(len(grey), dtype=np.int64)
    for i, image in enumerate(grey):
        buffer = io.BytesIO()
        Image.fromarray(image, mode="L").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        sizes[i] = buffer.tell()
    return sizes


def histogram_entropy(heatmaps: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits of each rendered heatmap's 256-bin histogram: float64 (N,) for (N, H, W)."""
    batch = _as_batch(heatmaps)
    grey = heatmap_to_uint8(batch).reshape(len(batch), -1).astype(np.int64)
    offsets = np.arange(len(grey))[:, None] * 256
    counts = np.bincount((grey + offsets).ravel(), minlength=256 * len(grey)).reshape(len(grey), 256)
    p = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return terms.sum(axis=1)


def heatmap_complexity(heatmaps: np.ndarray) -> dict[str, float]:
    """Mean PNG size (bytes) and mean histogram entropy (bits) over (N, H, W) or a single (H, W) heatmap."""
    return {"png_bytes": float(png_bytes(heatmaps).mean()), "entropy": float(histogram_entropy(heatmaps).mean())}


def _as_batch(heatmaps: np.ndarray) -> np.ndarray:
    values = np.asarray(heatmaps, dtype=np.float64)
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3 or values.shape[0] == 0 or values.shape[1] == 0 or values.shape[2] == 0:
        raise InputError(f"heatmaps must be (H, W) or (N, H, W) and non-empty; got shape {np.shape(heatmaps)}")
    if not np.isfinite(values).all():
        raise InputError(f"heatmaps of shape {np.shape(heatmaps)} contain non-finite values")
    return values
