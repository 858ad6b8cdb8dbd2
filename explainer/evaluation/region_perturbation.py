"""Region perturbation (Samek et al., arXiv 1509.06321): perturbation curves, AOPC and ABPC.

For each image x and heatmap h, the regions r_1..r_L of h (see :mod:`explainer.evaluation.regions`; default: the fixed
9x9 grid covering the whole image) are removed in MoRF, LeRF (by |h|), signed-LeRF or random order:
x(0) = x, x(k) = g(x(k-1), r_k) with g from :mod:`explainer.evaluation.perturbations`. f is the pre-softmax score of
the class predicted at x(0) (or of given targets); on a model whose output is a map, the sum of the logits an
indicator fixed at x(0) chooses (:mod:`explainer.evaluation.maps`).

* curve: f(x(0)) - f(x(k)) for k = 0..L, averaged over repetitions (for random g or random order) and images.
* AOPC = 1/(L+1) * sum_{k=0..L} [f(x(0)) - f(x(k))], averaged over images: a mean over L+1 steps, not a
  trapezoid area.
* ABPC = 1/(L+1) * sum_k [f(x_LeRF(k)) - f(x_MoRF(k))], averaged over images (= AOPC(MoRF) - AOPC(LeRF)). ABPC is
  an addition to Samek et al.'s protocol (which reports AOPC of MoRF only), computed with the LeRF order given.
* class switch: the fraction of images whose predicted class at x(k) is no longer the scored class (averaged over
  repetitions), per step, and its mean over the L+1 steps.

:func:`explainer.evaluation.statistics.add_statistics` adds paired bootstrap confidence intervals over images to a
report.

Speed: the L perturbed images of one image and repetition are built by array copies into one reusable batch buffer
and scored in batches of ``batch_size`` across images and repetitions; f(x(0)) is scored once per image.

Memory: :class:`Comparison` takes the images chunk by chunk and keeps only per-image results (the L mean scores of
each image, method and order, and two complexity figures per image and method), so a run over many images holds one
chunk, one batch and those rows. Random draws come from a generator seeded by (seed, image index, repetition), with
the image's index in the whole run, not in its chunk: results depend neither on ``batch_size`` nor on the chunking,
and every method sees the same noise for the same image (common random numbers).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from explainer.errors import InputError, ModelError
from explainer.evaluation.perturbations import Perturbation, resolve_perturbation
from explainer.evaluation.regions import GRIDS, ORDERS, max_regions, order_regions
from explainer.images.spec import LAYOUTS

ScoreFn = Callable[[np.ndarray], np.ndarray]
AOPC_DEFINITION = "mean over the L+1 steps k=0..L of f(x0) - f(xk), averaged over images (not a trapezoid)"
ABPC_DEFINITION = ("AOPC(MoRF) - AOPC(LeRF), LeRF ordered as in settings['orders']; an addition to Samek et al.'s "
                   "protocol, not part of it")
LERF_ORDERS = ("lerf", "lerf-signed")


@dataclass(frozen=True)
class PerturbationResult:
    """Outcome of one region-perturbation run.

    ``curve`` (L+1,): mean over images of f(x0) - f(xk); ``per_image`` (N, L+1): the same per image;
    ``per_image_aopc`` (N,); ``aopc``: their mean; ``scores`` (N, L+1): mean f(xk); ``targets`` (N,): scored class;
    ``switched`` (N, L+1): per image, the fraction of repetitions whose predicted class at x(k) differs from the
    target; ``settings``: every choice that affects the numbers (order, grid, region, perturbation, repeats, seed).
    """

    curve: np.ndarray
    per_image: np.ndarray
    per_image_aopc: np.ndarray
    aopc: float
    scores: np.ndarray
    targets: np.ndarray
    settings: dict[str, Any]
    switched: np.ndarray


def as_score_fn(model: Any) -> ScoreFn:
    """Normalise a model to ``f(x: (B, ...) float32) -> logits (B, classes)``.

    Accepts an ``onnxruntime.InferenceSession`` (single input; first output = logits; a fixed batch dimension is
    honoured by splitting and padding), any object with ``.forward(x)`` (e.g. ``explainer.Explainer``), or a
    plain callable.
    """
    if all(hasattr(model, name) for name in ("get_inputs", "get_outputs", "run")):
        return _session_score_fn(model)
    forward = getattr(model, "forward", None)
    if callable(forward):
        return forward
    if callable(model):
        return model
    raise InputError(f"cannot score with a {type(model).__name__}: expected a callable x -> logits, an "
                     "onnxruntime.InferenceSession or an object with .forward(x)")


def region_perturbation(
    score_fn: Any,
    images: np.ndarray,
    heatmaps: np.ndarray,
    *,
    layout: str = "NCHW",
    steps: int = 100,
    region: int = 9,
    order: str = "morf",
    perturb: str | Perturbation | Callable = "uniform",
    low: float | np.ndarray | None = None,
    high: float | np.ndarray | None = None,
    repeats: int = 10,
    seed: int = 0,
    grid: str = "fixed",
    targets: np.ndarray | None = None,
    batch_size: int = 128,
    progress: bool = True,
) -> PerturbationResult:
    """Perturbation curve and AOPC of ``heatmaps`` (N, H, W) for ``images`` (N, C, H, W) or (N, H, W, C).

    Removes ``steps`` (L) non-overlapping ``region`` x ``region`` squares (default: fixed grid anchored at the
    covering the image; ``grid="sliding"`` for greedy sliding windows) in ``order`` (``"morf"``, ``"lerf"`` by |h|,
    ``"lerf-signed"``, ``"random"``),
    replacing them with ``perturb`` (``"uniform"`` over ``low..high`` -- the paper's choice, ``"mean"``,
    ``"zero"``, ``"blur"``, a :class:`Perturbation` or ``fn(image, rng) -> replacement``). Random perturbations
    and random orders are averaged over ``repeats``; deterministic ones run once. ``targets`` defaults to the
    argmax of the logits at the unperturbed images.
    """
    protocol = Protocol.prepare(score_fn, layout=layout, steps=steps, region=region, perturb=perturb, low=low,
                                 high=high, repeats=repeats, seed=seed, grid=grid, batch_size=batch_size)
    if order not in ORDERS:
        raise InputError(f"order must be one of {ORDERS}; got {order!r}")
    images = protocol.check_images(images)
    n = len(images)
    maps = protocol.check_heatmaps(heatmaps, images, "heatmaps")
    f0, targets, switched0, source = protocol.observe(images, targets)
    desc = "random order" if order == "random" else f"region perturbation {_order_name(order)}"
    with tqdm(total=n, desc=desc, unit="image", disable=not progress) as bar:
        rows, switched = protocol.scores(images, 0, targets, maps, order, bar.update)
    settings = dict(protocol.settings(n, source), order=order, repeats=protocol.repeats_for(order))
    return _result(f0, targets, rows, settings, switched0, switched)


def abpc(morf: PerturbationResult, lerf: PerturbationResult) -> float:
    """Area between the LeRF and MoRF curves: mean over images and the L+1 steps of f(x_LeRF(k)) - f(x_MoRF(k))."""
    if morf.settings.get("order") != "morf" or lerf.settings.get("order") not in LERF_ORDERS:
        raise InputError(f"abpc needs a MoRF and a LeRF result; got orders {morf.settings.get('order')!r} and "
                         f"{lerf.settings.get('order')!r}")
    if morf.scores.shape != lerf.scores.shape or not np.array_equal(morf.targets, lerf.targets):
        raise InputError(f"abpc needs results on the same images and targets; got scores of shape "
                         f"{morf.scores.shape} and {lerf.scores.shape}")
    return float((lerf.scores - morf.scores).mean(axis=1).mean())


def compare_heatmaps(
    score_fn: Any,
    images: np.ndarray,
    heatmaps_by_method: Mapping[str, np.ndarray],
    *,
    orders: tuple[str, ...] = ("morf",),
    include_random: bool = True,
    layout: str = "NCHW",
    steps: int = 100,
    region: int = 9,
    perturb: str | Perturbation | Callable = "uniform",
    low: float | np.ndarray | None = None,
    high: float | np.ndarray | None = None,
    repeats: int = 10,
    seed: int = 0,
    grid: str = "fixed",
    targets: np.ndarray | None = None,
    batch_size: int = 128,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate several methods' heatmaps on the same images, targets and random draws; JSON-ready dict.

    Structure: ``{"settings": {...}, "methods": {name: {"aopc", "abpc" (null without LeRF), "curve" (L+1),
    "per_image" (N x (L+1) curves), "per_image_aopc" (N), "repeats", "complexity": {"png_bytes", "entropy"},
    "class_switch_curve" (L+1), "class_switch_rate", ["curve_lerf", "aopc_lerf", "per_image_aopc_lerf" with
    LeRF]}}, plus the bootstrap fields of :func:`explainer.evaluation.statistics.add_statistics`}``. With
    ``include_random`` a ``"random"`` entry uses the random order (its abpc and complexity are null). Other options
    as in :func:`region_perturbation`; :class:`Comparison`
    computes the same report from images given chunk by chunk.
    """
    if not heatmaps_by_method:
        raise InputError("heatmaps_by_method is empty: give at least one method's heatmaps")
    comparison = Comparison(score_fn, list(heatmaps_by_method), len(images), orders=orders,
                            include_random=include_random, layout=layout, steps=steps, region=region, perturb=perturb,
                            low=low, high=high, repeats=repeats, seed=seed, grid=grid, batch_size=batch_size,
                            progress=progress)
    images = comparison.observe(images, 0, targets)
    checked = {name: comparison.protocol.check_heatmaps(maps, images, f"heatmaps of method {name!r}")
               for name, maps in heatmaps_by_method.items()}
    for name, maps in checked.items():
        comparison.add(name, images, 0, maps)
    if include_random:
        comparison.add_random(images, 0)
    return comparison.report()


def forward_passes(images: int, steps: int, *, methods: int, orders: int = 1, repeats: int = 10,
                   random_perturbation: bool = True, include_random: bool = True) -> int:
    """How many images :func:`compare_heatmaps` scores: each image once unperturbed, then L perturbed images per
    image, method, order and repetition (``repeats`` only for a random perturbation; the random-order baseline always
    repeats)."""
    runs = methods * orders * (repeats if random_perturbation else 1) + (repeats if include_random else 0)
    return images * (1 + steps * runs)


class Comparison:
    """The report of :func:`compare_heatmaps`, computed from images given chunk by chunk.

    ``methods`` names the heatmaps to compare, ``images`` is how many images the run has. For each chunk (in any
    order; ``first`` is the index of its first image in the whole run): :meth:`observe` scores the unperturbed images
    (f(x0), targets), then :meth:`add` runs every order of one method on that chunk's heatmaps and :meth:`add_random`
    the random-order baseline. Only per-image results are kept, so neither images nor heatmaps need to stay in
    memory; :meth:`report` gives the same numbers as :func:`compare_heatmaps` on all images at once, whatever the
    chunks. Options as in :func:`compare_heatmaps`.
    """

    def __init__(self, score_fn: Any, methods: Sequence[str], images: int, *, orders: Sequence[str] = ("morf",),
                 include_random: bool = True, layout: str = "NCHW", steps: int = 100, region: int = 9,
                 perturb: str | Perturbation | Callable = "uniform", low: float | np.ndarray | None = None,
                 high: float | np.ndarray | None = None, repeats: int = 10, seed: int = 0, grid: str = "fixed",
                 batch_size: int = 128, progress: bool = True) -> None:
        orders = tuple(orders)
        if orders[:1] != ("morf",) or len(orders) > 2 or (len(orders) == 2 and orders[1] not in LERF_ORDERS):
            raise InputError(f"orders must be ('morf',), ('morf', 'lerf') or ('morf', 'lerf-signed'); got {orders}")
        methods = list(methods)
        if not methods:
            raise InputError("no method to compare: give at least one method's name")
        if len(set(methods)) != len(methods):
            raise InputError(f"method names must differ; got {methods}")
        if include_random and "random" in methods:
            raise InputError("method name 'random' is reserved for the random-order baseline; rename the method or "
                             "pass include_random=False")
        if isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 1:
            raise InputError(f"images must be the number of images, at least 1; got {images!r}")
        self.protocol = Protocol.prepare(score_fn, layout=layout, steps=steps, region=region, perturb=perturb,
                                          low=low, high=high, repeats=repeats, seed=seed, grid=grid,
                                          batch_size=batch_size)
        self.methods, self.orders, self.include_random, self.count = methods, orders, bool(include_random), int(images)
        self.f0 = np.full(self.count, np.nan)
        self.switched0 = np.zeros(self.count, bool)
        self.targets = np.full(self.count, -1, np.int64)
        self.target_source: str | None = None
        runs = [(name, order) for name in methods for order in orders] + [("random", "random")] * include_random
        self.rows = {run: np.full((self.count, self.protocol.steps), np.nan) for run in runs}
        self.switched = {run: np.zeros((self.count, self.protocol.steps)) for run in runs}
        self.complexity = {name: np.full((2, self.count), np.nan) for name in methods}
        self._progress = bool(progress)
        self._bar: tqdm | None = None
        self._description = ""

    def observe(self, images: np.ndarray, first: int, targets: np.ndarray | None = None) -> np.ndarray:
        """Score the unperturbed ``images`` (the run's images ``first``, ``first + 1``, ...) once: f(x0) and the
        targets (``targets``, else the predicted classes; give them for every chunk or for none). Returns the images
        as checked (float32, contiguous)."""
        images = self.protocol.check_images(images)
        span = self._span(first, len(images))
        f0, chosen, switched0, source = self.protocol.observe(images, targets)
        if self.target_source not in (None, source):
            raise InputError(f"targets were {self.target_source} for earlier images and {source} for images "
                             f"{span.start}..{span.stop - 1}: give targets for every chunk or for none")
        self.target_source = source
        self.f0[span], self.targets[span], self.switched0[span] = f0, chosen, switched0
        return images

    def chunk_targets(self, first: int, count: int) -> np.ndarray:
        """The targets of the run's images ``first`` .. ``first + count - 1`` (they must have been observed)."""
        span = self._span(first, count)
        if (self.targets[span] < 0).any():
            missing = span.start + int(np.argmax(self.targets[span] < 0))
            raise InputError(f"image {missing} has not been observed: call observe() on its chunk first")
        return self.targets[span].copy()

    def add(self, name: str, images: np.ndarray, first: int, heatmaps: np.ndarray) -> None:
        """Run every order of method ``name`` on ``images`` (starting at the run's image ``first``) with their
        ``heatmaps`` (N, H, W), and keep the per-image results."""
        if name not in self.complexity:
            raise InputError(f"method {name!r} is not among the compared methods {self.methods}")
        images = self.protocol.check_images(images)
        maps = self.protocol.check_heatmaps(heatmaps, images, f"heatmaps of method {name!r}")
        targets = self.chunk_targets(first, len(images))
        span = slice(first, first + len(images))
        for order in self.orders:
            bar = self._progress_bar(f"{name} {_order_name(order)}")
            self.rows[name, order][span], self.switched[name, order][span] = self.protocol.scores(
                images, first, targets, maps, order, bar.update)
        from explainer.evaluation.complexity import histogram_entropy, png_bytes
        self.complexity[name][:, span] = png_bytes(maps), histogram_entropy(maps)

    def add_random(self, images: np.ndarray, first: int) -> None:
        """Run the random-order baseline on ``images`` (starting at the run's image ``first``)."""
        if not self.include_random:
            raise InputError("this comparison has no random baseline (include_random=False)")
        images = self.protocol.check_images(images)
        targets = self.chunk_targets(first, len(images))
        bar = self._progress_bar("random order")
        span = slice(first, first + len(images))
        self.rows["random", "random"][span], self.switched["random", "random"][span] = self.protocol.scores(
            images, first, targets, None, "random", bar.update)

    def report(self) -> dict[str, Any]:
        """The JSON-ready report (structure as in :func:`compare_heatmaps`) once every image has been added for
        every method (InputError naming the first missing one otherwise), with paired bootstrap intervals
        (:func:`explainer.evaluation.statistics.add_statistics`, seeded with the run's seed)."""
        from explainer.evaluation.statistics import add_statistics

        methods: dict[str, Any] = {}
        for name in self.methods:
            morf = self._result(name, "morf")
            entry = _method_entry(morf)
            if len(self.orders) == 2:
                lerf = self._result(name, self.orders[1])
                entry["abpc"] = abpc(morf, lerf)
                entry["aopc_lerf"] = lerf.aopc
                entry["curve_lerf"] = lerf.curve.tolist()
                entry["per_image_aopc_lerf"] = lerf.per_image_aopc.tolist()
            png, entropy = self.complexity[name]
            entry["complexity"] = {"png_bytes": float(png.mean()), "entropy": float(entropy.mean())}
            methods[name] = entry
        if self.include_random:
            methods["random"] = _method_entry(self._result("random", "random"))
        if self._bar is not None:
            self._bar.close()
        settings = dict(self.protocol.settings(self.count, self.target_source), orders=list(self.orders))
        if len(self.orders) == 2:
            settings["abpc_definition"] = ABPC_DEFINITION
        return add_statistics({"settings": settings, "methods": methods}, seed=self.protocol.seed)

    def _progress_bar(self, description: str) -> tqdm:
        """The one progress bar of the run (curves done of images × runs), created on first use, now showing
        ``description``."""
        if self._bar is None:
            self._bar = tqdm(total=self.count * len(self.rows), unit="curve", disable=not self._progress)
        if self._description != description:
            self._description = description
            self._bar.set_description(description)
        return self._bar

    def _span(self, first: int, count: int) -> slice:
        if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or first < 0 \
                or first + count > self.count:
            raise InputError(f"a chunk of {count} image(s) starting at image {first!r} does not fit a run of "
                             f"{self.count} images")
        return slice(int(first), int(first) + count)

    def _result(self, name: str, order: str) -> PerturbationResult:
        rows = self.rows[name, order]
        missing = np.isnan(rows).any(axis=1) | np.isnan(self.f0)
        if missing.any():
            label = "the random order" if name == "random" else f"method {name!r} ({_order_name(order)})"
            raise InputError(f"image {int(np.argmax(missing))} has no curve for {label}: add every chunk before "
                             "report()")
        settings = dict(self.protocol.settings(self.count, self.target_source), order=order,
                        repeats=self.protocol.repeats_for(order))
        return _result(self.f0, self.targets, rows, settings, self.switched0, self.switched[name, order])


def _order_name(order: str) -> str:
    return {"morf": "MoRF", "lerf": "LeRF", "lerf-signed": "signed LeRF"}[order]


def _result(f0: np.ndarray, targets: np.ndarray, rows: np.ndarray, settings: dict[str, Any], switched0: np.ndarray,
            switched: np.ndarray) -> PerturbationResult:
    """The result of per-image f(x0), mean scores f(x1..xL) (N, L), and class switches at x0 (N,) and x1..xL."""
    scores = np.concatenate([f0[:, None], rows], axis=1)
    per_image = f0[:, None] - scores
    per_image[:, 0] = 0.0
    per_image_aopc = per_image.mean(axis=1)
    return PerturbationResult(per_image.mean(axis=0), per_image, per_image_aopc, float(per_image_aopc.mean()),
                              scores, targets.copy(), settings,
                              np.concatenate([switched0[:, None].astype(np.float64), switched], axis=1))


def _method_entry(result: PerturbationResult) -> dict[str, Any]:
    switch_curve = result.switched.mean(axis=0)
    return {
        "aopc": result.aopc,
        "abpc": None,
        "curve": result.curve.tolist(),
        "per_image": result.per_image.tolist(),
        "per_image_aopc": result.per_image_aopc.tolist(),
        "repeats": result.settings["repeats"],
        "complexity": None,
        "class_switch_curve": switch_curve.tolist(),
        "class_switch_rate": float(switch_curve.mean()),
    }


def _session_score_fn(session: Any) -> ScoreFn:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ModelError(f"the ONNX session has {len(inputs)} inputs ({names}); region perturbation needs a model "
                         "with a single image input")
    input_name = inputs[0].name
    output_name = session.get_outputs()[0].name
    fixed = inputs[0].shape[0] if inputs[0].shape else None
    fixed = fixed if isinstance(fixed, int) and fixed > 0 else None

    def score(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if fixed is None or len(x) == fixed:
            return session.run([output_name], {input_name: x})[0]
        parts = []
        for start in range(0, len(x), fixed):
            chunk = x[start:start + fixed]
            padded = np.zeros((fixed,) + x.shape[1:], np.float32)
            padded[: len(chunk)] = chunk
            parts.append(session.run([output_name], {input_name: padded})[0][: len(chunk)])
        return np.concatenate(parts)

    return score


@dataclass
class Protocol:
    """Validated options shared by every chunk, order and method, and the reusable batch buffer."""

    score: ScoreFn
    layout: str
    perturbation: Perturbation
    steps: int
    region: int
    grid: str
    repeats: int
    seed: int
    batch_size: int
    checked: bool = False
    buffer: np.ndarray | None = field(default=None, repr=False)
    eligible: Callable[[np.ndarray], np.ndarray | None] | None = None

    @classmethod
    def prepare(cls, score_fn: Any, *, layout: str, steps: int, region: int, perturb: Any, low: Any, high: Any,
                repeats: int, seed: int, grid: str, batch_size: int,
                eligible: Callable[[np.ndarray], np.ndarray | None] | None = None) -> Protocol:
        """The checked options; ``eligible(images_chw)`` gives the (N, H, W) pixels that may be removed (None:
        every pixel), for inputs with padding (see :mod:`explainer.evaluation.units`)."""
        if layout not in LAYOUTS:
            raise InputError(f"layout must be one of {LAYOUTS}; got {layout!r}")
        if grid not in GRIDS:
            raise InputError(f"grid must be one of {GRIDS}; got {grid!r}")
        for name, value, minimum in (("steps", steps, 1), ("region", region, 1), ("repeats", repeats, 1),
                                     ("batch_size", batch_size, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise InputError(f"{name} must be an integer >= {minimum}; got {value!r}")
        perturbation = resolve_perturbation(perturb, low=low, high=high, layout=layout)
        return cls(as_score_fn(score_fn), layout, perturbation, int(steps), int(region), grid, int(repeats),
                   int(seed), int(batch_size), eligible=eligible)

    def chw(self, images: np.ndarray) -> np.ndarray:
        return images if self.layout == "NCHW" else images.transpose(0, 3, 1, 2)

    def check_images(self, images: np.ndarray) -> np.ndarray:
        """``images`` as a contiguous float32 batch with room for ``steps`` regions (InputError otherwise); the
        first batch also tries the perturbation on its first image."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[0] == 0:
            raise InputError(f"images must be a non-empty 4-D {self.layout} batch; got shape {images.shape}")
        if not np.isfinite(images).all():
            raise InputError(f"images of shape {images.shape} contain non-finite values")
        chw = self.chw(images)
        _, _, h, w = chw.shape
        available = max_regions(h, w, self.region)
        if available < self.steps:
            raise InputError(f"{self.layout} images of shape {images.shape} ({h}x{w} pixels) hold only {available} "
                             f"{self.region}x{self.region} regions; steps={self.steps} needs at least "
                             "that many (use fewer steps or a smaller region; explainer.evaluate scales both to the "
                             "input)")
        if not self.checked:
            self.perturbation(chw[0], np.random.default_rng(self.seed))
            self.checked = True
        return images

    def check_heatmaps(self, heatmaps: np.ndarray, images: np.ndarray, what: str) -> np.ndarray:
        maps = np.asarray(heatmaps)
        n, _, h, w = self.chw(images).shape
        if maps.shape != (n, h, w):
            raise InputError(f"{what} have shape {maps.shape}; expected (N, H, W) = {(n, h, w)} to match "
                             f"{self.layout} images of shape {images.shape}")
        if not np.issubdtype(maps.dtype, np.number) or not np.isfinite(maps).all():
            raise InputError(f"{what} must be finite numbers (dtype {maps.dtype})")
        return maps

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.concatenate([_checked_logits(self.score, images[i:i + self.batch_size])
                               for i in range(0, len(images), self.batch_size)])

    def observe(self, images: np.ndarray, targets: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """Score the unperturbed (checked) ``images``: f(x0) of the targets (``targets``, else the predicted
        classes), the targets, whether the predicted class already differs from the target, and 'given' or
        'predicted'."""
        logits = self.predict(images)
        (f0, chosen), source = _resolve_targets(targets, logits, len(images))
        return f0, chosen, logits.argmax(axis=1) != chosen, source

    def repeats_for(self, order: str) -> int:
        return self.repeats if (self.perturbation.random or order == "random") else 1

    def settings(self, images: int, target_source: str | None) -> dict[str, Any]:
        return {
            "protocol": "region perturbation (Samek et al., arXiv 1509.06321)",
            "aopc_definition": AOPC_DEFINITION,
            "score": f"pre-softmax logit of the {target_source or 'predicted'} class",
            "steps": self.steps,
            "region": self.region,
            "grid": self.grid,
            "perturb": self.perturbation.name,
            "perturb_params": dict(self.perturbation.params),
            "repeats": self.repeats,
            "seed": self.seed,
            "layout": self.layout,
            "images": int(images),
        }

    def scores(self, images: np.ndarray, first: int, targets: np.ndarray, heatmaps: np.ndarray | None, order: str,
               advance: Callable[[int], Any], indicators: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean over repetitions of f(x(k)), k = 1..L, of each of ``images`` (the run's images ``first``, ...), and
        the fraction of repetitions whose predicted class at x(k) is not the target: both (N, L) float64.
        ``heatmaps`` is None for the random order; ``advance(k)`` reports k more images done. With ``indicators``
        (N, outputs), for an output map (:mod:`explainer.evaluation.maps`), f is the sum of the logits each image's
        indicator chooses, and no class switch is counted (all False)."""
        chw = self.chw(images)
        n, _, h, w = chw.shape
        repeats = self.repeats_for(order)
        fixed_order = None
        eligible = None if self.eligible is None else self.eligible(chw)
        if order != "random":
            fixed_order = order_regions(heatmaps, self.steps, size=self.region, order=order, grid=self.grid,
                                        eligible=eligible)
        blank = np.zeros((1, h, w))
        f = np.empty((n, repeats, self.steps), dtype=np.float64)
        switched = np.zeros((n, repeats, self.steps), dtype=bool)
        sweep = _BatchSweep(self, chw, targets, f, switched, advance, indicators)
        for i in range(n):
            for rep in range(repeats):
                order_rng, noise_rng = (np.random.default_rng(s) for s in
                                        np.random.SeedSequence(self.seed, spawn_key=(first + i, rep)).spawn(2))
                if fixed_order is None:
                    boxes = order_regions(blank, self.steps, size=self.region, order="random", grid=self.grid,
                                          rng=order_rng, eligible=None if eligible is None else eligible[i:i + 1])[0]
                else:
                    boxes = fixed_order[i]
                sweep.add(i, rep, boxes, self.perturbation(chw[i], noise_rng))
        sweep.flush()
        advance(n - sweep.reported)
        return f.mean(axis=1), switched.mean(axis=1)

    def batch_buffer(self, image_shape: tuple[int, ...]) -> np.ndarray:
        """The (batch_size, ...) buffer perturbed images are written into, allocated once per image shape."""
        if self.buffer is None or self.buffer.shape[1:] != image_shape:
            self.buffer = None
            self.buffer = np.empty((self.batch_size,) + image_shape, dtype=np.float32)
        return self.buffer


class _BatchSweep:
    """Writes perturbed images x(1..L) into the reusable batch buffer and scores it whenever it is full."""

    def __init__(self, protocol: Protocol, chw: np.ndarray, targets: np.ndarray, out: np.ndarray,
                 switched: np.ndarray, advance: Callable[[int], Any], indicators: np.ndarray | None = None) -> None:
        self.protocol = protocol
        self.chw = chw
        self.targets = targets
        self.indicators = indicators
        self.out = out
        self.switched = switched
        self.advance = advance
        image_shape = chw.shape[1:] if protocol.layout == "NCHW" else chw.shape[2:] + chw.shape[1:2]
        self.buffer = protocol.batch_buffer(image_shape)
        self.buffer_chw = self.buffer if protocol.layout == "NCHW" else self.buffer.transpose(0, 3, 1, 2)
        self.fill = 0
        self.pending: list[tuple[int, int, int, int, int]] = []
        self.image = 0
        self.reported = 0

    def add(self, image: int, rep: int, boxes: np.ndarray, replacement: np.ndarray) -> None:
        """Queue steps 1..L of one image and repetition (regions ``boxes``: (L, 4) top, left, bottom, right),
        scoring full batches as they fill up."""
        self.image = image
        x = self.chw[image]
        k = 1
        steps = self.protocol.steps
        batch_size = self.protocol.batch_size
        while k <= steps:
            take = min(steps - k + 1, batch_size - self.fill)
            self._write(self.buffer_chw[self.fill:self.fill + take], x, replacement, boxes, k)
            self.pending.append((image, rep, k, take, self.fill))
            self.fill += take
            k += take
            if self.fill == batch_size:
                self.flush()

    def flush(self) -> None:
        """Score the filled part of the buffer and store f(x(k)) of every queued step."""
        if self.fill == 0:
            return
        logits = _checked_logits(self.protocol.score, self.buffer[:self.fill])
        if self.indicators is not None:
            for image, rep, k, take, start in self.pending:
                self.out[image, rep, k - 1:k - 1 + take] = logits[start:start + take] @ self.indicators[image]
        else:
            predicted = logits.argmax(axis=1)
            for image, rep, k, take, start in self.pending:
                self.out[image, rep, k - 1:k - 1 + take] = logits[start:start + take, self.targets[image]]
                self.switched[image, rep, k - 1:k - 1 + take] = predicted[start:start + take] != self.targets[image]
        self.pending.clear()
        self.fill = 0
        self.advance(self.image - self.reported)
        self.reported = self.image

    @staticmethod
    def _write(out: np.ndarray, x: np.ndarray, replacement: np.ndarray, boxes: np.ndarray, first: int) -> None:
        """out[j] = x(first + j): the first slot region by region from x, the rest incrementally from the previous
        slot, one region at a time."""
        out[0] = x
        for top, left, bottom, right in boxes[:first - 1]:
            out[0, :, top:bottom, left:right] = replacement[:, top:bottom, left:right]
        for j in range(len(out)):
            if j:
                out[j] = out[j - 1]
            top, left, bottom, right = boxes[first + j - 1]
            out[j, :, top:bottom, left:right] = replacement[:, top:bottom, left:right]


def _checked_logits(score: ScoreFn, batch: np.ndarray) -> np.ndarray:
    logits = np.asarray(score(batch))
    if logits.ndim != 2 or logits.shape[0] != len(batch):
        raise ModelError(f"the scoring function returned shape {logits.shape} for a batch of {len(batch)}; "
                         "expected logits of shape (batch, classes)")
    if not np.issubdtype(logits.dtype, np.number) or not np.isfinite(logits).all():
        raise ModelError(f"the scoring function returned non-finite logits for a batch of shape {batch.shape}")
    return logits.astype(np.float64, copy=False)


def _resolve_targets(targets: np.ndarray | None, logits: np.ndarray,
                     n: int) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    """((f(x0), targets), 'predicted' or 'given') from the logits of the unperturbed images."""
    if targets is None:
        arr, source = logits.argmax(axis=1), "predicted"
    else:
        arr = np.asarray(targets)
        if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"targets must be {n} integer class indices (one per image); got shape {arr.shape}, "
                             f"dtype {arr.dtype}")
        classes = logits.shape[1]
        bad = (arr < 0) | (arr >= classes)
        if bad.any():
            raise InputError(f"target {int(arr[bad][0])} of image {int(np.argmax(bad))} is outside the model's "
                             f"{classes} classes")
        arr, source = arr.astype(np.int64), "given"
    return (logits[np.arange(n), arr], arr), source
