"""The user-facing ``Explainer``: load an ONNX classifier once, explain any batch and any class."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from .canonicalise import canonicalise
from .composites import Composite, make_composite
from .errors import InputError, ModelError
from .ir import CanonicalGraph
from .model_io import load_model, save_model
from .rewriter import LOGITS, RELEVANCE, TARGET, build_forward_model, build_relevance_model
from .runtime import make_session, resolve_provider, run_bound


@dataclass
class Explanation:
    """Relevance (same shape as the input), pre-softmax logits (N, classes) and the explained class per sample."""

    relevance: np.ndarray
    logits: np.ndarray
    target: np.ndarray
    method: str = ""

    def relevance_map(self, layout: str = "NCHW") -> np.ndarray:
        """Relevance summed over the channel axis: (N, H, W)."""
        axis = -1 if layout == "NHWC" else 1
        return self.relevance.sum(axis=axis)


@dataclass
class _ForwardSession:
    """The canonical forward graph's session, created on first use and shared by explainers of one model."""

    session: Any = None


class Explainer:
    """Rewrite an ONNX classifier into an LRP graph and run it in ONNX Runtime.

    ``method`` is a method name (see ``explainer.METHODS``), a composite spec dict, or a ``Composite``; rule
    parameters (``epsilon``, ``gamma``, ``stabiliser``, ``low``/``high`` for the zB rule) are keyword arguments.
    ``provider`` is 'auto' (CUDA when a device works, else CPU), 'cpu' or 'cuda'. ``input_shape`` fills dynamic
    non-batch dims of the model's input. ``source`` names the model in messages when it is passed as a ModelProto.
    """

    def __init__(self, model: str | os.PathLike | onnx.ModelProto | bytes, method: str | Composite | dict =
                 "epsilon-plus-flat", *, provider: str = "auto", input_shape: tuple[int, ...] | None = None,
                 low: Any = None, high: Any = None, verify: bool = True, source: str | None = None,
                 **rule_params: Any) -> None:
        proto, loaded_as = load_model(model)
        self.source = source or loaded_as
        self.graph: CanonicalGraph = canonicalise(proto, self.source, input_shape=input_shape)
        del proto  # the canonical graph holds every weight it needs; the protobuf copy would double the memory
        self.provider = resolve_provider(provider)
        self._forward = _ForwardSession()
        if verify:
            self._verify()
        self._set_method(method, low, high, rule_params)

    def _set_method(self, method: str | Composite | dict, low: Any, high: Any, rule_params: dict) -> None:
        try:
            self.composite = make_composite(method, low=low, high=high, **rule_params)
        except (ValueError, TypeError) as exc:
            raise InputError(str(exc)) from None
        self.low, self.high = low, high
        self.relevance_model = build_relevance_model(self.graph, self.composite, low=low, high=high)
        self._relevance = make_session(self.relevance_model, self.provider)

    def with_method(self, method: str | Composite | dict, *, low: Any = None, high: Any = None,
                    **rule_params: Any) -> "Explainer":
        """Another explainer for the same model (its canonical graph is reused) with a different method."""
        other = object.__new__(Explainer)
        other.source, other.graph, other.provider, other._forward = self.source, self.graph, self.provider, \
            self._forward
        other._set_method(method, self.low if low is None else low, self.high if high is None else high,
                          rule_params)
        return other

    # ------------------------------------------------------------------ properties
    @property
    def method(self) -> str:
        return self.composite.name

    @property
    def input_name(self) -> str:
        return self.graph.input_name

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape (no batch axis)."""
        return self.graph.input_shape

    @property
    def layout(self) -> str:
        return self.graph.layout

    @property
    def num_classes(self) -> int:
        return self.graph.num_classes

    @property
    def changes(self) -> list[str]:
        """What the canonicaliser changed, in words."""
        return list(self.graph.changes)

    # ------------------------------------------------------------------ running
    def _check_input(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.float32:
            if not np.issubdtype(x.dtype, np.number):
                raise InputError(f"input must be numeric, got dtype {x.dtype}")
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
        size = n if self.graph.batch_dynamic else 1
        if batch_size:
            size = min(size, batch_size)
        return [slice(i, min(n, i + size)) for i in range(0, n, size)]

    def forward(self, x: Any, batch_size: int | None = None) -> np.ndarray:
        """Pre-softmax logits (N, classes) of the canonical graph (the original model without a final softmax)."""
        x = self._check_input(x)
        return np.concatenate([self._run_forward(x[s]) for s in self._chunks(len(x), batch_size)])

    def _run_forward(self, x: np.ndarray) -> np.ndarray:
        if self._forward.session is None:
            self._forward.session = make_session(build_forward_model(self.graph), self.provider)
        return run_bound(self._forward.session, [LOGITS], {self.input_name: x}, self.provider)[0]

    __call__ = forward

    def explain(self, x: Any, target: Any = None, batch_size: int | None = None) -> Explanation:
        """Relevance of ``target`` (int or one per sample; default: the arg-max class) for the batch ``x``."""
        x = self._check_input(x)
        n = len(x)
        if target is None:
            tgt = np.argmax(self.forward(x, batch_size), axis=1).astype(np.int64)
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
        logits, relevance = [], []
        for s in self._chunks(n, batch_size):
            lg, rel = run_bound(self._relevance, [LOGITS, RELEVANCE], {self.input_name: x[s], TARGET: tgt[s]},
                                self.provider)
            logits.append(lg)
            relevance.append(rel)
        rel = np.concatenate(relevance)
        if not np.all(np.isfinite(rel)):
            bad = int((~np.isfinite(rel)).sum())
            raise ModelError(f"{self.source}: method '{self.method}' produced {bad} non-finite relevance values; "
                             "try a larger epsilon/stabiliser or another method")
        return Explanation(relevance=rel, logits=np.concatenate(logits), target=tgt, method=self.method)

    def save(self, path: str | os.PathLike) -> str:
        """Write the relevance graph as a standalone ONNX model (inputs: image, target; outputs: logits, relevance)."""
        return str(save_model(self.relevance_model.full(), path))

    # ------------------------------------------------------------------ checks
    def _verify(self) -> None:
        """Refuse to explain when the rewritten graph's logits differ from the original model's (measured on the
        canonicaliser's probe input, twice in one batch to check that the batch axis is really dynamic). The forward
        graph checked here is emitted by the same code as the relevance graph's forward part."""
        x1, reference = self.graph.check
        n = 2 if self.graph.batch_dynamic else 1
        try:
            ours = self._run_forward(np.repeat(x1, n, axis=0))
        except Exception:
            if not self.graph.batch_dynamic:
                raise
            self.graph.batch_dynamic = False
            self.graph.changes.append("the model bakes in batch size 1: samples are explained one at a time")
            self._forward.session = None
            return self._verify()
        diff = float(np.abs(ours - reference.reshape(1, -1)).max())
        if diff > 1e-3 * max(1.0, float(np.abs(reference).max())):
            raise ModelError(f"{self.source}: the rewritten graph's logits differ from the original model's "
                             f"(max |diff| {diff:.3g}); refusing to explain")
