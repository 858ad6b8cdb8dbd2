"""Per-op emitters: canonical op -> object with ``forward`` and ``backward`` (see ``base.OpEmitter``).

Adding support for an op means adding a converter (``converters.py``) and an emitter registered here.
"""
from __future__ import annotations

from .activations import ActivationEmitter, is_nonnegative
from .affine import AffineEmitter
from .base import EmitContext, OpEmitter
from .linear import ConvEmitter, DenseEmitter
from .lrn import LRNEmitter
from .merge import AddEmitter, GatedMulEmitter
from .pooling import AveragePoolEmitter, GlobalAveragePoolEmitter, MaxPoolEmitter
from .structural import ConcatEmitter, PadEmitter, ReshapeEmitter, SliceEmitter, TransposeEmitter

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
