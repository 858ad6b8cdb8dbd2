"""Dense: ONNX Gemm and MatMul with a constant weight become canonical Dense on [N, in] or, for token sequences,
[N, ..., in] (W [in, out], B [out]; the bias a following Add contributes is folded in by ``frontend/simplify.py``);
relevance by the layer's LinearRule, whose transposed product is a Gemm with the transposed weight."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, attr, cnode
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.ops.linear import LinearLayer
from explainer.relevance.context import EmitContext


def convert_gemm(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    a = node.input[0]
    if not ctx.is_data(a) or attr(node, "transA", 0):
        raise NotSupported("only Gemm(data, constant) without transA is supported")
    w = np.asarray(ctx.value(node.input[1], "the weight"), np.float32)  # no copy of a float32 weight
    if attr(node, "transB", 0):
        w = _transposed(w)
    if attr(node, "alpha", 1.0) != 1.0:
        w = w * np.float32(attr(node, "alpha", 1.0))
    c = ctx.optional(node, 2)
    b = np.zeros(w.shape[1], np.float32) if c is None else np.broadcast_to(
        c.astype(np.float32) * np.float32(attr(node, "beta", 1.0)), (1, w.shape[1]))[0].copy()
    return [cnode("Dense", node, [a], params={"W": np.ascontiguousarray(w), "B": b})]


def _transposed(w: np.ndarray) -> np.ndarray:
    """``w.T`` as a C-contiguous copy, made in bands of 256 rows: NumPy's own transposing copy of VGG-16's first
    classifier weight (4096 x 25088) strides through memory (3.6 s on a 2-core machine), the bands take 0.8 s."""
    out = np.empty(w.shape[::-1], w.dtype)
    for i in range(0, w.shape[0], 256):
        out[:, i:i + 256] = w[i:i + 256].T
    return out


def convert_matmul(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    a, bname = node.input[0], node.input[1]
    if not ctx.is_data(a) or not ctx.is_const(bname):
        raise NotSupported("a MatMul with a constant weight needs the weight second (MatMul(data, W))")
    w = ctx.value(bname, "the weight").astype(np.float32)
    if len(ctx.shape(a)) < 2 or w.ndim != 2:
        raise NotSupported(f"MatMul of a rank-{len(ctx.shape(a))} input with a rank-{w.ndim} weight; only "
                           "[N, ..., features] x [in, out] is a dense layer")
    return [cnode("Dense", node, [a], params={"W": w, "B": np.zeros(w.shape[1], np.float32)})]


class Dense(LinearLayer):
    name = "Dense"
    kind = LayerKind.DENSE

    def converters(self) -> Mapping[str, Converter]:
        return {"Gemm": convert_gemm, "MatMul": convert_matmul}

    def apply(self, ctx: EmitContext, node: CNode, x: str, w: str, b: str | None, out: str | None = None) -> str:
        names = [out] if out else None
        if b is None:
            return ctx.b.op("MatMul", [x, w], f"{node.name}_mm", out_names=names)
        if len(ctx.shape(node.inputs[0])) == 2:
            return ctx.b.op("Gemm", [x, w, b], f"{node.name}_gemm", out_names=names)
        return ctx.b.op("Add", [ctx.b.op("MatMul", [x, w], f"{node.name}_mm"), b], f"{node.name}_dense",
                        out_names=names)

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray,
                  scale: float = 1.0) -> str:
        """Gemm with the stored weight transposed and ``scale`` as its alpha (tokens [N, T, out] are flattened to
        rows and back, so that no transposed copy of the weight is stored)."""
        x = node.inputs[0]
        alpha = None if scale == 1.0 else float(scale)
        if len(ctx.shape(x)) == 2:
            return ctx.b.op("Gemm", [g, ctx.weight(node, w_key, w)], f"{node.name}_mmT", transB=1, alpha=alpha)
        rows = ctx.b.op("Reshape", [g, ctx.b.ints([-1, w.shape[1]])], f"{node.name}_rows")
        back = ctx.b.op("Gemm", [rows, ctx.weight(node, w_key, w)], f"{node.name}_mmT", transB=1, alpha=alpha)
        return ctx.reshape_to(back, x, f"{node.name}_tokens")
