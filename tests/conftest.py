"""Shared fixtures: the small exported reference network, and the full-size ones with one explainer each.

``reference_net`` is session-scoped and parametrised over the four full-size exports, so pytest runs every test
that uses one export (its Zennit parity, its zoo row, its torch-vs-ONNX Runtime check) together, canonicalises it
once for all of them (methods come from ``with_method``), and frees it before the next export is loaded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from explainer import Explainer
from explainer.images.preprocess import input_bounds, preprocessing

# The suite never writes to the user's cache folder nor depends on what an earlier test left there: the session cache
# (explainer.runtime.cache) is off for every test and every CLI subprocess; tests/test_session_cache.py turns it on,
# in its tmp_path, through EXPLAINER_CACHE_DIR.
os.environ["EXPLAINER_CACHE"] = "0"

FULL_SIZE = [("alexnet", "legacy"), ("alexnet", "dynamo"), ("vgg16", "legacy"), ("vgg16", "dynamo")]


@dataclass
class ReferenceNet:
    """A full-size reference network: its ONNX export, the torch module with the same weights, and a gradient
    explainer of the export (ImageNet bounds), each made on first use."""

    name: str
    exporter: str

    @property
    def label(self) -> str:
        """The network's name in the zoo report, e.g. ``torch-legacy/vgg16``."""
        return f"torch-{self.exporter}/{self.name}"

    @cached_property
    def path(self) -> Path:
        from graphs.cache import reference_graph
        return reference_graph(self.name, self.exporter)

    @cached_property
    def torch_model(self) -> Any:
        from graphs.cache import reference_model
        return reference_model(self.name)

    @cached_property
    def explainer(self) -> Explainer:
        low, high = input_bounds(preprocessing("imagenet"), 3)  # pixels 0 and 255, ImageNet-normalised
        return Explainer(self.path, "gradient", low=low, high=high, source=self.label)


@pytest.fixture(scope="session", params=FULL_SIZE, ids=[f"{n}-{e}" for n, e in FULL_SIZE])
def reference_net(request: pytest.FixtureRequest) -> ReferenceNet:
    return ReferenceNet(*request.param)


@pytest.fixture(scope="session")
def small_legacy() -> Path:
    from graphs.cache import reference_graph
    return reference_graph("small", "legacy")


@pytest.fixture(scope="session")
def small_torch():
    from graphs.cache import reference_model
    return reference_model("small")
