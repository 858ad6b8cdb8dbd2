"""Region perturbation beyond images: the units removed from feature rows [N, F], 1-D signals [N, C, L] and token ids
[N, T], and what replaces them.

A *unit* is what one perturbation step removes:

* a feature row: one feature;
* a signal: a window of ``region`` consecutive samples, every channel at once. The windows tile the signal like the
  image grid tiles an image (:mod:`explainer.evaluation.regions`): ceil(L / region) windows covering every sample,
  centred, the first and last ones partial when L is not a multiple of ``region``;
* token ids: one token. Padding (positions whose ``attention_mask`` is 0) is never removed: it is ordered after every
  real token, in every order, and its replacement is the token itself, so that a row with fewer real tokens than
  steps keeps its last score for the steps left.

A unit's relevance is the **sum** of the heatmap over it, signed as for images (MoRF takes the highest sum first;
LeRF the smallest sum of |h|): for features the relevance of the feature itself, for a signal the relevance summed
over the channels and the window, for a token the relevance at the embedding output summed over its dimensions.
Gradient-like signals (sensitivity, DeconvNet, guided backprop) are reduced by ``signal_norm`` as for images: over the
channels of a signal, the embedding dimensions of a token, |g| for a feature.

What replaces a removed unit (a :class:`~explainer.evaluation.perturbations.Perturbation`):

* features (``"baseline"``): the value of that feature in a baseline row. Samek et al.'s "uninformative value" for
  tabular data is the training mean; without a training set at hand the default is the mean of the evaluated rows,
  and the report says which was used;
* signals: the image perturbations along L: ``"mean"`` (the default: each channel's mean over the signal, a flat
  segment), ``"uniform"`` (noise over ``low``..``high`` per channel: as given, else each channel's smallest and
  largest value over the evaluated signals), ``"zero"``, ``"blur"`` (a Gaussian along L, σ 4 samples);
* token ids (``"mask-token"``): the id ``mask_token`` (default: the model's metadata entry ``mask_token_id``, else
  ``pad_token_id``, else 0; the report says which).

The protocol itself is the image one (:class:`~explainer.evaluation.region_perturbation.Protocol`): each sample is
laid out as a one-pixel-high NCHW image, its *view* [N, P, 1, L], with the explained input's C channels first (1 for
features and tokens) and, for token ids, the companion inputs given with them (``attention_mask``,
``token_type_ids``, each [N, T]) as further channels, never perturbed, so that they travel with every perturbed copy
of their row. Token ids and companions are carried as float32, exact below 2**24.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from explainer.errors import InputError
from explainer.evaluation.perturbations import Perturbation, resolve_perturbation
from explainer.evaluation.regions import PAPER_STEPS, max_regions
from explainer.frontend.inputs import is_attention_mask

#: the explainer's layout of each kind of input
KINDS = {"NC": "features", "NCW": "signal", "tokens": "tokens"}
#: each kind in words
NAMES = {"features": "feature rows", "signal": "1-D signals", "tokens": "token ids"}
#: the replacements offered per kind, the default first
PERTURBATIONS = {"features": ("baseline",), "signal": ("mean", "uniform", "zero", "blur"), "tokens": ("mask-token",)}
#: a signal's default window holds this many windows at least (100 steps at a quarter of them), when long enough
SIGNAL_WINDOWS = 4 * PAPER_STEPS
EXACT_IN_FLOAT32 = 2 ** 24


@dataclass(frozen=True)
class Units:
    """How one run cuts its samples into units and replaces them (plain data: it travels to Ray's actors and into
    the rows' journal). ``channels`` and ``length``: the explained input's C (1 for features and tokens) and L;
    ``region``: samples per unit; ``dtype``: the token ids' dtype; ``fixed``: the token companions carried in the
    view, (name, dtype) in channel order; the replacement's data: ``baseline`` (features), ``noise`` (signals'
    uniform range), ``mask_token`` (tokens), each with a ``source`` in words."""

    kind: str
    input_name: str
    channels: int
    length: int
    region: int
    dtype: str = "float32"
    fixed: tuple[tuple[str, str], ...] = ()
    baseline: tuple[float, ...] | None = None
    noise: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    mask_token: int | None = None
    source: str = ""

    @property
    def layout(self) -> str:
        """The explained input's layout (NC, NCW or tokens)."""
        return {kind: layout for layout, kind in KINDS.items()}[self.kind]

    def pack(self, x: Any) -> np.ndarray:
        """The view [N, P, 1, L] (float32) of model input ``x``: an array, or for token ids a dict holding the ids
        under the explained input's name and the companions of :attr:`fixed`."""
        if self.kind != "tokens":
            x = np.asarray(x, dtype=np.float32)
            return np.ascontiguousarray(x[:, None, None, :] if self.kind == "features" else x[:, :, None, :])
        feeds = x if isinstance(x, Mapping) else {self.input_name: x}
        parts = [np.asarray(feeds[self.input_name])] + [np.asarray(feeds[name]) for name, _ in self.fixed]
        return np.ascontiguousarray(np.stack(parts, axis=1)[:, :, None, :].astype(np.float32))

    def unpack(self, view: np.ndarray) -> Any:
        """Model input of the view: the array, or for token ids with companions a dict of them (their dtypes)."""
        if self.kind == "features":
            return view[:, 0, 0, :]
        if self.kind == "signal":
            return view[:, :, 0, :]
        ids = view[:, 0, 0, :].astype(self.dtype)
        if not self.fixed:
            return ids
        return {self.input_name: ids, **{name: view[:, k, 0, :].astype(dtype)
                                         for k, (name, dtype) in enumerate(self.fixed, start=1)}}

    def eligible(self, view: np.ndarray) -> np.ndarray | None:
        """(N, 1, L) bool: the positions that may be removed (the real tokens, by the attention mask), or None when
        every position may."""
        mask = self._mask_channel()
        if self.kind != "tokens" or mask is None:
            return None
        return view[:, 1 + mask] != 0

    def _mask_channel(self) -> int | None:
        """Which companion is the attention mask (``is_attention_mask``), by its place among them; None for none."""
        return next((k for k, (name, _) in enumerate(self.fixed) if is_attention_mask(name)), None)

    def heatmaps(self, relevance: np.ndarray, signal: bool, signal_norm: str) -> np.ndarray:
        """(N, 1, L) heatmaps of an explanation's relevance ([N, F], [N, C, L] or [N, T, D]): summed over the
        channels or embedding dimensions for relevance, their ``signal_norm`` (l2, linf) for gradient-like signals."""
        relevance = np.asarray(relevance, dtype=np.float64)
        if self.kind == "features":
            maps = np.abs(relevance) if signal else relevance
        else:
            axis = 1 if self.kind == "signal" else 2
            if not signal:
                maps = relevance.sum(axis=axis)
            elif signal_norm == "linf":
                maps = np.abs(relevance).max(axis=axis)
            else:
                maps = np.sqrt((relevance ** 2).sum(axis=axis))
        return maps[:, None, :].astype(np.float32)

    def perturbation(self, name: str) -> Perturbation:
        """The replacement ``name`` (one of :data:`PERTURBATIONS` of this kind) for this run's views."""
        if self.kind == "features":
            row = np.asarray(self.baseline, dtype=np.float32).reshape(1, 1, -1)
            return Perturbation("baseline", lambda view, rng: row, False,
                                {"row": [float(v) for v in self.baseline], "source": self.source})
        if self.kind == "tokens":
            return Perturbation("mask-token", self._masked, False, {"id": self.mask_token, "source": self.source})
        if name == "uniform":
            return resolve_perturbation("uniform", low=np.asarray(self.noise[0]), high=np.asarray(self.noise[1]))
        return resolve_perturbation(name)

    def _masked(self, view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = view.copy()
        keep = self.eligible(view[None])
        out[0] = self.mask_token if keep is None else np.where(keep[0], self.mask_token, view[0])
        return out

    def settings(self, perturb: str) -> dict[str, Any]:
        """What the report says of the units and their replacement."""
        unit = {"features": "one feature",
                "signal": f"a window of {self.region} sample(s), all {self.channels} channel(s), on a grid covering "
                          f"the {self.length} samples",
                "tokens": "one token" + (f"; padding ({self.fixed[self._mask_channel()][0]} 0) never removed"
                                         if self._mask_channel() is not None else "")}[self.kind]
        replaced = {"features": f"the baseline row ({self.source})",
                    "signal": f"{perturb} along the signal" + (f" ({self.source})" if perturb == "uniform" else ""),
                    "tokens": f"token id {self.mask_token} ({self.source})"}[self.kind]
        heatmap = {"features": "signed relevance of each feature (|g| for gradient-like signals)",
                   "signal": "relevance summed over the channels (channel norm for gradient-like signals)",
                   "tokens": "relevance at the embedding output summed over its dimensions (their norm for "
                             "gradient-like signals)"}[self.kind]
        return {"input": self.kind, "unit": unit, "unit_relevance": "sum of the heatmap over the unit, signed as "
                "for images", "replacement": replaced, "heatmap": heatmap, "layout": self.layout}

    def fingerprint(self) -> dict[str, Any]:
        """The fields that decide the numbers, JSON-ready (for the rows' journal)."""
        return asdict(self)


@dataclass(frozen=True)
class UnitPlan:
    """Steps and unit size of a run (as :class:`~explainer.evaluation.regions.RegionPlan`), and in words how they
    were chosen."""

    steps: int
    region: int
    text: str

    def describe(self) -> str:
        """In words, e.g. 'one feature a step, 13 steps (scaled to the input: every one of the 13 features, at most
        100)'."""
        return self.text


def prepare_units(ex: Any, x: Any, *, steps: int | None, region: int | None, grid: str, perturb: str | None,
                  baseline: Any = None, mask_token: int | None = None, low: Any = None, high: Any = None,
                  names: tuple[str, str] = ("steps", "region")) -> tuple[Units, np.ndarray, str, UnitPlan]:
    """The units of explainer ``ex``'s input (layout NC, NCW or tokens) for the samples ``x`` (an array, or a dict
    of token ids and companions), their view, the replacement's name and the plan of steps; every choice checked
    before anything is explained (InputError naming the options as ``names``)."""
    kind = KINDS[ex.layout]
    if grid != "fixed":
        raise InputError(f"the sliding grid is for images; {NAMES[kind]} are cut into units on the fixed grid")
    allowed = PERTURBATIONS[kind]
    perturb = allowed[0] if perturb is None else perturb
    if perturb not in allowed:
        raise InputError(f"perturbation {perturb!r} does not apply to {NAMES[kind]}: choose {', '.join(allowed)}")
    if baseline is not None and kind != "features":
        raise InputError(f"a baseline row replaces features; the input is {NAMES[kind]}")
    if mask_token is not None and kind != "tokens":
        raise InputError(f"a mask token replaces token ids; the input is {NAMES[kind]}")
    if region is not None and kind != "signal" and region != 1:
        raise InputError(f"{_option(names[1], region)}: {'tokens' if kind == 'tokens' else 'features'} are removed "
                         "one at a time; the window size is for 1-D signals")
    feeds, ids = _samples(ex, x, kind)
    scaled = region is None
    length = ids.shape[-1]
    channels = ids.shape[1] if kind == "signal" else 1
    fields: dict[str, Any] = {}
    if kind == "features":
        fields.update(_baseline(baseline, ids))
    elif kind == "signal":
        region = _window(region, length, names[1])
        if perturb == "uniform":
            fields.update(_noise(low, high, ids))
    else:
        fields.update(_tokens(ex, feeds, ids, mask_token))
    units = Units(kind, ex.input_name, channels, length, region or 1, **fields)
    view = units.pack(feeds if kind == "tokens" else ids)
    plan = _plan(units, view, steps, scaled, names)
    return units, view, perturb, plan


def _samples(ex: Any, x: Any, kind: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The dict of given feeds and the explained input's batch, checked against the explainer's input shape."""
    feeds = dict(x) if isinstance(x, Mapping) else {ex.input_name: x}
    if ex.input_name not in feeds:
        raise InputError(f"the samples hold no array for the explained input '{ex.input_name}' (given: "
                         f"{', '.join(feeds) or 'none'})")
    feeds = {name: np.asarray(value) for name, value in feeds.items()}
    ids = feeds[ex.input_name]
    if ids.ndim != len(ex.input_shape) + 1 or tuple(ids.shape[1:]) != tuple(ex.input_shape) or len(ids) == 0:
        raise InputError(f"samples of shape {list(ids.shape)} do not fit input '{ex.input_name}': evaluation needs a "
                         f"batch [N, {', '.join(map(str, ex.input_shape))}] with N >= 1")
    if kind != "tokens":
        if len(feeds) > 1:
            raise InputError(f"companion inputs ({', '.join(n for n in feeds if n != ex.input_name)}) are taken "
                             f"with token ids only; the input is {NAMES[kind]}")
        if ids.dtype.kind not in "iuf" or not np.isfinite(ids).all():
            raise InputError(f"the {NAMES[kind]} must be finite real numbers (dtype {ids.dtype})")
    return feeds, ids


def _baseline(baseline: Any, rows: np.ndarray) -> dict[str, Any]:
    if baseline is None:
        return {"baseline": tuple(float(v) for v in rows.astype(np.float64).mean(axis=0)),
                "source": f"the mean of the {len(rows)} evaluated row(s); Samek et al.'s uninformative value is "
                          "the training mean: pass it as the baseline row"}
    row = np.asarray(baseline)
    if row.dtype.kind not in "iuf" or row.shape != (rows.shape[1],) or not np.isfinite(row).all():
        raise InputError(f"the baseline row must be {rows.shape[1]} finite numbers, one per feature; got shape "
                         f"{list(row.shape)}, dtype {row.dtype}")
    return {"baseline": tuple(float(v) for v in row), "source": "the baseline row given"}


def _noise(low: Any, high: Any, signals: np.ndarray) -> dict[str, Any]:
    channels = signals.shape[1]
    if low is None or high is None:
        low, high = signals.min(axis=(0, 2)), signals.max(axis=(0, 2))
        same = low >= high
        high = np.where(same, low + 1.0, high)
        source = "noise range: each channel's smallest and largest value over the evaluated signals"
    else:
        source = "noise range: low and high as given"
    low, high = (np.broadcast_to(np.asarray(v, dtype=np.float64), (channels,)) for v in (low, high))
    if not (low < high).all():
        raise InputError(f"uniform noise needs low < high; got {low.tolist()} and {high.tolist()}")
    return {"noise": (tuple(map(float, low)), tuple(map(float, high))), "source": source}


def _tokens(ex: Any, feeds: dict[str, np.ndarray], ids: np.ndarray, mask_token: int | None) -> dict[str, Any]:
    fixed = []
    known = getattr(ex, "fixed_inputs", None)
    for name, array in feeds.items():
        if name != ex.input_name and known is not None and name not in known:
            raise InputError(f"the model has no companion input '{name}' (its inputs besides "
                             f"'{ex.input_name}': {', '.join(known) or 'none'})")
        if array.shape != ids.shape:
            raise InputError(f"companion input '{name}' has shape {list(array.shape)}; evaluation takes companions "
                             f"of the token ids' shape {list(ids.shape)}")
        if array.dtype.kind not in "iub" or (array.size and np.abs(array.astype(np.int64)).max() >= EXACT_IN_FLOAT32):
            raise InputError(f"'{name}' must hold integers below {EXACT_IN_FLOAT32} (dtype {array.dtype})")
        if name != ex.input_name:
            fixed.append((name, str(array.dtype)))
    if mask_token is None:
        meta = getattr(ex, "metadata", {}) or {}
        key = next((k for k in ("mask_token_id", "pad_token_id") if str(meta.get(k, "")).strip().isdigit()), None)
        mask_token = int(meta[key]) if key else 0
        source = f"the model's metadata entry {key}" if key else "0: the model's metadata names no mask_token_id " \
                                                                  "or pad_token_id"
    else:
        source = "the mask token given"
    if isinstance(mask_token, bool) or not isinstance(mask_token, (int, np.integer)) or \
            not 0 <= mask_token < EXACT_IN_FLOAT32:
        raise InputError(f"the mask token must be a token id, a non-negative integer; got {mask_token!r}")
    return {"fixed": tuple(fixed), "mask_token": int(mask_token), "dtype": str(ids.dtype), "source": source}


def _window(region: int | None, length: int, name: str) -> int:
    if region is None:
        return max(1, -(-length // SIGNAL_WINDOWS))
    if region > length:
        raise InputError(f"{_option(name, region)} is longer than the {length}-sample signal; use {length} or less")
    return int(region)


def _plan(units: Units, view: np.ndarray, steps: int | None, scaled_region: bool,
          names: tuple[str, str]) -> UnitPlan:
    """Default steps: every unit (at most the paper's 100) for features and tokens (for tokens: the most real tokens
    of any row), a quarter of the windows (at most 100) for signals, as for images."""
    count = max_regions(1, units.length, units.region)
    if units.kind == "signal":
        scaled = f" (scaled to the {units.length}-sample signal: its length / {SIGNAL_WINDOWS}, rounded up)"
        what = f"windows of {units.region} sample(s)" + (scaled if scaled_region else " (as given)")
        default, rule = max(1, min(PAPER_STEPS, count // 4)), f"a quarter of the {count} windows, at most 100"
    elif units.kind == "features":
        what, default, rule = "one feature a step", min(PAPER_STEPS, count), f"every one of the {count} features, " \
                                                                             "at most 100"
    else:
        eligible = units.eligible(view)
        real = units.length if eligible is None else int(eligible.sum(axis=(1, 2)).max())
        what, default = "one token a step", max(1, min(PAPER_STEPS, real))
        rule = f"the most real tokens of any row ({real}), at most 100"
    if steps is not None and steps > count:
        raise InputError(f"{_option(names[0], steps)}: the input holds only {count} units ({what}); pass "
                         f"{_option(names[0], count)} or fewer")
    chosen = default if steps is None else int(steps)
    text = f"{what}, {chosen} steps " + (f"(scaled to the input: {rule})" if steps is None else "(as given)")
    return UnitPlan(chosen, units.region, text)


def _option(name: str, value: Any) -> str:
    return f"{name} {value}" if name.startswith("-") else f"{name}={value}"
