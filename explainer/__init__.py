"""explainer: ONNX-native layer-wise relevance propagation, SR maps and region-perturbation scores.

The top level holds the small public API, loaded lazily so that ``import explainer`` stays cheap (matplotlib and
SciPy load only when pictures, SR maps or evaluation are used). Everything else lives in its stage's subpackage:
``explainer.frontend`` (ONNX in, canonical graph out), ``explainer.lrp`` (rules and composites, pure data),
``explainer.ops`` (one module per op), ``explainer.relevance`` (the relevance graph), ``explainer.runtime`` (ONNX
Runtime), ``explainer.images``, ``explainer.pictures``, ``explainer.sr``, ``explainer.evaluation`` and
``explainer.cli``.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Explainer": "explainer.api",
    "Explanation": "explainer.api",
    "LowConservationWarning": "explainer.api",
    "METHODS": "explainer.lrp.composites",
    "Composite": "explainer.lrp.composites",
    "make_composite": "explainer.lrp.composites",
    "ExplainerError": "explainer.errors",
    "ModelError": "explainer.errors",
    "InputError": "explainer.errors",
    "UnsupportedOpError": "explainer.errors",
    "OutputError": "explainer.errors",
    "load_images": "explainer.images.preprocess",
    "sr_map": "explainer.sr.sr_map",
    "evaluate": "explainer.evaluation.compare",
    "region_perturbation": "explainer.evaluation.region_perturbation",
    "compare_heatmaps": "explainer.evaluation.region_perturbation",
}

__all__ = [
    "Composite",
    "Explainer",
    "ExplainerError",
    "Explanation",
    "InputError",
    "LowConservationWarning",
    "METHODS",
    "ModelError",
    "OutputError",
    "UnsupportedOpError",
    "compare_heatmaps",
    "evaluate",
    "load_images",
    "make_composite",
    "region_perturbation",
    "sr_map",
]

if TYPE_CHECKING:
    from explainer.api import Explainer, Explanation
    from explainer.errors import ExplainerError, InputError, ModelError, OutputError, UnsupportedOpError
    from explainer.evaluation.compare import evaluate
    from explainer.evaluation.region_perturbation import compare_heatmaps, region_perturbation
    from explainer.images.preprocess import load_images
    from explainer.lrp.composites import METHODS, Composite, make_composite
    from explainer.sr.sr_map import sr_map


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'explainer' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
