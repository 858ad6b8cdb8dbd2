"""Per-op emitters: canonical op -> object with ``forward`` and ``backward`` (see ``base.OpEmitter``).

Adding support for an op means adding a converter (``converters.py``) and an emitter registered here.
"""
from __future__ import annotations

from explainer.relevance.emitters.activations import ActivationEmitter, is_nonnegative
from explainer.relevance.emitters.affine import AffineEmitter
from explainer.relevance.emitters.base import EmitContext, OpEmitter
from explainer.relevance.emitters.linear import ConvEmitter, DenseEmitter
from explainer.relevance.emitters.lrn import LRNEmitter
from explainer.relevance.emitters.merge import AddEmitter, GatedMulEmitter
from explainer.relevance.emitters.pooling import AveragePoolEmitter, GlobalAveragePoolEmitter, MaxPoolEmitter
from explainer.relevance.emitters.structural import (
    ConcatEmitter,
    PadEmitter,
    ReshapeEmitter,
    SliceEmitter,
    TransposeEmitter,
)

EMITTERS: dict[str, OpEmitter] = {
    "Conv": ConvEmitter(),
    "Dense": DenseEmitter(),
    "Affine": AffineEmitter(),
    "Activation": ActivationEmitter(),
    "MaxPool": MaxPoolEmitter(),
    "AveragePool": AveragePoolEmitter(),
    "GlobalAveragePool": GlobalAveragePoolEmitter(),
    "LRN": LRNEmitter(),
    "Reshape": ReshapeEmitter(),
    "Transpose": TransposeEmitter(),
    "Pad": PadEmitter(),
    "Slice": SliceEmitter(),
    "Concat": ConcatEmitter(),
    "Add": AddEmitter(),
    "Mul": GatedMulEmitter(),
}

__all__ = ["EMITTERS", "EmitContext", "OpEmitter", "is_nonnegative"]
