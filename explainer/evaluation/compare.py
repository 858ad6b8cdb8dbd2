"""`explainer.evaluate`: compare explanation methods by region perturbation on one model and set of images.

Heatmaps (one value per pixel) come from the relevance of the class predicted on the unperturbed image: summed over
colour channels for relevance methods (LRP, gradient×input), and, for the gradient-like signals of sensitivity,
DeconvNet and guided backprop (whose sign carries no evidence), a norm over channels named by ``signal_norm``
(:data:`SIGNAL_NORMS`): ``"l2"`` (the default, unchanged from earlier releases) or ``"linf"``, max |g| over channels.
The ℓ∞ reduction is Simonyan et al.'s saliency map (arXiv 1312.6034, Sec. 3.1: M_ij = max_c |w_h(i,j,c)|); Samek et
al. (arXiv 1509.06321, Sec. II-A, sensitivity analysis) compute the sensitivity heatmap from the partial derivatives
with, as far as we can tell, the same ℓ∞ norm over the colour channels. That could not be checked against the paper's
text here (see docs/aopc.md), so the choice is recorded in every report (``settings["signal_norm"]``). On
single-channel inputs both are |g|.

Memory: the images are taken a chunk at a time (an array, or an :class:`ImageStream` that reads them from disk), one
method after the other: each chunk is explained, turned into heatmaps and perturbed, and only per-image results are
kept (:class:`~explainer.evaluation.region_perturbation.Comparison`). The chunk size and the batch of perturbed images
per forward pass come from a memory budget and the model's tensor shapes (:func:`evaluation_sizes`), so what a run
holds does not grow with the number of images or steps. Only one method's relevance session is alive at a time once
the previous explainer is no longer referenced (when ``evaluate`` builds the explainer itself).

Feature rows, 1-D signals and token ids are evaluated by the same machinery, each sample laid out as a one-pixel-high
image of units (one feature, a window of samples, one token) with its own replacement values
(:mod:`explainer.evaluation.units`); their heatmaps are the relevance per feature, summed over a signal's channels
or a token's embedding dimensions.

Models whose output is a map [N, K, H, W] (segmentation logits) are scored by the sum of the logits an indicator
chooses, fixed per image at the unperturbed input: a channel over a box, a mask or the whole map, by default each
pixel's arg-max channel (:mod:`explainer.evaluation.maps`); the heatmaps explain that sum at x0, and no class switch
is counted.

Rows and engines: each image gives one row per method (:mod:`explainer.evaluation.rows`), computed by a
:class:`ChunkEvaluator` from the image alone (its random draws are seeded by its index in the run), and the report
is reduced from the rows (:func:`report_from_rows`). The local engine runs one method after the other, a chunk at a
time; the Ray engine (:mod:`explainer.evaluation.ray_engine`) hands whole chunks to actors. Both journal the rows as
they come (``rows=``), which is what makes a run resumable, and both give the same report.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from explainer.api import Explainer, LowConservationWarning
from explainer.errors import InputError
from explainer.evaluation.maps import MapTarget
from explainer.evaluation.region_perturbation import Comparison, Protocol
from explainer.evaluation.regions import plan_regions
from explainer.evaluation.rows import Journal
from explainer.evaluation.units import KINDS, Units, prepare_units
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
from explainer.seeds import is_map, map_shape

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
    batch. :func:`evaluate` takes one instead of an array to hold one chunk of images at a time. ``paths`` names the
    images in the rows and messages, ``targets`` (one class per image, e.g. from a manifest) replaces the predicted
    classes."""

    count: int
    read: Callable[[int, int], np.ndarray]
    paths: Sequence[Any] | None = None
    targets: Sequence[int] | None = None


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
    what: str = "image"

    def describe(self) -> str:
        """In words, e.g. '32 images at a time (about 1.2 MiB each to explain), perturbed images scored 128 at a
        time (about 300 KiB each), within 1 GiB' (``what``: 'sample' for feature rows, signals, token ids)."""
        return (f"{self.chunk} {self.what}(s) at a time (about {format_bytes(self.explain_bytes)} each to explain), "
                f"perturbed {self.what}s scored {self.batch} at a time (about {format_bytes(self.score_bytes)} each), "
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
    perturbed copy (an output map: also its indicator and logits). The relevance and the forward session keep their
    memory side by side, so each gets half the budget: the chunk is the most images (at most :data:`MAX_CHUNK`, or
    ``chunk`` when given) whose explanation fits its half, the batch the most perturbed images (at most
    ``batch_size`` and what one chunk produces) that fit the other. One image that alone exceeds its half still runs,
    one at a time.

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
    if is_map(ex.output_shape):
        explain_bytes += 2 * tensor_bytes(ex.output_shape)  # each image's indicator and logits, kept for its curves
    score_bytes = int(FORWARD_OVERHEAD * forward_bytes(shapes)) + image
    half = budget // 2
    chunk = fitting_batch(explain_bytes, half, min(MAX_CHUNK, images)) if chunk is None else min(chunk, images)
    batch = fitting_batch(score_bytes, half, min(cap, chunk * steps * repeats))
    check_bytes(chunk * explain_bytes, f"explaining {chunk} image(s) at a time")
    check_bytes(8 * chunk * repeats * steps, f"the curves of {chunk} image(s) × {repeats} repeats × {steps} steps")
    return EvaluationSizes(chunk, batch, explain_bytes, score_bytes, budget)


SIGNAL_NORMS = ("l2", "linf")


def heatmap_from_relevance(relevance: np.ndarray, layout: str, signal: bool, signal_norm: str = "l2") -> np.ndarray:
    """(N, H, W) heatmap: channel sum for relevance; for gradient-like signals the channel ``signal_norm``: L2
    (``"l2"``) or max |g| (``"linf"``)."""
    if signal_norm not in SIGNAL_NORMS:
        raise InputError(f"signal_norm must be one of {SIGNAL_NORMS}; got {signal_norm!r}")
    if not signal:
        return channel_sum(relevance, layout)
    axis = 1 if layout == "NCHW" else -1
    if signal_norm == "linf":
        return np.abs(relevance).max(axis=axis).astype(np.float32)
    return np.sqrt(channel_sum(relevance.astype(np.float64) ** 2, layout)).astype(np.float32)


@dataclass(frozen=True)
class EvaluationSpec:
    """What any worker needs to evaluate any chunk of a run's images the same way (plain data: it travels to Ray's
    actors). ``shares`` holds each method's rule parameters, ``batch`` the perturbed images per forward pass,
    ``source`` and ``layout`` are the model's as the first explainer saw them."""

    model: str
    methods: tuple[str, ...]
    orders: tuple[str, ...]
    include_random: bool
    steps: int
    region: int
    perturb: Any
    low: Any
    high: Any
    repeats: int
    seed: int
    grid: str
    batch: int
    signal_norm: str
    seed_mode: str | None
    provider: str
    input_shape: tuple[int, ...] | None
    shares: dict[str, dict[str, Any]]
    source: str
    layout: str
    region_choice: str
    units: Units | None = None
    maps: MapTarget | None = None

    @property
    def runs(self) -> tuple[str, ...]:
        """Every row name of a complete image: the methods, then ``"random"`` with the baseline."""
        return self.methods + ("random",) * self.include_random

    def curves(self, name: str) -> int:
        """Curves per image of method ``name`` (one per order; one for ``"random"``)."""
        return 1 if name == "random" else len(self.orders)

    def perturbation(self) -> Any:
        """The replacement as the protocol takes it: ``perturb``, or for non-image inputs the units' own."""
        return self.perturb if self.units is None else self.units.perturbation(self.perturb)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the rows' numbers (a resumed journal must have been written with the same)."""
        units = {} if self.units is None else {"units": self.units.fingerprint()}
        if self.maps is not None:
            units["output_map"] = self.maps.fingerprint()
        return json.loads(json.dumps({**units,
            "model": self.source, "methods": list(self.methods), "orders": list(self.orders),
            "include_random": self.include_random, "steps": self.steps, "region": self.region,
            "perturb": self.perturb if isinstance(self.perturb, str) else repr(self.perturb),
            "low": np.asarray(self.low).tolist() if self.low is not None else None,
            "high": np.asarray(self.high).tolist() if self.high is not None else None, "repeats": self.repeats,
            "seed": self.seed, "grid": self.grid, "signal_norm": self.signal_norm, "seed_mode": self.seed_mode,
            "rule_params": self.shares, "input_shape": list(self.input_shape) if self.input_shape else None,
        }, default=repr))

    def explainer(self) -> Explainer:
        """A new explainer of the first method."""
        return Explainer(self.model, self.methods[0], provider=self.provider, input_shape=self.input_shape,
                         low=self.low, high=self.high, seed=self.seed_mode,
                         input=None if self.units is None else self.units.input_name, **self.shares[self.methods[0]])


@dataclass
class _Observed:
    """A chunk of checked images with f(x0), their targets and whether the prediction already differs; for an output
    map also each image's indicator I and its logits at x0 (both [N, K·H·W])."""

    images: np.ndarray
    f0: np.ndarray
    targets: np.ndarray
    switched0: np.ndarray
    indicators: np.ndarray | None = None
    logits: np.ndarray | None = None


class ChunkEvaluator:
    """One worker's evaluator: rows (:mod:`explainer.evaluation.rows`) of any images of a run, given as contiguous
    chunks ``first``, ``first + 1``, ... of the run (per-image seeds: the rows do not depend on the chunks).

    Locally only one method's relevance session is alive at a time (the previous explainer is dropped when the next
    method's is built); with ``keep_sessions`` (Ray's actors, which take chunks for every method) each method's
    explainer is built once and kept."""

    def __init__(self, spec: EvaluationSpec, explainer: Explainer | None = None, *, keep_sessions: bool = False,
                 advance: Callable[[int], Any] | None = None) -> None:
        self.spec = spec
        self.ex = explainer if explainer is not None else spec.explainer()
        self.kept: dict[str, Explainer] | None = {} if keep_sessions else None
        self.vanished: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.advance = advance or (lambda done: None)
        units = spec.units
        self.protocol = Protocol.prepare(
            (lambda batch: self.ex.forward(batch)) if units is None else (lambda v: self.ex.forward(units.unpack(v))),
            layout=spec.layout, steps=spec.steps, region=spec.region, perturb=spec.perturbation(), low=spec.low,
            high=spec.high, repeats=spec.repeats, seed=spec.seed, grid=spec.grid, batch_size=spec.batch,
            eligible=None if units is None else units.eligible)

    def observe(self, images: np.ndarray, targets: np.ndarray | None = None) -> _Observed:
        """Check ``images`` and score them unperturbed: f(x0) of the ``targets`` (None: the predicted classes); on
        an output map the sum of the logits that the indicator chosen at x0 picks (``targets`` unused)."""
        images = self.protocol.check_images(images)
        maps = self.spec.maps
        if maps is not None:
            logits = self.protocol.predict(images)
            indicators = maps.indicators(logits)
            f0 = np.array([row @ chosen for row, chosen in zip(logits, indicators)])
            n = len(images)
            return _Observed(images, f0, np.full(n, maps.target, np.int64), np.zeros(n, bool), indicators,
                             logits.astype(np.float32))
        f0, chosen, switched0, _ = self.protocol.observe(images, targets)
        return _Observed(images, f0, chosen, switched0)

    def rows(self, name: str, observed: _Observed, first: int, paths: Sequence[str] | None) -> list[dict[str, Any]]:
        """The rows of method ``name`` (or ``"random"``) for the observed images ``first``, ``first + 1``, ..."""
        spec, images, targets, indicators = self.spec, observed.images, observed.targets, observed.indicators
        if name == "random":
            curves = {"random": self.protocol.scores(images, first, targets, None, "random", self.advance,
                                                     indicators)}
            complexity, seed = None, None
        else:
            ex = self._use(name)
            seeds = None
            if indicators is not None:
                seeds = indicators * observed.logits if ex.seed == "logit" else indicators
            maps = self.protocol.check_heatmaps(
                _heatmaps(ex, images, targets, first, self.vanished.setdefault(name, []), spec.signal_norm,
                          spec.units, seeds), images,
                f"heatmaps of method {name!r}")
            curves = {order: self.protocol.scores(images, first, targets, maps, order, self.advance, indicators)
                      for order in spec.orders}
            from explainer.evaluation.complexity import histogram_entropy, png_bytes
            complexity, seed = np.stack([png_bytes(maps), histogram_entropy(maps)], axis=1).tolist(), ex.seed
        return [{"image": first + i, "path": None if paths is None else str(paths[first + i]), "method": name,
                 "f0": float(observed.f0[i]), "target": int(targets[i]), "switched0": bool(observed.switched0[i]),
                 "scores": {order: scores[i].tolist() for order, (scores, _) in curves.items()},
                 "switched": None if indicators is not None else
                 {order: switched[i].tolist() for order, (_, switched) in curves.items()},
                 "complexity": None if complexity is None else complexity[i], "seed": seed}
                for i in range(len(images))]

    def warn_vanished(self, name: str) -> None:
        """One :class:`~explainer.api.LowConservationWarning` for what method ``name`` lost on any chunk so far."""
        parts = self.vanished.pop(name, [])
        if parts:
            samples, conservation = (np.concatenate(values) for values in zip(*parts))
            warnings.warn(LowConservationWarning(self._use(name), samples, conservation), stacklevel=3)

    def _use(self, name: str) -> Explainer:
        seed_mode = self.spec.seed_mode
        if self.ex.method == name and (seed_mode is None or self.ex.seed == seed_mode):
            return self.ex
        if self.kept is not None:
            self.kept[self.ex.method] = self.ex
            if name in self.kept:
                self.ex = self.kept[name]
                return self.ex
        self.ex = self.ex.with_method(name, low=self.spec.low, high=self.spec.high, seed=seed_mode,
                                      **self.spec.shares[name])
        return self.ex


def read_segments(images: ImageStream, indices: Sequence[int], failed: dict[int, str], *,
                  fail_fast: bool) -> list[tuple[int, np.ndarray]]:
    """(first, images) of each contiguous run of ``indices`` (sorted) read from ``images``. An image that cannot be
    read is left out and its reason put in ``failed`` (with ``fail_fast`` its InputError is raised instead)."""
    out: list[tuple[int, np.ndarray]] = []
    for first, stop in _runs(indices):
        try:
            out.append((first, images.read(first, stop)))
            continue
        except InputError:
            if fail_fast:
                raise
        singles: list[int] = []
        parts: dict[int, np.ndarray] = {}
        for index in range(first, stop):
            try:
                parts[index] = images.read(index, index + 1)
                singles.append(index)
            except InputError as exc:
                failed[index] = str(exc)
        out.extend((start, np.concatenate([parts[i] for i in range(start, end)])) for start, end in _runs(singles))
    return out


def chunk_rows(evaluator: ChunkEvaluator, images: ImageStream, first: int, stop: int, todo: Mapping[int, Sequence[str]],
               *, fail_fast: bool) -> list[dict[str, Any]]:
    """Every row ``todo`` asks of the images ``first`` .. ``stop - 1`` (image index: the runs it lacks), error rows of
    the images that cannot be read included: the unit of work of Ray's actors."""
    failed: dict[int, str] = {}
    wanted = [i for i in range(first, stop) if todo.get(i)]
    rows: list[dict[str, Any]] = []
    for start, chunk in read_segments(images, wanted, failed, fail_fast=fail_fast):
        observed = evaluator.observe(chunk, _targets(images, start, len(chunk)))
        for name in evaluator.spec.runs:
            keep = [i for i in range(len(chunk)) if name in todo[start + i]]
            if keep:
                rows += [row for row in evaluator.rows(name, observed, start, images.paths)
                         if row["image"] - start in keep]
    return rows + error_rows(failed, images.paths)


def error_rows(failed: Mapping[int, str], paths: Sequence[Any] | None) -> list[dict[str, Any]]:
    """The rows of the images that could not be read: index, path and reason."""
    return [{"image": i, "path": None if paths is None else str(paths[i]), "error": reason}
            for i, reason in sorted(failed.items())]


def evaluate(model: str | os.PathLike | Explainer, x: np.ndarray | ImageStream,
             methods: Sequence[str] = ("epsilon-plus-flat", "gradient"), *, low: Any = None, high: Any = None,
             orders: Sequence[str] = ("morf",), include_random: bool = True, steps: int | None = None,
             region: int | None = None, perturb: Any = None, repeats: int = 10, seed: int = 0,
             grid: str = "fixed", provider: str = "auto", batch_size: int = 128,
             max_memory: int | str = DEFAULT_EVALUATION_BYTES, chunk: int | None = None, progress: bool = True,
             input_shape: tuple[int, ...] | None = None, seed_mode: str | None = None,
             announce: Callable[[EvaluationSizes], Any] | None = None,
             names: tuple[str, str] = ("batch_size", "max_memory"), signal_norm: str = "l2",
             rows: str | os.PathLike | None = None, resume: bool = False, fail_fast: bool = True,
             engine: str = "local", workers: int | None = None, address: str | None = None,
             run_settings: Mapping[str, Any] | None = None, baseline: Any = None, mask_token: int | None = None,
             unit_names: tuple[str, str] = ("steps", "region"), target: int | None = None,
             output_region: Any = None, output_mask: Any = None, **rule_params: Any) -> dict[str, Any]:
    """Region-perturbation comparison of ``methods`` (plus, with ``include_random``, the random-order baseline) on
    the images ``x``: an array, or an :class:`ImageStream` read one chunk at a time.

    Models on feature rows [N, F], 1-D signals [N, C, L] or token ids [N, T] take ``x`` as an array (token ids: or a
    dict of the ids and their companions, e.g. ``attention_mask``, each [N, T]) and are evaluated with the units of
    :mod:`explainer.evaluation.units`: ``region`` is a signal's window in samples, ``perturb`` one of
    :data:`~explainer.evaluation.units.PERTURBATIONS` (default: the kind's first), ``baseline`` the features'
    replacement row [F] (default: the mean of the rows), ``mask_token`` the id replacing tokens; ``unit_names`` name
    the steps and window options in messages. ``perturb`` defaults to ``"uniform"`` for images.

    Models whose output is a map [N, K, H, W] are scored by f(x) = Σ I ⊙ logits(x), the indicator I fixed per image at
    the unperturbed input (:mod:`explainer.evaluation.maps`): channel ``target`` over the box ``output_region`` =
    (x0, y0, x1, y1) (half-open output-map pixels), the [H, W] ``output_mask`` or the whole map; without ``target``
    each chosen pixel's arg-max channel at x0. The rows' target is the channel (-1: arg-max), the class-switch
    fields are null, and ``settings`` says what was summed. These three options are refused on other outputs.

    ``low``/``high`` are the valid input range in model input space (used for uniform noise and the zB rule).
    ``steps`` and ``region`` default to the paper's 100 steps of 9×9 regions scaled to the input (see
    :func:`explainer.evaluation.regions.plan_regions`; the report's ``settings["region_choice"]`` says what was
    chosen); values that cannot work are refused before any explanation. ``seed`` seeds the random draws (per image:
    the results do not depend on the chunks, batches or workers); ``seed_mode`` ('logit' or 'one-hot'; None: each
    method's own) is what relevance starts from. ``max_memory`` (bytes, or a text such as '512M') bounds the chunks
    of images and the batches of perturbed images, ``batch_size`` caps the batches and ``chunk`` fixes the chunk (see
    :func:`evaluation_sizes`, whose messages name these two options as ``names``); ``announce`` is called with the
    sizes chosen before the first image is explained. ``signal_norm`` is the channel reduction of gradient-like
    signals (:data:`SIGNAL_NORMS`; see the module docstring).

    Every image gives one row per method (:mod:`explainer.evaluation.rows`), and the report is reduced from the rows
    (:func:`report_from_rows`). With ``rows`` (a path) they are journaled there as chunks finish, ``run_settings``
    added to the journal's header; ``resume`` continues such a journal, skipping the images it has (InputError when
    it was written with other settings). An image of an :class:`ImageStream` that cannot be read raises its
    InputError with ``fail_fast``, else it is skipped and listed in ``settings["failed_images"]``. ``engine``
    ``"ray"`` spreads the chunks over ``workers`` Ray actors (:mod:`explainer.evaluation.ray_engine`; ``address``: an
    existing cluster), with the same numbers as ``"local"``.
    Returns the JSON-ready report of :func:`explainer.evaluation.region_perturbation.compare_heatmaps`, with each
    method's seed in its entry.
    """
    methods = [m for m in methods if m != "random"]
    if not methods:
        raise InputError("no method to evaluate (give at least one besides 'random')")
    if signal_norm not in SIGNAL_NORMS:
        raise InputError(f"signal_norm must be one of {SIGNAL_NORMS}; got {signal_norm!r}")
    if seed_mode not in (None, "logit", "one-hot"):
        raise InputError(f"seed_mode must be 'logit', 'one-hot' or None (each method's own), got {seed_mode!r}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise InputError(f"chunk must be a positive integer or None; got {chunk!r}")
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {ENGINES}; got {engine!r}")
    if resume and rows is None:
        raise InputError("resume needs the rows journal to resume from (rows=...)")
    memory_budget(max_memory, names[1])
    if engine == "ray":
        from explainer.evaluation.ray_engine import require_ray
        require_ray()
    shares = params_for(methods, rule_params)
    ex = model if isinstance(model, Explainer) else Explainer(
        model, methods[0], provider=provider, input_shape=input_shape, low=low, high=high, seed=seed_mode,
        **shares[methods[0]])
    maps = None
    if is_map(ex.output_shape):
        if isinstance(x, ImageStream) and x.targets is not None:
            raise InputError("per-image targets (e.g. a manifest's) are class indices; an output map is scored by "
                             "one channel for every image (target=, --target) or each pixel's arg-max channel")
        maps = MapTarget.prepare(ex.output_shape, target, output_region, output_mask)
    elif target is not None or output_region is not None or output_mask is not None:
        map_shape(ex.output_shape)  # the error: a channel, box or mask needs an output map
    units = None
    if ex.layout in KINDS:
        if isinstance(x, ImageStream):
            raise InputError(f"a {ex.layout} input is evaluated from an array of its samples, not an image stream")
        units, view, perturb, plan = prepare_units(ex, x, steps=steps, region=region, grid=grid, perturb=perturb,
                                                   baseline=baseline, mask_token=mask_token, low=low, high=high,
                                                   names=unit_names)
        images = _array_stream(view)
    elif ex.layout in ("NCHW", "NHWC"):
        if baseline is not None or mask_token is not None:
            raise InputError("a baseline row and a mask token are for feature rows and token ids; images are "
                             "perturbed by perturb=")
        perturb = "uniform" if perturb is None else perturb
        if perturb == "uniform" and (low is None or high is None):
            raise InputError("uniform perturbation needs the valid input range low/high")
        images = x if isinstance(x, ImageStream) else _array_stream(x)
        height, width = ex.input_shape[1:] if ex.layout == "NCHW" else ex.input_shape[:2]
        plan = plan_regions(height, width, steps=steps, region=region, grid=grid, names=unit_names)
    else:
        raise InputError(f"region perturbation takes images, feature rows, 1-D signals and token ids; input "
                         f"'{ex.input_name}' is {ex.layout}")
    sizes = evaluation_sizes(ex, images.count, steps=plan.steps, repeats=repeats, max_memory=max_memory,
                             batch_size=batch_size, chunk=chunk, names=names)
    if units is not None:
        sizes = dataclasses.replace(sizes, what="sample")
    runs = len(methods) * len(orders) + include_random
    check_bytes(16 * images.count * (plan.steps + 1) * runs,
                f"{images.count} image(s) × {plan.steps + 1} steps × {runs} curve(s): the per-image scores and class "
                "switches")
    spec = EvaluationSpec(model=os.fspath(model) if not isinstance(model, Explainer) else ex.source,
                          methods=tuple(methods), orders=tuple(orders), include_random=bool(include_random),
                          steps=plan.steps, region=plan.region, perturb=perturb, low=low, high=high, repeats=repeats,
                          seed=seed, grid=grid, batch=sizes.batch, signal_norm=signal_norm, seed_mode=seed_mode,
                          provider=provider, input_shape=input_shape, shares=shares, source=ex.source,
                          layout="NHWC" if ex.layout == "NHWC" else "NCHW", region_choice=plan.describe(),
                          units=units, maps=maps)
    Comparison(lambda batch: batch, list(methods), images.count, orders=orders, include_random=include_random,
               layout=spec.layout, steps=plan.steps, region=plan.region, perturb=spec.perturbation(), low=low,
               high=high, repeats=repeats, seed=seed, grid=grid, batch_size=sizes.batch,
               progress=False)  # checks the protocol
    journal = _MemoryRows(spec.runs) if rows is None else Journal(
        rows, {**spec.fingerprint(), **(run_settings or {})}, spec.runs, resume=resume)
    if announce is not None:
        announce(sizes)
    bar = ProgressBar(spec, images.count, progress)
    try:
        with journal:
            if engine == "ray":
                from explainer.evaluation.ray_engine import run_ray
                del ex  # the actors build their own explainers
                run_ray(spec, images, journal, chunk=sizes.chunk, workers=workers, address=address,
                        fail_fast=fail_fast, bar=bar)
            else:
                _run_local(ChunkEvaluator(spec, ex, advance=bar.scored), images, journal, sizes.chunk,
                           fail_fast=fail_fast, bar=bar)
            journal.finish()
    finally:
        bar.close()
    return report_from_rows(spec, journal.rows(), images.count,
                            target_source="given" if images.targets is not None else "predicted")


ENGINES = ("local", "ray")


class ProgressBar:
    """One bar over the run's images, with throughput and time left. It counts curves (:meth:`EvaluationSpec.curves`)
    and shows them as images; it appears with the first curve scored (:meth:`scored`), so that a run that fails on
    its inputs prints its error alone."""

    def __init__(self, spec: EvaluationSpec, images: int, progress: bool) -> None:
        self.per_image = sum(spec.curves(name) for name in spec.runs)
        self.total, self.progress = images * self.per_image, progress
        self.bar: tqdm | None = None
        self.done, self.description = 0, ""

    def update(self, curves: int) -> None:
        """``curves`` more done without scoring (skipped: already in the journal, or unreadable)."""
        self.done += curves
        if self.bar is not None:
            self.bar.update(curves)

    def scored(self, curves: int) -> None:
        """``curves`` more scored."""
        if self.bar is None:
            self.bar = tqdm(total=self.total, unit="image", unit_scale=1 / self.per_image, disable=not self.progress,
                            initial=self.done, desc=f"{self.description}: " if self.description else "",
                            bar_format="{desc}{percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} [{elapsed}<{remaining}, "
                                       "{rate_fmt}]")
            self.done = 0
        self.update(curves)

    def set_description(self, description: str) -> None:
        self.description = description
        if self.bar is not None:
            self.bar.set_description(description)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_local(evaluator: ChunkEvaluator, images: ImageStream, journal: Any, chunk: int, *, fail_fast: bool,
               bar: ProgressBar) -> None:
    """The local engine: one method after the other (one relevance session alive at a time), a chunk at a time;
    f(x0) and the targets are computed by the first method that needs them and kept (a number per image)."""
    spec, count = evaluator.spec, images.count
    f0, targets, switched0 = np.full(count, np.nan), np.full(count, -1, np.int64), np.zeros(count, bool)
    failed: dict[int, str] = {}
    for name in spec.runs:
        bar.set_description(name)
        for first, stop in image_chunks(count, chunk):
            wanted = [i for i in range(first, stop) if i not in failed and not journal.done(i, name)]
            bar.update((stop - first - len(wanted)) * spec.curves(name))
            reported = len(failed)
            for start, chunk_images in read_segments(images, wanted, failed, fail_fast=fail_fast):
                span = slice(start, start + len(chunk_images))
                if spec.maps is not None or (targets[span] < 0).any():
                    observed = evaluator.observe(chunk_images, _targets(images, start, len(chunk_images)))
                    f0[span], targets[span], switched0[span] = observed.f0, observed.targets, observed.switched0
                else:
                    observed = _Observed(evaluator.protocol.check_images(chunk_images), f0[span], targets[span],
                                         switched0[span])
                journal.append(evaluator.rows(name, observed, start, images.paths))
            if len(failed) > reported:
                news = {i: failed[i] for i in list(failed)[reported:]}
                journal.append(error_rows(news, images.paths))
                bar.update(len(news) * spec.curves(name))
        if name != "random":
            evaluator.warn_vanished(name)


class _MemoryRows:
    """The rows of a run without a journal, in memory (the Python API's default)."""

    def __init__(self, runs: Sequence[str]) -> None:
        self.runs = frozenset(runs)
        self.kept: list[dict[str, Any]] = []
        self.have: dict[int, set[str]] = {}

    def done(self, index: int, run: str | None = None) -> bool:
        have = self.have.get(index, set())
        return run in have if run is not None else self.runs <= have

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            self.kept.append(dict(row))
            if "error" not in row:
                self.have.setdefault(row["image"], set()).add(row["method"])

    def finish(self) -> None:
        return None

    def rows(self) -> Iterable[dict[str, Any]]:
        return iter(self.kept)

    def __enter__(self) -> _MemoryRows:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def report_from_rows(spec: EvaluationSpec, rows: Iterable[Mapping[str, Any]], count: int, *,
                     target_source: str = "predicted") -> dict[str, Any]:
    """The report of :func:`evaluate` reduced from the rows of a run of ``count`` images (in any order, repeated rows
    of an image and method counted once): the images with every row, in run order. Images with an error row and no
    complete set are listed in ``settings["failed_images"]``; InputError when no image is complete."""
    runs = [(name, order) for name in spec.methods for order in spec.orders] + [("random", "random")] * \
        spec.include_random
    scores = {run: np.full((count, spec.steps), np.nan) for run in runs}
    switched = {run: np.zeros((count, spec.steps)) for run in runs}
    complexity = {name: np.full((2, count), np.nan) for name in spec.methods}
    f0, targets, switched0 = np.full(count, np.nan), np.full(count, -1, np.int64), np.zeros(count, bool)
    have = np.zeros((count, len(spec.runs)), bool)
    seeds: dict[str, str] = {}
    failed: dict[int, tuple[str, str]] = {}
    position = {name: k for k, name in enumerate(spec.runs)}
    for row in rows:
        index = row["image"]
        if "error" in row:
            failed[index] = (row.get("path") or f"image {index}", row["error"])
            continue
        name = row["method"]
        f0[index], targets[index], switched0[index] = row["f0"], row["target"], row["switched0"]
        for order in (("random",) if name == "random" else spec.orders):
            scores[name, order][index] = row["scores"][order]
            if row["switched"] is not None:
                switched[name, order][index] = row["switched"][order]
        if name != "random":
            complexity[name][:, index] = row["complexity"]
            seeds.setdefault(name, row["seed"])
        have[index, position[name]] = True
    complete = np.flatnonzero(have.all(axis=1))
    lost = [(i, failed[i]) for i in sorted(failed) if not have[i].all()]
    if len(complete) == 0:
        why = f"; the first: {lost[0][1][1]}" if lost else ""
        raise InputError(f"no image could be evaluated: {len(lost)} of {count} failed{why}")
    comparison = Comparison(_no_model, list(spec.methods), len(complete), orders=spec.orders,
                            include_random=spec.include_random, layout=spec.layout, steps=spec.steps,
                            region=spec.region, perturb=spec.perturbation(), low=spec.low, high=spec.high,
                            repeats=spec.repeats, seed=spec.seed, grid=spec.grid, batch_size=spec.batch,
                            progress=False)
    comparison.f0, comparison.targets, comparison.switched0 = f0[complete], targets[complete], switched0[complete]
    comparison.target_source = target_source
    for run in runs:
        comparison.rows[run], comparison.switched[run] = scores[run][complete], switched[run][complete]
    for name in spec.methods:
        comparison.complexity[name] = complexity[name][:, complete]
    report = comparison.report()
    for name, entry in report["methods"].items():
        if name in seeds:
            entry["seed"] = seeds[name]
    settings = report["settings"]
    settings["model"] = spec.source
    sample = "image" if spec.units is None else "sample"
    settings["score"] = (f"pre-softmax logit of the class predicted on the unperturbed {sample}"
                         if target_source == "predicted" else f"pre-softmax logit of the class given for each {sample}")
    if spec.maps is not None:
        settings.update(spec.maps.settings())
        for entry in report["methods"].values():
            entry["class_switch_curve"] = entry["class_switch_rate"] = None
    settings["heatmap"] = (f"channel sum (relevance) / channel {'L2 norm' if spec.signal_norm == 'l2' else 'max |g|'} "
                           "(gradient-like signals)")
    settings["signal_norm"] = spec.signal_norm
    settings["region_choice"] = spec.region_choice
    settings["seed_mode"] = spec.seed_mode or "method default"
    if spec.units is not None:
        settings.update(spec.units.settings(spec.perturb))
    if lost:
        settings["failed_images"] = [{"index": i, "image": path, "reason": reason} for i, (path, reason) in lost]
    return report


def _no_model(batch: np.ndarray) -> np.ndarray:
    raise AssertionError("a report reduced from rows scores no image")


def _targets(images: ImageStream, first: int, count: int) -> np.ndarray | None:
    return None if images.targets is None else np.asarray(images.targets[first:first + count], dtype=np.int64)


def _runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """(first, stop) of each run of consecutive numbers in the sorted ``indices``."""
    out: list[tuple[int, int]] = []
    for index in indices:
        if out and out[-1][1] == index:
            out[-1] = (out[-1][0], index + 1)
        else:
            out.append((index, index + 1))
    return out


def image_chunks(count: int, size: int) -> list[tuple[int, int]]:
    """(first, stop) of each chunk of ``size`` images of ``count``."""
    return [(first, min(count, first + size)) for first in range(0, count, size)]


def _heatmaps(ex: Explainer, images: np.ndarray, targets: np.ndarray, first: int,
              vanished: list[tuple[np.ndarray, np.ndarray]], signal_norm: str, units: Units | None = None,
              seeds: np.ndarray | None = None) -> np.ndarray:
    """The heatmaps of one chunk (the run's images ``first``, ...; for non-image inputs the views of ``units``) in
    one relevance run, of the ``targets`` or (an output map) of the seed arrays ``seeds``. A
    :class:`~explainer.api.LowConservationWarning` is not shown but appended to ``vanished`` as (samples' indices in
    the run, their conservation), so that a method warns once, not once a chunk; other warnings pass."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = images if units is None else units.unpack(images)
        explanation = ex.explain(x, targets, batch_size=len(images)) if seeds is None else \
            ex.explain(x, batch_size=len(images), seed=seeds)
    for warning in caught:
        if isinstance(warning.message, LowConservationWarning):
            vanished.append((first + warning.message.samples, warning.message.conservation))
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if units is not None:
        return units.heatmaps(explanation.relevance, ex.composite.signal, signal_norm)
    return heatmap_from_relevance(explanation.relevance, ex.layout, signal=ex.composite.signal,
                                  signal_norm=signal_norm)


def _array_stream(x: Any) -> ImageStream:
    """An in-memory batch as an :class:`ImageStream` (its chunks are views)."""
    x = np.asarray(x)
    if x.ndim == 0 or len(x) == 0:
        raise InputError(f"x must be a non-empty batch of images; got shape {x.shape}")
    return ImageStream(len(x), lambda start, stop: x[start:stop])
