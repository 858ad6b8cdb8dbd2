"""MaxPool (from MaxPool and GlobalMaxPool): winner-take-all. In a relevance graph the forward MaxPool also returns
its arg-max indices (only there: the extra output keeps ONNX Runtime off its fast pooling kernel), and a
ScatterElements with reduction='add' sends relevance back to them, so overlapping windows accumulate like a gradient
(relevance is conserved).

A rule whose ``overlap`` is ``"overwrite"`` reproduces Li et al.'s SR code instead (``max_unpool2d``, which writes
each window's relevance to its arg-max, so where overlapping windows share one only one write survives): every input
keeps the relevance of the last window in row-major order that picked it, and the others' is lost. The authors' kernel
leaves which window survives to its write order; row-major last is the deterministic choice (``docs/sr-map.md``).
The output is never negative where the input is not; zB bounds stop here."""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, attr, cnode, window_attrs
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext
from explainer.relevance.linear_rule import RELEVANCE_ZERO_WITH

_INDICES = "argmax"
#: the ``overlap`` of a rule that makes max-pooling keep one window's relevance per input (Li et al.'s max_unpool2d)
OVERWRITE = "overwrite"


def convert_maxpool(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    if len(node.output) > 1 and node.output[1]:
        raise NotSupported("MaxPool whose indices output is used")
    if attr(node, "storage_order", 0):
        raise NotSupported("MaxPool with storage_order=1")
    attrs = window_attrs(node, ctx, x, list(attr(node, "kernel_shape")))
    return [cnode("MaxPool", node, [x], ceil_mode=int(attr(node, "ceil_mode", 0)), **attrs)]


def convert_global_maxpool(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    kernel = list(ctx.shape(x)[2:])
    n = len(kernel)
    return [cnode("MaxPool", node, [x], kernel_shape=kernel, strides=[1] * n, dilations=[1] * n,
                  pads=[0] * (2 * n), ceil_mode=0)]


class MaxPool(Op):
    name = "MaxPool"
    kind = LayerKind.MAXPOOL

    def converters(self) -> Mapping[str, Converter]:
        return {"MaxPool": convert_maxpool, "GlobalMaxPool": convert_global_maxpool}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        a = node.attrs
        outputs = [node.output]
        if ctx.with_relevance:
            indices = ctx.b.fresh(f"{node.name}_argmax")
            ctx.saved[(node.output, _INDICES)] = indices
            outputs.append(indices)
        ctx.b.op("MaxPool", [node.inputs[0]], out_names=outputs, kernel_shape=a["kernel_shape"],
                 strides=a["strides"], pads=a["pads"], dilations=a["dilations"], ceil_mode=a.get("ceil_mode", 0))

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        b = ctx.b
        x = node.inputs[0]
        flat = b.const([-1], dtype=np.int64)
        size = b.op("ReduceProd", [ctx.shape_of(x)], f"{node.name}_numel", keepdims=1)
        zeros = b.op("ConstantOfShape", [size], f"{node.name}_zeros",
                     value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]))
        indices = ctx.saved[(node.output, _INDICES)]
        zero_with_output = ctx.saved.get((r, RELEVANCE_ZERO_WITH)) == node.output
        if getattr(rule, "overlap", None) == OVERWRITE:
            r = b.mul(r, _last_window(ctx, node, indices), f"{node.name}_survivor")
        idx = b.op("Reshape", [indices, flat], f"{node.name}_idx")
        upd = b.op("Reshape", [r, flat], f"{node.name}_upd")
        scattered = b.op("ScatterElements", [zeros, idx, upd], f"{node.name}_wta", axis=0, reduction="add")
        r_in = b.op("Reshape", [scattered, ctx.shape_of(x)], f"{node.name}_rin")
        if zero_with_output:  # each window's relevance goes to its arg-max, whose value is the window's output
            ctx.saved[(r_in, RELEVANCE_ZERO_WITH)] = x
        return [r_in]

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return all(inputs_nonnegative)

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None


def _last_window(ctx: EmitContext, node: CNode, indices: str) -> str:
    """1.0 for each window whose arg-max no later window (row-major order) shares, else 0.0 (float, output-shaped).

    Only windows fewer than ``ceil(extent / stride)`` steps apart along every spatial axis overlap, so comparing the
    indices with those of the later such neighbours (the index tensor padded with -1, then sliced) finds them all;
    without overlapping windows (VGG's 2x2/2 pools, global pooling) every window survives.
    """
    b, a = ctx.b, node.attrs
    extents = [d * (k - 1) + 1 for k, d in zip(a["kernel_shape"], a["dilations"])]
    spatial = ctx.shape(node.output)[-len(extents):]
    reach = [min(math.ceil(e / s) - 1, n - 1) for e, s, n in zip(extents, a["strides"], spatial)]
    offsets = [o for o in itertools.product(*(range(-m, m + 1) for m in reach)) if o > (0,) * len(o)]
    if not offsets:
        return b.const(1.0)
    pads = [0, 0, *reach, 0, 0, *reach]
    padded = b.op("Pad", [indices, b.ints(pads), b.const(-1, dtype=np.int64)], f"{node.name}_idxpad")
    axes = b.ints(range(2, 2 + len(reach)))
    shared = []
    for offset in offsets:
        starts = [m + o for m, o in zip(reach, offset)]
        ends = [o - m if o < m else np.iinfo(np.int64).max for m, o in zip(reach, offset)]
        later = b.op("Slice", [padded, b.ints(starts), b.ints(ends), axes], f"{node.name}_later")
        shared.append(b.op("Equal", [indices, later], f"{node.name}_shared"))
    while len(shared) > 1:
        shared = [b.op("Or", shared[i:i + 2], f"{node.name}_anyshared") if i + 1 < len(shared) else shared[i]
                  for i in range(0, len(shared), 2)]
    return b.cast_float(b.op("Not", shared, f"{node.name}_survives"), f"{node.name}_keep")
