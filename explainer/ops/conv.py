"""Conv: ONNX Conv with a constant weight becomes canonical Conv (W [O, I/g, *k], B [O]); relevance by the layer's
LinearRule. The transposed product is a Conv with the flipped kernel for stride 1, and for a stride s > 1 whose
kernel is large against it (11×11 stride 4, patch embeddings) a Conv over the s² phases of the input; else a
ConvTranspose with the same strides, pads, dilations and group (``output_padding`` makes the shape match the layer's
input exactly)."""
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

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray,
                  scale: float = 1.0) -> str:
        attrs = _attrs(node)
        in_spatial = ctx.shape(node.inputs[0])[2:]
        out_spatial = ctx.shape(node.output)[2:]
        n = len(in_spatial)
        pads = attrs["pads"]
        reach = [d * (k - 1) for d, k in zip(attrs["dilations"], attrs["kernel_shape"])]
        if all(s == 1 for s in attrs["strides"]) and all(pads[i] <= reach[i] and pads[i + n] <= reach[i]
                                                         for i in range(n)):
            return _transpose_as_conv(ctx, node, g, w_key, w, scale, attrs, reach)
        phases = _transpose_as_phases(ctx, node, g, w_key, w, scale, attrs)
        if phases is not None:
            return phases
        output_padding = []
        for i in range(n):
            k, s, d = attrs["kernel_shape"][i], attrs["strides"][i], attrs["dilations"][i]
            natural = (out_spatial[i] - 1) * s - pads[i] - pads[i + n] + d * (k - 1) + 1
            output_padding.append(in_spatial[i] - natural)
        back = ctx.b.op("ConvTranspose", [g, ctx.weight(node, w_key, w)], f"{node.name}_convT",
                        output_padding=output_padding if any(output_padding) else None, **attrs)
        return back if scale == 1.0 else ctx.b.mul(back, ctx.b.const(float(scale)), f"{node.name}_convT_scaled")


def _transpose_as_conv(ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray, scale: float,
                       attrs: dict, reach: list[int]) -> str:
    """For stride 1 the transposed convolution is a convolution with the kernel flipped and its in/out channels
    swapped within each group, padded by d·(k−1) − p; ONNX Runtime runs Conv far faster than ConvTranspose. The
    flipped copy carries ``scale``."""
    group, n = attrs["group"], len(reach)
    out_c, in_per_group = w.shape[0], w.shape[1]
    grouped = w.reshape(group, out_c // group, in_per_group, *w.shape[2:])
    swapped = np.swapaxes(grouped, 1, 2).reshape(group * in_per_group, out_c // group, *w.shape[2:])
    flipped = np.ascontiguousarray(np.flip(swapped, axis=tuple(range(2, 2 + n))))
    if scale != 1.0:
        flipped = flipped * np.float32(scale)
    pads = attrs["pads"]
    new_pads = [reach[i] - pads[i] for i in range(n)] + [reach[i] - pads[i + n] for i in range(n)]
    key = f"{w_key}_flipT" if scale == 1.0 else f"{w_key}_flipT_x{scale:g}"
    return ctx.b.op("Conv", [g, ctx.weight(node, key, flipped)], f"{node.name}_convT",
                    pads=new_pads, dilations=attrs["dilations"], group=group, kernel_shape=attrs["kernel_shape"])


#: the phase split computes s²·⌈k/s⌉² kernel taps per input position where ConvTranspose computes k²; on ONNX
#: Runtime's CPU provider it ran faster up to this ratio (batch 4: 11×11 stride 4, ratio 1.19, 1.4–2.5× faster;
#: 7×7 stride 2, 1.31, 1.5×; 16×16 stride 16 and 4×4 stride 2, 1.0, 1.0–1.2×) and slower above (3×3 stride 2, 1.78,
#: 1.2–2× slower)
PHASE_OVERHEAD = 1.35


def _transpose_as_phases(ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray, scale: float,
                         attrs: dict) -> str | None:
    """For a 2-D convolution with stride s > 1 in both axes (no dilation), input positions i with (i + p) ≡ r mod s
    receive only the kernel taps r, r + s, …: each phase is a stride-1 convolution of ``g`` with those taps flipped.
    One Conv computes every phase (phases along output channels, taps zero-padded to ⌈k/s⌉), DepthToSpace interleaves
    them and a Slice crops to the input; like the flipped kernel of stride 1, the phased kernel is a copy (its taps
    zero-padded). None where that costs more than ``PHASE_OVERHEAD`` times ConvTranspose's taps."""
    strides, kernel = attrs["strides"], attrs["kernel_shape"]
    s = strides[0]
    if len(kernel) != 2 or s == 1 or any(t != s for t in strides) or any(d != 1 for d in attrs["dilations"]):
        return None
    taps = [-(-k // s) for k in kernel]
    if s * s * taps[0] * taps[1] > PHASE_OVERHEAD * kernel[0] * kernel[1]:
        return None
    group = attrs["group"]
    out_c, in_per_group = w.shape[0], w.shape[1]
    swapped = np.swapaxes(w.reshape(group, out_c // group, in_per_group, *kernel), 1, 2).reshape(
        group * in_per_group, out_c // group, *kernel)
    phased = np.zeros((group * in_per_group, s, s, out_c // group, *taps), np.float32)
    for a in range(s):
        for b in range(s):
            part = swapped[:, :, a::s, b::s][:, :, ::-1, ::-1]
            phased[:, a, b, :, taps[0] - part.shape[2]:, taps[1] - part.shape[3]:] = part * np.float32(scale)
    key = f"{w_key}_phases" if scale == 1.0 else f"{w_key}_phases_x{scale:g}"
    weight = ctx.weight(node, key, phased.reshape(-1, out_c // group, *taps))
    in_spatial, out_spatial, pads = ctx.shape(node.inputs[0])[2:], ctx.shape(node.output)[2:], attrs["pads"]
    after = [max(0, -(-(pads[i] + in_spatial[i]) // s) - out_spatial[i]) for i in range(2)]
    b = ctx.b
    phases = b.op("Conv", [g, weight], f"{node.name}_phases", pads=[taps[0] - 1, taps[1] - 1, *after],
                  kernel_shape=taps, group=group)
    joined = b.op("DepthToSpace", [phases], f"{node.name}_joined", blocksize=s, mode="CRD")
    return b.op("Slice", [joined, b.ints(pads[:2]), b.ints([pads[i] + in_spatial[i] for i in range(2)]),
                          b.ints([2, 3])], f"{node.name}_convT")
