"""The user-facing ``Explainer``: load an ONNX model once, explain any batch and any class (or any output seed)."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from explainer import seeds as dense
from explainer.errors import ExplainerError, InputError, ModelError, describe
from explainer.frontend.canonicalise import canonicalise
from explainer.frontend.inputs import companion_default, select_output
from explainer.frontend.ir import CanonicalGraph
from explainer.images.spec import channel_sum
from explainer.lrp.composites import AUTO, Composite, Seed, default_method, input_bounds, make_composite
from explainer.onnx_io import InMemoryModel, ModelSource, read_model, save_model
from explainer.ops import OPS
from explainer.relevance.graph import (
    ABSORBED,
    EXPLAINED,
    LOGITS,
    RELEVANCE,
    SEED,
    TARGET,
    build_forward_model,
    build_relevance_model,
)
from explainer.runtime import cache as session_cache
from explainer.runtime.providers import resolve_provider
from explainer.runtime.sessions import load_optimised, make_session, run_bound


@dataclass
class Explanation:
    """Relevance (same shape as the input), pre-softmax logits (N, classes), the explained class per sample, and
    the input layout (NCHW or NHWC for images, NC for features, NCW for 1-D signals) the relevance is laid out in, and
    the ``seed`` it started from ('logit': one-hot × the target's logit, 'one-hot', or 'array': a seed array given to
    ``explain``, target -1; relevance and ``absorbed`` are in units of the seed's value, 1 for one-hot).

    ``conservation`` (N,), for methods whose relevance starts from the target logit (the LRP methods): the sum of
    each sample's relevance divided by its seed value (the target logit, 1, or a seed array's sum), 1 where all of
    it arrives at the input (LRP-0 on a network without biases), less where biases and stabilisers absorb some, NaN
    for a zero logit; None for gradient-like methods, whose output is no share of the logit. ``absorbed`` maps each
    constant input that keeps relevance (a class token, a position embedding: ``EmitContext.absorb``) to its share
    per sample (N,), for the LRP methods."""

    relevance: np.ndarray
    logits: np.ndarray
    target: np.ndarray
    method: str = ""
    layout: str = "NCHW"
    seed: str = "logit"
    conservation: np.ndarray | None = None
    absorbed: dict[str, np.ndarray] = field(default_factory=dict)
    relevance_of: dict[str, np.ndarray] = field(default_factory=dict)
    """input name -> its relevance, for every input that receives some (``Explainer(input=[...])``); the first is
    ``relevance``"""

    def relevance_map(self) -> np.ndarray:
        """Relevance summed over the channel axis: (N, H, W) for images, (N, L) for 1-D signals, (N, D, H, W) for
        volumes; tabular relevance (N, F) as it is; per token (N, T) for token ids (summed over the embedding)."""
        if self.layout in ("NCHW", "NHWC"):
            return channel_sum(self.relevance, self.layout)
        if self.layout == "tokens":
            return self.relevance.sum(axis=-1)
        return self.relevance if self.layout == "NC" else self.relevance.sum(axis=1)


@dataclass
class _ForwardSession:
    """The canonical forward graph's session, created on first use and shared by explainers of one model."""

    session: Any = None


@dataclass
class _Canonical:
    """The canonical graph, made on first use when the relevance session came from the cache, and shared by
    explainers of one model; what is needed to make it."""

    model: Any
    base_dir: Any
    input_shape: tuple[int, ...] | None
    output: str | None = None
    input: str | list[str] | None = None
    graph: CanonicalGraph | None = None


@dataclass(frozen=True)
class _Info:
    """What the explainer tells about the model without its canonical graph (stored in a cache entry)."""

    input_name: str
    input_shape: tuple[int, ...]
    layout: str
    num_classes: int
    changes: tuple[str, ...]
    default_method: str
    output_shape: tuple[int, ...] = ()
    feeds: tuple = ()
    """(name, per-sample shape, ONNX element type) of every input the graphs take, the explained one first"""
    vocabulary: int = 0
    """a token model's number of embedding rows (token ids run from 0 to it, exclusive)"""
    also: tuple = ()
    """(name, per-sample shape, layout) of the further inputs that receive relevance"""

    @classmethod
    def of(cls, graph: CanonicalGraph) -> _Info:
        method = default_method({OPS[node.op].kind for node in graph.nodes})
        if graph.layout in ("NC", "tokens") and method == "epsilon-plus-flat":
            method = "epsilon-plus"  # the flat rule would spread the first layer's relevance evenly over the features
        feeds = tuple((name, tuple(shape), int(elem)) for name, shape, elem in graph.feeds)
        vocabulary = 0
        if graph.token_input:
            lookup = next(n for n in graph.side_nodes if graph.input_name in n.output)
            vocabulary = int(graph.side_consts[lookup.input[0]].shape[0])
        return cls(graph.token_input or graph.input_name, tuple(graph.input_shape), graph.layout, graph.num_classes,
                   tuple(graph.changes), method, tuple(graph.output_shape) or (graph.num_classes,), feeds, vocabulary,
                   tuple((name, tuple(shape), layout) for name, shape, layout in graph.also))


class Explainer:
    """Rewrite an ONNX classifier into an LRP graph and run it in ONNX Runtime.

    ``method`` is a method name (see ``explainer.METHODS``; "auto", the default, picks AttnLRP for transformers and
    epsilon-plus-flat otherwise), a composite spec dict, or a ``Composite``. Rule
    parameters (``epsilon``, ``gamma``, ``stabiliser``) are keyword arguments: a named method's own (any other is an
    InputError), defaults for the rules a spec dict names, none with a ``Composite`` (see ``make_composite``).
    ``low``/``high`` are the model input's range: the zB rule's bounds, unless the rule carries its own
    (``ZBox(low, high)``, which must then agree with them).
    ``seed`` is what relevance starts from at the output: 'logit' (one-hot × the target's logit) or 'one-hot' (the
    one-hot vector, as Zennit's usual call; with a negative target logit the logit seed flips the map's sign);
    None, the default, keeps the method's own (logit for LRP, one-hot for gradient-like methods).
    ``provider`` is 'auto' (CUDA when a device works, else CPU), 'cpu' or 'cuda'. ``input_shape`` fills dynamic
    non-batch dims of the model's input (one float input: images, features [N, F], signals [N, C, L]). ``output``
    names the output to explain when the model has several (default: the first); its final Sigmoid, Softmax or
    LogSoftmax heads (multi-label heads; also behind reshapes and concatenations) are skipped, and ``changes`` says
    so. A float16/bfloat16 model is computed in float32 (``changes`` says how far that moves its scores).
    ``input`` names the input that receives relevance when the model has several (default: the one float input,
    else the token ids that feed an embedding), or a list of them (the first may be token ids, the others are float
    inputs; each one's relevance is in ``Explanation.relevance_of``); every other input is a fixed input, fed as
    given (``explain``/``forward`` then take a dict of named arrays).
    ``source`` names the model in messages when it is passed as a ModelProto.
    ``base_dir`` is the folder that external data of a model given as bytes or a ModelProto is read from (without
    it, such a model's external data is an error; a model file's is read from the file's own folder).
    ``cache`` (default True; ``EXPLAINER_CACHE=0`` turns it off everywhere): keep the optimised relevance graph in
    the user's cache folder (``explainer.runtime.cache``) and take it from there when the same model file or bytes
    are explained again with the same settings on the CPU; such an explainer makes its canonical graph only when
    something needs it (``forward``, ``with_method``, ``save``). ``timings`` shows 'cache' on a hit.
    Every failure a caller can cause is an ``ExplainerError`` (``explainer.errors``) naming the culprit.
    """

    #: conservation of other methods on this model where this one's vanished (``_warn_low_conservation``)
    _alternatives: dict[str, float] | None = None

    def __init__(self, model: ModelSource, method: str | Composite | dict = AUTO, *,
                 provider: str = "auto", input_shape: tuple[int, ...] | None = None, low: Any = None,
                 high: Any = None, verify: bool = True, source: str | None = None, threads: int | None = None,
                 base_dir: str | os.PathLike | None = None, seed: str | None = None, cache: bool = True,
                 output: str | None = None, input: str | list[str] | None = None, **rule_params: Any) -> None:
        self.timings: dict[str, float] = {}
        self._seed = _parse_seed(seed)
        self.threads = _check_threads(threads)
        if not isinstance(provider, str):
            raise InputError(f"provider must be 'auto', 'cpu' or 'cuda', got {provider!r}")
        if source is not None and not isinstance(source, str):
            raise InputError(f"source must be a string naming the model, got {source!r}")
        self.source = source or "<model>"
        if method != AUTO:  # bad parameters fail before model work
            composite, bounds = self._composite(method, low, high, rule_params)
        self.provider = resolve_provider(provider)
        self._forward = _ForwardSession()
        if output is not None and not isinstance(output, str):
            raise InputError(f"output must be the name of one of the model's outputs, got {output!r}")
        if isinstance(input, (list, tuple)):
            input = list(input) if len(input) > 1 else (input[0] if input else None)
        if input is not None and not isinstance(input, (str, list)):
            raise InputError(f"input must be the name of one of the model's inputs (or a list of them), got {input!r}")
        self._canonical = _Canonical(model, base_dir, input_shape, output, input)
        self._relevance_model = None
        if not isinstance(cache, bool):
            raise InputError(f"cache must be True or False, got {cache!r}")
        slot = self._cache_slot(model, base_dir, cache, {
            "method": method, "params": rule_params, "low": _plain(low), "high": _plain(high), "seed": seed,
            "input_shape": input_shape, "provider": self.provider, "threads": self.threads,
            **({"output": output} if output is not None else {}),
            **({"input": input} if input is not None else {})})  # keys of earlier entries unchanged
        if slot is not None and self._from_cache(slot, source, method, low, high, rule_params):
            return
        with self._timed("load"):
            loaded = read_model(model, base_dir)
            self.source = source or loaded.source
            self._files = loaded.files  # the model's own files, which save() never replaces
            self.metadata = {p.key: p.value for p in loaded.proto.metadata_props}
            # the weights as arrays, the protobuf dropped: it frees its memory only as a whole
            split = InMemoryModel.from_loaded(loaded.proto, self.source)
            del loaded
        with self._timed("canonicalise"):
            self._canonical.graph = _canonicalise(split, self.source, input_shape, output, input)
        del split  # the canonical graph holds every weight it needs
        self._info = _Info.of(self.graph)
        if method == AUTO:
            composite, bounds = self._composite(self.default_method, low, high, rule_params)
        writer = self._cache_writer(slot) if verify else None  # only verified graphs are stored
        try:
            self._set_method(composite, low, high, bounds, writer)
            if verify:
                with self._timed("verify"):
                    self._verify()
            if writer is not None:
                with self._timed("cache_write"):
                    self._cache_commit(slot, writer)
        finally:
            if writer is not None:
                writer.discard()

    # ------------------------------------------------------------------ the session cache
    def _cache_slot(self, model: ModelSource, base_dir: Any, cache: bool, settings: dict) -> tuple | None:
        """(cache folder, entry name, folder of the model's external data) when the cache applies: enabled, the
        CPU provider, a model given as a file or bytes that can be read; None otherwise."""
        root = session_cache.cache_dir() if cache else None
        if root is None or self.provider != "cpu":
            return None
        with self._timed("key"):
            try:
                if isinstance(model, (bytes, bytearray, memoryview)):
                    digest = hashlib.sha256(model).hexdigest()
                    base = None if base_dir is None else Path(os.fsdecode(base_dir)).resolve()
                elif isinstance(model, (str, os.PathLike)) and os.fsdecode(model) and base_dir is None:
                    path = Path(os.fsdecode(model))
                    digest, base = session_cache.model_digest(path), path.parent.resolve()  # as read_model
                else:
                    return None
            except (OSError, ValueError, TypeError):
                return None  # read_model reports what is wrong with it
            return root, session_cache.key(digest, settings), base

    def _from_cache(self, slot: tuple, source: str | None, method: Any, low: Any, high: Any,
                    rule_params: dict) -> bool:
        """Take the relevance session from the cache entry of ``slot``, if there is a sound one (True)."""
        root, name, base = slot
        with self._timed("cache"):
            entry = session_cache.lookup(root, name, base)
            try:
                info = entry.info
                graph_info = _Info(**{**info["graph"], "input_shape": tuple(info["graph"]["input_shape"]),
                                      "changes": tuple(info["graph"]["changes"])})
                metadata, absorbed = dict(info["metadata"]), list(info["absorbed"])
                session = load_optimised(entry.model_path, self.provider, entry.fed, threads=self.threads)
            except Exception:
                session = None  # no entry, or one this version cannot use: rebuilt below, and replaced
        if session is None:
            self.timings["key"] += self.timings.pop("cache")  # a miss: no 'cache' stage
            return False
        model = self._canonical.model
        self.source = source or (str(Path(os.fsdecode(model))) if isinstance(model, (str, os.PathLike)) else "<bytes>")
        main = (Path(os.fsdecode(model)).resolve(),) if isinstance(model, (str, os.PathLike)) else ()
        self._files = main + tuple(entry.external.values())
        self.metadata, self._info = metadata, graph_info
        composite, bounds = self._composite(self.default_method if method == AUTO else method, low, high,
                                            rule_params)
        self._set_method(composite, low, high, bounds, session=session, absorbed=absorbed)
        return True

    def _cache_writer(self, slot: tuple | None) -> session_cache.Writer | None:
        if slot is None:
            return None
        try:
            return session_cache.Writer(slot[0])
        except OSError:
            return None  # a cache folder that cannot be made: no caching, no error

    def _cache_commit(self, slot: tuple, writer: session_cache.Writer) -> None:
        """Store the verified relevance session's optimised graph under the entry name of ``slot``."""
        _, name, base = slot
        model = self._canonical.model
        data = self._files[1:] if isinstance(model, (str, os.PathLike)) else self._files
        try:
            external = {path.relative_to(base).as_posix(): path for path in data}
        except (ValueError, TypeError):
            return  # external data the cache could not find again (outside the model's folder): not cached
        info = {"graph": dataclasses.asdict(self._info), "metadata": self.metadata, "absorbed": self.absorbed_labels}
        writer.commit(name, getattr(self._relevance, "fed", {}), external, info)

    @property
    def default_method(self) -> str:
        """The method ``"auto"`` picks for this model: AttnLRP for transformers, epsilon-plus for models on feature
        vectors [N, F] (whose first layer the flat rule would spread evenly over the features), epsilon-plus-flat
        otherwise."""
        return self._info.default_method

    @property
    def graph(self) -> CanonicalGraph:
        """The canonical graph (made now when the relevance session came from the cache)."""
        if self._canonical.graph is None:
            holder = self._canonical
            with self._timed("canonicalise"):
                loaded = read_model(holder.model, holder.base_dir)
                split = InMemoryModel.from_loaded(loaded.proto, self.source)
                del loaded
                holder.graph = _canonicalise(split, self.source, holder.input_shape, holder.output, holder.input)
        return self._canonical.graph

    @property
    def relevance_model(self) -> InMemoryModel:
        """The relevance graph (built now when its session came from the cache)."""
        if self._relevance_model is None:
            with self._timed("build"):
                self._relevance_model = build_relevance_model(self.graph, self._seeded, low=self._bounds[0],
                                                              high=self._bounds[1])
        return self._relevance_model

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        """Record the wall time of ``stage`` in ``self.timings`` (seconds); running out of memory in it is a
        ModelError naming the stage."""
        start = time.perf_counter()
        try:
            yield
        except MemoryError:
            raise ModelError(f"{self.source}: not enough memory to {_STAGES.get(stage, stage)}") from None
        finally:
            self.timings[stage] = time.perf_counter() - start

    @staticmethod
    def _composite(method: str | Composite | dict, low: Any, high: Any,
                   rule_params: dict) -> tuple[Composite, tuple[Any, Any]]:
        """The composite and the input bounds its relevance graph is built with (its zB rules' own, else
        ``low``/``high``); every parameter is checked here, before any model work (InputError)."""
        composite = make_composite(method, low=low, high=high, **rule_params)
        return composite, input_bounds(composite, low, high)

    def _set_method(self, composite: Composite, low: Any, high: Any, bounds: tuple[Any, Any],
                    writer: session_cache.Writer | None = None, *, session: Any = None,
                    absorbed: list[str] | None = None) -> None:
        """Build the relevance graph of ``composite`` and its session (saving the optimised graph for ``writer``),
        or take ``session`` and ``absorbed`` from a cache entry."""
        self.composite = composite
        self.low, self.high = low, high  # the user's range: what with_method starts from
        # the seed is built into the graph only: the method's own seed still says whether it is relevance or a signal
        self._seeded = composite if self._seed in (None, composite.seed) \
            else dataclasses.replace(composite, seed=self._seed)
        self._bounds = bounds
        self._relevance_model = None
        self._seed_session = None
        if session is not None:
            self._relevance, self._absorbed = session, absorbed or []
            return
        model = self.relevance_model
        self._absorbed = json.loads({p.key: p.value for p in model.skeleton.metadata_props}
                                    .get("explainer.absorbed") or "[]")
        with self._timed("session"):
            try:
                self._relevance = make_session(model, self.provider, threads=self.threads,
                                               save_to=writer.model_path if writer else None)
            except (ExplainerError, MemoryError):
                raise
            except Exception as exc:
                raise ModelError(f"{self.source}: ONNX Runtime cannot load the relevance graph of method "
                                 f"'{composite.name}' ({describe(exc)})") from None

    def with_method(self, method: str | Composite | dict, *, low: Any = None, high: Any = None,
                    seed: str | None = None, **rule_params: Any) -> Explainer:
        """Another explainer for the same model (its canonical graph and forward session are shared) with a
        different method; ``seed`` None keeps this explainer's choice."""
        seed = self._seed if seed is None else _parse_seed(seed)
        low = self.low if low is None else low
        high = self.high if high is None else high
        if method == AUTO:
            method = self.default_method
        composite, bounds = self._composite(method, low, high, rule_params)
        other = copy.copy(self)
        other.timings = {}
        other._seed = seed
        other._set_method(composite, low, high, bounds)
        return other

    # ------------------------------------------------------------------ properties
    @property
    def method(self) -> str:
        return self.composite.name

    @property
    def seed(self) -> str:
        """What relevance starts from: 'logit' (one-hot × logit) or 'one-hot'."""
        return _SEED_NAMES[self._seed or self.composite.seed]

    @property
    def input_name(self) -> str:
        """The input that receives relevance (token ids: their name)."""
        return self._info.input_name

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape (no batch axis) of the explained input: ``(T,)`` for token ids."""
        if self._info.vocabulary:
            return tuple(self._info.feeds[0][1])
        return self._info.input_shape

    @property
    def relevance_shape(self) -> tuple[int, ...]:
        """Per-sample shape of ``Explanation.relevance``: the input's, or ``(T, D)`` for token ids (relevance at
        their embedding)."""
        return self._info.input_shape

    @property
    def fixed_inputs(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """The inputs fed as given, receiving no relevance: name -> (per-sample shape, dtype)."""
        explained = {entry[0] for entry in self._info.also}
        return {name: (tuple(shape), np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)))
                for name, shape, elem in self._info.feeds[1:] if name not in explained}

    @property
    def explained_inputs(self) -> list[str]:
        """Every input that receives relevance: ``input_name`` and those given after it in ``input=[...]``."""
        return [self.input_name, *(entry[0] for entry in self._info.also)]

    @property
    def vocabulary(self) -> int:
        """A token model's number of embedding rows (0 for other inputs)."""
        return self._info.vocabulary

    @property
    def layout(self) -> str:
        return self._info.layout

    @property
    def num_classes(self) -> int:
        return self._info.num_classes

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The explained output's per-sample shape: ``(classes,)`` for a score vector, ``(K, H, W)`` for a dense
        output (explained as its ``num_classes`` = K·H·W values, flattened in C order)."""
        return tuple(self._info.output_shape) or (self.num_classes,)

    @property
    def changes(self) -> list[str]:
        """What the canonicaliser changed, in words."""
        return list(self._info.changes)

    # ------------------------------------------------------------------ running
    def _check_input(self, x: Any) -> dict[str, np.ndarray]:
        """The graphs' inputs for ``x``: an array for the explained input, or a dict of named arrays that holds it and
        any fixed inputs (see ``fixed_inputs``; missing ones take ``default_feed``'s value where it has one)."""
        feeds = self._feeds()
        given: dict[str, Any] = {}
        if isinstance(x, Mapping):
            given = dict(x)
            names = [name for name, _, _ in feeds]
            unknown = [k for k in given if k not in names]
            if unknown:
                raise InputError(f"the model has no input '{unknown[0]}'; its inputs are "
                                 + ", ".join(f"'{n}'" for n in names))
            if self.input_name not in given:
                raise InputError(f"the inputs given ({', '.join(map(repr, given))}) lack '{self.input_name}', the "
                                 "input that receives relevance")
            x = given.pop(self.input_name)
        main = self._check_token_ids(x) if self.vocabulary else self._check_float_input(x)
        out = {feeds[0][0]: main}
        n = len(main)
        for name, shape, elem in feeds[1:]:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
            if name in given:
                out[name] = _check_feed(name, given[name], n, tuple(shape), dtype)
                continue
            value = None if name in self.explained_inputs else default_feed(name, n, tuple(shape), dtype)
            if value is None:
                role = "input" if name in self.explained_inputs else "fixed input"
                raise InputError(f"{role} '{name}' [N, {', '.join(map(str, shape))}] {dtype} is not given; "
                                 f"pass the inputs as a dict {{'{self.input_name}': ..., '{name}': ...}}")
            out[name] = value
        return out

    def _feeds(self) -> tuple:
        """(name, per-sample shape, ONNX element type) of every input the graphs take, the explained one first."""
        return tuple(self._info.feeds) or ((self.input_name, self.input_shape, onnx.TensorProto.FLOAT),)

    def _check_token_ids(self, ids: Any) -> np.ndarray:
        """``ids`` as a batch of integer token ids [N, T] within the embedding's rows."""
        try:
            ids = np.asarray(ids)
        except (ValueError, TypeError) as exc:
            raise InputError(f"token ids are not an array of integers ({' '.join(str(exc).split())[:200]})") from None
        if ids.dtype.kind not in "iu" or ids.dtype == np.bool_:
            raise InputError(f"token ids must be integers, got dtype {ids.dtype}")
        if ids.ndim == len(self.input_shape):
            ids = ids[None]
        if tuple(ids.shape[1:]) != tuple(self.input_shape) or ids.shape[0] == 0:
            raise InputError(f"token ids of shape {list(ids.shape)} do not match input '{self.input_name}' of shape "
                             f"[N, {', '.join(map(str, self.input_shape))}]")
        bad = ids[(ids < 0) | (ids >= self.vocabulary)]
        if bad.size:
            raise InputError(f"token id {int(bad.reshape(-1)[0])} is outside the vocabulary of input "
                             f"'{self.input_name}' (0..{self.vocabulary - 1})")
        return np.ascontiguousarray(ids, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(self._feeds()[0][2])))

    def _check_float_input(self, x: Any) -> np.ndarray:
        """``x`` as a contiguous float32 batch of the model's input shape. Only real numbers are accepted (integers
        and floats, float16 and bfloat16 too: a float16/bfloat16 model is computed in float32): booleans, complex
        numbers (whose imaginary part would be dropped) and objects are refused, as are values beyond float32's range
        (they would become Inf)."""
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise InputError(f"input is not an array of numbers ({' '.join(str(exc).split())[:200]})") from None
        if x.dtype.name == "bfloat16":  # ml_dtypes' bfloat16 (NumPy kind 'V')
            x = x.astype(np.float32)
        if x.dtype.kind not in "iuf":
            raise InputError(f"input must be real numeric values (integers or floats), got dtype {x.dtype}")
        if x.dtype != np.float32:
            if x.dtype.kind == "f" and x.size and np.all(np.isfinite(x)) \
                    and float(np.max(np.abs(x))) > float(np.finfo(np.float32).max):
                raise InputError(f"the input has values beyond float32's range (largest magnitude "
                                 f"{float(np.max(np.abs(x))):.3g})")
            x = x.astype(np.float32)
        if x.ndim == len(self.input_shape):
            x = x[None]
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise InputError(f"input of shape {list(x.shape)} does not match the model's input "
                             f"'{self.input_name}' of shape [N, {', '.join(map(str, self.input_shape))}] "
                             f"({self.layout})")
        if x.shape[0] == 0:
            raise InputError("the input batch is empty (0 samples)")
        if not np.all(np.isfinite(x)):
            raise InputError("the input contains NaN or Inf values")
        return np.ascontiguousarray(x)

    def _chunks(self, n: int, batch_size: int | None) -> list[slice]:
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                       or batch_size < 1):
            raise InputError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        size = min(n, int(batch_size)) if batch_size else n
        return [slice(i, min(n, i + size)) for i in range(0, n, size)]

    def _run(self, session: Any, outputs: list[str], feeds: dict[str, np.ndarray], what: str) -> list[np.ndarray]:
        """One ONNX Runtime run; its failures (an allocation for a batch too large, say) are one-line errors."""
        n = _count(feeds)
        try:
            return run_bound(session, outputs, feeds, self.provider)
        except ExplainerError:
            raise
        except MemoryError:
            raise InputError(f"{self.source}: not enough memory for {what} on a batch of {n} samples; pass a smaller "
                             "batch_size") from None
        except Exception as exc:
            detail = " ".join(str(exc).split())
            hint = "; a smaller batch_size may help" if any(w in detail.lower() for w in ("alloc", "memory")) else ""
            raise ModelError(f"{self.source}: ONNX Runtime failed running {what} on a batch of {n} samples "
                             f"({exc.__class__.__name__}: {detail[:300]}){hint}") from None

    def forward(self, x: Any, batch_size: int | None = None) -> np.ndarray:
        """Pre-softmax logits (N, classes) of the canonical graph (the original model without a final softmax)."""
        feeds = self._check_input(x)
        return np.concatenate([self._run_forward(_part(feeds, s)) for s in self._chunks(_count(feeds), batch_size)])

    def _run_forward(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self._forward.session is None:
            try:
                session = make_session(build_forward_model(self.graph), self.provider, threads=self.threads)
            except (ExplainerError, MemoryError):
                raise
            except Exception as exc:
                raise ModelError(f"{self.source}: ONNX Runtime cannot load the forward graph ({describe(exc)})") \
                    from None
            self._verify(session)
            self._forward.session = session
        return self._run(self._forward.session, [LOGITS], feeds, "the forward graph")[0]

    __call__ = forward

    def explain(self, x: Any, target: Any = None, batch_size: int | None = None, *, seed: Any = None,
                region: Any = None, mask: Any = None) -> Explanation:
        """Relevance of ``target`` (int or one per sample; default: the arg-max class) for the batch ``x``; or, with
        ``seed`` (an array of the output's shape, [N, classes] or [classes] for every sample), of that seed: the
        relevance at the output as given (several classes at once, a weighting of them), ``target`` -1.
        On an output map [K, H, W] (``output_shape``) ``target`` is a channel, and what is explained is a sum
        (``explainer.seeds``): of channel ``target`` over the box ``region`` = (x0, y0, x1, y1) (output-map pixels,
        half-open), over the [H, W] ``mask`` or over the whole map; without ``target``, of each pixel's arg-max
        channel. It runs as a seed array (``seed`` 'array', ``target`` -1; a logit seed: the chosen logits)."""
        if region is not None or mask is not None or (seed is None and dense.is_map(self.output_shape)):
            if seed is not None:
                raise InputError("pass region or mask, or seed, not both")
            dense.pixels(self.output_shape, region, mask)  # a bad region or mask fails before any run
            array = dense.dense_seed(self.output_shape, self.forward(x, batch_size), target, region, mask, self.seed)
            return self.explain(x, batch_size=batch_size, seed=array)
        x = self._check_input(x)
        n = _count(x)
        if seed is not None:
            if target is not None:
                raise InputError("pass target or seed, not both")
            return self._explain_seed(x, self._check_seed(seed, n), batch_size)
        if target is None:
            tgt = np.full(n, -1, np.int64)  # the relevance graph explains each sample's arg-max class
        else:
            tgt = np.asarray(target)
            if not np.issubdtype(tgt.dtype, np.integer):
                raise InputError(f"target must be integer class indices, got {tgt.dtype}")
            tgt = np.broadcast_to(tgt.astype(np.int64), (n,)).copy() if tgt.ndim == 0 or tgt.size == 1 else \
                tgt.astype(np.int64).reshape(-1)
            if tgt.shape != (n,):
                raise InputError(f"target has {tgt.size} entries for a batch of {n} samples")
            bad = tgt[(tgt < 0) | (tgt >= self.num_classes)]
            if bad.size:
                raise InputError(f"target index {int(bad[0])} is out of range: the model has {self.num_classes} "
                                 f"classes (0..{self.num_classes - 1})")
        got = self._gather(self._relevance, [LOGITS, RELEVANCE, EXPLAINED], x, {TARGET: tgt}, batch_size)
        logits, rel, tgt, absorbed, relevance_of = got
        conservation = None
        if self.composite.seed is Seed.LOGIT:
            seeds = logits[np.arange(n), tgt] if self.seed == "logit" else np.ones(n, logits.dtype)
            conservation = self._conservation(x, relevance_of, seeds)
            self._warn_low_conservation(x, tgt, conservation, absorbed, seeds)
        return Explanation(relevance=rel, logits=logits, target=tgt, method=self.method, layout=self.layout,
                           seed=self.seed, conservation=conservation, absorbed=absorbed, relevance_of=relevance_of)

    def _gather(self, session: Any, outputs: list[str], x: dict[str, np.ndarray], extra: dict[str, np.ndarray],
                batch_size: int | None) -> tuple:
        """Run ``session`` chunk by chunk for ``outputs`` (logits, relevance, …), the further inputs' relevance and
        what constant inputs keep: (the ``outputs``' arrays…, absorbed {label: (N,)}, relevance_of {input: array}).
        Non-finite relevance is a ModelError."""
        labels = self.absorbed_labels
        also = [f"{RELEVANCE}_{k}" for k in range(1, len(self._info.also) + 1)]
        names = outputs + also + ([ABSORBED] if labels else [])
        results = [self._run(session, names, {**_part(x, s), **{k: v[s] for k, v in extra.items()}},
                             f"method '{self.method}'") for s in self._chunks(_count(x), batch_size)]
        got = {name: np.concatenate([r[i] for r in results]) for i, name in enumerate(names)}
        absorbed = {}
        if labels and self.composite.seed is Seed.LOGIT and not self.composite.times_input:
            absorbed = {label: got[ABSORBED][:, k] for k, label in enumerate(labels)}
        relevance_of = {self.input_name: got[RELEVANCE],
                        **{entry[0]: got[name] for entry, name in zip(self._info.also, also)}}
        bad = sum(int((~np.isfinite(r)).sum()) for r in relevance_of.values())
        if bad:
            raise ModelError(f"{self.source}: method '{self.method}' produced {bad} non-finite relevance values; "
                             "try a larger epsilon/stabiliser or another method")
        return (*(got[name] for name in outputs), absorbed, relevance_of)

    def _check_seed(self, seed: Any, n: int) -> np.ndarray:
        """``seed`` as a finite float32 [n, classes] array: given per sample ([n, classes] or [n, *the output's
        per-sample shape]) or once for every sample ([classes])."""
        classes = self.num_classes
        try:
            seeds = np.asarray(seed)
        except (ValueError, TypeError):
            seeds = np.asarray(None)
        if seeds.dtype.kind not in "iuf":
            raise InputError(f"seed must be an array of real numbers, got {seeds.dtype}")
        shape = seeds.shape
        if shape == (classes,) and not (classes == 1 and n > 1):
            seeds = np.broadcast_to(seeds, (n, classes))
        elif seeds.ndim >= 1 and shape[0] == n and int(np.prod(shape[1:])) == classes:
            seeds = seeds.reshape(n, classes)
        else:
            raise InputError(f"seed of shape {list(shape)} does not fit the output for a batch of {n}: expected "
                             f"[{n}, {classes}] (or [{classes}] for every sample)")
        seeds = np.ascontiguousarray(seeds, np.float32)
        if not np.all(np.isfinite(seeds)):
            raise InputError("the seed contains NaN or Inf values (or values beyond float32's range)")
        return seeds

    def _explain_seed(self, x: dict[str, np.ndarray], seeds: np.ndarray, batch_size: int | None) -> Explanation:
        """Relevance of the output seed ``seeds`` [N, classes] (see ``explain``), from a relevance graph that takes
        the seed as an input (built on first use)."""
        if self._seed_session is None:
            with self._timed("build"):
                model = build_relevance_model(self.graph, self._seeded, low=self._bounds[0], high=self._bounds[1],
                                              seed_input=True)
            with self._timed("session"):
                try:
                    self._seed_session = make_session(model, self.provider, threads=self.threads)
                except (ExplainerError, MemoryError):
                    raise
                except Exception as exc:
                    raise ModelError(f"{self.source}: ONNX Runtime cannot load the seeded relevance graph of method "
                                     f"'{self.method}' ({describe(exc)})") from None
        logits, rel, absorbed, relevance_of = self._gather(self._seed_session, [LOGITS, RELEVANCE], x, {SEED: seeds},
                                                           batch_size)
        conservation = None
        if self.composite.seed is Seed.LOGIT:
            conservation = self._conservation(x, relevance_of, seeds.astype(np.float64).sum(axis=1))
        return Explanation(relevance=rel, logits=logits, target=np.full(_count(x), -1, np.int64), method=self.method,
                           layout=self.layout, seed="array", conservation=conservation, absorbed=absorbed,
                           relevance_of=relevance_of)

    def _warn_low_conservation(self, x: dict[str, np.ndarray], tgt: np.ndarray, conservation: np.ndarray,
                               absorbed: dict[str, np.ndarray], seeds: np.ndarray) -> None:
        """A :class:`LowConservationWarning` for the samples where under ``LOW_CONSERVATION`` of the seed reached
        the input and the constant inputs that keep relevance (class tokens, position embeddings) together, naming
        the methods that bring more to the input: up to three of ``_CONSERVING``, measured once per explainer on the
        first (at most four) such samples, one relevance run each."""
        with np.errstate(divide="ignore", invalid="ignore"):
            reached = conservation + sum(absorbed.values(), np.zeros_like(conservation)) / seeds
        low = np.flatnonzero(np.abs(reached) < LOW_CONSERVATION)
        if low.size == 0:
            return
        if self._alternatives is None:
            self._alternatives = {}
            few = low[:4]
            for method in (m for m in _CONSERVING[self.default_method] if m != self.method):
                try:
                    other = self.with_method(method)
                    logits, _, _, relevance_of = other._gather(other._relevance, [LOGITS, RELEVANCE],
                                                               _part(x, few), {TARGET: tgt[few]}, None)
                except ExplainerError:
                    continue  # a method this model or input range cannot take (epsilon-gamma-box without bounds)
                scale = logits[np.arange(len(few)), tgt[few]] if other.seed == "logit" else 1.0
                total = sum(r.reshape(len(few), -1).astype(np.float64).sum(axis=1) for r in relevance_of.values())
                with np.errstate(divide="ignore", invalid="ignore"):
                    kept = total / scale
                self._alternatives[method] = float(np.nanmedian(kept)) if np.isfinite(kept).any() else float("nan")
                if len(self._alternatives) == 3:
                    break
        warnings.warn(LowConservationWarning(self, low, conservation[low]), stacklevel=3)

    @property
    def absorbed_labels(self) -> list[str]:
        """The constant inputs (class tokens, position embeddings) whose relevance the relevance graph reports."""
        return list(self._absorbed)

    def _conservation(self, x: dict[str, np.ndarray], relevance_of: dict[str, np.ndarray],
                      seed: np.ndarray) -> np.ndarray:
        """Sum of relevance (over every input that receives some) / target logit per sample.

        All of it vanishing for a sample whose input is not all zero (a zero input leaves nothing to multiply) and
        whose target logit is not zero but smaller than the composite's largest stabiliser means the stabilisers
        absorbed it: an InputError naming the method and the parameter to lower, not a silently blank heatmap. (With
        small stabilisers an all-zero map is the network's own answer, a logit made by biases alone behind dead
        ReLUs, and its conservation of 0 says so.)"""
        n = _count(x)
        rel = np.concatenate([r.reshape(n, -1) for r in relevance_of.values()], axis=1)
        totals = rel.astype(np.float64).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            conservation = np.where(seed != 0, totals / seed, np.nan)
        stabiliser = self.composite.largest_stabiliser
        vanished = [i for i in range(len(rel))
                    if 0 < abs(float(seed[i])) < stabiliser and not rel[i].any() and next(iter(x.values()))[i].any()]
        if vanished:
            params = {k: v for k, v in self.composite.params.items() if k in ("epsilon", "stabiliser")}
            lower = (", ".join(f"{k} (now {v:g})" for k, v in params.items()) if params
                     else f"the epsilon/stabiliser of its rules (largest {stabiliser:g})")
            raise InputError(f"{self.source}: method '{self.method}' returned all-zero relevance for "
                             f"{len(vanished)} of {len(rel)} samples (sample {vanished[0]}: target logit "
                             f"{float(seed[vanished[0]]):.4g}); its stabilisers, larger than the logit, absorbed "
                             f"the relevance: lower {lower}")
        return conservation.astype(np.float32)

    def save(self, path: str | os.PathLike) -> str:
        """Write the relevance graph as a standalone ONNX model (inputs: image, target; outputs: logits, relevance).
        The file appears complete or not at all; its folder is made when missing; the model this explainer was
        made from (and its external data) is never replaced. Failures are an ``InputError`` (a bad path) or an
        ``OutputError`` (the write failed), both naming the path."""
        target = _save_path(path)
        for written in (target, target.with_name(target.name + ".data")):
            if any(_same_file(written, f) for f in self._files):
                raise InputError(f"{target}: is the model this explainer was made from (or its external data); "
                                 "save the relevance graph under another name")
        return str(save_model(self.relevance_model.full(), target))

    # ------------------------------------------------------------------ checks
    def _verify(self, session: Any = None) -> None:
        """Refuse to explain when the rewritten graph's logits differ from the original model's (measured on the
        front end's reference input, twice in one batch, so a batch axis baked into the rewrite would show): the
        relevance graph's own logits at construction, so that no second session (and no second copy of the
        weights) is needed before ``forward()``; the forward graph's (``session``) when ``forward()`` builds it."""
        feeds, reference = self.graph.reference
        x = {name: np.concatenate([value, value]) for name, value in feeds.items()}
        what = "the relevance graph" if session is None else "the forward graph"
        try:
            if session is None:
                ours = self._run(self._relevance, [LOGITS], {**x, TARGET: np.zeros(_count(x), np.int64)}, what)[0]
            else:
                ours = self._run(session, [LOGITS], x, what)[0]
        except ExplainerError:
            raise
        except Exception as exc:
            raise ModelError(f"{self.source}: ONNX Runtime cannot run {what} ({describe(exc)})") from None
        diff = float(np.abs(ours - np.tile(reference, (2, 1))).max())
        if diff > 1e-3 * max(1.0, float(np.abs(reference).max())):
            raise ModelError(f"{self.source}: the logits of {what} differ from the original model's "
                             f"(max |diff| {diff:.3g}); refusing to explain")


#: an explanation warns when less than this share of its seed reaches the input and the constant inputs that keep
#: relevance (class tokens, position embeddings) together. Normal spreads lie well above it: the shipped digits CNN
#: keeps 96-99 % under epsilon-plus-flat, 48-116 % under lrp-epsilon, 52-79 % under epsilon-plus; its ViT 43-98 %
#: under attn-lrp (5-57 % at the pixels, most of the rest in the position embedding). Biases that absorb everything
#: lie orders of magnitude below (0.004 % on a PP-LCNet under epsilon-plus-flat), and a heatmap scaled to its
#: maximum looks the same either way.
LOW_CONSERVATION = 0.1

#: methods measured when relevance vanishes, by the model family's default method, in the order they are tried
_CONSERVING = {"epsilon-plus-flat": ("epsilon-plus-flat", "epsilon-gamma-box", "lrp-epsilon", "epsilon-plus"),
               "epsilon-plus": ("epsilon-plus", "lrp-epsilon", "epsilon-plus-flat"),
               "attn-lrp": ("attn-lrp", "cp-lrp", "lrp-epsilon", "epsilon-plus-flat")}


class LowConservationWarning(UserWarning):
    """Relevance that vanished: for some samples under a tenth of the seed (``LOW_CONSERVATION``) reached the input
    and the model's constant inputs together. ``method``, ``samples`` (indices in the batch), ``conservation``
    (theirs), ``alternatives`` ({method: median conservation on the first such samples}, measured once per
    explainer) and ``better`` (those that keep at least ``LOW_CONSERVATION`` with the logit's sign, closest to 1
    first) say what happened and how other methods do on this model."""

    def __init__(self, explainer: Explainer, samples: np.ndarray, conservation: np.ndarray) -> None:
        self.method, self.samples, self.conservation = explainer.method, samples, conservation
        self.alternatives = {m: c for m, c in (explainer._alternatives or {}).items() if m != self.method}
        kept = {m: c for m, c in self.alternatives.items() if c >= LOW_CONSERVATION}
        self.better = better = sorted(kept, key=lambda m: abs(np.log(kept[m])))
        measured = ", ".join(f"{m} {self.alternatives[m]:.1%}" for m in better)
        advice = (f"on this model {measured} (median on those samples): try '{better[0]}'" if better else
                  f"no other method kept more ({', '.join(f'{m} {c:.1%}' for m, c in self.alternatives.items())})"
                  if self.alternatives else "no other method could be measured")
        seed = "logit" if explainer.seed == "logit" else "seed"
        shown = ", ".join(f"sample {i}: {c:.2%}" for i, c in zip(samples[:5], conservation[:5]))
        super().__init__(f"{explainer.source}: method '{self.method}': under {LOW_CONSERVATION:.0%} of the explained "
                         f"{seed} reaches the input for {len(samples)} sample(s) ({shown}"
                         f"{', ...' if len(samples) > 5 else ''}); biases and stabilisers absorbed the rest, and a "
                         f"heatmap scaled to its maximum hides that; {advice}")


#: what each timed stage does, for messages
_STAGES = {"load": "load the model", "canonicalise": "read the model's graph", "verify": "verify the rewritten graph",
           "build": "build the relevance graph", "session": "open the ONNX Runtime session",
           "key": "hash the model", "cache": "open the cached relevance graph",
           "cache_write": "store the relevance graph in the cache"}


def _save_path(path: Any) -> Path:
    """``path`` as the Path of a file to write (InputError for anything else: not a path, empty, a folder)."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"the path to save to must be a string or path, got {type(path).__name__}")
    text = os.fsdecode(path)
    if not text.strip() or "\0" in text:
        raise InputError(f"cannot save to {text!r}: expected the path of an .onnx file")
    target = Path(text)
    if target.name in ("", ".", "..") or text.endswith(("/", os.sep)):
        raise InputError(f"cannot save to {text!r}: expected the path of an .onnx file, not a folder")
    if target.is_dir():
        raise InputError(f"cannot save to {text!r}: it is a folder; give the path of an .onnx file in it")
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and os.path.samefile(a, b)
    except OSError:
        return False


#: the seeds' names in outputs; 'one' (the composites' word) is accepted for 'one-hot'
_SEED_NAMES = {Seed.LOGIT: "logit", Seed.ONE: "one-hot"}


def _parse_seed(seed: str | None) -> Seed | None:
    """``seed`` ('logit', 'one-hot' or 'one', or None for the method's own) as a Seed (InputError otherwise)."""
    if seed is None:
        return None
    if seed not in ("logit", "one-hot", "one"):
        raise InputError(f"seed must be 'logit', 'one-hot' or None (the method's own), got {seed!r}")
    return Seed.LOGIT if seed == "logit" else Seed.ONE


def _canonicalise(model: InMemoryModel, source: str, input_shape: tuple[int, ...] | None,
                  output: str | None, input: str | list[str] | None = None) -> CanonicalGraph:
    """The canonical graph of ``model`` (its skeleton is changed) explaining ``output`` (None: the first) with
    relevance at ``input`` (None: see ``pin_inputs``)."""
    picked = select_output(model.skeleton, output, source)
    graph = canonicalise(model.skeleton, source, input_shape=input_shape, weights=model.external, input=input)
    graph.changes[:0] = picked
    return graph


def default_feed(name: str, n: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """The value of a text model's companion input that is not given (``companion_default``), for ``n`` samples;
    None for any other input (it must be given)."""
    default = companion_default(name)
    if default == "all ones":
        return np.ones((n, *shape), dtype)
    if default == "all zeros":
        return np.zeros((n, *shape), dtype)
    if default is not None and len(shape) == 1 and dtype.kind in "iu":
        return np.broadcast_to(np.arange(shape[0], dtype=dtype), (n, *shape)).copy()
    return None


def _check_feed(name: str, value: Any, n: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A fixed input's value as a batch of ``n`` in the model's dtype (one sample without the batch axis is taken
    for every sample)."""
    try:
        value = np.asarray(value)
    except (ValueError, TypeError):
        value = np.asarray(None)
    if value.dtype.kind not in "biuf":
        raise InputError(f"fixed input '{name}' must be an array of numbers, got {value.dtype}")
    if value.shape == shape:
        value = np.broadcast_to(value, (n, *shape))
    if value.shape != (n, *shape):
        raise InputError(f"fixed input '{name}' of shape {list(value.shape)} does not fit [{n}, "
                         f"{', '.join(map(str, shape))}] (the batch of the explained input)")
    if dtype.kind in "iub" and value.dtype.kind == "f" and not np.all(np.isfinite(value) & (value == np.round(value))):
        raise InputError(f"fixed input '{name}' takes integers ({dtype}); got non-integer values")
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise InputError(f"fixed input '{name}' contains NaN or Inf values")
    return np.ascontiguousarray(value, dtype)


def _count(feeds: dict[str, np.ndarray]) -> int:
    """The batch size of a feed dict."""
    return len(next(iter(feeds.values())))


def _part(feeds: dict[str, np.ndarray], rows: Any) -> dict[str, np.ndarray]:
    """The samples ``rows`` (a slice or indices) of every feed."""
    return {name: value[rows] for name, value in feeds.items()}


def _plain(value: Any) -> Any:
    """A bound (None, a number or an array of them) as plain JSON numbers, for the cache key (anything else as its
    repr: make_composite reports it)."""
    try:
        return None if value is None else np.asarray(value, np.float64).tolist()
    except (TypeError, ValueError):
        return repr(value)


def _check_threads(threads: int | None) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads must be a positive integer, got {threads!r}")
    return threads
