"""LRP rules as small data objects: *what* to modify, never *how* to emit it (that is ``emitters/``).

A linear-layer rule (``LinearRule``) is a list of term groups. Each term modifies the layer's input and parameters;
each group shares one stabilised denominator (the sum of its terms' outputs) and has a coefficient in the final sum:

    R_in = coef_g · Σ_{t∈g} sign_t · a'_t ⊙ W'_tᵀ (gate_g ⊙ R_out / stab(Σ_{t∈g} sign_t · z'_t))

with z'_t = layer(a'_t; W'_t, b'_t). ``multiply_input=False`` drops a'_t from the last product (flat, w²);
``normalise=False`` drops the division (plain gradient). This covers LRP-0, ε, γ, αβ, z⁺, zB, flat, w² and the gradient,
with the same parameter and bias conventions as Zennit.

Non-linear layers take one of the element-wise rules ``Pass``, ``Gradient``, ``Norm``, ``DeconvNet``,
``GuidedBackprop``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Array = np.ndarray
WeightMod = Callable[[Array], Array]


def _identity(w: Array) -> Array:
    return w


def _positive(w: Array) -> Array:
    return np.maximum(w, 0)


def _negative(w: Array) -> Array:
    return np.minimum(w, 0)


def _ones(w: Array) -> Array:
    return np.ones_like(w)


def _square(w: Array) -> Array:
    return w * w


def _gamma(gamma: float, part: WeightMod) -> WeightMod:
    def mod(w: Array) -> Array:
        return w + gamma * part(w)
    mod.__name__ = f"gamma_{gamma}_{part.__name__}"
    return mod


@dataclass(frozen=True)
class Term:
    """One modified forward pass: ``input`` in {'x', 'pos', 'neg', 'ones', 'low', 'high'}; ``bias=None`` zeroes it."""

    input: str
    weight: WeightMod = _identity
    bias: WeightMod | None = _identity
    sign: float = 1.0


@dataclass(frozen=True)
class TermGroup:
    """Terms sharing one denominator; ``gate`` in {None, 'pos', 'neg'} masks by the sign of the plain output."""

    terms: tuple[Term, ...]
    coefficient: float = 1.0
    gate: str | None = None


class Rule:
    """Base class of all rules; ``name`` is what reports print."""

    name = "rule"

    @property
    def is_gradient(self) -> bool:
        """Whether the rule is the plain chain rule (no normalisation): what non-linear ops then differentiate."""
        return False

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True)
class LinearRule(Rule):
    """A rule for linear layers (Conv, Dense, pooling treated as linear)."""

    groups: tuple[TermGroup, ...] = ()
    stabiliser: float = 1e-6
    multiply_input: bool = True
    normalise: bool = True
    name: str = "linear"
    params: dict = field(default_factory=dict, compare=False)

    @property
    def is_gradient(self) -> bool:
        return not self.normalise

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}({args})" if args else self.name


def _bias(keep: bool, mod: WeightMod = _identity) -> WeightMod | None:
    return mod if keep else None


def Epsilon(epsilon: float = 1e-6, *, bias: bool = True) -> LinearRule:
    """LRP-ε: stab(z) = z + ε·sign(z); ε = 0 is LRP-0."""
    return LinearRule((TermGroup((Term("x", _identity, _bias(bias)),)),), stabiliser=float(epsilon),
                      name="lrp-0" if epsilon == 0 else "epsilon", params={"epsilon": epsilon, "bias": bias})


def LRP0(*, bias: bool = True) -> LinearRule:
    return Epsilon(0.0, bias=bias)


def ZPlus(stabiliser: float = 1e-6, *, bias: bool = True) -> LinearRule:
    """z⁺ (α1β0 that also accepts negative inputs, as Zennit): (a⁺, w⁺, b⁺) and (a⁻, w⁻, 0)."""
    group = TermGroup((Term("pos", _positive, _bias(bias, _positive)), Term("neg", _negative, None)))
    return LinearRule((group,), stabiliser=stabiliser, name="zplus", params={"bias": bias})


def AlphaBeta(alpha: float = 2.0, beta: float = 1.0, stabiliser: float = 1e-6, *, bias: bool = True) -> LinearRule:
    """αβ with α − β = 1: positive contributions weighted by α, negative ones by β."""
    if alpha < 0 or beta < 0 or abs((alpha - beta) - 1.0) > 1e-9:
        raise ValueError(f"alpha-beta needs alpha, beta >= 0 and alpha - beta = 1 (got alpha={alpha}, beta={beta})")
    pos = TermGroup((Term("pos", _positive, _bias(bias, _positive)), Term("neg", _negative, None)), coefficient=alpha)
    neg = TermGroup((Term("pos", _negative, _bias(bias, _negative)), Term("neg", _positive, None)), coefficient=-beta)
    return LinearRule((pos, neg), stabiliser=stabiliser, name="alpha-beta", params={"alpha": alpha, "beta": beta})


def Gamma(gamma: float = 0.25, stabiliser: float = 1e-6, *, bias: bool = True) -> LinearRule:
    """Generalised γ (Zennit): w + γw⁺ for positive outputs, w + γw⁻ for negative ones."""
    up, down = _gamma(gamma, _positive), _gamma(gamma, _negative)
    pos = TermGroup((Term("pos", up, _bias(bias, up)), Term("neg", down, None)), gate="pos")
    neg = TermGroup((Term("pos", down, _bias(bias, down)), Term("neg", up, None)), gate="neg")
    return LinearRule((pos, neg), stabiliser=stabiliser, name="gamma", params={"gamma": gamma})


def ZBox(low: float | Array, high: float | Array, stabiliser: float = 1e-6) -> LinearRule:
    """zB for bounded input low <= x <= high: (x, w) − (l, w⁺) − (h, w⁻); the biases cancel in the denominator."""
    group = TermGroup((Term("x", _identity, _identity), Term("low", _positive, _positive, -1.0),
                       Term("high", _negative, _negative, -1.0)))
    return LinearRule((group,), stabiliser=stabiliser, name="zbox",
                      params={"low": np.asarray(low, np.float32), "high": np.asarray(high, np.float32)})


def Flat(stabiliser: float = 1e-6) -> LinearRule:
    """Flat: relevance spread uniformly over each output's receptive field (w' = 1, a' = 1, no bias)."""
    return LinearRule((TermGroup((Term("ones", _ones, None),)),), stabiliser=stabiliser, multiply_input=False,
                      name="flat")


def WSquare(stabiliser: float = 1e-6) -> LinearRule:
    """w²: w' = w², a' = 1 (bias squared, as Zennit)."""
    return LinearRule((TermGroup((Term("ones", _square, _square),)),), stabiliser=stabiliser, multiply_input=False,
                      name="w-square")


@dataclass(frozen=True)
class Gradient(LinearRule):
    """The plain gradient (sensitivity) for any layer: transposed product without division, chain rule elsewhere."""

    groups: tuple[TermGroup, ...] = (TermGroup((Term("x"),)),)
    multiply_input: bool = False
    normalise: bool = False
    name: str = "gradient"


@dataclass(frozen=True)
class Pass(Rule):
    """Relevance passes through unchanged (element-wise activations, BatchNorm-like affine layers, LRN)."""

    name: str = "pass"


@dataclass(frozen=True)
class Norm(Rule):
    """R_in = a ⊙ (∂z/∂a)ᵀ (R / stab(z)) using the layer's own gradient: average pooling, residual sums."""

    stabiliser: float = 1e-6
    name: str = "norm"


@dataclass(frozen=True)
class DeconvNet(Rule):
    """ReLU backward applies ReLU to the signal (Zeiler & Fergus)."""

    name: str = "deconvnet"


@dataclass(frozen=True)
class GuidedBackprop(Rule):
    """ReLU backward masks by the forward ReLU and by a positive signal (Springenberg et al.)."""

    name: str = "guided-backprop"


RULE_FACTORIES: dict[str, Callable[..., Rule]] = {
    "lrp-0": LRP0, "lrp0": LRP0, "zero": LRP0,
    "epsilon": Epsilon, "gamma": Gamma, "alpha-beta": AlphaBeta, "alphabeta": AlphaBeta,
    "alpha2-beta1": lambda **kw: AlphaBeta(2.0, 1.0, **kw), "alpha1-beta0": lambda **kw: AlphaBeta(1.0, 0.0, **kw),
    "zplus": ZPlus, "z+": ZPlus, "zbox": ZBox, "zb": ZBox, "flat": Flat, "w-square": WSquare, "wsquare": WSquare,
    "gradient": Gradient, "pass": Pass, "norm": Norm, "deconvnet": DeconvNet, "guided-backprop": GuidedBackprop,
}


def make_rule(spec: str | dict | Rule) -> Rule:
    """A rule from a name (``"epsilon"``), a dict (``{"rule": "epsilon", "epsilon": 0.25}``) or a Rule."""
    if isinstance(spec, Rule):
        return spec
    if isinstance(spec, str):
        spec = {"rule": spec}
    if not isinstance(spec, dict) or "rule" not in spec:
        raise ValueError(f"cannot make a rule from {spec!r}; use a name or {{'rule': name, ...params}}")
    params = {k: v for k, v in spec.items() if k != "rule"}
    name = str(spec["rule"]).lower()
    if name not in RULE_FACTORIES:
        raise ValueError(f"unknown rule '{spec['rule']}'; known: {', '.join(sorted(RULE_FACTORIES))}")
    return RULE_FACTORIES[name](**params)
