"""Average pooling: AveragePool (from AveragePool), GlobalAveragePool (from GlobalAveragePool and a ReduceMean
over the spatial axes) and Reduce (ReduceMean/ReduceSum over any other non-batch axes with constant axes: mean-pooled
tokens, summed features).

Average pooling is linear: its transposed product is a depthwise ConvTranspose with a ones kernel on the signal
divided by each window's divisor; it takes the Norm rule (R_in = a ⊙ Tᵀ(R / stab(z))) or the plain gradient. The
output is never negative where the input is not; zB bounds stop here."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, attr, cnode, window_attrs
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import LinearRule, Norm, Pass, Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext, unsupported_rule


def convert_avgpool(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    attrs = window_attrs(node, ctx, x, list(attr(node, "kernel_shape")))
    if attr(node, "ceil_mode", 0):
        _refuse_disputed_ceil(attrs, ctx.shape(x), ctx.shape(node.output[0]))
    return [cnode("AveragePool", node, [x], ceil_mode=int(attr(node, "ceil_mode", 0)),
                  count_include_pad=int(attr(node, "count_include_pad", 0)), **attrs)]


def _refuse_disputed_ceil(attrs: dict, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
    """With ceil_mode, a last window that would start in the end padding is dropped by ONNX Runtime but counted by
    ONNX's shape inference, which ONNX Runtime also runs on every graph it loads: a relevance graph holding constants
    of the pooled size would then not load. Refuse that case, with the reason."""
    k, s, d, pads = attrs["kernel_shape"], attrs["strides"], attrs["dilations"], attrs["pads"]
    n = len(k)
    for i, (size, pooled) in enumerate(zip(in_shape[2:], out_shape[2:])):
        inferred = -(-(size + pads[i] + pads[i + n] - d[i] * (k[i] - 1) - 1) // s[i]) + 1
        if inferred != pooled:
            raise NotSupported(f"AveragePool with ceil_mode=1 whose last window starts in the padding (axis {i + 2}: "
                               f"ONNX Runtime pools to {pooled}, ONNX's shape inference to {inferred})")


def convert_global_avgpool(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    return [cnode("GlobalAveragePool", node, [node.input[0]])]


def convert_reduce_mean(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    rank = len(ctx.shape(x))
    axes = attr(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = ctx.value(node.input[1], "axes").tolist()
    axes = sorted(a % rank for a in (axes or []))
    if axes != list(range(2, rank)):
        raise NotSupported(f"ReduceMean over axes {axes}; only the spatial axes {list(range(2, rank))} are supported")
    if attr(node, "keepdims", 1):
        return [cnode("GlobalAveragePool", node, [x])]
    pooled = node.output[0] + "__pooled"
    ctx.shapes[pooled] = ctx.shape(x)[:2] + (1,) * (rank - 2)
    return [cnode("GlobalAveragePool", node, [x], output=pooled),
            cnode("Reshape", node, [pooled], shape=[-1, ctx.shape(x)[1]])]


def _reduce_axes(ctx: ConvertContext, node: onnx.NodeProto, rank: int) -> list[int]:
    """The axes a Reduce* node reduces (attribute before opset 18, input after; none given: all)."""
    axes = attr(node, "axes", None)
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = ctx.value(node.input[1], "axes").reshape(-1).tolist()
    if axes is None or len(axes) == 0:
        if attr(node, "noop_with_empty_axes", 0):
            return []
        return list(range(rank))
    return sorted(int(a) % rank for a in axes)


def convert_reduce(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    if not ctx.is_data(x):
        raise NotSupported("the reduced input is constant")
    rank = len(ctx.shape(x))
    axes = _reduce_axes(ctx, node, rank)
    if 0 in axes:
        raise NotSupported(f"{node.op_type} over the batch axis")
    if not axes:
        raise NotSupported(f"{node.op_type} over no axes")
    return [cnode("Reduce", node, [x], axes=axes, keepdims=int(attr(node, "keepdims", 1)),
                  mean=node.op_type == "ReduceMean")]


def average_pool_divisor(attrs: dict, in_spatial: Sequence[int], out_spatial: Sequence[int]) -> np.ndarray:
    """What AveragePool divides each window's sum by, per output position (shape ``out_spatial``): the number of
    the window's taps (dilated) inside the input, or with ``count_include_pad`` inside the padded input; taps that
    a ``ceil_mode`` window puts past the end padding never count. At least 1 (an all-padding window sums 0)."""
    include_pad = bool(attrs.get("count_include_pad", 0))
    n = len(in_spatial)
    divisor = np.ones(tuple(out_spatial), np.int64)
    for i in range(n):
        k, s, d = attrs["kernel_shape"][i], attrs["strides"][i], attrs["dilations"][i]
        begin, end = attrs["pads"][i], attrs["pads"][i + n]
        taps = (np.arange(out_spatial[i]) * s - begin)[:, None] + d * np.arange(k)[None, :]
        low, high = (-begin, in_spatial[i] + end) if include_pad else (0, in_spatial[i])
        count = ((taps >= low) & (taps < high)).sum(axis=1)
        divisor = divisor * count.reshape(tuple(-1 if j == i else 1 for j in range(n)))
    return np.maximum(divisor, 1)


def _stabiliser(node: CNode, rule: Rule) -> float | None:
    """Stabiliser for the Norm rule, or None for the plain gradient."""
    if rule.is_gradient:
        return None
    if isinstance(rule, (Norm, LinearRule)):
        return rule.stabiliser
    raise unsupported_rule(node, rule)


class _Pooling(Op):
    """What both average poolings share: the layer kind, and the sign and bound rules."""

    kind = LayerKind.AVGPOOL

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return all(inputs_nonnegative)

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None


class AveragePool(_Pooling):
    name = "AveragePool"

    def converters(self) -> Mapping[str, Converter]:
        return {"AveragePool": convert_avgpool}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        a = node.attrs
        extra = {"dilations": a["dilations"]} if any(v != 1 for v in a["dilations"]) else {}
        ctx.b.op("AveragePool", [node.inputs[0]], out_names=[node.output], kernel_shape=a["kernel_shape"],
                 strides=a["strides"], pads=a["pads"], ceil_mode=a.get("ceil_mode", 0),
                 count_include_pad=a.get("count_include_pad", 0), **extra)

    def transpose(self, ctx: EmitContext, node: CNode, g: str) -> str:
        """Tᵀ g: each input position receives the sum over its windows of g / divisor."""
        b = ctx.b
        a = node.attrs
        x = node.inputs[0]
        in_shape, out_shape = ctx.shape(x), ctx.shape(node.output)
        channels, n = in_shape[1], len(in_shape) - 2
        divisor = average_pool_divisor(a, in_shape[2:], out_shape[2:])
        g = b.mul(g, ctx.weight(node, "inv_divisor", 1.0 / divisor[None, None].astype(np.float64)), "pool_scaled")
        kernel = ctx.weight(node, "ones_kernel", np.ones((channels, 1, *a["kernel_shape"]), np.float32))
        full = b.op("ConvTranspose", [g, kernel], f"{node.name}_poolT", strides=a["strides"],
                    dilations=a["dilations"], group=channels, kernel_shape=a["kernel_shape"])
        full_spatial = [(o - 1) * s + d * (k - 1) + 1 for o, s, d, k in
                        zip(out_shape[2:], a["strides"], a["dilations"], a["kernel_shape"])]
        begin = a["pads"][:n]
        starts, ends, pad_end = [], [], []
        for i in range(n):
            end = begin[i] + in_shape[2 + i]
            starts.append(begin[i])
            ends.append(min(end, full_spatial[i]))
            pad_end.append(max(0, end - full_spatial[i]))
        axes = list(range(2, 2 + n))
        out = b.op("Slice", [full, b.const(starts, dtype=np.int64), b.const(ends, dtype=np.int64),
                             b.const(axes, dtype=np.int64)], f"{node.name}_crop")
        if any(pad_end):
            out = b.op("Pad", [out, b.const([0, 0] + [0] * n + [0, 0] + pad_end, dtype=np.int64)], "pool_pad")
        return out

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        if isinstance(rule, Pass) and ctx.shape(node.inputs[0]) == ctx.shape(node.output):
            return [r]
        eps = _stabiliser(node, rule)
        if eps is None:
            return [self.transpose(ctx, node, r)]
        b = ctx.b
        g = b.div(r, b.stabilise(node.output, eps, f"{node.name}_den"), f"{node.name}_s")
        return [b.mul(node.inputs[0], self.transpose(ctx, node, g), f"{node.name}_rin")]


class GlobalAveragePool(_Pooling):
    name = "GlobalAveragePool"
    also_emits = ("Reshape",)

    def converters(self) -> Mapping[str, Converter]:
        return {"GlobalAveragePool": convert_global_avgpool, "ReduceMean": convert_reduce_mean}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        ctx.b.op("GlobalAveragePool", [node.inputs[0]], out_names=[node.output])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        b = ctx.b
        x = node.inputs[0]
        area = float(np.prod(ctx.shape(x)[2:]))
        eps = _stabiliser(node, rule)
        g = r if eps is None else b.div(r, b.stabilise(node.output, eps, f"{node.name}_den"), f"{node.name}_s")
        spread = b.op("Expand", [b.mul(g, b.const(1.0 / area)), ctx.shape_of(x)], f"{node.name}_spread")
        return [spread if eps is None else b.mul(x, spread, f"{node.name}_rin")]


class Reduce(_Pooling):
    name = "Reduce"

    def converters(self) -> Mapping[str, Converter]:
        return {"ReduceMean": convert_reduce, "ReduceSum": convert_reduce}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        kept = ctx.reduce("ReduceMean" if node.attrs["mean"] else "ReduceSum", node.inputs[0], node.attrs["axes"],
                          f"{node.name}_kept")
        if node.attrs["keepdims"]:
            ctx.b.op("Identity", [kept], out_names=[node.output])
        else:
            ctx.b.op("Reshape", [kept, ctx.b.ints([-1, *ctx.shape(node.output)[1:]])], out_names=[node.output])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        b = ctx.b
        x = node.inputs[0]
        shape = ctx.shape(x)
        eps = _stabiliser(node, rule)
        g = r if eps is None else b.div(r, b.stabilise(node.output, eps, f"{node.name}_den"), f"{node.name}_s")
        if node.attrs["mean"]:
            g = b.mul(g, b.const(1.0 / float(np.prod([shape[a] for a in node.attrs["axes"]]))))
        kept = [-1] + [1 if a in node.attrs["axes"] else d for a, d in enumerate(shape) if a]
        spread = b.op("Expand", [b.op("Reshape", [g, b.ints(kept)]), ctx.shape_of(x)], f"{node.name}_spread")
        return [spread if eps is None else b.mul(x, spread, f"{node.name}_rin")]
