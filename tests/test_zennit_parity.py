"""Parity with Zennit on the same weights for every named method: cosine similarity >= 0.999 per image.

The small VGG-style net runs every method for both PyTorch exporters; AlexNet and VGG-16 (torchvision layout,
built on demand into graphs/cache) run every method on the legacy export and one composite on the dynamo export.
"""
from __future__ import annotations

import numpy as np
import pytest

from explainer import METHODS, Explainer
from tests.support import cosine_per_sample
from tests.support.zennit_reference import zennit_relevance

IMAGENET_LOW = np.array([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], np.float32)
IMAGENET_HIGH = np.array([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], np.float32)
COSINE = 0.999


def _images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal((n, *shape)), IMAGENET_LOW.min(), IMAGENET_HIGH.max()).astype(np.float32)


def _check_all_methods(path, model, x, methods) -> None:
    import torch
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    target = logits.argmax(1)
    base = Explainer(path, "gradient", low=IMAGENET_LOW, high=IMAGENET_HIGH)
    for method in methods:
        ex = base.with_method(method)
        ours = ex.explain(x, target)
        np.testing.assert_allclose(ours.logits, logits, rtol=1e-4, atol=1e-4 * np.abs(logits).max())
        ref = zennit_relevance(model, method, x, target, IMAGENET_LOW, IMAGENET_HIGH)
        cos = cosine_per_sample(ours.relevance, ref)
        assert np.all(cos >= COSINE), f"{method}: cosine similarity to Zennit {cos}"


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_small_net_every_method(exporter, small_torch):
    from graphs.cache import reference_graph
    _check_all_methods(reference_graph("small", exporter), small_torch, _images(4, (3, 32, 32)), list(METHODS))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "vgg16"])
def test_reference_net_every_method(name):
    from graphs.cache import reference_graph, reference_model
    _check_all_methods(reference_graph(name, "legacy"), reference_model(name), _images(2, (3, 224, 224)),
                       list(METHODS))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "vgg16"])
def test_reference_net_dynamo_export(name):
    from graphs.cache import reference_graph, reference_model
    _check_all_methods(reference_graph(name, "dynamo"), reference_model(name), _images(2, (3, 224, 224), seed=1),
                       ["epsilon-plus-flat", "epsilon-gamma-box"])
