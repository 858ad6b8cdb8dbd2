"""Heatmap complexity as in Samek et al. (arXiv 1509.06321): compressed PNG size and 256-bin histogram entropy.

Both measures work on the heatmap rendered as an 8-bit grayscale image. Rendering is symmetric and per heatmap:
``u = round(127.5 + 127.5 * h / max|h|)``, so zero relevance is mid-grey (128), the strongest positive value 255 and
the strongest negative value 0; an all-zero heatmap is uniformly 128. Dividing by max|h| makes both measures
independent of the heatmap's scale, so methods with different relevance magnitudes compare fairly. Lower values
mean a sparser, less noisy heatmap.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from explainer.errors import InputError

PNG_COMPRESS_LEVEL = 9


def heatmap_to_uint8(heatmaps: np.ndarray) -> np.ndarray:
    """Render (H, W) or (N, H, W) heatmaps as uint8 grayscale with the symmetric per-heatmap scaling above."""
    values = _as_batch(heatmaps)
    scale = np.abs(values).max(axis=(1, 2), keepdims=True)
    safe = np.where(scale > 0, scale, 1.0)
    grey = np.rint(127.5 + 127.5 * values / safe)
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
