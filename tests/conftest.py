"""Shared fixtures: small exported reference networks built once per session."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_legacy() -> Path:
    from graphs.cache import reference_graph
    return reference_graph("small", "legacy")


@pytest.fixture(scope="session")
def small_torch():
    from graphs.cache import reference_model
    return reference_model("small")
