"""Zennit (PyTorch) counterparts of every named method, for parity tests on the same weights."""
from __future__ import annotations

import numpy as np

from tests.support.zennit_compat import import_zennit


def zennit_composite(method: str, low=None, high=None):
    """The Zennit composite equivalent to ``method`` (None: plain autograd)."""
    import torch
    zennit = import_zennit()
    zc, zr = zennit.composites, zennit.rules
    from zennit.layer import Sum
    from zennit.types import Activation, AvgPool, Convolution

    def base(stab):
        return [(Activation, zr.Pass()), (Sum, zr.Norm(stab)), (AvgPool, zr.Norm(stab))]

    if method == "epsilon-plus":
        return zc.EpsilonPlus()
    if method == "epsilon-plus-flat":
        return zc.EpsilonPlusFlat()
    if method == "epsilon-alpha2-beta1":
        return zc.EpsilonAlpha2Beta1()
    if method == "epsilon-alpha2-beta1-flat":
        return zc.EpsilonAlpha2Beta1Flat()
    if method == "epsilon-gamma-box":
        return zc.EpsilonGammaBox(low=torch.as_tensor(low).reshape(1, -1, 1, 1),
                                  high=torch.as_tensor(high).reshape(1, -1, 1, 1))
    if method == "guided-backprop":
        return zc.GuidedBackprop()
    if method == "deconvnet":
        return zc.DeconvNet()
    if method == "lrp-0":
        return zc.LayerMapComposite(base(1e-6) + [(Convolution, zr.Epsilon(1e-30)),
                                                  (torch.nn.Linear, zr.Epsilon(1e-30))])
    if method == "lrp-epsilon":
        return zc.LayerMapComposite(base(1e-6) + [(Convolution, zr.Epsilon(0.01)), (torch.nn.Linear, zr.Epsilon(0.01))])
    if method == "sr-paper":
        return zc.LayerMapComposite(base(1e-9) + [(Convolution, zr.Epsilon(1e-9)),
                                                  (torch.nn.Linear, zr.ZPlus(stabilizer=1e-9, zero_params="bias"))])
    if method in ("attn-lrp", "cp-lrp"):  # on a CNN without attention, LayerNorm or gates: ε everywhere
        return zc.LayerMapComposite(base(1e-6) + [(Convolution, zr.Epsilon(1e-6)), (torch.nn.Linear, zr.Epsilon(1e-6))])
    if method in ("gradient", "gradient-x-input"):
        return None
    raise ValueError(method)


SEED_ONE = {"gradient", "gradient-x-input", "guided-backprop", "deconvnet"}


def zennit_relevance(model, method: str, x: np.ndarray, target: np.ndarray, low=None, high=None) -> np.ndarray:
    """Zennit's attribution of ``method`` for the batch ``x`` (NCHW) and per-sample targets."""
    import torch
    zennit = import_zennit()
    xt = torch.from_numpy(x)
    with torch.no_grad():
        classes = model(xt[:1]).shape[1]
    onehot = torch.eye(classes)[torch.from_numpy(target)]

    def seed(out):
        return onehot if method in SEED_ONE else out * onehot

    composite = zennit_composite(method, low, high)
    if composite is None:
        xg = xt.clone().requires_grad_(True)
        out = model(xg)
        (grad,) = torch.autograd.grad(out, xg, seed(out))
        rel = grad * xt if method == "gradient-x-input" else grad
        return rel.detach().numpy()
    with zennit.attribution.Gradient(model, composite) as attributor:
        _, rel = attributor(xt, seed)
    return rel.detach().numpy()
