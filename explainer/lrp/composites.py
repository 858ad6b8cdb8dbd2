"""Composites: which rule each layer gets. A composite is data: an ordered list of (predicate, rule), first match wins.

The named composites match Zennit's definitions of the same name (ε = 1e-6 for dense layers, stabiliser 1e-6,
γ = 0.25, average pooling and residual sums with the Norm rule, activations and BatchNorm pass-through, max-pooling
winner-take-all).

Parameters (``make_composite``) are never silently ignored:
- with a method name they are the method's own (its factory's signature); anything else is an InputError;
- with a spec (a dict, or a list of (predicate, rule) pairs) they are defaults for the rules the spec *names*
  (``"epsilon"``, ``{"rule": "zplus"}``; a rule's own parameters win), and each must be taken by one of them;
- with a ``Composite`` object they are refused: pass them to ``make_composite`` or to the rules.
``low``/``high`` are the model input's bounds, not a rule parameter: methods and spec rules that use the zB rule take
them as their bounds; the Explainer also uses them to know the input's range (``input_bounds``).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explainer.errors import InputError
from explainer.lrp.rules import (
    AlphaBeta,
    ConstantWeights,
    DeconvNet,
    Epsilon,
    Flat,
    Gamma,
    Gradient,
    GuidedBackprop,
    InputBounds,
    LinearRule,
    Norm,
    Pass,
    Rule,
    SoftmaxTaylor,
    Stop,
    Uniform,
    Vocabulary,
    WinnerTakeAll,
    ZBox,
    ZPlus,
    call_with,
    check_number,
    make_rule,
    parameters,
    rule_parameters,
)


class LayerKind(Vocabulary):
    """The closed vocabulary of layer kinds composites match on (each op declares one; plain strings compare equal)."""

    CONV = "conv"
    DENSE = "dense"
    ACTIVATION = "activation"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    ADD = "add"
    MUL = "mul"
    AFFINE = "affine"
    LRN = "lrn"
    LAYERNORM = "layernorm"
    SOFTMAX = "softmax"  #: a softmax inside the network (attention weights)
    PRODUCT = "product"  #: a product of two activations (MatMul/Einsum of attention, element-wise Mul)
    STRUCTURAL = "structural"  #: reshapes, transposes, pads, concatenations: they only route relevance


#: layer kinds the relevance-graph builder treats as linear layers
LINEAR_KINDS = (LayerKind.CONV, LayerKind.DENSE)
#: the kinds a composite spec may name
KINDS = tuple(k for k in LayerKind if k is not LayerKind.STRUCTURAL)


class Seed(Vocabulary):
    """What the relevance starts from at the output."""

    LOGIT = "logit"  #: one-hot × logit (LRP)
    ONE = "one"      #: one-hot (gradient-like methods)


@dataclass(frozen=True)
class Layer:
    """What a predicate sees: the layer's kind, name, op, and whether it is the first linear layer."""

    kind: LayerKind | str
    name: str
    op: str
    first: bool = False
    activation: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", LayerKind(self.kind))


Predicate = Callable[[Layer], bool]


def _kinds(kinds: Sequence[str]) -> tuple[LayerKind, ...]:
    return tuple(LayerKind.parse(k, "layer kind") for k in kinds)


@dataclass(frozen=True)
class KindIs:
    """Layers of the given kinds."""

    kinds: tuple[LayerKind, ...]

    def __call__(self, layer: Layer) -> bool:
        return layer.kind in self.kinds


@dataclass(frozen=True)
class FirstLayer:
    """The first linear layer(s) after the input, optionally only of the given kinds."""

    kinds: tuple[LayerKind, ...] = ()

    def __call__(self, layer: Layer) -> bool:
        return layer.first and (not self.kinds or layer.kind in self.kinds)


@dataclass(frozen=True)
class NameMatches:
    """Layers whose name matches a regular expression (``re.search``)."""

    pattern: str

    def __call__(self, layer: Layer) -> bool:
        return re.search(self.pattern, layer.name) is not None


def kind(*kinds: str) -> KindIs:
    return KindIs(_kinds(kinds))


def first(*kinds: str) -> FirstLayer:
    return FirstLayer(_kinds(kinds))


def name_matches(pattern: str) -> NameMatches:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InputError(f"bad layer-name pattern {pattern!r}: {exc}") from None
    return NameMatches(pattern)


def relu_only(layer: Layer) -> bool:
    """Rectifiers: ReLU and clips with a lower bound of 0 (ReLU6), where DeconvNet/guided backprop apply."""
    return layer.kind == LayerKind.ACTIVATION and layer.activation in ("relu", "relu6")


@dataclass
class Composite:
    """An ordered rule map plus ``times_input`` (multiply the final signal by the input, e.g. gradient×input) and
    ``seed``: 'logit' (one-hot × logit, LRP) or 'one' (one-hot, gradient-like methods)."""

    name: str
    rules: list[tuple[Predicate, Rule]]
    times_input: bool = False
    seed: Seed | str = Seed.LOGIT
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.seed = Seed.parse(self.seed, "seed")
        self.rules = _pairs(self.rules, f"composite '{self.name}'")
        bad = [rule for _, rule in self.rules if not isinstance(rule, Rule)]
        if bad:
            raise InputError(f"composite '{self.name}' has {bad[0]!r} where a rule belongs; use a Rule (Epsilon(), "
                             "ZPlus(), ...) or make_composite for rule names")

    def rule_for(self, layer: Layer) -> Rule:
        for predicate, rule in self.rules:
            try:
                matches = predicate(layer)
            except Exception as exc:
                raise InputError(f"composite '{self.name}': predicate {predicate!r} failed on layer '{layer.name}' "
                                 f"({exc.__class__.__name__}: {exc})") from None
            if matches:
                return rule
        return Gradient()

    @property
    def signal(self) -> bool:
        """Whether the output is a gradient-like signal (seed 'one', no input multiplication) rather than relevance:
        its sign carries no evidence, so heatmaps take its norm over channels."""
        return self.seed is Seed.ONE and not self.times_input

    @property
    def largest_stabiliser(self) -> float:
        """The largest stabiliser (ε included) of its rules that divide: what absorbs relevance on its way to the
        input (0 when none does)."""
        return max((float(r.stabiliser) for _, r in self.rules
                    if isinstance(r, (Norm, Uniform, ConstantWeights)) or (isinstance(r, LinearRule) and r.normalise)),
                   default=0.0)

    @property
    def needs_bounds(self) -> bool:
        """Whether a rule uses the input bounds (the zB rule)."""
        return any(isinstance(r, LinearRule) and r.uses_bounds for _, r in self.rules)

    @classmethod
    def from_spec(cls, spec: dict[str, Any], name: str = "custom", *, low: Any = None, high: Any = None,
                  **params: Any) -> Composite:
        """A composite from data, e.g. ``{"first": "flat", "conv": "zplus", "dense": {"rule": "epsilon",
        "epsilon": 0.25}}``; keys are 'first', layer kinds, or 'name:<regex>'. Unlisted kinds get LRP defaults.

        'first' and 'name:' entries are more specific than kind entries and take precedence over them (otherwise the
        spec's order holds). ``params`` are defaults for the rules the spec names, ``low``/``high`` for its zB rules.
        """
        entries: list[tuple[int, Predicate, Any]] = []
        for key, value in spec.items():
            if key == "first":
                entries.append((_SPECIFIC, first(), value))
            elif isinstance(key, str) and key.startswith("name:"):
                entries.append((_SPECIFIC, name_matches(key[5:]), value))
            elif key in KINDS:
                entries.append((_GENERAL, kind(key), value))
            else:
                raise InputError(f"unknown composite key '{key}'; use 'first', 'name:<regex>' or one of: "
                                 f"{', '.join(KINDS)}")
        entries.sort(key=lambda e: e[0])
        rules = _spec_rules([(p, v) for _, p, v in entries], params, low, high)
        return cls(name, rules + _lrp_base(), description="user-defined composite")


#: precedence of spec entries (lower first): specific layers before layer kinds
_SPECIFIC, _GENERAL = 0, 1


def _spec_rules(pairs: Sequence[tuple[Predicate, Any]], params: dict[str, Any], low: Any, high: Any,
                ) -> list[tuple[Predicate, Rule]]:
    """Rules for (predicate, rule spec) pairs with ``params`` as defaults; each parameter must be taken by one."""
    defaults = dict(params, low=low, high=high)
    rules, taken = [], set()
    for predicate, value in _pairs(pairs, "the composite spec"):
        rules.append((predicate, make_rule(value, defaults)))
        taken.update(rule_parameters(value))
    unused = [k for k in params if k not in taken]
    if unused:
        listed = ", ".join(sorted(taken)) if taken else "none: it names no rule"
        raise InputError(f"no rule of the composite spec takes {', '.join(map(repr, unused))} (its named rules "
                         f"take: {listed}); give parameters in a rule, e.g. {{'rule': 'epsilon', 'epsilon': 0.1}}")
    return rules


def _pairs(pairs: Any, what: str) -> list[tuple[Predicate, Any]]:
    """``pairs`` as a list of (predicate, rule) pairs with callable predicates; an InputError naming the bad entry."""
    if isinstance(pairs, (str, bytes, dict)) or not isinstance(pairs, Sequence):
        raise InputError(f"{what} must be a list of (predicate, rule) pairs, got {type(pairs).__name__}")
    for entry in pairs:
        if not (isinstance(entry, Sequence) and not isinstance(entry, str) and len(entry) == 2
                and callable(entry[0])):
            raise InputError(f"{what} has the entry {entry!r}; expected a (predicate, rule) pair, e.g. "
                             "(kind('conv'), 'zplus')")
    return [tuple(entry) for entry in pairs]


def _lrp_base(stabiliser: float = 1e-6) -> list[tuple[Predicate, Rule]]:
    """What every LRP composite does outside conv/dense layers: Zennit's layer_map_base, and AttnLRP's rules for the
    transformer layers Zennit has none for (LayerNorm with its scale held constant, the softmax's Taylor rule, the
    uniform split of a product of two activations)."""
    return [(kind("activation", "affine", "lrn", "mul"), Pass()),
            (kind("avgpool", "add", "layernorm"), Norm(stabiliser)),
            (kind("softmax"), SoftmaxTaylor()), (kind("product"), Uniform(stabiliser))]


def gradient() -> Composite:
    return Composite("gradient", [], seed=Seed.ONE, description="sensitivity: the plain gradient of the target logit")


def gradient_x_input() -> Composite:
    return Composite("gradient-x-input", [], times_input=True, seed=Seed.ONE, description="gradient times input")


def lrp_0() -> Composite:
    return Composite("lrp-0", [(kind("conv", "dense", "affine"), Epsilon(0.0))] + _lrp_base(0.0),
                     description="LRP-0 on every linear layer, unfolded BatchNorm/normalisation included, and "
                                 "unstabilised sums and average pools, so that LRP-0 equals gradient×input on ReLU "
                                 "nets")


def lrp_epsilon(epsilon: float = 0.01) -> Composite:
    """Samek et al. (2017)'s ε variant: ε on every linear layer, the first one included (they use ε = 0.01 and
    ε = 100)."""
    return Composite("lrp-epsilon", [(kind("conv", "dense", "affine"), Epsilon(epsilon))] + _lrp_base(),
                     description=f"LRP-ε on every linear layer, unfolded BatchNorm included (ε = {epsilon})",
                     params={"epsilon": epsilon})


def lrp_alpha2_beta1(stabiliser: float = 1e-6) -> Composite:
    """Samek et al. (2017)'s αβ variant: α2β1 on every conv and dense layer, the first one included (unlike
    ``epsilon-alpha2-beta1``, whose dense layers take ε); an unfolded BatchNorm passes relevance through, as in the
    Zennit composites."""
    return Composite("lrp-alpha2-beta1", [(kind("conv", "dense"), AlphaBeta(2.0, 1.0, stabiliser))]
                     + _lrp_base(stabiliser), description="α2β1 on every conv and dense layer, the first included",
                     params={"stabiliser": stabiliser})


def deconvnet() -> Composite:
    return Composite("deconvnet", [(relu_only, DeconvNet())], seed=Seed.ONE,
                     description="DeconvNet: ReLU applied to the signal")


def guided_backprop() -> Composite:
    return Composite("guided-backprop", [(relu_only, GuidedBackprop())], seed=Seed.ONE,
                     description="guided backpropagation: gradient masked by forward ReLU and positive signal")


def epsilon_plus(epsilon: float = 1e-6, stabiliser: float = 1e-6) -> Composite:
    return Composite("epsilon-plus", [(kind("conv"), ZPlus(stabiliser)), (kind("dense"), Epsilon(epsilon))]
                     + _lrp_base(stabiliser), description="conv: z+, dense: ε",
                     params={"epsilon": epsilon, "stabiliser": stabiliser})


def epsilon_plus_flat(epsilon: float = 1e-6, stabiliser: float = 1e-6) -> Composite:
    return Composite("epsilon-plus-flat", [(first(), Flat(stabiliser)), (kind("conv"), ZPlus(stabiliser)),
                                           (kind("dense"), Epsilon(epsilon))] + _lrp_base(stabiliser),
                     description="first layer: flat, conv: z+, dense: ε",
                     params={"epsilon": epsilon, "stabiliser": stabiliser})


def epsilon_gamma_box(low: Any = None, high: Any = None, epsilon: float = 1e-6, gamma: float = 0.25,
                      stabiliser: float = 1e-6) -> Composite:
    if low is None or high is None:
        raise InputError("epsilon-gamma-box needs the input bounds low and high (e.g. from the preprocessing)")
    box = ZBox(low, high, stabiliser)
    return Composite("epsilon-gamma-box", [(first("conv"), box), (kind("conv"), Gamma(gamma, stabiliser)),
                                           (kind("dense"), Epsilon(epsilon))] + _lrp_base(stabiliser),
                     description="first conv: zB, conv: γ, dense: ε",
                     params={"epsilon": epsilon, "gamma": gamma, "stabiliser": stabiliser,
                             "low": np.asarray(low).tolist(), "high": np.asarray(high).tolist()})


def epsilon_alpha2_beta1(epsilon: float = 1e-6, stabiliser: float = 1e-6) -> Composite:
    return Composite("epsilon-alpha2-beta1", [(kind("conv"), AlphaBeta(2.0, 1.0, stabiliser)),
                                              (kind("dense"), Epsilon(epsilon))] + _lrp_base(stabiliser),
                     description="conv: α2β1, dense: ε", params={"epsilon": epsilon, "stabiliser": stabiliser})


def epsilon_alpha2_beta1_flat(epsilon: float = 1e-6, stabiliser: float = 1e-6) -> Composite:
    return Composite("epsilon-alpha2-beta1-flat", [(first(), Flat(stabiliser)),
                                                   (kind("conv"), AlphaBeta(2.0, 1.0, stabiliser)),
                                                   (kind("dense"), Epsilon(epsilon))] + _lrp_base(stabiliser),
                     description="first layer: flat, conv: α2β1, dense: ε",
                     params={"epsilon": epsilon, "stabiliser": stabiliser})


def sr_paper(stabiliser: float = 1e-9, maxpool: str = "accumulate") -> Composite:
    """Li et al. 2017 (SR map paper): conv (incl. first) LRP-0 with bias, dense z+ without bias, stabiliser 1e-9.
    ``maxpool="overwrite"`` reproduces their max_unpool2d where overlapping pooling windows (AlexNet's 3x3 stride 2)
    share an arg-max: one window's relevance survives and the others' is lost; the default accumulates it
    (``docs/sr-map.md``)."""
    pool = WinnerTakeAll(maxpool)
    return Composite("sr-paper", [(kind("conv"), Epsilon(stabiliser)), (kind("dense"), ZPlus(stabiliser, bias=False)),
                                  (kind("maxpool"), pool)] + _lrp_base(stabiliser),
                     description=f"conv: LRP-0 (+1e-9), dense: z+ without bias, max-pool overlaps: {pool.overlap}",
                     params={"stabiliser": stabiliser, "maxpool": str(pool.overlap)})


def attn_lrp(epsilon: float = 1e-6, gamma: float = 0.0) -> Composite:
    """AttnLRP (Achtibat et al. 2024): ε on linear layers (also the patch embedding and constant shifts such as
    position embeddings, which keep their share), LayerNorm with its scale held constant, the softmax's Taylor rule,
    products of two activations split uniformly, the identity rule on element-wise non-linearities. ``gamma`` > 0
    puts the γ rule on conv and dense layers instead of ε (LXT's recipe against noisy vision-transformer maps)."""
    linear = Gamma(gamma, epsilon) if gamma else Epsilon(epsilon)
    return Composite("attn-lrp", [(kind("conv", "dense"), linear), (kind("affine"), Epsilon(epsilon)),
                                  (kind("mul", "product"), Uniform(epsilon)),
                                  (kind("avgpool", "add", "layernorm"), Norm(epsilon)),
                                  (kind("softmax"), SoftmaxTaylor()), (kind("activation", "lrn"), Pass())],
                     description=f"AttnLRP: linear {'γ' if gamma else 'ε'}, LayerNorm identity, softmax Taylor, "
                                 "uniform products", params={"epsilon": epsilon, "gamma": gamma})


def cp_lrp(epsilon: float = 1e-6) -> Composite:
    """CP-LRP (Ali et al. 2022): as AttnLRP, but the attention weights are constants, so no relevance flows through
    the softmax and a product with attention weights gives all its relevance to the values; gates are constants."""
    return Composite("cp-lrp", [(kind("conv", "dense", "affine"), Epsilon(epsilon)),
                                (kind("product"), ConstantWeights(epsilon)),
                                (kind("avgpool", "add", "layernorm"), Norm(epsilon)),
                                (kind("softmax"), Stop()), (kind("activation", "lrn", "mul"), Pass())],
                     description="CP-LRP: AttnLRP with constant attention weights (no relevance through softmax)",
                     params={"epsilon": epsilon})


METHODS: dict[str, Callable[..., Composite]] = {
    "gradient": gradient,
    "gradient-x-input": gradient_x_input,
    "lrp-0": lrp_0,
    "lrp-epsilon": lrp_epsilon,
    "lrp-alpha2-beta1": lrp_alpha2_beta1,
    "deconvnet": deconvnet,
    "guided-backprop": guided_backprop,
    "epsilon-plus": epsilon_plus,
    "epsilon-plus-flat": epsilon_plus_flat,
    "epsilon-gamma-box": epsilon_gamma_box,
    "epsilon-alpha2-beta1": epsilon_alpha2_beta1,
    "epsilon-alpha2-beta1-flat": epsilon_alpha2_beta1_flat,
    "sr-paper": sr_paper,
    "attn-lrp": attn_lrp,
    "cp-lrp": cp_lrp,
}


#: the method name that picks a model family's default (``default_method``)
AUTO = "auto"
#: layer kinds that make a model a transformer to ``default_method``
TRANSFORMER_KINDS = (LayerKind.LAYERNORM, LayerKind.SOFTMAX, LayerKind.PRODUCT)


def default_method(kinds: set[LayerKind | None]) -> str:
    """The method ``auto`` stands for, by the layer kinds a model has: AttnLRP for transformers (attention, LayerNorm,
    products of activations), where Zennit's CNN composites have no rule of their own; epsilon-plus-flat otherwise."""
    return "attn-lrp" if any(k in kinds for k in TRANSFORMER_KINDS) else "epsilon-plus-flat"


def method_parameters(method: str) -> tuple[str, ...]:
    """The parameters a named method takes (``low``/``high`` only where it uses the zB rule)."""
    if method not in METHODS:
        raise InputError(f"unknown method '{method}'; choose one of: {', '.join(METHODS)}")
    return parameters(METHODS[method])


def params_for(methods: Sequence[str], params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For several named methods sharing one set of parameters (the CLI's ``--epsilon``, ``evaluate(..., gamma=)``):
    each method's share of ``params``. A parameter no method takes is an InputError."""
    shares = {m: {k: v for k, v in params.items() if k in method_parameters(m)} for m in methods}
    unused = [k for k in params if not any(k in share for share in shares.values())]
    if unused:
        raise InputError(f"none of the methods {', '.join(methods)} takes {', '.join(map(repr, unused))}")
    return shares


def _check_params(params: dict[str, Any]) -> None:
    """Values of the methods' shared parameters (a user's stabiliser must be > 0), refused before any model work."""
    for name in ("epsilon", "gamma", "stabiliser"):
        if name in params:
            check_number(name, params[name], allow_zero=name != "stabiliser")


def make_composite(method: str | Composite | dict | Sequence, *, low: Any = None, high: Any = None,
                   **params: Any) -> Composite:
    """A composite from a method name (with its parameters as keywords), a spec (dict or (predicate, rule) pairs,
    ``params`` as defaults for the rules it names), or a Composite (no parameters). See the module docstring."""
    if isinstance(method, Composite):
        if params:
            raise InputError(f"pass parameters to make_composite or the rule, not with a Composite (got "
                             f"{', '.join(map(repr, params))} for composite '{method.name}')")
        return method
    _check_params(params)
    if (low is None) != (high is None):
        raise InputError("give both input bounds low and high, or neither")
    if low is not None:
        InputBounds(low, high)
    if isinstance(method, dict):
        return Composite.from_spec(method, low=low, high=high, **params)
    if isinstance(method, (list, tuple)):
        return Composite("custom", _spec_rules(method, params, low, high) + _lrp_base(),
                         description="user-defined composite")
    if not isinstance(method, str) or method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    factory = METHODS[method]
    if "low" in parameters(factory):
        params = dict(params, low=low, high=high)
    return call_with(factory, f"method '{method}'", params)


def input_bounds(composite: Composite, low: Any = None, high: Any = None) -> tuple[Any, Any]:
    """The input bounds the relevance graph is built with: those of the composite's zB rules, which must agree with
    each other and with ``low``/``high`` where both are given; else ``low``/``high`` (None when not given)."""
    own = {r.bounds for _, r in composite.rules if isinstance(r, LinearRule) and r.bounds is not None}
    given = None if low is None or high is None else InputBounds(low, high)
    if len(own) > 1:
        raise InputError(f"the zB rules of composite '{composite.name}' have different input bounds "
                         f"({', '.join(map(repr, own))}); the relevance graph takes one set of bounds")
    if own:
        (bounds,) = own
        if given is not None and given != bounds:
            raise InputError(f"the input bounds low/high {given!r} differ from those of the zB rule of composite "
                             f"'{composite.name}' {bounds!r}; give the bounds once")
        return bounds.low, bounds.high
    if composite.needs_bounds and given is None:
        raise InputError(f"composite '{composite.name}' uses the zB rule without bounds: pass low= and high= (or give "
                         "them to the rule: ZBox(low, high), {'rule': 'zbox', 'low': ..., 'high': ...})")
    return low, high
