"""Zennit (PyTorch) counterparts of every named method, for parity tests on the same weights, with Zennit's
canonizers (``ResNetCanonizer``, ``SequentialMergeBatchNorm``) and extra layer-map entries (``layer_map``, placed
before the composite's own, e.g. ``[(torch.nn.LocalResponseNorm, zennit.rules.Pass())]``).

Methods with a Zennit composite of the same name use it; ``lrp-0``, ``lrp-epsilon``, ``lrp-alpha2-beta1`` and
``sr-paper`` are ``LayerMapComposite``s over Zennit's ``layer_map_base``; the gradient methods are plain autograd.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tests.support.zennit_compat import import_zennit

#: methods seeded with the one-hot vector (the others with one-hot × logit, as the explainer's default seeds)
SEED_ONE = {"gradient", "gradient-x-input", "guided-backprop", "deconvnet"}


def zennit_composite(method: str, low=None, high=None, *, canonizers: Sequence = (), layer_map: Sequence = ()):
    """The Zennit composite equivalent to ``method`` (None: plain autograd)."""
    import torch
    zennit = import_zennit()
    zc, zr = zennit.composites, zennit.rules
    from zennit.types import Convolution

    common = {"canonizers": list(canonizers), "layer_map": list(layer_map)}
    named = {"epsilon-plus": zc.EpsilonPlus, "epsilon-plus-flat": zc.EpsilonPlusFlat,
             "epsilon-alpha2-beta1": zc.EpsilonAlpha2Beta1, "epsilon-alpha2-beta1-flat": zc.EpsilonAlpha2Beta1Flat,
             "guided-backprop": zc.GuidedBackprop, "deconvnet": zc.DeconvNet}
    if method in named:
        return named[method](**common)
    if method == "epsilon-gamma-box":
        return zc.EpsilonGammaBox(low=torch.as_tensor(low).reshape(1, -1, 1, 1),
                                  high=torch.as_tensor(high).reshape(1, -1, 1, 1), **common)
    # (rule for conv, rule for dense, stabiliser of the sums and average pools)
    every_layer = {
        "lrp-0": (zr.Epsilon(1e-30), zr.Epsilon(1e-30), 1e-6),
        "lrp-epsilon": (zr.Epsilon(0.01), zr.Epsilon(0.01), 1e-6),
        "lrp-alpha2-beta1": (zr.AlphaBeta(2.0, 1.0), zr.AlphaBeta(2.0, 1.0), 1e-6),
        "sr-paper": (zr.Epsilon(1e-9), zr.ZPlus(stabilizer=1e-9, zero_params="bias"), 1e-9),
        # on a CNN without attention, LayerNorm or gates, AttnLRP and CP-LRP are ε everywhere
        "attn-lrp": (zr.Epsilon(1e-6), zr.Epsilon(1e-6), 1e-6),
        "cp-lrp": (zr.Epsilon(1e-6), zr.Epsilon(1e-6), 1e-6),
    }
    if method in every_layer:
        conv, dense, stab = every_layer[method]
        return zc.LayerMapComposite(list(layer_map) + zc.layer_map_base(stab)
                                    + [(Convolution, conv), (torch.nn.Linear, dense)], canonizers=list(canonizers))
    if method in ("gradient", "gradient-x-input"):
        return None
    raise ValueError(f"no Zennit counterpart for method {method!r}")


def zennit_relevance(model, method: str, x: np.ndarray, target: np.ndarray, low=None, high=None, *,
                     canonizers: Sequence = (), layer_map: Sequence = ()) -> np.ndarray:
    """Zennit's attribution of ``method`` for the batch ``x`` (NCHW) and per-sample targets; the canonizers are
    applied for the call and removed after it."""
    import torch
    zennit = import_zennit()
    xt = torch.from_numpy(x)
    with torch.no_grad():
        classes = model(xt[:1]).shape[1]
    onehot = torch.eye(classes)[torch.from_numpy(np.asarray(target))]

    def seed(out):
        return onehot if method in SEED_ONE else out * onehot

    composite = zennit_composite(method, low, high, canonizers=canonizers, layer_map=layer_map)
    if composite is None:
        xg = xt.clone().requires_grad_(True)
        out = model(xg)
        (grad,) = torch.autograd.grad(out, xg, seed(out))
        rel = grad * xt if method == "gradient-x-input" else grad
        return rel.detach().numpy()
    with zennit.attribution.Gradient(model, composite) as attributor:
        _, rel = attributor(xt, seed)
    return rel.detach().numpy()
