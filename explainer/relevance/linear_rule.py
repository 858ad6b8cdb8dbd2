"""How a ``LinearRule`` (``lrp/rules.py``) becomes ONNX nodes for any linear layer: per term group, forward passes
with modified inputs and parameters, one stabilised denominator, transposed products, and the weighted sum. The layer
itself (Conv, Dense) says how to apply it and its transpose (``LinearOp.apply`` / ``LinearOp.transpose``).

Each distinct parameter modification (``WeightMod``, compared by value) is one initializer per layer; the unmodified
weight and bias are the forward pass's own ("W", "B"), never a second copy.

The graph is kept at the FLOP floor of the rule, one forward pass of the layer per convolution (measured on VGG-16
with ONNX Runtime's CPU provider, where convolutions are nearly all of the time):

* a gated group's sum Σ_t z'_t that is a combination of the layer's output and an earlier gated group's sum is
  derived from them: γ's sum for negative outputs is (2 + γ)·output − the sum for positive outputs, one
  convolution fewer (the modifications are compared as combinations of W and W⁺, ``_weight_form``). Where the
  gate holds the two terms do not cancel; without a gate they can: αβ's negative sum as output − positive sum
  loses up to 1e-3 relative where the negative part is small, so it stays a convolution of its own;
* the two groups gated by the output's sign (γ) share one stabilised denominator (selected by Where, exactly);
* where the relevance reaching the layer is zero at every output ≤ 0 (a ReLU alone reads the output and passes on
  relevance that its one reader multiplied by its input, ``RELEVANCE_ZERO_WITH``), the group gated to negative
  outputs contributes nothing and is left out, and the positive gate with it: γ then costs one modified forward and
  one transposed product, as z⁺ does;
* a sum of products of one known sign (z⁺, flat, αβ's two sums) is stabilised by adding ±ε: where it is 0 every
  product is, so the sign of ε there changes nothing;
* the back-products are summed per modified input before the one multiplication by it, the group coefficients and
  term signs are scales of the transposed products (``LinearOp.transpose``: folded into the flipped kernel where
  the layer keeps one), and a group with coefficient 0 is not emitted.

Stacking terms into one convolution along channels (inputs and weights along input channels, or signals and weights
along output channels) was measured and left out: ONNX Runtime's CPU convolutions are compute-bound, so one
convolution over stacked channels costs what the separate ones and their sum cost (within ±5% on VGG-16's layers);
only a transposed product with very few output channels (zB's three on an RGB input) would gain, about 1% of the
explanation.
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from explainer.errors import InputError
from explainer.frontend.ir import CNode
from explainer.lrp.rules import (
    IDENTITY,
    NEGATIVE,
    POSITIVE,
    Gate,
    LinearRule,
    Term,
    TermGroup,
    TermInput,
    WeightMod,
    gamma_mod,
)
from explainer.relevance.context import EmitContext


class LinearOp(Protocol):
    """A linear layer: its forward product with given (possibly modified) parameters, and its transpose."""

    def apply(self, ctx: EmitContext, node: CNode, x: str, w: str, b: str | None, out: str | None = None) -> str: ...

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray,
                  scale: float = 1.0) -> str: ...


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

    def bias(self, term: Term) -> np.ndarray:
        """The term's modified bias as float64 (zeros for a term without bias)."""
        if term.bias is None:
            return np.zeros(self.node.params["B"].shape)
        return np.asarray(self.get("B", term.bias)[1], np.float64)

    def _fresh(self, base: str) -> str:
        """``base``, numbered when another modification (a user's function of the same name) already has it."""
        taken = set(self._keys.values())
        key, n = base, 1
        while key in taken:
            key, n = f"{base}{n}", n + 1
        return key


def _term_input(ctx: EmitContext, node: CNode, term_input: TermInput) -> str | None:
    """The modified input a'_t of a term, or None when it is identically zero (negative part of a ReLU output)."""
    x = node.inputs[0]
    b = ctx.b
    if term_input is TermInput.X:
        return x
    if term_input is TermInput.POS:
        return x if x in ctx.nonneg else b.relu(x, f"{node.name}_xpos")
    if term_input is TermInput.NEG:
        return None if x in ctx.nonneg else b.neg_part(x, f"{node.name}_xneg")
    if term_input is TermInput.ONES:
        return ctx.weight(node, "ones", np.ones((1,) + tuple(ctx.shape(x)[1:]), np.float32))
    if x not in ctx.bounds:  # a LOW or HIGH term: the zB rule
        raise InputError(f"the zB rule needs input bounds at '{x}' (input of '{node.name}'), but they cannot be "
                         "carried there from the model input (only through transposes, pads, reshapes and affine "
                         "layers): use zB on the first linear layer")
    lo, hi = ctx.bounds[x]
    return ctx.weight(node, str(term_input), lo if term_input is TermInput.LOW else hi)


#: a linear combination of products layer(input part; weight part), keyed by (input part, weight part)
Form = dict[tuple[Hashable, Hashable], float]

#: the built-in weight modifications as combinations of two parts, the weight W and its positive part W⁺
_WEIGHT_PARTS: dict[WeightMod, dict[Hashable, float]] = {
    IDENTITY: {"W": 1.0}, POSITIVE: {"W+": 1.0}, NEGATIVE: {"W": 1.0, "W+": -1.0}}


def _weight_form(mod: WeightMod) -> dict[Hashable, float]:
    """``mod(W)`` as a combination of W, W⁺ (built-in modifications, γ of them included) or of itself (any other)."""
    if mod in _WEIGHT_PARTS:
        return _WEIGHT_PARTS[mod]
    key = mod.key
    if isinstance(key, tuple) and len(key) == 3 and key[0] == "gamma" and isinstance(key[1], float):
        for part, form in _WEIGHT_PARTS.items():
            if mod == gamma_mod(key[1], part):
                return {p: float(p == "W") + key[1] * form.get(p, 0.0) for p in ("W", "W+")}
    return {mod: 1.0}


def _input_form(ctx: EmitContext, node: CNode, term_input: TermInput) -> dict[Hashable, float]:
    """The term input as a combination of x⁺ and x⁻ (x = x⁺ where x is never negative), or of itself (a constant)."""
    if term_input is TermInput.X:
        return {"x+": 1.0} if node.inputs[0] in ctx.nonneg else {"x+": 1.0, "x-": 1.0}
    return {TermInput.POS: {"x+": 1.0}, TermInput.NEG: {"x-": 1.0}}.get(term_input, {term_input: 1.0})


@dataclass
class _Group:
    """One term group as emitted: its terms with their modified inputs, its sum as a form and a bias (float64)."""

    group: TermGroup
    terms: list[tuple[Term, str]]
    form: Form
    bias: np.ndarray

    @property
    def derivable(self) -> bool:
        """Whether the sum reads only the layer's input (a constant input, zB's bounds or flat's ones, does not)."""
        return all(part in ("x+", "x-") for part, _ in self.form)


def _group(ctx: EmitContext, node: CNode, params: _Parameters, group: TermGroup,
           inputs: dict[TermInput, str | None]) -> _Group | None:
    terms = [(term, a) for term in group.terms if (a := inputs[term.input]) is not None]
    if not terms:
        return None
    form: Form = {}
    bias = np.zeros(node.params["B"].shape)
    for term, _ in terms:
        for part_in, c_in in _input_form(ctx, node, term.input).items():
            for part_w, c_w in _weight_form(term.weight).items():
                form[(part_in, part_w)] = form.get((part_in, part_w), 0.0) + term.sign * c_in * c_w
        bias = bias + term.sign * params.bias(term)
    return _Group(group, terms, form, bias)


def _combination(target: Form, *forms: Form) -> np.ndarray | None:
    """Coefficients c with target = Σ c_i forms_i exactly, or None."""
    keys = list(set(target).union(*forms))
    a = np.array([[f.get(k, 0.0) for f in forms] for k in keys])
    y = np.array([target.get(k, 0.0) for k in keys])
    c = np.linalg.lstsq(a, y, rcond=None)[0]
    return c if np.allclose(a @ c, y, rtol=0.0, atol=1e-9 * max(1.0, float(np.abs(y).max()))) else None


def _sign(a: np.ndarray) -> int:
    """+1 where every entry is ≥ 0, −1 where every entry is ≤ 0, else 0 (all zeros: +1)."""
    return 1 if not np.any(a < 0) else -1 if not np.any(a > 0) else 0


def _input_sign(ctx: EmitContext, node: CNode, term_input: TermInput) -> int:
    if term_input in (TermInput.POS, TermInput.ONES):
        return 1
    if term_input is TermInput.NEG:
        return -1
    if term_input is TermInput.X:
        return 1 if node.inputs[0] in ctx.nonneg else 0
    low, high = ctx.bounds[node.inputs[0]]
    return _sign(low if term_input is TermInput.LOW else high)


def _sum_sign(ctx: EmitContext, node: CNode, params: _Parameters, g: _Group) -> int:
    """+1 (−1) where every product and bias of the group's sum is ≥ 0 (≤ 0), so that the computed sum is as well;
    0 where it is not known."""
    signs = set()
    for term, _ in g.terms:
        signs.add(int(term.sign) * _input_sign(ctx, node, term.input) * _sign(params.get("W", term.weight)[1]))
        if term.bias is not None:
            signs.add(int(term.sign) * _sign(params.bias(term)))
    return signs.pop() if len(signs) == 1 else 0


#: ``ctx.saved`` tag of a relevance tensor that is zero wherever the tensor recorded under it is zero: a linear
#: layer's R_in = x ⊙ (…) records its input x
RELEVANCE_ZERO_WITH = "relevance_zero_with"


class _Layer:
    """The nodes of one layer under one rule."""

    def __init__(self, ctx: EmitContext, op: LinearOp, node: CNode, rule: LinearRule, r: str) -> None:
        self.ctx, self.op, self.node, self.rule = ctx, op, node, rule
        self.b = ctx.b
        self.params = _Parameters(node)
        self._masks: dict[Gate, str] = {}
        self.r_vanishes = any(g.gate is not None for g in rule.groups) and self._vanishes_where_output_nonpositive(r)

    def _vanishes_where_output_nonpositive(self, r: str) -> bool:
        """Whether ``r`` is zero wherever the layer's output is ≤ 0: a ReLU passed it unchanged from the one reader
        of its output, which recorded that its relevance is zero where that output is (``RELEVANCE_ZERO_WITH``). A
        layer with other readers, or a ReLU with other readers or another rule, hands on a sum or a new tensor."""
        relu = self.ctx.saved.get((r, RELEVANCE_ZERO_WITH))
        return relu is not None and any(n.output == relu and n.op == "Activation" and n.attrs.get("kind") == "relu"
                                        and n.inputs == [self.node.output] for n in self.ctx.graph.nodes)

    def groups(self) -> list[_Group]:
        """The groups that contribute: a group with coefficient 0, whose terms all read zeros, or gated to negative
        outputs where the relevance vanishes there is left out. Each modified input is emitted once."""
        used = [group for group in self.rule.groups if group.coefficient != 0.0
                and not (self.r_vanishes and group.gate is Gate.NEG)]
        inputs = {t: _term_input(self.ctx, self.node, t) for t in dict.fromkeys(t.input for g in used for t in g.terms)}
        groups = (_group(self.ctx, self.node, self.params, group, inputs) for group in used)
        return [g for g in groups if g is not None]

    def mask(self, gate: Gate) -> str:
        """Where the layer's output has the gate's sign (one comparison per gate and layer)."""
        if gate not in self._masks:
            cmp = "Greater" if gate is Gate.POS else "Less"
            self._masks[gate] = self.b.op(cmp, [self.node.output, self.b.const(0.0)], f"{self.node.name}_{gate}")
        return self._masks[gate]

    def gated(self, s: str, gate: Gate | None) -> str:
        """``s`` times the gate's 0/1 mask (ONNX Runtime multiplies faster than Where selects from a scalar); the
        positive gate is left out where the relevance already vanishes at outputs ≤ 0 (``s`` is 0 there)."""
        if gate is None or (gate is Gate.POS and self.r_vanishes):
            return s
        return self.b.mul(s, self.b.cast_float(self.mask(gate), f"{self.node.name}_{gate}f"), f"{self.node.name}_gated")

    def sums(self, groups: list[_Group]) -> list[tuple[str, int]]:
        """Each group's Σ_t sign_t z'_t and its sign where known (``_sum_sign``): for a gated group, derived from the
        layer's output and an earlier gated group's sum where their forms and biases allow, else one forward product
        per term."""
        sums: list[tuple[str, int]] = []
        bases: list[tuple[_Group, str]] = []
        for g in groups:
            gated = g.group.gate is not None and g.derivable
            z = self.derived_sum(g, bases) if gated else None
            if z is not None:
                sums.append((z, 0))
                continue
            z = self.direct_sum(g)
            sums.append((z, _sum_sign(self.ctx, self.node, self.params, g)))
            if gated:
                bases.append((g, z))
        return sums

    def direct_sum(self, g: _Group) -> str:
        """One forward product per term (the plain term is the layer's output)."""
        b, node = self.b, self.node
        zs = []
        for term, a in g.terms:
            if term.plain:
                z = node.output
            else:
                w_key, w_mod = self.params.get("W", term.weight)
                bias = None if term.bias is None else self.ctx.weight(node, *self.params.get("B", term.bias))
                z = self.op.apply(self.ctx, node, a, self.ctx.weight(node, w_key, w_mod), bias)
            zs.append(z if term.sign > 0 else b.op("Neg", [z], "zneg"))
        return b.sum(zs, f"{node.name}_z")

    def derived_sum(self, g: _Group, bases: list[tuple[_Group, str]]) -> str | None:
        """α·output + β·(a base group's sum) where that equals the group's sum, biases included; None where no base
        gives it."""
        b, node = self.b, self.node
        x_parts = ("x+",) if node.inputs[0] in self.ctx.nonneg else ("x+", "x-")
        output: Form = {(p, "W"): 1.0 for p in x_parts}
        bias = np.asarray(node.params["B"], np.float64)
        for base, base_z in bases:
            c = _combination(g.form, output, base.form)
            if c is None or round(c[1], 12) == 0.0:
                continue
            alpha, beta = round(float(c[0]), 12), round(float(c[1]), 12)
            rest = g.bias - alpha * bias - beta * base.bias
            scale = max(float(np.abs(t).max(initial=0.0)) for t in (g.bias, alpha * bias, beta * base.bias))
            if np.any(np.abs(rest) > 1e-6 * scale):
                continue
            if alpha == 0.0:
                return base_z if beta == 1.0 else b.mul(base_z, b.const(beta), f"{node.name}_z")
            z = node.output if alpha == 1.0 else b.mul(node.output, b.const(alpha), f"{node.name}_zout")
            if abs(beta) == 1.0:
                return b.add(z, base_z, f"{node.name}_z") if beta > 0 else b.sub(z, base_z, f"{node.name}_z")
            return b.add(z, b.mul(base_z, b.const(beta), f"{node.name}_zbase"), f"{node.name}_z")
        return None

    def signals(self, groups: list[_Group], r: str) -> list[str]:
        """Per group, the gated ratio R_out / stab(Σ_t z'_t) (or R_out itself for a rule without the division);
        the groups gated by the positive and by the negative sign share one denominator."""
        b, node, rule = self.b, self.node, self.rule
        if not rule.normalise:
            return [self.gated(r, g.group.gate) for g in groups]
        sums = self.sums(groups)
        gated = {g.group.gate: i for i, g in enumerate(groups) if g.group.gate is not None}
        signals: list[str | None] = [None] * len(groups)
        if len(gated) == 2 and sum(g.group.gate is not None for g in groups) == 2:
            pos, neg = gated[Gate.POS], gated[Gate.NEG]
            z = b.op("Where", [self.mask(Gate.POS), sums[pos][0], sums[neg][0]], f"{node.name}_zgated")
            s = b.div(r, b.stabilise(z, rule.stabiliser, f"{node.name}_den"), f"{node.name}_s")
            signals[pos], signals[neg] = self.gated(s, Gate.POS), self.gated(s, Gate.NEG)
        for i, g in enumerate(groups):
            if signals[i] is None:
                z, sign = sums[i]
                den = (b.add(z, b.const(sign * rule.stabiliser), f"{node.name}_den") if sign and rule.stabiliser
                       else b.stabilise(z, rule.stabiliser, f"{node.name}_den"))
                signals[i] = self.gated(b.div(r, den, f"{node.name}_s"), g.group.gate)
        return signals

    def relevance(self, groups: list[_Group], signals: list[str]) -> str:
        """Σ over modified inputs a of a ⊙ Σ_(g, t reading a) coef_g·sign_t·W'_tᵀ s_g (without a for flat, w²)."""
        b, node = self.b, self.node
        backs: dict[str | None, list[str]] = {}
        for g, s in zip(groups, signals):
            for term, a in g.terms:
                w_key, w_mod = self.params.get("W", term.weight)
                back = self.op.transpose(self.ctx, node, s, w_key, w_mod, g.group.coefficient * term.sign)
                backs.setdefault(a if self.rule.multiply_input else None, []).append(back)
        parts = []
        for a, terms in backs.items():
            total = b.sum(terms, f"{node.name}_back")
            parts.append(total if a is None else b.mul(a, total, f"{node.name}_c"))
        r_in = b.sum(parts, f"{node.name}_rin")
        if list(backs) == [node.inputs[0]]:
            self.ctx.saved[(r_in, RELEVANCE_ZERO_WITH)] = node.inputs[0]
        return r_in


def apply_linear_rule(ctx: EmitContext, op: LinearOp, node: CNode, rule: LinearRule, r: str) -> str:
    """R_in for one linear layer under ``rule`` (see ``rules.py`` for the formula)."""
    layer = _Layer(ctx, op, node, rule, r)
    groups = layer.groups()
    if not groups:
        return ctx.b.op("Mul", [node.inputs[0], ctx.b.const(0.0)], f"{node.name}_rzero")
    return layer.relevance(groups, layer.signals(groups, r))
