"""`explainer.evaluate`: compare explanation methods by region perturbation on one model and set of images.

Heatmaps (one value per pixel) come from the relevance of the class predicted on the unperturbed image: summed over
colour channels for relevance methods (LRP, gradient×input), and, for the gradient-like signals of sensitivity,
DeconvNet and guided backprop, the L2 norm over channels as in Samek et al. (their sign carries no evidence).

Memory: the images are taken a chunk at a time (an array, or an :class:`ImageStream` that reads them from disk), one
method after the other: each chunk is explained, turned into heatmaps and perturbed, and only per-image results are
kept (:class:`~explainer.evaluation.region_perturbation.Comparison`). The chunk size and the batch of perturbed images
per forward pass come from a memory budget and the model's tensor shapes (:func:`evaluation_sizes`), so what a run
holds does not grow with the number of images or steps. Only one method's relevance session is alive at a time once
the previous explainer is no longer referenced (when ``evaluate`` builds the explainer itself).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from explainer.api import Explainer, LowConservationWarning
from explainer.errors import InputError
from explainer.evaluation.region_perturbation import Comparison
from explainer.evaluation.regions import plan_regions
from explainer.images.spec import channel_sum
from explainer.limits import (
    DEFAULT_EVALUATION_BYTES,
    check_bytes,
    fitting_batch,
    format_bytes,
    forward_bytes,
    graph_bytes,
    memory_budget,
    tensor_bytes,
)
from explainer.lrp.composites import params_for

MAX_CHUNK = 32
"""Most images explained and perturbed at a time: enough for full scoring batches, a few MiB of 224×224 images."""

FORWARD_OVERHEAD = 2.5
RELEVANCE_OVERHEAD = 2.0
"""What ONNX Runtime holds per sample of a batch run over and over, as a multiple of the estimates of
:mod:`explainer.limits` (the model's two largest tensors for a forward pass, every tensor for a relevance pass):
measured 2.5-2.6 and 1.2-2.1 on the digits CNN and on a 224² CNN of its widths. A session's arena keeps the buffers
of its largest run, and from the second run of a batch shape on it adds the shape's memory pattern as one more
block."""


@dataclass(frozen=True)
class ImageStream:
    """``count`` images read on demand: ``read(start, stop)`` returns images ``start`` .. ``stop - 1`` as a model
    batch. :func:`evaluate` takes one instead of an array to hold one chunk of images at a time."""

    count: int
    read: Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class EvaluationSizes:
    """How :func:`evaluate` splits its work to fit ``budget`` bytes: ``chunk`` images are read, explained and
    perturbed at a time, perturbed images are scored ``batch`` at a time; ``explain_bytes`` and ``score_bytes`` are
    the estimates per image they come from (see :func:`evaluation_sizes`)."""

    chunk: int
    batch: int
    explain_bytes: int
    score_bytes: int
    budget: int

    def describe(self) -> str:
        """In words, e.g. '32 images at a time (about 1.2 MiB each to explain), perturbed images scored 128 at a
        time (about 300 KiB each), within 1 GiB'."""
        return (f"{self.chunk} image(s) at a time (about {format_bytes(self.explain_bytes)} each to explain), "
                f"perturbed images scored {self.batch} at a time (about {format_bytes(self.score_bytes)} each), "
                f"within {format_bytes(self.budget)}")


def evaluation_sizes(ex: Explainer, images: int, *, steps: int, repeats: int,
                     max_memory: int | str = DEFAULT_EVALUATION_BYTES, batch_size: int = 128,
                     chunk: int | None = None, names: tuple[str, str] = ("batch_size", "max_memory"),
                     ) -> EvaluationSizes:
    """Chunk and batch sizes for evaluating ``images`` images on ``ex``'s model within ``max_memory`` bytes (or a
    text such as '512M').

    Explaining one image holds about every tensor of the model at batch size 1 (the relevance pass reads every
    forward activation), scoring one perturbed image about the model's two largest tensors
    (:func:`explainer.limits.graph_bytes`, :func:`~explainer.limits.forward_bytes`), each times what ONNX Runtime
    keeps on top (:data:`RELEVANCE_OVERHEAD`, :data:`FORWARD_OVERHEAD`), plus the image and its relevance or its
    perturbed copy. The relevance and the forward session keep their memory side by side, so each gets half the
    budget: the chunk is the most images (at most :data:`MAX_CHUNK`, or ``chunk`` when given) whose explanation fits
    its half, the batch the most perturbed images (at most ``batch_size`` and what one chunk produces) that fit the
    other. One image that alone exceeds its half still runs, one at a time.

    InputError (:func:`explainer.limits.check_bytes`), naming the options as ``names`` (the CLI's ``('--batch-size',
    '--max-memory')``), when a bad budget is given, when ``batch_size`` perturbed images could not go through the
    model within the request limit (as before the budget existed: the cap must be possible), or when the chosen chunk
    or its curves exceed it.
    """
    budget = memory_budget(max_memory, names[1])
    shapes = list(ex.graph.shapes.values())
    image = tensor_bytes(ex.input_shape)
    cap = min(batch_size, images * steps * repeats)
    option = f"{names[0]} {batch_size}" if names[0].startswith("-") else f"{names[0]}={batch_size}"
    check_bytes(cap * forward_bytes(shapes), f"{option}: one batch of {cap} perturbed images through the model")
    explain_bytes = int(RELEVANCE_OVERHEAD * graph_bytes(shapes)) + 2 * image
    score_bytes = int(FORWARD_OVERHEAD * forward_bytes(shapes)) + image
    half = budget // 2
    chunk = fitting_batch(explain_bytes, half, min(MAX_CHUNK, images)) if chunk is None else min(chunk, images)
    batch = fitting_batch(score_bytes, half, min(cap, chunk * steps * repeats))
    check_bytes(chunk * explain_bytes, f"explaining {chunk} image(s) at a time")
    check_bytes(8 * chunk * repeats * steps, f"the curves of {chunk} image(s) × {repeats} repeats × {steps} steps")
    return EvaluationSizes(chunk, batch, explain_bytes, score_bytes, budget)


def heatmap_from_relevance(relevance: np.ndarray, layout: str, signal: bool) -> np.ndarray:
    """(N, H, W) heatmap: channel sum for relevance, channel L2 norm for gradient-like signals."""
    if signal:
        return np.sqrt(channel_sum(relevance.astype(np.float64) ** 2, layout)).astype(np.float32)
    return channel_sum(relevance, layout)


def evaluate(model: str | os.PathLike | Explainer, x: np.ndarray | ImageStream,
             methods: Sequence[str] = ("epsilon-plus-flat", "gradient"), *, low: Any = None, high: Any = None,
             orders: Sequence[str] = ("morf",), include_random: bool = True, steps: int | None = None,
             region: int | None = None, perturb: Any = "uniform", repeats: int = 10, seed: int = 0,
             grid: str = "fixed", provider: str = "auto", batch_size: int = 128,
             max_memory: int | str = DEFAULT_EVALUATION_BYTES, chunk: int | None = None, progress: bool = True,
             input_shape: tuple[int, ...] | None = None, seed_mode: str | None = None,
             announce: Callable[[EvaluationSizes], Any] | None = None,
             names: tuple[str, str] = ("batch_size", "max_memory"), **rule_params: Any) -> dict[str, Any]:
    """Region-perturbation comparison of ``methods`` (plus, with ``include_random``, the random-order baseline) on
    the images ``x``: an array, or an :class:`ImageStream` read one chunk at a time.

    ``low``/``high`` are the valid input range in model input space (used for uniform noise and the zB rule).
    ``steps`` and ``region`` default to the paper's 100 steps of 9×9 regions scaled to the input (see
    :func:`explainer.evaluation.regions.plan_regions`; the report's ``settings["region_choice"]`` says what was
    chosen); values that cannot work are refused before any explanation. ``seed`` seeds the random draws (per image:
    the results do not depend on the chunks or batches); ``seed_mode`` ('logit' or 'one-hot'; None: each method's
    own) is what relevance starts from. ``max_memory`` (bytes, or a text such as '512M') bounds the chunks of images
    and the batches of perturbed images, ``batch_size`` caps the batches and ``chunk`` fixes the chunk (see
    :func:`evaluation_sizes`, whose messages name these two options as ``names``); ``announce`` is called with the
    sizes chosen before the first image is explained.
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
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise InputError(f"chunk must be a positive integer or None; got {chunk!r}")
    memory_budget(max_memory, names[1])
    images = x if isinstance(x, ImageStream) else _array_stream(x)
    shares = params_for(methods, rule_params)
    ex = model if isinstance(model, Explainer) else Explainer(
        model, methods[0], provider=provider, input_shape=input_shape, low=low, high=high, seed=seed_mode,
        **shares[methods[0]])
    del model  # with_method below frees each method's session once the next one is built (unless the caller holds it)
    height, width = ex.input_shape[1:] if ex.layout == "NCHW" else ex.input_shape[:2]
    plan = plan_regions(height, width, steps=steps, region=region, grid=grid)
    sizes = evaluation_sizes(ex, images.count, steps=plan.steps, repeats=repeats, max_memory=max_memory,
                             batch_size=batch_size, chunk=chunk, names=names)
    runs = len(methods) * len(orders) + include_random
    check_bytes(8 * images.count * (plan.steps + 1) * runs,
                f"{images.count} image(s) × {plan.steps + 1} steps × {runs} curve(s): the per-image results")
    source = ex.source

    def score(batch: np.ndarray) -> np.ndarray:
        return ex.forward(batch)  # the current method's explainer: all share one forward session

    comparison = Comparison(score, methods, images.count, orders=orders, include_random=include_random,
                            layout="NHWC" if ex.layout == "NHWC" else "NCHW", steps=plan.steps, region=plan.region,
                            perturb=perturb, low=low, high=high, repeats=repeats, seed=seed, grid=grid,
                            batch_size=sizes.batch, progress=progress)
    if announce is not None:
        announce(sizes)
    seeds: dict[str, str] = {}
    for index, name in enumerate(methods):
        if ex.method != name or (seed_mode is not None and ex.seed != seed_mode):
            ex = ex.with_method(name, low=low, high=high, seed=seed_mode, **shares[name])
        vanished: list[tuple[np.ndarray, np.ndarray]] = []
        for first, stop in _chunks(images.count, sizes.chunk):
            chunk_images = images.read(first, stop)
            if index == 0:
                chunk_images = comparison.observe(chunk_images, first)
            targets = comparison.chunk_targets(first, len(chunk_images))
            comparison.add(name, chunk_images, first, _heatmaps(ex, chunk_images, targets, first, vanished))
        seeds[name] = ex.seed
        if vanished:  # one warning per method, naming the samples by their index in the whole run
            samples, conservation = (np.concatenate(parts) for parts in zip(*vanished))
            warnings.warn(LowConservationWarning(ex, samples, conservation), stacklevel=2)
    if include_random:
        for first, stop in _chunks(images.count, sizes.chunk):
            comparison.add_random(images.read(first, stop), first)
    report = comparison.report()
    for name, entry in report["methods"].items():
        if name in seeds:
            entry["seed"] = seeds[name]
    settings = report["settings"]
    settings["model"] = source
    settings["score"] = "pre-softmax logit of the class predicted on the unperturbed image"
    settings["heatmap"] = "channel sum (relevance) / channel L2 norm (gradient-like signals)"
    settings["region_choice"] = plan.describe()
    settings["seed_mode"] = seed_mode or "method default"
    return report


def _chunks(count: int, size: int) -> list[tuple[int, int]]:
    """(first, stop) of each chunk of ``size`` images of ``count``."""
    return [(first, min(count, first + size)) for first in range(0, count, size)]


def _heatmaps(ex: Explainer, images: np.ndarray, targets: np.ndarray, first: int,
              vanished: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The heatmaps of one chunk (the run's images ``first``, ...) in one relevance run. A
    :class:`~explainer.api.LowConservationWarning` is not shown but appended to ``vanished`` as (samples' indices in
    the run, their conservation), so that a method warns once, not once a chunk; other warnings pass."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explanation = ex.explain(images, targets, batch_size=len(images))
    for warning in caught:
        if isinstance(warning.message, LowConservationWarning):
            vanished.append((first + warning.message.samples, warning.message.conservation))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return heatmap_from_relevance(explanation.relevance, ex.layout, signal=ex.composite.signal)


def _array_stream(x: Any) -> ImageStream:
    """An in-memory batch as an :class:`ImageStream` (its chunks are views)."""
    x = np.asarray(x)
    if x.ndim == 0 or len(x) == 0:
        raise InputError(f"x must be a non-empty batch of images; got shape {x.shape}")
    return ImageStream(len(x), lambda start, stop: x[start:stop])
