"""The interface every op implements (``Op``), and how the registry is assembled from ops (``registry``,
``dispatch_table``): an ONNX op type claimed by several ops gets one ``Dispatch`` that tries them in order."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar

import numpy as np
import onnx

from explainer.frontend.convert import Alias, ConvertContext, Converter, NotSupported
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import Rule
from explainer.relevance.context import EmitContext

#: zB input bounds of one tensor: (low, high), each of the tensor's per-sample shape with a batch axis of 1
Bounds = tuple[np.ndarray, np.ndarray]


class Op(ABC):
    """One canonical op and everything about it.

    Class attributes, checked when an op is instantiated: ``name`` (the canonical op), ``kind`` (the layer kind
    composites match on, ``None`` for structural ops that only route relevance; it must be declared either way) and
    ``also_emits`` (canonical ops its converters produce besides ``name``). The abstract methods are the rest: an
    op that lacks one cannot be instantiated, so it cannot be registered."""

    name: ClassVar[str]
    kind: ClassVar[LayerKind | None]
    also_emits: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        for declared in ("name", "kind"):
            if not hasattr(type(self), declared):
                raise TypeError(f"op class {type(self).__name__} does not declare '{declared}'")

    @property
    def emits(self) -> frozenset[str]:
        """Every canonical op this op's converters may produce."""
        return frozenset((self.name, *self.also_emits))

    @abstractmethod
    def converters(self) -> Mapping[str, Converter]:
        """ONNX op type -> converter (raises ``NotSupported`` with the reason where the node is not this op's)."""

    @abstractmethod
    def forward(self, ctx: EmitContext, node: CNode) -> None:
        """Emit the node's forward computation, writing ``node.output``."""

    @abstractmethod
    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        """Relevance for each of ``node.inputs`` (None: none flows there) from ``r`` at the output, under ``rule``;
        a rule that cannot apply raises ``relevance.context.unsupported_rule``."""

    @abstractmethod
    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        """Sign analysis: whether the output is never negative, given which inputs are never negative."""

    @abstractmethod
    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        """The output's zB bounds from its first input's, or None where bounds stop at this op."""

    def activation_name(self, node: CNode) -> str | None:
        """The activation composites see (e.g. 'relu6'); only element-wise activations have one."""
        return None


class Dispatch:
    """The converter of one ONNX op type: its claims (owner, converter, canonical ops the owner emits) are tried in
    order and the first that does not raise ``NotSupported`` wins; when none applies, every claim's reason is given."""

    def __init__(self, onnx_op: str, claims: Sequence[tuple[str, Converter, frozenset[str]]]) -> None:
        self.onnx_op = onnx_op
        self.claims = tuple(claims)

    @property
    def owners(self) -> tuple[str, ...]:
        return tuple(owner for owner, _, _ in self.claims)

    def __call__(self, ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode] | Alias:
        reasons: list[tuple[str, str]] = []
        for owner, convert, emits in self.claims:
            try:
                result = convert(ctx, node)
            except NotSupported as exc:
                reasons.append((owner, str(exc)))
                continue
            stray = [] if isinstance(result, Alias) else sorted({n.op for n in result} - emits)
            if stray:
                raise TypeError(f"the {owner} converter of {self.onnx_op} emitted {stray}, which {owner} does not "
                                "declare in also_emits")
            return result
        if len(reasons) == 1:
            raise NotSupported(reasons[0][1])
        raise NotSupported("; ".join(f"as {owner}: {reason}" for owner, reason in reasons))


def registry(ops: Iterable[Op]) -> dict[str, Op]:
    """Canonical op name -> op; refuses duplicates, ops without a converter, and emitted ops nobody registers."""
    table: dict[str, Op] = {}
    for op in ops:
        if op.name in table:
            raise TypeError(f"two ops are named '{op.name}'")
        if not op.converters():
            raise TypeError(f"op '{op.name}' converts no ONNX op type")
        table[op.name] = op
    for op in table.values():
        missing = sorted(op.emits - set(table))
        if missing:
            raise TypeError(f"op '{op.name}' emits unregistered canonical op(s) {missing}")
    return table


def dispatch_table(ops: Iterable[Op], aliases: Mapping[str, Converter]) -> dict[str, Dispatch]:
    """ONNX op type -> one ``Dispatch`` over every op claiming it, in the order of ``ops``; ``aliases`` are the
    converters of ONNX ops that only ever vanish (they claim after every op)."""
    claims: dict[str, list[tuple[str, Converter, frozenset[str]]]] = {}
    for op in ops:
        for onnx_op, convert in op.converters().items():
            claims.setdefault(onnx_op, []).append((op.name, convert, op.emits))
    for onnx_op, convert in aliases.items():
        claims.setdefault(onnx_op, []).append(("alias", convert, frozenset()))
    return {onnx_op: Dispatch(onnx_op, c) for onnx_op, c in claims.items()}
