"""Conv: ONNX Conv with a constant weight becomes canonical Conv (W [O, I/g, *k], B [O]); relevance by the layer's
LinearRule. The transposed product is a ConvTranspose with the same strides, pads, dilations and group
(``output_padding`` makes the shape match the layer's input exactly), or for stride 1 a Conv with the flipped kernel."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, attr, cnode, window_attrs
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.ops.linear import LinearLayer
from explainer.relevance.context import EmitContext


def convert_conv(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    if not ctx.is_data(x):
        raise NotSupported("the convolution's input is constant")
    w = ctx.value(node.input[1], "the weight").astype(np.float32)
    b = ctx.optional(node, 2)
    b = np.zeros(w.shape[0], np.float32) if b is None else b.astype(np.float32)
    kernel = list(attr(node, "kernel_shape", list(w.shape[2:])))
    attrs = window_attrs(node, ctx, x, kernel)
    return [cnode("Conv", node, [x], group=int(attr(node, "group", 1)), params={"W": w, "B": b}, **attrs)]


def _attrs(node: CNode) -> dict:
    return {"strides": node.attrs["strides"], "pads": node.attrs["pads"], "dilations": node.attrs["dilations"],
            "group": node.attrs["group"], "kernel_shape": node.attrs["kernel_shape"]}


class Conv(LinearLayer):
    name = "Conv"
    kind = LayerKind.CONV

    def converters(self) -> Mapping[str, Converter]:
        return {"Conv": convert_conv}

    def apply(self, ctx: EmitContext, node: CNode, x: str, w: str, b: str | None, out: str | None = None) -> str:
        inputs = [x, w] + ([b] if b is not None else [])
        return ctx.b.op("Conv", inputs, f"{node.name}_conv", out_names=[out] if out else None, **_attrs(node))

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray) -> str:
        attrs = _attrs(node)
        in_spatial = ctx.shape(node.inputs[0])[2:]
        out_spatial = ctx.shape(node.output)[2:]
        n = len(in_spatial)
        pads = attrs["pads"]
        reach = [d * (k - 1) for d, k in zip(attrs["dilations"], attrs["kernel_shape"])]
        if all(s == 1 for s in attrs["strides"]) and all(pads[i] <= reach[i] and pads[i + n] <= reach[i]
                                                         for i in range(n)):
            return _transpose_as_conv(ctx, node, g, w_key, w, attrs, reach)
        output_padding = []
        for i in range(n):
            k, s, d = attrs["kernel_shape"][i], attrs["strides"][i], attrs["dilations"][i]
            natural = (out_spatial[i] - 1) * s - pads[i] - pads[i + n] + d * (k - 1) + 1
            output_padding.append(in_spatial[i] - natural)
        return ctx.b.op("ConvTranspose", [g, ctx.weight(node, w_key, w)], f"{node.name}_convT",
                        output_padding=output_padding if any(output_padding) else None, **attrs)


def _transpose_as_conv(ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray, attrs: dict,
                       reach: list[int]) -> str:
    """For stride 1 the transposed convolution is a convolution with the kernel flipped and its in/out channels
    swapped within each group, padded by d·(k−1) − p; ONNX Runtime runs Conv far faster than ConvTranspose."""
    group, n = attrs["group"], len(reach)
    out_c, in_per_group = w.shape[0], w.shape[1]
    grouped = w.reshape(group, out_c // group, in_per_group, *w.shape[2:])
    swapped = np.swapaxes(grouped, 1, 2).reshape(group * in_per_group, out_c // group, *w.shape[2:])
    flipped = np.ascontiguousarray(np.flip(swapped, axis=tuple(range(2, 2 + n))))
    pads = attrs["pads"]
    new_pads = [reach[i] - pads[i] for i in range(n)] + [reach[i] - pads[i + n] for i in range(n)]
    return ctx.b.op("Conv", [g, ctx.weight(node, w_key + "_flipT", flipped)], f"{node.name}_convT",
                    pads=new_pads, dilations=attrs["dilations"], group=group, kernel_shape=attrs["kernel_shape"])
