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
from explainer.evaluation.regions import plan_regions
from explainer.images.spec import channel_sum
from explainer.lrp.composites import params_for


def heatmap_from_relevance(relevance: np.ndarray, layout: str, signal: bool) -> np.ndarray:
    """(N, H, W) heatmap: channel sum for relevance, channel L2 norm for gradient-like signals."""
    if signal:
        return np.sqrt(channel_sum(relevance.astype(np.float64) ** 2, layout)).astype(np.float32)
    return channel_sum(relevance, layout)


def method_heatmaps(ex: Explainer, x: np.ndarray, methods: Sequence[str], *, targets: np.ndarray | None = None,
                    low: Any = None, high: Any = None, seed: str | None = None, batch_size: int = 16,
                    progress: bool = True, **rule_params: Any,
                    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, str]]:
    """Heatmaps of every method for ``x`` (all explaining the same targets: default the predicted classes), with
    the targets and each method's seed. ``ex`` is the explainer of the first method (its graph is shared);
    ``seed`` None keeps its seed choice."""
    heatmaps: dict[str, np.ndarray] = {}
    seeds: dict[str, str] = {}
    shares = params_for(methods, rule_params)
    for name in tqdm(methods, desc="explaining", unit="method", disable=not progress):
        if ex.method != name or (seed is not None and ex.seed != seed):
            ex = ex.with_method(name, low=low, high=high, seed=seed, **shares[name])
        if targets is None:
            targets = np.argmax(ex.forward(x, batch_size), axis=1)
        e = ex.explain(x, targets, batch_size=batch_size)
        heatmaps[name] = heatmap_from_relevance(e.relevance, ex.layout, signal=ex.composite.signal)
        seeds[name] = e.seed
    return heatmaps, np.asarray(targets), seeds


def evaluate(model: str | os.PathLike | Explainer, x: np.ndarray, methods: Sequence[str] = ("epsilon-plus-flat",
             "gradient"), *, low: Any = None, high: Any = None, orders: Sequence[str] = ("morf",),
             include_random: bool = True, steps: int | None = None, region: int | None = None,
             perturb: Any = "uniform", repeats: int = 10, seed: int = 0, grid: str = "fixed", provider: str = "auto",
             batch_size: int = 128, progress: bool = True, input_shape: tuple[int, ...] | None = None,
             seed_mode: str | None = None, **rule_params: Any) -> dict[str, Any]:
    """Region-perturbation comparison of ``methods`` (plus, with ``include_random``, the random-order baseline) on
    the batch ``x``.

    ``low``/``high`` are the valid input range in model input space (used for uniform noise and the zB rule).
    ``steps`` and ``region`` default to the paper's 100 steps of 9×9 regions scaled to the input (see
    :func:`explainer.evaluation.regions.plan_regions`; the report's ``settings["region_choice"]`` says what was
    chosen); values that cannot work are refused before any explanation. ``seed`` seeds the random draws;
    ``seed_mode`` ('logit' or 'one-hot'; None: each method's own) is what relevance starts from.
    Returns the JSON-ready report of :func:`explainer.evaluation.region_perturbation.compare_heatmaps`, with each
    method's seed in its entry.
    """
    methods = [m for m in methods if m != "random"]
    if not methods:
        raise InputError("no method to evaluate (give at least one besides 'random')")
    if perturb == "uniform" and (low is None or high is None):
        raise InputError("uniform perturbation needs the valid input range low/high")
    if seed_mode not in (None, "logit", "one-hot"):
        raise InputError(f"seed_mode must be 'logit', 'one-hot' or None (each method's own), got {seed_mode!r}")
    shares = params_for(methods, rule_params)
    ex = model if isinstance(model, Explainer) else Explainer(
        model, methods[0], provider=provider, input_shape=input_shape, low=low, high=high, seed=seed_mode,
        **shares[methods[0]])
    height, width = ex.input_shape[1:] if ex.layout == "NCHW" else ex.input_shape[:2]
    plan = plan_regions(height, width, steps=steps, region=region, grid=grid)
    heatmaps, targets, seeds = method_heatmaps(ex, x, methods, low=low, high=high, seed=seed_mode,
                                               progress=progress, **rule_params)
    report = compare_heatmaps(ex, x, heatmaps, orders=tuple(orders), include_random=include_random,
                              layout="NHWC" if ex.layout == "NHWC" else "NCHW", steps=plan.steps, region=plan.region,
                              perturb=perturb, low=low, high=high, repeats=repeats, seed=seed, grid=grid,
                              targets=targets, batch_size=batch_size, progress=progress)
    for name, entry in report["methods"].items():
        if name in seeds:
            entry["seed"] = seeds[name]
    settings = report["settings"]
    settings["model"] = ex.source
    settings["score"] = "pre-softmax logit of the class predicted on the unperturbed image"
    settings["heatmap"] = "channel sum (relevance) / channel L2 norm (gradient-like signals)"
    settings["region_choice"] = plan.describe()
    settings["seed_mode"] = seed_mode or "method default"
    return report
