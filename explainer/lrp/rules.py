"""LRP rules as small data objects: *what* to modify, never *how* to emit it (``relevance/linear_rule.py`` does that).

A linear-layer rule (``LinearRule``) is a list of term groups. Each term modifies the layer's input and parameters;
each group shares one stabilised denominator (the sum of its terms' outputs) and has a coefficient in the final sum:

    R_in = coef_g · Σ_{t∈g} sign_t · a'_t ⊙ W'_tᵀ (gate_g ⊙ R_out / stab(Σ_{t∈g} sign_t · z'_t))

with z'_t = layer(a'_t; W'_t, b'_t). ``multiply_input=False`` drops a'_t from the last product (flat, w²);
``normalise=False`` drops the division (plain gradient). This covers LRP-0, ε, γ, αβ, z⁺, zB, flat, w² and the gradient,
with the same parameter and bias conventions as Zennit. Parameter modifications are named ``WeightMod`` objects,
compared by value (``gamma_mod(0.25, POSITIVE)`` twice is one modification); a user's own function is wrapped into one.

Non-linear layers take one of the element-wise rules ``Pass``, ``Gradient``, ``Norm``, ``DeconvNet``,
``GuidedBackprop``; transformer layers the AttnLRP/CP-LRP rules ``Uniform`` and ``ConstantWeights`` (products of
two activations), ``SoftmaxTaylor`` and ``Stop`` (softmax). ``Epsilon``, ``ZPlus``, ``Gamma`` … are factory functions
returning a ``LinearRule`` (check ``isinstance(rule, LinearRule)``, never against a factory).
"""
from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import numpy as np

from explainer.errors import InputError

Array = np.ndarray


class Vocabulary(str, Enum):
    """A closed set of names whose members compare equal to, hash like and print as their plain strings."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def parse(cls, value: Any, what: str) -> Any:
        """The member named ``value``; an InputError listing the names when there is none."""
        try:
            return cls(value)
        except ValueError:
            raise InputError(f"unknown {what} {value!r}; use one of: {', '.join(cls)}") from None


class TermInput(Vocabulary):
    """The modified input a'_t of a term."""

    X = "x"          #: the layer's input
    POS = "pos"      #: its positive part
    NEG = "neg"      #: its negative part
    ONES = "ones"    #: ones (flat, w²)
    LOW = "low"      #: the zB rule's lower input bound
    HIGH = "high"    #: the zB rule's upper input bound


class Gate(Vocabulary):
    """Which outputs a term group keeps, by the sign of the layer's unmodified output."""

    POS = "pos"
    NEG = "neg"


@dataclass(frozen=True)
class WeightMod:
    """A named modification of a layer parameter (weight or bias), compared, hashed and cached by ``key``.

    ``name`` labels the modified initializer in the relevance graph. The built-in modifications have value keys
    (``gamma_mod(0.25, POSITIVE).key == ("gamma", 0.25, ("positive",))``); ``WeightMod.wrap`` gives a user's function a
    key of its own (its object identity: the WeightMod holds the function, so two live wrappers of distinct functions
    never share a key), so distinct functions never share modified weights, whatever their ``__name__``.
    """

    name: str = field(compare=False)
    fn: Callable[[Array], Array] = field(compare=False, repr=False)
    key: Hashable

    def __call__(self, w: Array) -> Array:
        return self.fn(w)

    @classmethod
    def wrap(cls, fn: WeightMod | Callable[[Array], Array]) -> WeightMod:
        """``fn`` itself when it is a WeightMod, else a WeightMod keyed by the function's identity."""
        if isinstance(fn, WeightMod):
            return fn
        if not callable(fn):
            raise InputError(f"a weight modification must be a WeightMod or a function of the weight array, "
                             f"got {type(fn).__name__}")
        label = re.sub(r"[^0-9A-Za-z]", "", getattr(fn, "__name__", type(fn).__name__)) or "fn"
        return cls(f"user{label}", fn, ("user", id(fn)))


IDENTITY = WeightMod("identity", lambda w: w, ("identity",))
POSITIVE = WeightMod("positive", lambda w: np.maximum(w, 0), ("positive",))
NEGATIVE = WeightMod("negative", lambda w: np.minimum(w, 0), ("negative",))
ONES = WeightMod("ones", np.ones_like, ("ones",))
SQUARE = WeightMod("square", lambda w: w * w, ("square",))


def _add_scaled(gamma: float, part: WeightMod, w: Array) -> Array:
    return w + gamma * part(w)


def gamma_mod(value: float, part: WeightMod) -> WeightMod:
    """w + γ·part(w) (γ rule); two modifications with the same γ and part are equal."""
    value = float(value)
    return WeightMod(f"gamma{value:g}_{part.name}", functools.partial(_add_scaled, value, part),
                     ("gamma", value, part.key))


@dataclass(frozen=True)
class Term:
    """One modified forward pass: its input (a ``TermInput`` or its name), weight and bias modifications (a
    ``WeightMod`` or a function of the array; ``bias=None`` zeroes the bias) and its sign (+1 or −1)."""

    input: TermInput | str
    weight: WeightMod | Callable[[Array], Array] = IDENTITY
    bias: WeightMod | Callable[[Array], Array] | None = IDENTITY
    sign: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "input", TermInput.parse(self.input, "term input"))
        object.__setattr__(self, "weight", WeightMod.wrap(self.weight))
        if self.bias is not None:
            object.__setattr__(self, "bias", WeightMod.wrap(self.bias))
        if self.sign not in (1.0, -1.0):
            raise InputError(f"a term's sign must be +1 or -1, got {self.sign!r}")

    @property
    def plain(self) -> bool:
        """Whether the term is the layer's own forward pass (its output can be reused)."""
        return self.input is TermInput.X and self.weight == IDENTITY and self.bias == IDENTITY


@dataclass(frozen=True)
class TermGroup:
    """Terms sharing one denominator; ``gate`` (None, 'pos' or 'neg') masks by the sign of the plain output."""

    terms: tuple[Term, ...]
    coefficient: float = 1.0
    gate: Gate | str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", tuple(self.terms))
        if self.gate is not None:
            object.__setattr__(self, "gate", Gate.parse(self.gate, "term-group gate"))


@dataclass(frozen=True, eq=False)
class InputBounds:
    """Bounds low <= x <= high of the model input for the zB rule: scalars, one value per channel, or arrays shaped
    like the input (batch-shaped arrays must be the same for every sample). They are carried from the model input to
    the layer that uses them through the shape and affine ops in between."""

    low: Array
    high: Array

    def __post_init__(self) -> None:
        try:
            lo, hi = np.asarray(self.low, np.float64), np.asarray(self.high, np.float64)
        except (TypeError, ValueError):
            raise InputError(f"the input bounds low/high must be numbers or arrays (got {self.low!r}, "
                             f"{self.high!r})") from None
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise InputError("the input bounds low/high must be finite")
        try:
            below = np.all(lo < hi)
        except ValueError:
            raise InputError(f"the input bounds low (shape {list(lo.shape)}) and high (shape {list(hi.shape)}) do "
                             "not broadcast together") from None
        if not below:
            raise InputError(f"the input bounds need low < high (got low={_brief(lo)}, high={_brief(hi)})")
        object.__setattr__(self, "low", lo.astype(np.float32))
        object.__setattr__(self, "high", hi.astype(np.float32))

    def __eq__(self, other: object) -> bool:
        """Equal when they bound the input alike: same values, or each side constant with the same constant."""
        if not isinstance(other, InputBounds):
            return NotImplemented
        return _same(self.low, other.low) and _same(self.high, other.high)

    def __hash__(self) -> int:
        return hash((_hash_key(self.low), _hash_key(self.high)))

    def __repr__(self) -> str:
        return f"InputBounds(low={_brief(self.low)}, high={_brief(self.high)})"


def _same(a: Array, b: Array) -> bool:
    if a.shape == b.shape and np.array_equal(a, b):
        return True
    return _constant(a) and _constant(b) and bool(a.flat[0] == b.flat[0])


def _constant(a: Array) -> bool:
    return bool(a.size) and bool(np.all(a == a.flat[0]))


def _hash_key(a: Array) -> Hashable:
    """Equal for arrays ``_same`` calls equal."""
    return float(a.flat[0]) if _constant(a) else (a.shape, a.tobytes())


def _brief(a: Array) -> Any:
    """A short description of an array for messages: the value when constant, the values when few, else the shape."""
    if _constant(a):
        return float(a.flat[0])
    return a.tolist() if a.size <= 8 else f"array{list(a.shape)}"


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
    """A rule for linear layers (Conv, Dense, pooling treated as linear). ``bounds``: the zB input bounds, for rules
    with 'low'/'high' terms (without them, the Explainer's ``low``/``high`` are used)."""

    groups: tuple[TermGroup, ...] = ()
    stabiliser: float = 1e-6
    multiply_input: bool = True
    normalise: bool = True
    name: str = "linear"
    params: dict = field(default_factory=dict, compare=False)
    bounds: InputBounds | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        check_number("stabiliser", self.stabiliser, allow_zero=True)
        if self.bounds is not None and not self.uses_bounds:
            raise InputError(f"rule '{self.name}' has input bounds but no 'low'/'high' term that would use them")

    @property
    def is_gradient(self) -> bool:
        return not self.normalise

    @property
    def uses_bounds(self) -> bool:
        """Whether a term's input is an input bound (the zB rule)."""
        return any(t.input in (TermInput.LOW, TermInput.HIGH) for g in self.groups for t in g.terms)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}({args})" if args else self.name


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_number(name: str, value: Any, *, allow_zero: bool) -> None:
    """``value`` must be a finite number > 0 (>= 0 with ``allow_zero``) within float32's range (the relevance graph
    computes in float32, where a larger value is Inf); an InputError naming it otherwise."""
    try:
        ok = not isinstance(value, (bool, np.bool_)) and bool(np.isfinite(value) and value <= _FLOAT32_MAX
                                                              and (value >= 0 if allow_zero else value > 0))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0 (at most "
                         f"{_FLOAT32_MAX:.3g}), got {value!r}")


def _bias(keep: bool, mod: WeightMod = IDENTITY) -> WeightMod | None:
    if not isinstance(keep, (bool, np.bool_)):
        raise InputError(f"bias must be True or False, got {keep!r}")
    return mod if keep else None


def _stabiliser(value: float) -> float:
    """A rule's stabiliser: a finite number > 0 (0 would divide by zero where a denominator vanishes)."""
    check_number("stabiliser", value, allow_zero=False)
    return float(value)


def Epsilon(epsilon: float = 1e-6, *, bias: bool = True) -> LinearRule:
    """LRP-ε: stab(z) = z + ε·sign(z); ε = 0 is LRP-0."""
    check_number("epsilon", epsilon, allow_zero=True)
    return LinearRule((TermGroup((Term(TermInput.X, IDENTITY, _bias(bias)),)),), stabiliser=float(epsilon),
                      name="lrp-0" if epsilon == 0 else "epsilon", params={"epsilon": epsilon, "bias": bias})


def LRP0(*, bias: bool = True) -> LinearRule:
    return Epsilon(0.0, bias=bias)


def ZPlus(stabiliser: float = 1e-6, *, bias: bool = True) -> LinearRule:
    """z⁺ (α1β0 that also accepts negative inputs, as Zennit): (a⁺, w⁺, b⁺) and (a⁻, w⁻, 0)."""
    group = TermGroup((Term(TermInput.POS, POSITIVE, _bias(bias, POSITIVE)), Term(TermInput.NEG, NEGATIVE, None)))
    return LinearRule((group,), stabiliser=_stabiliser(stabiliser), name="zplus", params={"bias": bias})


def AlphaBeta(alpha: float = 2.0, beta: float = 1.0, stabiliser: float = 1e-6, *, bias: bool = True) -> LinearRule:
    """αβ with α − β = 1: positive contributions weighted by α, negative ones by β."""
    check_number("alpha", alpha, allow_zero=True)
    check_number("beta", beta, allow_zero=True)
    if abs((alpha - beta) - 1.0) > 1e-9:
        raise InputError(f"alpha-beta needs alpha - beta = 1 (got alpha={alpha}, beta={beta})")
    pos = TermGroup((Term(TermInput.POS, POSITIVE, _bias(bias, POSITIVE)), Term(TermInput.NEG, NEGATIVE, None)),
                    coefficient=alpha)
    neg = TermGroup((Term(TermInput.POS, NEGATIVE, _bias(bias, NEGATIVE)), Term(TermInput.NEG, POSITIVE, None)),
                    coefficient=-beta)
    return LinearRule((pos, neg), stabiliser=_stabiliser(stabiliser), name="alpha-beta",
                      params={"alpha": alpha, "beta": beta})


def Gamma(gamma: float = 0.25, stabiliser: float = 1e-6, *, bias: bool = True) -> LinearRule:
    """Generalised γ (Zennit): w + γw⁺ for positive outputs, w + γw⁻ for negative ones."""
    check_number("gamma", gamma, allow_zero=True)
    up, down = gamma_mod(gamma, POSITIVE), gamma_mod(gamma, NEGATIVE)
    pos = TermGroup((Term(TermInput.POS, up, _bias(bias, up)), Term(TermInput.NEG, down, None)), gate=Gate.POS)
    neg = TermGroup((Term(TermInput.POS, down, _bias(bias, down)), Term(TermInput.NEG, up, None)), gate=Gate.NEG)
    return LinearRule((pos, neg), stabiliser=_stabiliser(stabiliser), name="gamma", params={"gamma": gamma})


def ZBox(low: float | Array, high: float | Array, stabiliser: float = 1e-6) -> LinearRule:
    """zB for a bounded model input low <= x <= high (see ``InputBounds``): (x, w) − (l, w⁺) − (h, w⁻); the biases
    cancel in the denominator. These bounds are the ones the relevance graph uses."""
    bounds = InputBounds(low, high)
    group = TermGroup((Term(TermInput.X, IDENTITY, IDENTITY), Term(TermInput.LOW, POSITIVE, POSITIVE, -1.0),
                       Term(TermInput.HIGH, NEGATIVE, NEGATIVE, -1.0)))
    return LinearRule((group,), stabiliser=_stabiliser(stabiliser), name="zbox", bounds=bounds,
                      params={"low": _brief(bounds.low), "high": _brief(bounds.high)})


def Flat(stabiliser: float = 1e-6) -> LinearRule:
    """Flat: relevance spread uniformly over each output's receptive field (w' = 1, a' = 1, no bias)."""
    return LinearRule((TermGroup((Term(TermInput.ONES, ONES, None),)),), stabiliser=_stabiliser(stabiliser),
                      multiply_input=False, name="flat")


def WSquare(stabiliser: float = 1e-6) -> LinearRule:
    """w²: w' = w², a' = 1 (bias squared, as Zennit)."""
    return LinearRule((TermGroup((Term(TermInput.ONES, SQUARE, SQUARE),)),), stabiliser=_stabiliser(stabiliser),
                      multiply_input=False, name="w-square")


@dataclass(frozen=True)
class Gradient(LinearRule):
    """The plain gradient (sensitivity) for any layer: transposed product without division, chain rule elsewhere."""

    groups: tuple[TermGroup, ...] = (TermGroup((Term(TermInput.X),)),)
    multiply_input: bool = False
    normalise: bool = False
    name: str = "gradient"


@dataclass(frozen=True)
class Pass(Rule):
    """Relevance passes through unchanged (element-wise activations, BatchNorm-like affine layers, LRN)."""

    name: ClassVar[str] = "pass"


@dataclass(frozen=True)
class Norm(Rule):
    """R_in = a ⊙ (∂z/∂a)ᵀ (R / stab(z)) using the layer's own gradient: average pooling, residual sums."""

    stabiliser: float = 1e-6
    name: ClassVar[str] = "norm"

    def __post_init__(self) -> None:
        check_number("stabiliser", self.stabiliser, allow_zero=True)


@dataclass(frozen=True)
class DeconvNet(Rule):
    """ReLU backward applies ReLU to the signal (Zeiler & Fergus)."""

    name: ClassVar[str] = "deconvnet"


@dataclass(frozen=True)
class GuidedBackprop(Rule):
    """ReLU backward masks by the forward ReLU and by a positive signal (Springenberg et al.)."""

    name: ClassVar[str] = "guided-backprop"


@dataclass(frozen=True)
class Uniform(Rule):
    """AttnLRP's rule for a product of two activations (MatMul, Einsum, element-wise Mul; Achtibat et al. 2024, Eq. 7):
    each factor gets half of the ε-LRP relevance it would get with the other factor held constant,
    R_a = ½ a ⊙ ∂z/∂aᵀ (R / stab(z)), so that the two shares sum to R where z has no constant part."""

    stabiliser: float = 1e-6
    name: ClassVar[str] = "uniform"

    def __post_init__(self) -> None:
        check_number("stabiliser", self.stabiliser, allow_zero=True)


@dataclass(frozen=True)
class ConstantWeights(Rule):
    """CP-LRP (Ali et al. 2022) for attention: the attention weights are constants, so their product with the values
    is a linear layer (ε-LRP) and all relevance goes to the values; products without attention weights fall back to
    ``Uniform``."""

    stabiliser: float = 1e-6
    name: ClassVar[str] = "constant-weights"

    def __post_init__(self) -> None:
        check_number("stabiliser", self.stabiliser, allow_zero=True)


@dataclass(frozen=True)
class SoftmaxTaylor(Rule):
    """AttnLRP's softmax rule (Achtibat et al. 2024, Prop. 3.3): R_x = x ⊙ (R_y − y ⊙ Σ R_y), the first-order Taylor
    decomposition at x; it equals gradient × input of the softmax for the relevance's own gradient."""

    name: ClassVar[str] = "softmax-taylor"


class Overlap(Vocabulary):
    """What max-pooling gives an input that is the arg-max of several overlapping windows."""

    ACCUMULATE = "accumulate"  #: the sum of their relevance (conserved, as the gradient routes it)
    OVERWRITE = "overwrite"    #: one window's, the last in row-major order (Li et al.'s max_unpool2d; not conserved)


@dataclass(frozen=True)
class WinnerTakeAll(Rule):
    """Max-pooling: each window's relevance goes to its arg-max; ``overlap`` (an ``Overlap``) says what an input
    picked by several overlapping windows gets. Every composite accumulates; ``sr-paper`` can overwrite."""

    overlap: Overlap | str = Overlap.ACCUMULATE
    name: ClassVar[str] = "winner-take-all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "overlap", Overlap.parse(self.overlap, "max-pool overlap"))


@dataclass(frozen=True)
class Stop(Rule):
    """No relevance flows to the layer's input (CP-LRP's softmax: the attention weights are constants)."""

    name: ClassVar[str] = "stop"


RULE_FACTORIES: dict[str, Callable[..., Rule]] = {
    "lrp-0": LRP0, "lrp0": LRP0, "zero": LRP0,
    "epsilon": Epsilon, "gamma": Gamma, "alpha-beta": AlphaBeta, "alphabeta": AlphaBeta,
    "alpha2-beta1": functools.partial(AlphaBeta, 2.0, 1.0), "alpha1-beta0": functools.partial(AlphaBeta, 1.0, 0.0),
    "zplus": ZPlus, "z+": ZPlus, "zbox": ZBox, "zb": ZBox, "flat": Flat, "w-square": WSquare, "wsquare": WSquare,
    "gradient": lambda: Gradient(), "pass": Pass, "norm": Norm, "deconvnet": DeconvNet,
    "guided-backprop": GuidedBackprop, "uniform": Uniform, "constant-weights": ConstantWeights,
    "softmax-taylor": SoftmaxTaylor, "stop": Stop, "winner-take-all": WinnerTakeAll,
}

def parameters(factory: Callable[..., Any]) -> tuple[str, ...]:
    """The keyword parameters ``factory`` takes."""
    return tuple(p.name for p in inspect.signature(factory).parameters.values()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def call_with(factory: Callable[..., Any], what: str, params: Mapping[str, Any]) -> Any:
    """``factory(**params)``, with unknown or missing parameters an InputError naming them and listing the ones
    ``what`` (e.g. "rule 'epsilon'") takes."""
    takes = parameters(factory)
    unknown = [k for k in params if k not in takes]
    if unknown:
        listed = ", ".join(takes) if takes else "no parameters"
        raise InputError(f"{what} takes no parameter {', '.join(map(repr, unknown))} (it takes: {listed})")
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as exc:
        raise InputError(f"{what}: {exc}") from None
    return factory(**params)


def _rule_name(spec: str | dict) -> str:
    name = str(spec["rule"] if isinstance(spec, dict) else spec).lower()
    if name not in RULE_FACTORIES:
        raise InputError(f"unknown rule '{name}'; known: {', '.join(sorted(RULE_FACTORIES))}")
    return name


def rule_parameters(spec: str | dict | Rule) -> tuple[str, ...]:
    """The parameters the rule named by ``spec`` takes (none for a Rule object, which is already made)."""
    return () if isinstance(spec, Rule) else parameters(RULE_FACTORIES[_rule_name(spec)])


def make_rule(spec: str | dict | Rule, defaults: Mapping[str, Any] | None = None) -> Rule:
    """A rule from a name (``"epsilon"``), a dict (``{"rule": "epsilon", "epsilon": 0.25}``) or a Rule.

    ``defaults`` fill the parameters the named rule takes and the dict does not give; a Rule is returned as is. Every
    value is checked as the rule's factory checks it; a stabiliser given as data must be > 0 for every rule (only the
    lrp-0 composite's own ``Norm(0)`` sums are unstabilised)."""
    if isinstance(spec, Rule):
        return spec
    if not isinstance(spec, (str, dict)) or (isinstance(spec, dict) and "rule" not in spec):
        raise InputError(f"cannot make a rule from {spec!r}; use a name, {{'rule': name, ...params}} or a Rule")
    name = _rule_name(spec)
    factory = RULE_FACTORIES[name]
    own = {k: v for k, v in spec.items() if k != "rule"} if isinstance(spec, dict) else {}
    takes = parameters(factory)
    params = {k: v for k, v in (defaults or {}).items() if k in takes and v is not None} | own
    if "stabiliser" in params:
        _stabiliser(params["stabiliser"])
    return call_with(factory, f"rule '{name}'", params)
