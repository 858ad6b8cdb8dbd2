"""Slice (from a unit-step Slice that keeps the batch axis whole, selecting everything being an alias; from each output
of a Split off the batch axis — attention heads, q/k/v — and from a Gather of one constant index off the batch axis —
the class token x[:, 0] — followed by a Reshape dropping that axis): relevance is zero-padded back whatever the rule.
The output is never negative where the input is not; zB bounds stop here."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import Alias, ConvertContext, Converter, NotSupported, attr, cnode
from explainer.frontend.ir import CNode
from explainer.lrp.rules import Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext


def convert_slice(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode] | Alias:
    x = node.input[0]
    shape = ctx.shape(x)
    rank = len(shape)
    if ctx.opset < 10:
        starts, ends = list(attr(node, "starts")), list(attr(node, "ends"))
        axes, steps = list(attr(node, "axes", range(len(starts)))), [1] * len(starts)
    else:
        starts = ctx.value(node.input[1], "starts").reshape(-1).tolist()
        ends = ctx.value(node.input[2], "ends").reshape(-1).tolist()
        a, s = ctx.optional(node, 3), ctx.optional(node, 4)
        axes = list(range(len(starts))) if a is None else a.reshape(-1).tolist()
        steps = [1] * len(starts) if s is None else s.reshape(-1).tolist()
    begin, end = [0] * rank, list(shape)
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        ax = int(ax) % rank
        if sp != 1:
            raise NotSupported(f"Slice with step {sp}")
        st, en = int(st), int(en)
        st = max(0, min(shape[ax], st + shape[ax] if st < 0 else st))
        en = max(0, min(shape[ax], en + shape[ax] if en < 0 else en))
        begin[ax], end[ax] = st, en
    if begin[0] != 0 or end[0] != shape[0]:
        raise NotSupported("slicing along the batch axis")
    if begin == [0] * rank and end == list(shape):
        return Alias(x)
    return [cnode("Slice", node, [x], begin=begin, end=end)]


def convert_split(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    shape = ctx.shape(x)
    axis = int(attr(node, "axis", 0)) % len(shape)
    if axis == 0:
        raise NotSupported("a Split along the batch axis")
    sizes = [ctx.shape(out)[axis] for out in node.output]
    nodes, start = [], 0
    for out, size in zip(node.output, sizes):
        begin, end = [0] * len(shape), list(shape)
        begin[axis], end[axis] = start, start + size
        start += size
        if out:
            nodes.append(cnode("Slice", node, [x], output=out, begin=begin, end=end))
    return nodes


def convert_gather(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    if not ctx.is_data(x) or ctx.is_data(node.input[1]):
        raise NotSupported("only a Gather of constant indices from a non-constant tensor is supported")
    shape = ctx.shape(x)
    axis = int(attr(node, "axis", 0)) % len(shape)
    index = ctx.value(node.input[1], "the indices")
    if axis == 0:
        raise NotSupported("a Gather along the batch axis")
    if index.size != 1:
        raise NotSupported(f"a Gather of {index.size} indices; only one index (a class token) is supported")
    i = int(index.reshape(-1)[0]) % shape[axis]
    begin, end = [0] * len(shape), list(shape)
    begin[axis], end[axis] = i, i + 1
    out = node.output[0]
    out_shape = ctx.shape(out)
    if index.ndim == 1:
        return [cnode("Slice", node, [x], begin=begin, end=end)]
    picked = out + "__picked"
    ctx.shapes[picked] = tuple(end[a] - begin[a] for a in range(len(shape)))
    return [cnode("Slice", node, [x], output=picked, begin=begin, end=end),
            cnode("Reshape", node, [picked], shape=[-1, *out_shape[1:]])]


class Slice(Op):
    name = "Slice"
    kind = None
    also_emits = ("Reshape",)

    def converters(self) -> Mapping[str, Converter]:
        return {"Slice": convert_slice, "Split": convert_split, "Gather": convert_gather}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        b = ctx.b
        begin, end = node.attrs["begin"], node.attrs["end"]
        axes = list(range(1, len(begin)))
        b.op("Slice", [node.inputs[0], b.ints(begin[1:]), b.ints(end[1:]), b.ints(axes)], out_names=[node.output])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        shape = ctx.shape(node.inputs[0])
        begin, end = node.attrs["begin"], node.attrs["end"]
        pads = list(begin) + [s - e for s, e in zip(shape, end)]
        return [ctx.b.op("Pad", [r, ctx.b.ints(pads)], f"{node.name}_rin", mode="constant")]

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return all(inputs_nonnegative)

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None
