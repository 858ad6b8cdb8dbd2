"""Zennit parity beyond plain nets, on the same weights (``tests/support/parity_nets.py``): a ResNet-style net and a
depthwise-separable net, both with BatchNorm (both PyTorch exporters), an AlexNet-style LRN net and a
squeeze-excitation net (legacy exporter).

The explainer folds every BN into its conv and splits a residual sum by contribution (Norm rule); Zennit does the
same with its canonizers: ``ResNetCanonizer`` (BN merge, and ``+`` replaced by its ``Sum`` module, which takes the
Norm rule) and ``SequentialMergeBatchNorm``. Tolerances: cosine ≥ 0.9999 per image and
max|ours − Zennit| ≤ 1e-3 · max|Zennit| (measured: cosine 1.0000000; differences ≤ 2.3e-4 of the maximum on the
nets with BN, ≤ 3.2e-6 on the others).

Where the explainer departs from Zennit's defaults by design, parity is shown against Zennit made to do the same, and
the default's difference is asserted:
- LRN: the explainer passes relevance through; Zennit has no rule for ``LocalResponseNorm`` and backpropagates its
  Jacobian. Parity with Zennit's ``Pass`` rule mapped onto ``LocalResponseNorm``; with Zennit's default the maps
  differ (measured cosine 0.69–0.96 per image over the five composites).
- Sigmoid gates x ⊙ g: the explainer gives all relevance to x and none to the gate; under Zennit the product is
  plain autograd (g ⊙ R to x, x ⊙ R into the gate branch). Parity with the gate made pass-through on the torch side
  (``pass_gates``); with Zennit's default the maps differ (measured cosine 0.15–0.93 per image over the five
  composites).
- A residual ``+`` without Zennit's ResNet canonizer is plain autograd there too: each summand gets all of R, so the
  relevance reaching the input grows about ×2 per block (measured ×3.1–4.0 after two blocks).
"""
from __future__ import annotations

import numpy as np
import pytest

from explainer import Explainer
from tests.support import cosine_per_sample
from tests.support.parity_nets import INPUT_SHAPE, Exports, pass_gates
from tests.support.torch_threads import torch_threads
from tests.support.zennit_compat import import_zennit
from tests.support.zennit_methods import zennit_relevance

LOW, HIGH = -2.0, 2.0
COSINE = 0.9999
MAX_REL = 1e-3
#: the composites compared on every net: Zennit's own, and Samek et al.'s one-rule-everywhere variants
METHODS = ("epsilon-plus-flat", "epsilon-gamma-box", "epsilon-alpha2-beta1", "lrp-epsilon", "lrp-alpha2-beta1")
#: (net, exporter): dynamo exports take 2–5 s each, so they run in the slow tier; PyTorch's exporters write no LRN
#: node (see parity_nets), so the LRN net is exported by the legacy one with an LRN symbolic
CASES = [("resnet", "legacy"), ("depthwise", "legacy"), ("lrn", "legacy"), ("se", "legacy"),
         pytest.param("resnet", "dynamo", marks=pytest.mark.slow),
         pytest.param("depthwise", "dynamo", marks=pytest.mark.slow)]


class Nets(Exports):
    """The exports, plus one explainer per (net, exporter) whose canonical graph every method reuses."""

    def __init__(self, directory) -> None:
        super().__init__(directory)
        self._explainers: dict[tuple[str, str], Explainer] = {}

    def explainer(self, net: str, exporter: str, method: str) -> Explainer:
        key = (net, exporter)
        if key not in self._explainers:
            self._explainers[key] = Explainer(self(net, exporter), "gradient", low=LOW, high=HIGH)
        return self._explainers[key].with_method(method)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The nets are tiny: one torch thread (every comparison here took 1.6 s of CPU time with one, 11 s with two on
    a busy 2-core machine)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> Nets:
    return Nets(tmp_path_factory.mktemp("parity_blocks"))


def _inputs(seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((4, *INPUT_SHAPE[1:]))
    return np.clip(x, LOW, HIGH).astype(np.float32)


def _explain(nets: Nets, net: str, exporter: str, method: str, x: np.ndarray):
    """(explanation, model, target) for ``method`` on ``net``, explaining the torch model's arg-max."""
    import torch
    model = nets.model(net)
    with torch.no_grad():
        target = model(torch.from_numpy(x)).argmax(1).numpy()
    return nets.explainer(net, exporter, method).explain(x, target), model, target


def _zennit(net: str, model, method: str, x: np.ndarray, target: np.ndarray, *, faithful: bool = True) -> np.ndarray:
    """Zennit's relevance on ``net``: with the canonizers, layer-map entries and gate handling that make it compute
    what the explainer computes (``faithful``), or with Zennit's defaults (no ResNet canonizer, no rule on
    LocalResponseNorm, gates differentiated)."""
    import torch
    zennit = import_zennit()
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer
    options = {"resnet": {"canonizers": [ResNetCanonizer() if faithful else SequentialMergeBatchNorm()]},
               "depthwise": {"canonizers": [SequentialMergeBatchNorm()]},
               "lrn": {"layer_map": [(torch.nn.LocalResponseNorm, zennit.rules.Pass())] if faithful else []},
               "se": {}}[net]
    pass_gates(model, faithful)
    try:
        return zennit_relevance(model, method, x, target, LOW, HIGH, **options)
    finally:
        pass_gates(model, False)


def _max_rel(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    n = len(ref)
    return np.abs(ours - ref).reshape(n, -1).max(1) / np.abs(ref).reshape(n, -1).max(1)


@pytest.mark.parametrize("net, exporter", CASES)
def test_composites_match_zennit(nets, net, exporter):
    x = _inputs()
    for method in METHODS:
        e, model, target = _explain(nets, net, exporter, method, x)
        ref = _zennit(net, model, method, x, target)
        cos, rel = cosine_per_sample(e.relevance, ref), _max_rel(e.relevance, ref)
        assert np.all(cos >= COSINE) and np.all(rel <= MAX_REL), f"{net}/{exporter} {method}: cosine {cos}, " \
                                                                  f"max rel {rel}"


@pytest.mark.parametrize("net", ["resnet", "depthwise"])
def test_batchnorm_is_folded_into_the_convolutions(nets, net):
    """The BN layers are gone from the explained graph (folded into the convs, like Zennit's merge), so no
    BatchNorm-like affine layer is left to pass relevance through."""
    ops = {n.op for n in nets.explainer(net, "legacy", "gradient").graph.nodes}
    assert "Conv" in ops and not ops & {"Affine", "BatchNormalization"}, ops


@pytest.mark.parametrize("net", ["lrn", "se"])
def test_zennit_default_differs_where_the_explainer_departs_from_it(nets, net):
    """LRN's Jacobian and a differentiated gate (Zennit's defaults) give other maps: the explainer's pass-through
    is a deliberate departure, and the parity above is not vacuous."""
    ops = {n.op for n in nets.explainer(net, "legacy", "gradient").graph.nodes}
    assert {"lrn": "LRN", "se": "Mul"}[net] in ops, ops  # a native LRN node; the gated product
    x = _inputs()
    for method in ("lrp-epsilon", "epsilon-gamma-box"):
        e, model, target = _explain(nets, net, "legacy", method, x)
        ref = _zennit(net, model, method, x, target, faithful=False)
        assert np.all(cosine_per_sample(e.relevance, ref) < 0.99), method


def test_residual_sum_without_resnet_canonizer_duplicates_relevance(nets):
    """Without Zennit's ResNet canonizer the skip ``+`` is plain autograd (each summand gets all of R): the input
    relevance under Zennit then sums to over twice the explainer's (Norm split: about the logit)."""
    x = _inputs()
    e, model, target = _explain(nets, "resnet", "legacy", "epsilon-plus-flat", x)
    ref = _zennit("resnet", model, "epsilon-plus-flat", x, target, faithful=False)
    ratio = ref.reshape(len(x), -1).sum(1) / e.relevance.reshape(len(x), -1).sum(1)
    assert np.all(ratio > 2.0), ratio
