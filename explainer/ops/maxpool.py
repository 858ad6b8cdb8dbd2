"""MaxPool (from MaxPool and GlobalMaxPool): winner-take-all. In a relevance graph the forward MaxPool also returns
its arg-max indices (only there: the extra output keeps ONNX Runtime off its fast pooling kernel), and a
ScatterElements with reduction='add' sends relevance back to them, so overlapping windows accumulate like a gradient.
The output is never negative where the input is not; zB bounds stop here."""
from __future__ import annotations

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

_INDICES = "argmax"


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
        idx = b.op("Reshape", [ctx.saved[(node.output, _INDICES)], flat], f"{node.name}_idx")
        upd = b.op("Reshape", [r, flat], f"{node.name}_upd")
        scattered = b.op("ScatterElements", [zeros, idx, upd], f"{node.name}_wta", axis=0, reduction="add")
        return [b.op("Reshape", [scattered, ctx.shape_of(x)], f"{node.name}_rin")]

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return all(inputs_nonnegative)

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None
