"""The op registry (being assembled): ONNX op type -> converter, canonical op -> emitter."""
from __future__ import annotations

from explainer.frontend.converters import CONVERTERS
from explainer.relevance.emitters import EMITTERS

__all__ = ["CONVERTERS", "EMITTERS"]
