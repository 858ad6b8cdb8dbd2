"""Region perturbation (Samek et al., arXiv 1509.06321): perturbation curves, AOPC and ABPC.

For each image x and heatmap h, the regions r_1..r_L of h (see :mod:`explainer.evaluation.regions`; default: the fixed
9x9 grid) are removed in MoRF, LeRF or random order: x(0) = x, x(k) = g(x(k-1), r_k) with g from
:mod:`explainer.evaluation.perturbations`. f is the pre-softmax score of the class predicted at x(0) (or of given
targets).

* curve: f(x(0)) - f(x(k)) for k = 0..L, averaged over repetitions (for random g or random order) and images.
* AOPC = 1/(L+1) * sum_{k=0..L} [f(x(0)) - f(x(k))], averaged over images: a mean over L+1 steps, not a
  trapezoid area.
* ABPC = 1/(L+1) * sum_k [f(x_LeRF(k)) - f(x_MoRF(k))], averaged over images (= AOPC(MoRF) - AOPC(LeRF)).

Speed: the L perturbed images of one image and repetition are built by array copies into one reusable batch buffer
and scored in batches of ``batch_size`` across images and repetitions; f(x(0)) is scored once per image. Random
draws come from a generator seeded by (seed, image index, repetition), so results do not depend on ``batch_size``
and every method sees the same noise for the same image (common random numbers).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from explainer.errors import InputError, ModelError
from explainer.evaluation.perturbations import Perturbation, resolve_perturbation
from explainer.evaluation.regions import GRIDS, ORDERS, max_regions, order_regions
from explainer.images.spec import LAYOUTS

ScoreFn = Callable[[np.ndarray], np.ndarray]
_ORDER_NAMES = {"morf": "MoRF", "lerf": "LeRF"}
AOPC_DEFINITION = "mean over the L+1 steps k=0..L of f(x0) - f(xk), averaged over images (not a trapezoid)"


@dataclass(frozen=True)
class PerturbationResult:
    """Outcome of one region-perturbation run.

    ``curve`` (L+1,): mean over images of f(x0) - f(xk); ``per_image`` (N, L+1): the same per image;
    ``per_image_aopc`` (N,); ``aopc``: their mean; ``scores`` (N, L+1): mean f(xk); ``targets`` (N,): scored class;
    ``settings``: every choice that affects the numbers (order, grid, region, perturbation, repeats, seed, ...).
    """

    curve: np.ndarray
    per_image: np.ndarray
    per_image_aopc: np.ndarray
    aopc: float
    scores: np.ndarray
    targets: np.ndarray
    settings: dict[str, Any]


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
    top-left; ``grid="sliding"`` for greedy sliding windows) in ``order`` (``"morf"``, ``"lerf"``, ``"random"``),
    replacing them with ``perturb`` (``"uniform"`` over ``low..high`` -- the paper's choice, ``"mean"``,
    ``"zero"``, ``"blur"``, a :class:`Perturbation` or ``fn(image, rng) -> replacement``). Random perturbations
    and random orders are averaged over ``repeats``; deterministic ones run once. ``targets`` defaults to the
    argmax of the logits at the unperturbed images.
    """
    run = _Run.prepare(score_fn, images, layout=layout, steps=steps, region=region, perturb=perturb, low=low,
                       high=high, repeats=repeats, seed=seed, grid=grid, targets=targets, batch_size=batch_size,
                       progress=progress)
    return run.evaluate(run.check_heatmaps(heatmaps, "heatmaps"), order)


def abpc(morf: PerturbationResult, lerf: PerturbationResult) -> float:
    """Area between the LeRF and MoRF curves: mean over images and the L+1 steps of f(x_LeRF(k)) - f(x_MoRF(k))."""
    if morf.settings.get("order") != "morf" or lerf.settings.get("order") != "lerf":
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
    ["curve_lerf", "aopc_lerf" with LeRF]}}}``. With ``include_random`` a ``"random"`` entry uses the random order
    (its abpc and complexity are null). Other options as in :func:`region_perturbation`.
    """
    from explainer.evaluation.complexity import heatmap_complexity

    orders = tuple(orders)
    if "morf" not in orders or not set(orders) <= {"morf", "lerf"} or len(set(orders)) != len(orders):
        raise InputError(f"orders must be ('morf',) or ('morf', 'lerf'); got {orders}")
    if not heatmaps_by_method:
        raise InputError("heatmaps_by_method is empty: give at least one method's heatmaps")
    if include_random and "random" in heatmaps_by_method:
        raise InputError("method name 'random' is reserved for the random-order baseline; rename the method or "
                         "pass include_random=False")
    run = _Run.prepare(score_fn, images, layout=layout, steps=steps, region=region, perturb=perturb, low=low,
                       high=high, repeats=repeats, seed=seed, grid=grid, targets=targets, batch_size=batch_size,
                       progress=progress)
    checked = {name: run.check_heatmaps(maps, f"heatmaps of method {name!r}") for name, maps in
               heatmaps_by_method.items()}
    methods: dict[str, Any] = {}
    for name, maps in checked.items():
        morf = run.evaluate(maps, "morf", label=name)
        entry = _method_entry(morf)
        if "lerf" in orders:
            lerf = run.evaluate(maps, "lerf", label=name)
            entry["abpc"] = abpc(morf, lerf)
            entry["aopc_lerf"] = lerf.aopc
            entry["curve_lerf"] = lerf.curve.tolist()
        entry["complexity"] = heatmap_complexity(maps)
        methods[name] = entry
    if include_random:
        blank = np.zeros_like(next(iter(checked.values())))
        methods["random"] = _method_entry(run.evaluate(blank, "random", label="random"))
    settings = dict(run.settings(), orders=list(orders))
    return {"settings": settings, "methods": methods}


def forward_passes(images: int, steps: int, *, methods: int, orders: int = 1, repeats: int = 10,
                   random_perturbation: bool = True, include_random: bool = True) -> int:
    """How many images :func:`compare_heatmaps` scores: each image once unperturbed, then L perturbed images per
    image, method, order and repetition (``repeats`` only for a random perturbation; the random-order baseline always
    repeats)."""
    runs = methods * orders * (repeats if random_perturbation else 1) + (repeats if include_random else 0)
    return images * (1 + steps * runs)


def _method_entry(result: PerturbationResult) -> dict[str, Any]:
    return {
        "aopc": result.aopc,
        "abpc": None,
        "curve": result.curve.tolist(),
        "per_image": result.per_image.tolist(),
        "per_image_aopc": result.per_image_aopc.tolist(),
        "repeats": result.settings["repeats"],
        "complexity": None,
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
class _Run:
    """Validated inputs shared by every order and method: images, model scores at x(0), targets, options."""

    score: ScoreFn
    images: np.ndarray
    chw: np.ndarray
    layout: str
    perturbation: Perturbation
    steps: int
    region: int
    grid: str
    repeats: int
    seed: int
    batch_size: int
    progress: bool
    f0: np.ndarray
    targets: np.ndarray
    target_source: str

    @classmethod
    def prepare(cls, score_fn: Any, images: np.ndarray, *, layout: str, steps: int, region: int,
                perturb: Any, low: Any, high: Any, repeats: int, seed: int, grid: str,
                targets: np.ndarray | None, batch_size: int, progress: bool) -> _Run:
        if layout not in LAYOUTS:
            raise InputError(f"layout must be one of {LAYOUTS}; got {layout!r}")
        if grid not in GRIDS:
            raise InputError(f"grid must be one of {GRIDS}; got {grid!r}")
        for name, value, minimum in (("steps", steps, 1), ("region", region, 1), ("repeats", repeats, 1),
                                     ("batch_size", batch_size, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise InputError(f"{name} must be an integer >= {minimum}; got {value!r}")
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[0] == 0:
            raise InputError(f"images must be a non-empty 4-D {layout} batch; got shape {images.shape}")
        if not np.isfinite(images).all():
            raise InputError(f"images of shape {images.shape} contain non-finite values")
        chw = images if layout == "NCHW" else images.transpose(0, 3, 1, 2)
        _, _, h, w = chw.shape
        available = max_regions(h, w, region)
        if available < steps:
            raise InputError(f"{layout} images of shape {images.shape} ({h}x{w} pixels) hold only {available} "
                             f"non-overlapping {region}x{region} regions; steps={steps} needs at least that many (use "
                             "fewer steps or a smaller region; explainer.evaluate scales both to the input)")
        perturbation = resolve_perturbation(perturb, low=low, high=high, layout=layout)
        perturbation(chw[0], np.random.default_rng(seed))
        score = as_score_fn(score_fn)
        logits = _predict(score, images, int(batch_size))
        targets_arr, source = _resolve_targets(targets, logits, len(images))
        f0 = logits[np.arange(len(images)), targets_arr]
        return cls(score, images, chw, layout, perturbation, int(steps), int(region), grid, int(repeats),
                   int(seed), int(batch_size), bool(progress), f0, targets_arr, source)

    def check_heatmaps(self, heatmaps: np.ndarray, what: str) -> np.ndarray:
        maps = np.asarray(heatmaps)
        n, _, h, w = self.chw.shape
        if maps.shape != (n, h, w):
            raise InputError(f"{what} have shape {maps.shape}; expected (N, H, W) = {(n, h, w)} to match "
                             f"{self.layout} images of shape {self.images.shape}")
        if not np.issubdtype(maps.dtype, np.number) or not np.isfinite(maps).all():
            raise InputError(f"{what} must be finite numbers (dtype {maps.dtype})")
        return maps

    def settings(self) -> dict[str, Any]:
        return {
            "protocol": "region perturbation (Samek et al., arXiv 1509.06321)",
            "aopc_definition": AOPC_DEFINITION,
            "score": f"pre-softmax logit of the {self.target_source} class",
            "steps": self.steps,
            "region": self.region,
            "grid": self.grid,
            "perturb": self.perturbation.name,
            "perturb_params": dict(self.perturbation.params),
            "repeats": self.repeats,
            "seed": self.seed,
            "layout": self.layout,
            "images": int(len(self.images)),
        }

    def evaluate(self, heatmaps: np.ndarray, order: str, label: str | None = None) -> PerturbationResult:
        if order not in ORDERS:
            raise InputError(f"order must be one of {ORDERS}; got {order!r}")
        repeats = self.repeats if (self.perturbation.random or order == "random") else 1
        n = len(self.images)
        fixed_order = None
        if order != "random":
            fixed_order = order_regions(heatmaps, self.steps, size=self.region, order=order, grid=self.grid)
        f = np.empty((n, repeats, self.steps), dtype=np.float64)
        desc = "random order" if order == "random" else f"{label or 'region perturbation'} {_ORDER_NAMES[order]}"
        with tqdm(total=n, desc=desc, unit="image", disable=not self.progress) as bar:
            sweep = _BatchSweep(self, f, bar)
            for i in range(n):
                for rep in range(repeats):
                    order_rng, noise_rng = (np.random.default_rng(s) for s in
                                            np.random.SeedSequence(self.seed, spawn_key=(i, rep)).spawn(2))
                    if fixed_order is None:
                        origins = order_regions(heatmaps[i:i + 1], self.steps, size=self.region, order="random",
                                                grid=self.grid, rng=order_rng)[0]
                    else:
                        origins = fixed_order[i]
                    sweep.add(i, rep, origins, self.perturbation(self.chw[i], noise_rng))
            sweep.flush()
            bar.update(n - bar.n)
        scores = np.concatenate([self.f0[:, None], f.mean(axis=1)], axis=1)
        per_image = self.f0[:, None] - scores
        per_image[:, 0] = 0.0
        per_image_aopc = per_image.mean(axis=1)
        settings = dict(self.settings(), order=order, repeats=repeats)
        return PerturbationResult(per_image.mean(axis=0), per_image, per_image_aopc, float(per_image_aopc.mean()),
                                  scores, self.targets.copy(), settings)


class _BatchSweep:
    """Writes perturbed images x(1..L) into a reusable batch buffer and scores it whenever it is full."""

    def __init__(self, run: _Run, out: np.ndarray, bar: tqdm) -> None:
        self.run = run
        self.out = out
        self.bar = bar
        self.buffer = np.empty((run.batch_size,) + run.images.shape[1:], dtype=np.float32)
        self.buffer_chw = self.buffer if run.layout == "NCHW" else self.buffer.transpose(0, 3, 1, 2)
        self.fill = 0
        self.pending: list[tuple[int, int, int, int, int]] = []
        self.offsets = np.arange(run.region)
        self.image = 0

    def add(self, image: int, rep: int, origins: np.ndarray, replacement: np.ndarray) -> None:
        """Queue steps 1..L of one image and repetition, scoring full batches as they fill up."""
        self.image = image
        x = self.run.chw[image]
        rows = origins[:, 0, None] + self.offsets
        cols = origins[:, 1, None] + self.offsets
        k = 1
        steps = self.run.steps
        while k <= steps:
            take = min(steps - k + 1, self.run.batch_size - self.fill)
            self._write(self.buffer_chw[self.fill:self.fill + take], x, replacement, rows, cols, k)
            self.pending.append((image, rep, k, take, self.fill))
            self.fill += take
            k += take
            if self.fill == self.run.batch_size:
                self.flush()

    def flush(self) -> None:
        """Score the filled part of the buffer and store f(x(k)) of every queued step."""
        if self.fill == 0:
            return
        logits = _checked_logits(self.run.score, self.buffer[:self.fill])
        for image, rep, k, take, start in self.pending:
            self.out[image, rep, k - 1:k - 1 + take] = logits[start:start + take, self.run.targets[image]]
        self.pending.clear()
        self.fill = 0
        self.bar.update(self.image - self.bar.n)

    def _write(self, out: np.ndarray, x: np.ndarray, replacement: np.ndarray, rows: np.ndarray,
               cols: np.ndarray, first: int) -> None:
        """out[j] = x(first + j): the first slot by fancy indexing, the rest incrementally one region at a time."""
        size = self.run.region
        out[0] = x
        r, c = rows[:first, :, None], cols[:first, None, :]
        out[0][:, r, c] = replacement[:, r, c]
        for j in range(1, len(out)):
            out[j] = out[j - 1]
            top, left = rows[first + j - 1, 0], cols[first + j - 1, 0]
            out[j, :, top:top + size, left:left + size] = replacement[:, top:top + size, left:left + size]


def _checked_logits(score: ScoreFn, batch: np.ndarray) -> np.ndarray:
    logits = np.asarray(score(batch))
    if logits.ndim != 2 or logits.shape[0] != len(batch):
        raise ModelError(f"the scoring function returned shape {logits.shape} for a batch of {len(batch)}; "
                         "expected logits of shape (batch, classes)")
    if not np.issubdtype(logits.dtype, np.number) or not np.isfinite(logits).all():
        raise ModelError(f"the scoring function returned non-finite logits for a batch of shape {batch.shape}")
    return logits.astype(np.float64, copy=False)


def _predict(score: ScoreFn, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([_checked_logits(score, images[i:i + batch_size])
                           for i in range(0, len(images), batch_size)])


def _resolve_targets(targets: np.ndarray | None, logits: np.ndarray, n: int) -> tuple[np.ndarray, str]:
    if targets is None:
        return logits.argmax(axis=1), "predicted"
    arr = np.asarray(targets)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"targets must be {n} integer class indices (one per image); got shape {arr.shape}, "
                         f"dtype {arr.dtype}")
    classes = logits.shape[1]
    bad = (arr < 0) | (arr >= classes)
    if bad.any():
        raise InputError(f"target {int(arr[bad][0])} of image {int(np.argmax(bad))} is outside the model's "
                         f"{classes} classes")
    return arr.astype(np.int64), "given"
