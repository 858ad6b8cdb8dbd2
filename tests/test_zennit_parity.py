"""Parity with Zennit on the same weights for every named method: cosine similarity >= 0.999 per image.

The small VGG-style net runs every method for both PyTorch exporters; AlexNet and VGG-16 (torchvision layout,
exported on demand into the graph cache) run every method on the legacy export and two composites on the dynamo
export, each through the session's shared explainer of that export (``reference_net`` in ``conftest.py``).
"""
from __future__ import annotations

import numpy as np
import pytest

from explainer import METHODS, Explainer
from explainer.images.preprocess import input_bounds, preprocessing
from tests.support import cosine_per_sample
from tests.support.torch_threads import torch_threads
from tests.support.zennit_methods import zennit_relevance

IMAGENET_LOW, IMAGENET_HIGH = input_bounds(preprocessing("imagenet"), 3)
COSINE = 0.999
#: exporter -> (methods checked against Zennit, seed of the two 224 x 224 images)
FULL_SIZE_PARITY = {"legacy": (list(METHODS), 0), "dynamo": (["epsilon-plus-flat", "epsilon-gamma-box"], 1)}


def _images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal((n, *shape)), IMAGENET_LOW.min(), IMAGENET_HIGH.max()).astype(np.float32)


def _check_all_methods(base: Explainer, model, x, methods) -> None:
    import torch
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    target = logits.argmax(1)
    for method in methods:
        ex = base.with_method(method)
        ours = ex.explain(x, target)
        np.testing.assert_allclose(ours.logits, logits, rtol=1e-4, atol=1e-4 * np.abs(logits).max())
        ref = zennit_relevance(model, method, x, target, IMAGENET_LOW, IMAGENET_HIGH)
        cos = cosine_per_sample(ours.relevance, ref)
        assert np.all(cos >= COSINE), f"{method}: cosine similarity to Zennit {cos}"


@pytest.fixture
def one_torch_thread():
    """The small net in one torch thread (measured 1.7–2.4 s per exporter, 12–14 s with two on a busy machine)."""
    with torch_threads(1):
        yield


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_small_net_every_method(exporter, small_torch, one_torch_thread):
    from graphs.cache import reference_graph
    base = Explainer(reference_graph("small", exporter), "gradient", low=IMAGENET_LOW, high=IMAGENET_HIGH)
    _check_all_methods(base, small_torch, _images(4, (3, 32, 32)), list(METHODS))


@pytest.mark.slow
def test_reference_net(reference_net):
    methods, seed = FULL_SIZE_PARITY[reference_net.exporter]
    _check_all_methods(reference_net.explainer, reference_net.torch_model, _images(2, (3, 224, 224), seed=seed),
                       methods)
