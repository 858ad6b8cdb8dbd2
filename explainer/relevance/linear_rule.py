"""How a ``LinearRule`` (``lrp/rules.py``) becomes ONNX nodes for any linear layer: per term group, forward passes
with modified inputs and parameters, one stabilised denominator, transposed products, and the weighted sum. The layer
itself (Conv, Dense) says how to apply it and its transpose (``LinearOp.apply`` / ``LinearOp.transpose``).

Each distinct parameter modification (``WeightMod``, compared by value) is one initializer per layer; the unmodified
weight and bias are the forward pass's own ("W", "B"), never a second copy."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from explainer.errors import InputError
from explainer.frontend.ir import CNode
from explainer.lrp.rules import IDENTITY, Gate, LinearRule, Term, TermInput, WeightMod
from explainer.relevance.context import EmitContext


class LinearOp(Protocol):
    """A linear layer: its forward product with given (possibly modified) parameters, and its transpose."""

    def apply(self, ctx: EmitContext, node: CNode, x: str, w: str, b: str | None, out: str | None = None) -> str: ...

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray) -> str: ...


class _Parameters:
    """One layer's modified parameters: one initializer key per distinct ``WeightMod`` (by value, never by a function
    name), the forward pass's own key ("W"/"B") for the identity, each modified array computed once."""

    def __init__(self, node: CNode) -> None:
        self.node = node
        self._keys: dict[tuple[str, WeightMod], str] = {}
        self._values: dict[str, np.ndarray] = {}

    def get(self, param: str, mod: WeightMod) -> tuple[str, np.ndarray]:
        """(initializer key, modified array) of parameter ``param`` ("W" or "B") under ``mod``."""
        key = self._keys.get((param, mod))
        if key is None:
            key = param if mod == IDENTITY else self._fresh(f"{param}_{mod.name}")
            self._keys[(param, mod)] = key
            self._values[key] = mod(self.node.params[param])
        return key, self._values[key]

    def _fresh(self, base: str) -> str:
        """``base``, numbered when another modification (a user's function of the same name) already has it."""
        taken = set(self._keys.values())
        key, n = base, 1
        while key in taken:
            key, n = f"{base}{n}", n + 1
        return key


def _term_input(ctx: EmitContext, node: CNode, term: Term) -> str | None:
    """The modified input a'_t of a term, or None when it is identically zero (negative part of a ReLU output)."""
    x = node.inputs[0]
    b = ctx.b
    if term.input is TermInput.X:
        return x
    if term.input is TermInput.POS:
        return x if x in ctx.nonneg else b.relu(x, f"{node.name}_xpos")
    if term.input is TermInput.NEG:
        return None if x in ctx.nonneg else b.neg_part(x, f"{node.name}_xneg")
    if term.input is TermInput.ONES:
        return ctx.weight(node, "ones", np.ones((1,) + tuple(ctx.shape(x)[1:]), np.float32))
    if x not in ctx.bounds:  # a LOW or HIGH term: the zB rule
        raise InputError(f"the zB rule needs input bounds at '{x}' (input of '{node.name}'), but they cannot be "
                         "carried there from the model input (only through transposes, pads, reshapes and affine "
                         "layers): use zB on the first linear layer")
    lo, hi = ctx.bounds[x]
    return ctx.weight(node, str(term.input), lo if term.input is TermInput.LOW else hi)


def apply_linear_rule(ctx: EmitContext, op: LinearOp, node: CNode, rule: LinearRule, r: str) -> str:
    """R_in for one linear layer under ``rule`` (see ``rules.py`` for the formula)."""
    b = ctx.b
    params = _Parameters(node)
    contributions: list[str] = []
    for gi, group in enumerate(rule.groups):
        terms = []
        for term in group.terms:
            a = _term_input(ctx, node, term)
            if a is not None:
                terms.append((term, a, *params.get("W", term.weight)))
        if not terms:
            continue
        g = r
        if rule.normalise:
            zs = []
            for term, a, w_key, w_mod in terms:
                if term.plain:
                    z = node.output
                else:
                    bias = None if term.bias is None else ctx.weight(node, *params.get("B", term.bias))
                    z = op.apply(ctx, node, a, ctx.weight(node, w_key, w_mod), bias)
                zs.append(z if term.sign > 0 else b.op("Neg", [z], "zneg"))
            den = b.stabilise(b.sum(zs, f"{node.name}_z{gi}"), rule.stabiliser, f"{node.name}_den{gi}")
            g = b.div(r, den, f"{node.name}_s{gi}")
        if group.gate is not None:
            cmp = "Greater" if group.gate is Gate.POS else "Less"
            mask = b.cast_float(b.op(cmp, [node.output, b.const(0.0)], "gate"))
            g = b.mul(g, mask, f"{node.name}_gated{gi}")
        parts = []
        for term, a, w_key, w_mod in terms:
            back = op.transpose(ctx, node, g, w_key, w_mod)
            part = b.mul(a, back, f"{node.name}_c") if rule.multiply_input else back
            parts.append(part if term.sign > 0 else b.op("Neg", [part], "cneg"))
        total = b.sum(parts, f"{node.name}_r{gi}")
        if group.coefficient != 1.0:
            total = b.mul(total, b.const(float(group.coefficient)), f"{node.name}_coef{gi}")
        contributions.append(total)
    if not contributions:
        return b.op("Mul", [node.inputs[0], b.const(0.0)], f"{node.name}_rzero")
    return b.sum(contributions, f"{node.name}_rin")
