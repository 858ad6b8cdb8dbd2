"""sRGB -> CIE L*a*b* conversion in plain NumPy (D65 white, 2 degree observer).

The SR map's saliency step compares patches in L*a*b*, as Goferman's context-aware saliency does; this small
helper keeps scikit-image out of the runtime dependencies.
"""
from __future__ import annotations

import numpy as np

from explainer.errors import InputError

# Linear sRGB -> CIE XYZ (IEC 61966-2-1, D65).
_SRGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
# D65 white as the image of sRGB white under the matrix, so that R = G = B gives a* = b* = 0 up to rounding.
_D65_WHITE = _SRGB_TO_XYZ.sum(axis=1)
_DELTA = 6.0 / 29.0


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """Undo the sRGB transfer curve: gamma-encoded values in [0, 1] -> linear light in [0, 1]."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Convert sRGB values in [0, 1] with the colour channel last (..., 3) to CIE L*a*b*.

    Returns float64 with L* in [0, 100] and a*, b* roughly in [-110, 110], same shape as the input.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise InputError(f"srgb_to_lab expects the colour channel last with size 3, got shape {rgb.shape}")
    if not np.issubdtype(rgb.dtype, np.number) or np.issubdtype(rgb.dtype, np.complexfloating):
        raise InputError(f"srgb_to_lab expects real numbers, got dtype {rgb.dtype}")
    rgb = rgb.astype(np.float64)
    if not np.all(np.isfinite(rgb)):
        raise InputError("srgb_to_lab got non-finite values (NaN or inf)")
    if rgb.size and (rgb.min() < 0.0 or rgb.max() > 1.0):
        raise InputError(f"srgb_to_lab expects values in [0, 1], got range [{rgb.min():.4g}, {rgb.max():.4g}]")
    xyz = srgb_to_linear(rgb) @ _SRGB_TO_XYZ.T / _D65_WHITE
    f = np.where(xyz > _DELTA**3, np.cbrt(xyz), xyz / (3.0 * _DELTA**2) + 4.0 / 29.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab
