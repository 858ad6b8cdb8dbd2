"""ConvTranspose (from ONNX ConvTranspose with a constant weight W [C_in, C_out/g, *k] and bias [C_out]): the learned
upsampling of U-Nets and decoders. It is a linear layer like Conv (layer kind ``conv``, every LinearRule applies):
its forward product with modified parameters is a ConvTranspose, and its transposed product is the Conv with the same
weight, strides, pads, dilations and group, which ONNX defines ConvTranspose as the transpose of. An output_padding
below the stride only adds output positions the Conv reads nothing of, so the Conv's output has the input's size.

Refused with the reason: an ``output_shape`` attribute or a SAME auto_pad (give explicit pads), and an
output_padding not below the stride."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, attr, cnode
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.ops.linear import LinearLayer
from explainer.relevance.context import EmitContext


def convert_conv_transpose(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    if not ctx.is_data(x):
        raise NotSupported("the transposed convolution's input is constant")
    w = ctx.value(node.input[1], "the weight").astype(np.float32)
    group = int(attr(node, "group", 1))
    b = ctx.optional(node, 2)
    b = np.zeros(w.shape[1] * group, np.float32) if b is None else b.astype(np.float32)
    n = w.ndim - 2
    if attr(node, "output_shape", None) is not None:
        raise NotSupported("ConvTranspose with an output_shape attribute (give explicit pads)")
    auto_pad = attr(node, "auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "", "VALID"):
        raise NotSupported(f"ConvTranspose with auto_pad {auto_pad} (give explicit pads)")
    strides = list(attr(node, "strides", [1] * n))
    output_padding = list(attr(node, "output_padding", [0] * n))
    if any(p >= s for p, s in zip(output_padding, strides)):
        raise NotSupported(f"ConvTranspose with output_padding {output_padding} not below the strides {strides}")
    pads = [0] * (2 * n) if auto_pad == "VALID" else list(attr(node, "pads", [0] * (2 * n)))
    return [cnode("ConvTranspose", node, [x], group=group, strides=strides, pads=pads,
                  dilations=list(attr(node, "dilations", [1] * n)), kernel_shape=list(w.shape[2:]),
                  output_padding=output_padding, params={"W": w, "B": b})]


def _attrs(node: CNode) -> dict:
    return {key: node.attrs[key] for key in ("strides", "pads", "dilations", "group", "kernel_shape")}


class ConvTranspose(LinearLayer):
    name = "ConvTranspose"
    kind = LayerKind.CONV

    def converters(self) -> Mapping[str, Converter]:
        return {"ConvTranspose": convert_conv_transpose}

    def apply(self, ctx: EmitContext, node: CNode, x: str, w: str, b: str | None, out: str | None = None) -> str:
        padding = node.attrs["output_padding"]
        return ctx.b.op("ConvTranspose", [x, w] + ([b] if b is not None else []), f"{node.name}_convT",
                        out_names=[out] if out else None, output_padding=padding if any(padding) else None,
                        **_attrs(node))

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray,
                  scale: float = 1.0) -> str:
        back = ctx.b.op("Conv", [g, ctx.weight(node, w_key, w)], f"{node.name}_conv", **_attrs(node))
        return back if scale == 1.0 else ctx.b.mul(back, ctx.b.const(float(scale)), f"{node.name}_conv_scaled")
