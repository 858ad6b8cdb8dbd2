"""Pad (from a constant-mode Pad that pads no batch entries and crops nothing; padding nothing is an alias): relevance
is cropped back whatever the rule. The output is never negative where the input is not and the pad value is >= 0;
zB bounds pass through, padded with the pad value."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import Alias, ConvertContext, Converter, NotSupported, attr, cnode
from explainer.frontend.ir import CNode
from explainer.lrp.rules import Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext


def convert_pad(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode] | Alias:
    x = node.input[0]
    mode = attr(node, "mode", "constant")
    if mode != "constant":
        raise NotSupported(f"Pad mode '{mode}'; only constant padding is supported")
    rank = len(ctx.shape(x))
    if ctx.opset < 11:
        pads = list(attr(node, "pads", attr(node, "paddings")))
        value = float(attr(node, "value", 0.0))
    else:
        pads = ctx.value(node.input[1], "pads").astype(np.int64).tolist()
        v = ctx.optional(node, 2)
        value = 0.0 if v is None else float(np.asarray(v).reshape(-1)[0]) if np.asarray(v).size else 0.0
        axes = ctx.optional(node, 3)
        if axes is not None:
            full = [0] * (2 * rank)
            axes = [int(a) % rank for a in axes.reshape(-1)]
            for i, a in enumerate(axes):
                full[a], full[a + rank] = pads[i], pads[i + len(axes)]
            pads = full
    if any(p < 0 for p in pads):
        raise NotSupported(f"negative pads {pads} (cropping)")
    if pads[0] or pads[rank]:
        raise NotSupported("padding along the batch axis")
    if not any(pads):
        return Alias(x)
    return [cnode("Pad", node, [x], pads=pads, value=value)]


class Pad(Op):
    name = "Pad"
    kind = None

    def converters(self) -> Mapping[str, Converter]:
        return {"Pad": convert_pad}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        ctx.b.op("Pad", [node.inputs[0], ctx.b.ints(node.attrs["pads"]), ctx.b.const(node.attrs["value"])],
                 out_names=[node.output], mode="constant")

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        shape = ctx.shape(node.inputs[0])
        pads = node.attrs["pads"]
        axes = list(range(1, len(shape)))
        starts = [pads[a] for a in axes]
        ends = [pads[a] + shape[a] for a in axes]
        b = ctx.b
        return [b.op("Slice", [r, b.ints(starts), b.ints(ends), b.ints(axes)], f"{node.name}_rin")]

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return all(inputs_nonnegative) and node.attrs["value"] >= 0

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        rank = low.ndim
        width = [(node.attrs["pads"][i], node.attrs["pads"][i + rank]) for i in range(rank)]
        value = node.attrs["value"]
        return np.pad(low, width, constant_values=value), np.pad(high, width, constant_values=value)
