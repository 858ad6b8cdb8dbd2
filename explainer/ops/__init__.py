"""The op registry: every supported op, one module each, declaring everything about itself (``base.Op``): how ONNX
nodes convert to it, how its forward and relevance are emitted per rule, its sign and zB-bound rules, and the layer
kind composites see. Adding an op is its module plus its line in ``REGISTERED`` (and the module in the import above it).

``REGISTERED`` is also the dispatch order: an ONNX op type claimed by several ops is tried in this order, and the
first whose converter does not raise ``NotSupported`` wins (Add: Affine with a constant operand, then a residual Add;
Mul: Affine with a constant operand, then FixedScale by a tensor computed from fixed inputs, then swish/hard-swish
Activation x·sigmoid(x), then a gated product x·sigmoid(y), which would also match swish, then any other Product of
two activations; MatMul: Dense with a constant
weight, then a MatMul of two activations; ReduceMean: GlobalAveragePool over the spatial axes, then Reduce). Ops that
only vanish (``aliases.py``) claim last: a final Softmax, which the Softmax op refuses.
"""
from __future__ import annotations

from explainer.ops import (
    activation,
    add,
    affine,
    avgpool,
    concat,
    conv,
    conv_transpose,
    dense,
    fixed_scale,
    gated_mul,
    layernorm,
    lrn,
    matmul,
    maxpool,
    pad,
    product,
    reshape,
    resize,
    slice,
    softmax,
    transpose,
)
from explainer.ops.aliases import ALIASES
from explainer.ops.base import Dispatch, Op, dispatch_table, registry

#: every op class, one line each, in dispatch order
REGISTERED: tuple[type[Op], ...] = (
    conv.Conv,
    conv_transpose.ConvTranspose,
    dense.Dense,
    affine.Affine,
    fixed_scale.FixedScale,
    activation.Activation,
    maxpool.MaxPool,
    avgpool.AveragePool,
    avgpool.GlobalAveragePool,
    avgpool.Reduce,
    lrn.LRN,
    layernorm.LayerNorm,
    softmax.Softmax,
    reshape.Reshape,
    transpose.Transpose,
    pad.Pad,
    resize.ResizeNearest,
    resize.ResizeLinear,
    slice.Slice,
    concat.Concat,
    add.Add,
    gated_mul.GatedMul,
    product.Product,
    matmul.MatMul,
)

#: canonical op name -> op, in dispatch order
OPS: dict[str, Op] = registry(op() for op in REGISTERED)

#: ONNX op type -> the one converter the front end calls for it
CONVERTERS: dict[str, Dispatch] = dispatch_table(OPS.values(), ALIASES)

__all__ = ["CONVERTERS", "OPS", "REGISTERED", "Dispatch", "Op"]
