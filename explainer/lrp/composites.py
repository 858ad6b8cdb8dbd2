"""Composites: which rule each layer gets. A composite is data: an ordered list of (predicate, rule), first match wins.

The named composites match Zennit's definitions of the same name (ε = 1e-6 for dense layers, stabiliser 1e-6,
γ = 0.25, average pooling and residual sums with the Norm rule, activations and BatchNorm pass-through, max-pooling
winner-take-all).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from explainer.lrp.rules import (
    AlphaBeta,
    DeconvNet,
    Epsilon,
    Flat,
    Gamma,
    Gradient,
    GuidedBackprop,
    Norm,
    Pass,
    Rule,
    ZBox,
    ZPlus,
    make_rule,
)

#: layer kinds the rewriter asks about
LINEAR_KINDS = ("conv", "dense")
KINDS = ("conv", "dense", "activation", "maxpool", "avgpool", "add", "mul", "affine", "lrn")


@dataclass(frozen=True)
class Layer:
    """What a predicate sees: the layer's kind, name, op, and whether it is the first linear layer."""

    kind: str
    name: str
    op: str
    first: bool = False
    activation: str | None = None


Predicate = Callable[[Layer], bool]


def kind(*kinds: str) -> Predicate:
    def match(layer: Layer) -> bool:
        return layer.kind in kinds
    match.__name__ = "kind(" + ",".join(kinds) + ")"
    return match


def first(*kinds: str) -> Predicate:
    """The first linear layer(s) after the input, optionally only of the given kinds."""
    def match(layer: Layer) -> bool:
        return layer.first and (not kinds or layer.kind in kinds)
    match.__name__ = "first(" + ",".join(kinds) + ")"
    return match


def name_matches(pattern: str) -> Predicate:
    regex = re.compile(pattern)

    def match(layer: Layer) -> bool:
        return bool(regex.search(layer.name))
    match.__name__ = f"name~{pattern}"
    return match


def relu_only(layer: Layer) -> bool:
    """Rectifiers: ReLU and clips with a lower bound of 0 (ReLU6), where DeconvNet/guided backprop apply."""
    return layer.kind == "activation" and layer.activation in ("relu", "relu6")


@dataclass
class Composite:
    """An ordered rule map plus ``times_input`` (multiply the final signal by the input, e.g. gradient×input) and
    ``seed``: 'logit' (one-hot × logit, LRP) or 'one' (one-hot, gradient-like methods)."""

    name: str
    rules: list[tuple[Predicate, Rule]]
    times_input: bool = False
    seed: str = "logit"
    needs_bounds: bool = False
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def rule_for(self, layer: Layer) -> Rule:
        for predicate, rule in self.rules:
            if predicate(layer):
                return rule
        return Gradient()

    @classmethod
    def from_spec(cls, spec: dict[str, Any], name: str = "custom") -> "Composite":
        """A composite from data, e.g. ``{"first": "flat", "conv": "zplus", "dense": {"rule": "epsilon",
        "epsilon": 0.25}}``; keys are 'first', layer kinds, or 'name:<regex>'. Unlisted kinds get LRP defaults."""
        rules: list[tuple[Predicate, Rule]] = []
        for key, value in spec.items():
            if key == "first":
                rules.append((first(), make_rule(value)))
            elif key.startswith("name:"):
                rules.append((name_matches(key[5:]), make_rule(value)))
            elif key in KINDS:
                rules.append((kind(key), make_rule(value)))
            else:
                raise ValueError(f"unknown composite key '{key}'; use 'first', 'name:<regex>' or one of {KINDS}")
        rules.sort(key=lambda pr: 0 if pr[0].__name__.startswith(("first", "name~")) else 1)
        return cls(name, rules + _lrp_base(), description="user-defined composite")


def _lrp_base(stabiliser: float = 1e-6) -> list[tuple[Predicate, Rule]]:
    """What every LRP composite does outside conv/dense layers (Zennit's layer_map_base)."""
    return [(kind("activation", "affine", "lrn", "mul"), Pass()), (kind("avgpool", "add"), Norm(stabiliser))]


def gradient(**_: Any) -> Composite:
    return Composite("gradient", [], seed="one", description="sensitivity: the plain gradient of the target logit")


def gradient_x_input(**_: Any) -> Composite:
    return Composite("gradient-x-input", [], times_input=True, seed="one", description="gradient times input")


def lrp_0(**_: Any) -> Composite:
    return Composite("lrp-0", [(kind(*LINEAR_KINDS, "affine"), Epsilon(0.0))] + _lrp_base(0.0),
                     description="LRP-0 on every linear layer, unfolded BatchNorm/normalisation included, and "
                                 "unstabilised sums and average pools, so that LRP-0 equals gradient×input on ReLU nets")


def lrp_epsilon(epsilon: float = 0.01, **_: Any) -> Composite:
    return Composite("lrp-epsilon", [(kind(*LINEAR_KINDS, "affine"), Epsilon(epsilon))] + _lrp_base(),
                     description=f"LRP-ε on every linear layer, unfolded BatchNorm included (ε = {epsilon})",
                     params={"epsilon": epsilon})


def deconvnet(**_: Any) -> Composite:
    return Composite("deconvnet", [(relu_only, DeconvNet())], seed="one", description="DeconvNet: ReLU applied to the signal")


def guided_backprop(**_: Any) -> Composite:
    return Composite("guided-backprop", [(relu_only, GuidedBackprop())], seed="one",
                     description="guided backpropagation: gradient masked by forward ReLU and positive signal")


def epsilon_plus(epsilon: float = 1e-6, stabiliser: float = 1e-6, **_: Any) -> Composite:
    return Composite("epsilon-plus", [(kind("conv"), ZPlus(stabiliser)), (kind("dense"), Epsilon(epsilon))]
                     + _lrp_base(stabiliser), description="conv: z+, dense: ε",
                     params={"epsilon": epsilon, "stabiliser": stabiliser})


def epsilon_plus_flat(epsilon: float = 1e-6, stabiliser: float = 1e-6, **_: Any) -> Composite:
    return Composite("epsilon-plus-flat", [(first(), Flat(stabiliser)), (kind("conv"), ZPlus(stabiliser)),
                                           (kind("dense"), Epsilon(epsilon))] + _lrp_base(stabiliser),
                     description="first layer: flat, conv: z+, dense: ε",
                     params={"epsilon": epsilon, "stabiliser": stabiliser})


def epsilon_gamma_box(low: Any = None, high: Any = None, epsilon: float = 1e-6, gamma: float = 0.25,
                      stabiliser: float = 1e-6, **_: Any) -> Composite:
    if low is None or high is None:
        raise ValueError("epsilon-gamma-box needs the input bounds low and high (e.g. from the preprocessing)")
    return Composite("epsilon-gamma-box", [(first("conv"), ZBox(low, high, stabiliser)),
                                           (kind("conv"), Gamma(gamma, stabiliser)),
                                           (kind("dense"), Epsilon(epsilon))] + _lrp_base(stabiliser),
                     needs_bounds=True, description="first conv: zB, conv: γ, dense: ε",
                     params={"epsilon": epsilon, "gamma": gamma, "stabiliser": stabiliser,
                             "low": np.asarray(low).tolist(), "high": np.asarray(high).tolist()})


def epsilon_alpha2_beta1(epsilon: float = 1e-6, stabiliser: float = 1e-6, **_: Any) -> Composite:
    return Composite("epsilon-alpha2-beta1", [(kind("conv"), AlphaBeta(2.0, 1.0, stabiliser)),
                                              (kind("dense"), Epsilon(epsilon))] + _lrp_base(stabiliser),
                     description="conv: α2β1, dense: ε", params={"epsilon": epsilon, "stabiliser": stabiliser})


def epsilon_alpha2_beta1_flat(epsilon: float = 1e-6, stabiliser: float = 1e-6, **_: Any) -> Composite:
    return Composite("epsilon-alpha2-beta1-flat", [(first(), Flat(stabiliser)),
                                                   (kind("conv"), AlphaBeta(2.0, 1.0, stabiliser)),
                                                   (kind("dense"), Epsilon(epsilon))] + _lrp_base(stabiliser),
                     description="first layer: flat, conv: α2β1, dense: ε",
                     params={"epsilon": epsilon, "stabiliser": stabiliser})


def sr_paper(stabiliser: float = 1e-9, **_: Any) -> Composite:
    """Li et al. 2017 (SR map paper): conv (incl. first) LRP-0 with bias, dense z+ without bias, stabiliser 1e-9."""
    return Composite("sr-paper", [(kind("conv"), Epsilon(stabiliser)), (kind("dense"), ZPlus(stabiliser, bias=False))]
                     + _lrp_base(stabiliser), description="conv: LRP-0 (+1e-9), dense: z+ without bias",
                     params={"stabiliser": stabiliser})


METHODS: dict[str, Callable[..., Composite]] = {
    "gradient": gradient,
    "gradient-x-input": gradient_x_input,
    "lrp-0": lrp_0,
    "lrp-epsilon": lrp_epsilon,
    "deconvnet": deconvnet,
    "guided-backprop": guided_backprop,
    "epsilon-plus": epsilon_plus,
    "epsilon-plus-flat": epsilon_plus_flat,
    "epsilon-gamma-box": epsilon_gamma_box,
    "epsilon-alpha2-beta1": epsilon_alpha2_beta1,
    "epsilon-alpha2-beta1-flat": epsilon_alpha2_beta1_flat,
    "sr-paper": sr_paper,
}


def _check_params(params: dict[str, Any]) -> None:
    for name in ("epsilon", "gamma"):
        value = params.get(name)
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    stab = params.get("stabiliser")
    if stab is not None and not (np.isfinite(stab) and stab > 0):
        raise ValueError(f"stabiliser must be a finite number > 0, got {stab}")
    low, high = params.get("low"), params.get("high")
    if low is not None and high is not None:
        lo, hi = np.asarray(low, np.float64), np.asarray(high, np.float64)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError("the input bounds low/high must be finite")
        if np.any(lo >= hi):
            raise ValueError(f"the input bounds need low < high (got low={lo.tolist()}, high={hi.tolist()})")


def make_composite(method: str | Composite | dict | Sequence, **params: Any) -> Composite:
    """A composite from a method name (with rule parameters as keywords), a spec dict, or a Composite."""
    _check_params(params)
    if isinstance(method, Composite):
        return method
    if isinstance(method, dict):
        return Composite.from_spec(method)
    if isinstance(method, (list, tuple)):
        return Composite("custom", [(p, make_rule(r)) for p, r in method] + _lrp_base())
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}'; choose one of: {', '.join(METHODS)}")
    return METHODS[method](**params)
