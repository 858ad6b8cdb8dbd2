"""`explainer.evaluate`: compare explanation methods by region perturbation on one model and batch of images.

Heatmaps (one value per pixel) come from the relevance of the class predicted on the unperturbed image: summed over
colour channels for relevance methods (LRP, gradient×input), and, for the gradient-like signals of sensitivity,
DeconvNet and guided backprop, the L2 norm over channels as in Samek et al. (their sign carries no evidence).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from explainer.api import Explainer
from explainer.errors import InputError
from explainer.evaluation.region_perturbation import compare_heatmaps
from explainer.images.spec import channel_sum
from explainer.lrp.composites import params_for


def heatmap_from_relevance(relevance: np.ndarray, layout: str, signal: bool) -> np.ndarray:
    """(N, H, W) heatmap: channel sum for relevance, channel L2 norm for gradient-like signals."""
    if signal:
        return np.sqrt(channel_sum(relevance.astype(np.float64) ** 2, layout)).astype(np.float32)
    return channel_sum(relevance, layout)


def method_heatmaps(model: Any, x: np.ndarray, methods: Sequence[str], *, targets: np.ndarray | None = None,
                    low: Any = None, high: Any = None, provider: str = "auto", batch_size: int = 16,
                    progress: bool = True, input_shape: tuple[int, ...] | None = None,
                    **rule_params: Any) -> tuple[dict[str, np.ndarray], np.ndarray, Explainer]:
    """Heatmaps of every method for ``x`` (all explaining the same targets: default the predicted classes)."""
    heatmaps: dict[str, np.ndarray] = {}
    shares = params_for(methods, rule_params)
    base: Explainer | None = model if isinstance(model, Explainer) else None
    for name in tqdm(methods, desc="explaining", unit="method", disable=not progress):
        if base is None:
            base = ex = Explainer(model, name, provider=provider, input_shape=input_shape, low=low, high=high,
                                  **shares[name])
        elif base.method == name:
            ex = base
        else:
            ex = base.with_method(name, low=low, high=high, **shares[name])
        if targets is None:
            targets = np.argmax(ex.forward(x, batch_size), axis=1)
        e = ex.explain(x, targets, batch_size=batch_size)
        heatmaps[name] = heatmap_from_relevance(e.relevance, ex.layout, signal=ex.composite.signal)
    assert base is not None
    return heatmaps, np.asarray(targets), base


def evaluate(model: str | os.PathLike | Explainer, x: np.ndarray, methods: Sequence[str] = ("epsilon-plus-flat",
             "gradient"), *, low: Any = None, high: Any = None, orders: Sequence[str] = ("morf",),
             include_random: bool = True, steps: int = 100, region: int = 9, perturb: Any = "uniform",
             repeats: int = 10, seed: int = 0, grid: str = "fixed", provider: str = "auto", batch_size: int = 128,
             progress: bool = True, input_shape: tuple[int, ...] | None = None,
             **rule_params: Any) -> dict[str, Any]:
    """Region-perturbation comparison of ``methods`` (plus the random baseline) on the batch ``x``.

    ``low``/``high`` are the valid input range in model input space (used for uniform noise and the zB rule).
    Returns the JSON-ready report of :func:`explainer.evaluation.region_perturbation.compare_heatmaps`.
    """
    methods = [m for m in methods if m != "random"]
    if not methods:
        raise InputError("no method to evaluate (give at least one besides 'random')")
    heatmaps, targets, ex = method_heatmaps(model, x, methods, low=low, high=high, provider=provider,
                                            progress=progress, input_shape=input_shape, **rule_params)
    if perturb == "uniform" and (low is None or high is None):
        raise InputError("uniform perturbation needs the valid input range low/high")
    report = compare_heatmaps(ex, x, heatmaps, orders=tuple(orders), include_random=include_random,
                              layout="NHWC" if ex.layout == "NHWC" else "NCHW", steps=steps, region=region,
                              perturb=perturb, low=low, high=high, repeats=repeats, seed=seed, grid=grid,
                              targets=targets, batch_size=batch_size, progress=progress)
    report["settings"]["model"] = ex.source
    report["settings"]["score"] = "pre-softmax logit of the class predicted on the unperturbed image"
    report["settings"]["heatmap"] = "channel sum (relevance) / channel L2 norm (gradient-like signals)"
    return report
