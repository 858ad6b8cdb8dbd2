"""Shared test set-up: the repo root on sys.path (for ``graphs``), Zennit importable without torchvision, and
small exported reference networks built once per session."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.zennit_compat import import_zennit  # noqa: E402,F401  (re-exported for the parity tests)


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
