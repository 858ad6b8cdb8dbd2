"""Shared test set-up: the repo root on sys.path (for ``graphs``), Zennit importable without torchvision, and
small exported reference networks built once per session."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def import_zennit():
    """Import zennit; its ``zennit.torchvision`` module needs two torchvision classes only for isinstance checks."""
    import torch
    if "torchvision" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except ImportError:
            stub = types.ModuleType("torchvision")
            models = types.ModuleType("torchvision.models")
            resnet = types.ModuleType("torchvision.models.resnet")

            class Bottleneck(torch.nn.Module):
                pass

            class BasicBlock(torch.nn.Module):
                pass

            resnet.Bottleneck, resnet.BasicBlock = Bottleneck, BasicBlock
            stub.models, models.resnet = models, resnet
            sys.modules.update({"torchvision": stub, "torchvision.models": models, "torchvision.models.resnet": resnet})
    import zennit.attribution
    import zennit.composites
    import zennit.rules
    return zennit


def cosine_per_sample(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-300)


@pytest.fixture(scope="session")
def small_legacy() -> Path:
    from graphs.cache import reference_graph
    return reference_graph("small", "legacy")


@pytest.fixture(scope="session")
def small_torch():
    from graphs.cache import reference_model
    return reference_model("small")
