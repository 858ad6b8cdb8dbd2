"""MaxPool (winner-take-all), AveragePool and GlobalAveragePool: forward and backward.

Max-pooling routes relevance to the arg-max of each window (the forward MaxPool also returns indices, and a
ScatterElements with reduction='add' sends relevance back, so overlapping windows accumulate like a gradient).
Average pooling is linear: its transposed product is a depthwise ConvTranspose with a ones kernel on the signal
divided by each window's divisor; it takes the Norm rule (R_in = a ⊙ Tᵀ(R / stab(z))) or the plain gradient.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from explainer.frontend.ir import CNode
from explainer.lrp.rules import LinearRule, Norm, Pass, Rule
from explainer.relevance.emitters.base import EmitContext, unsupported_rule


def _signal_mode(node: CNode, rule: Rule) -> float | None:
    """Stabiliser for the Norm rule, or None for the plain gradient."""
    if isinstance(rule, Norm):
        return rule.stabiliser
    if isinstance(rule, LinearRule):
        return rule.stabiliser if rule.normalise else None
    raise unsupported_rule(node, rule)


class MaxPoolEmitter:
    kind = "maxpool"

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        a = node.attrs
        idx = ctx.b.fresh(f"{node.name}_argmax")
        ctx.b.op("MaxPool", [node.inputs[0]], out_names=[node.output, idx], kernel_shape=a["kernel_shape"],
                 strides=a["strides"], pads=a["pads"], dilations=a["dilations"], ceil_mode=a.get("ceil_mode", 0))
        node.attrs["_indices"] = idx

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        b = ctx.b
        x = node.inputs[0]
        flat = b.const([-1], dtype=np.int64)
        size = b.op("ReduceProd", [ctx.shape_of(x)], f"{node.name}_numel", keepdims=1)
        zeros = b.op("ConstantOfShape", [size], f"{node.name}_zeros",
                     value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]))
        idx = b.op("Reshape", [node.attrs["_indices"], flat], f"{node.name}_idx")
        upd = b.op("Reshape", [r, flat], f"{node.name}_upd")
        scattered = b.op("ScatterElements", [zeros, idx, upd], f"{node.name}_wta", axis=0, reduction="add")
        return [b.op("Reshape", [scattered, ctx.shape_of(x)], f"{node.name}_rin")]


def _divisor_map(node: CNode, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> np.ndarray:
    """The divisor ONNX Runtime uses for each output window, measured once on a ones input."""
    a = node.attrs
    spatial = tuple(in_shape[2:])
    n = len(spatial)
    pads = a["pads"]
    counts = np.ones((1, 1) + tuple(out_shape[2:]), np.float64)
    for i in range(n):
        k, s, d = a["kernel_shape"][i], a["strides"][i], a["dilations"][i]
        starts = np.arange(out_shape[2 + i]) * s - pads[i]
        taps = starts[:, None] + d * np.arange(k)[None, :]
        valid = ((taps >= 0) & (taps < spatial[i])).sum(axis=1)
        counts = counts * valid.reshape((1, 1) + tuple(-1 if j == i else 1 for j in range(n)))
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=a["kernel_shape"], strides=a["strides"],
                          pads=pads, ceil_mode=a.get("ceil_mode", 0), count_include_pad=a.get("count_include_pad", 0),
                          **({"dilations": a["dilations"]} if any(v != 1 for v in a["dilations"]) else {}))],
        "divisor", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, *spatial])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    mean_of_ones = sess.run(None, {"x": np.ones((1, 1, *spatial), np.float32)})[0].astype(np.float64)
    return (counts / np.maximum(mean_of_ones, 1e-30)).astype(np.float32)


class AveragePoolEmitter:
    kind = "avgpool"

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
        g = b.mul(g, ctx.weight(node, "inv_divisor", 1.0 / _divisor_map(node, in_shape, out_shape)), "pool_scaled")
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
        eps = _signal_mode(node, rule)
        if eps is None:
            return [self.transpose(ctx, node, r)]
        b = ctx.b
        g = b.div(r, b.stabilise(node.output, eps, f"{node.name}_den"), f"{node.name}_s")
        return [b.mul(node.inputs[0], self.transpose(ctx, node, g), f"{node.name}_rin")]


class GlobalAveragePoolEmitter:
    kind = "avgpool"

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        ctx.b.op("GlobalAveragePool", [node.inputs[0]], out_names=[node.output])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        b = ctx.b
        x = node.inputs[0]
        area = float(np.prod(ctx.shape(x)[2:]))
        eps = _signal_mode(node, rule)
        g = r if eps is None else b.div(r, b.stabilise(node.output, eps, f"{node.name}_den"), f"{node.name}_s")
        spread = b.op("Expand", [b.mul(g, b.const(1.0 / area)), ctx.shape_of(x)], f"{node.name}_spread")
        return [spread if eps is None else b.mul(x, spread, f"{node.name}_rin")]
