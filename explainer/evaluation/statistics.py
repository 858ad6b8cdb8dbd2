"""Paired bootstrap confidence intervals over images for a region-perturbation report.

Every method of a report is scored on the same images (and, with common random numbers, the same noise), so a
difference between two methods is estimated from the per-image differences: the bootstrap resamples *images*, with
one set of resampled image indices shared by every comparison, and takes the percentile interval of the mean
difference. This is what makes small but consistent gaps visible that an interval per method would hide (the
image-to-image spread of AOPC is usually much larger than the gap between methods).

Fields added (:func:`add_statistics`):

* ``settings["bootstrap"]``: resamples, confidence, seed, method (percentile, paired over images).
* per method: ``aopc_ci`` [low, high] of its own AOPC; per method other than ``random`` (with a random baseline):
  ``aopc_vs_random`` {mean, low, high} of AOPC(method) - AOPC(random), and ``curve_vs_random`` {mean, low, high}:
  per step k, the mean over images of [f(x0) - f(xk)]_method - [f(x0) - f(xk)]_random with its interval (a band).
* ``pairwise``: for every pair of methods (random excluded: see ``aopc_vs_random``) {a, b, mean, low, high} of
  AOPC(a) - AOPC(b).
"""
from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from typing import Any

import numpy as np

from explainer.errors import InputError

RESAMPLES = 2000
CONFIDENCE = 0.95


#: bytes of resampled values held at once: the resamples are drawn and averaged a block at a time, so that memory
#: stays flat in the number of images (the full index table would take resamples × images × 8 bytes)
_BLOCK_BYTES = 16 * 2**20


class Resamples:
    """``resamples`` bootstrap resamples of ``images`` image indices (with replacement), drawn from ``seed``: the
    same resamples every time :meth:`means` is called, so that every comparison is paired over the same draws."""

    def __init__(self, images: int, resamples: int = RESAMPLES, seed: int = 0) -> None:
        if images < 1 or resamples < 1:
            raise InputError(f"the bootstrap needs at least one image and one resample; got {images} and {resamples}")
        self.images, self.resamples, self.seed = int(images), int(resamples), int(seed)

    def means(self, values: np.ndarray) -> np.ndarray:
        """(resamples, ...) the mean of ``values`` ((N,) or (N, K) per image) over each resample."""
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(0x5A3E,)))
        per_image = int(np.prod(values.shape[1:], dtype=np.int64)) * 8 + 8
        block = max(1, min(self.resamples, _BLOCK_BYTES // (per_image * self.images)))
        out = np.empty((self.resamples, *values.shape[1:]))
        for start in range(0, self.resamples, block):
            stop = min(self.resamples, start + block)
            draws = rng.integers(0, self.images, size=(stop - start, self.images))
            out[start:stop] = values[draws].mean(axis=1)
        return out


def interval(values: np.ndarray, resamples: Resamples, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean over images of ``values`` ((N,) or (N, K): per-image values or per-image differences) with its percentile
    bootstrap interval over ``resamples``: {mean, low, high}, floats or lists of K."""
    values = np.asarray(values, dtype=np.float64)
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be between 0 and 1; got {confidence!r}")
    if values.shape[0] != resamples.images:
        raise InputError(f"{values.shape[0]} per-image values for a bootstrap over {resamples.images} images")
    means = resamples.means(values)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    mean = values.mean(axis=0)
    if values.ndim == 1:
        return {"mean": float(mean), "low": float(low), "high": float(high)}
    return {"mean": mean.tolist(), "low": low.tolist(), "high": high.tolist()}


def add_statistics(report: dict[str, Any], *, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                   seed: int = 0) -> dict[str, Any]:
    """Add the paired bootstrap fields listed in the module docstring to ``report`` (a
    :func:`~explainer.evaluation.region_perturbation.compare_heatmaps` report, or one read back from its JSON) and
    return it. Deterministic given ``seed``."""
    methods = report.get("methods")
    if not isinstance(methods, Mapping) or not methods:
        raise InputError("the report has no 'methods' to compute confidence intervals for")
    aopc = {name: _array(entry, "per_image_aopc", name) for name, entry in methods.items()}
    counts = {len(values) for values in aopc.values()}
    if len(counts) != 1:
        raise InputError(f"methods were evaluated on different numbers of images: {sorted(counts)}")
    weights = Resamples(counts.pop(), resamples, seed)
    for name, entry in methods.items():
        ci = interval(aopc[name], weights, confidence)
        entry["aopc_ci"] = [ci["low"], ci["high"]]
    if "random" in methods:
        random_curves = _array(methods["random"], "per_image", "random")
        for name, entry in methods.items():
            if name != "random":
                entry["aopc_vs_random"] = interval(aopc[name] - aopc["random"], weights, confidence)
                entry["curve_vs_random"] = interval(_array(entry, "per_image", name) - random_curves, weights,
                                                    confidence)
    named = [name for name in methods if name != "random"]
    report["pairwise"] = [dict(a=a, b=b, **interval(aopc[a] - aopc[b], weights, confidence))
                          for a, b in combinations(named, 2)]
    report.setdefault("settings", {})["bootstrap"] = {
        "resamples": int(resamples), "confidence": float(confidence), "seed": int(seed),
        "method": "percentile interval of the mean; images resampled with replacement, the same resamples for "
                  "every method, so differences are paired per image"}
    return report


def _array(entry: Any, key: str, name: str) -> np.ndarray:
    values = entry.get(key) if isinstance(entry, Mapping) else None
    if values is None:
        raise InputError(f"method {name!r} has no {key!r} in the report")
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0 or not np.isfinite(array).all():
        raise InputError(f"method {name!r}: {key!r} must be finite per-image values")
    return array
