"""Dense: ONNX Gemm and MatMul with a constant weight become canonical Dense on [N, in] (W [in, out], B [out]; the
bias a following Add contributes is folded in by ``frontend/simplify.py``); relevance by the layer's LinearRule,
whose transposed product is a Gemm with the transposed weight."""
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
    w = ctx.value(node.input[1], "the weight").astype(np.float32)
    if attr(node, "transB", 0):
        w = w.T
    w = w * np.float32(attr(node, "alpha", 1.0))
    c = ctx.optional(node, 2)
    b = np.zeros(w.shape[1], np.float32) if c is None else np.broadcast_to(
        c.astype(np.float32) * np.float32(attr(node, "beta", 1.0)), (1, w.shape[1]))[0].copy()
    return [cnode("Dense", node, [a], params={"W": np.ascontiguousarray(w), "B": b})]


def convert_matmul(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    a, bname = node.input[0], node.input[1]
    if not ctx.is_data(a) or not ctx.is_const(bname):
        raise NotSupported("only MatMul(data, constant weight) is supported")
    w = ctx.value(bname, "the weight").astype(np.float32)
    if len(ctx.shape(a)) != 2 or w.ndim != 2:
        raise NotSupported(f"MatMul on a rank-{len(ctx.shape(a))} input; only [N, features] x [in, out] is supported")
    return [cnode("Dense", node, [a], params={"W": w, "B": np.zeros(w.shape[1], np.float32)})]


class Dense(LinearLayer):
    name = "Dense"
    kind = LayerKind.DENSE

    def converters(self) -> Mapping[str, Converter]:
        return {"Gemm": convert_gemm, "MatMul": convert_matmul}

    def apply(self, ctx: EmitContext, node: CNode, x: str, w: str, b: str | None, out: str | None = None) -> str:
        if b is None:
            return ctx.b.op("MatMul", [x, w], f"{node.name}_mm", out_names=[out] if out else None)
        return ctx.b.op("Gemm", [x, w, b], f"{node.name}_gemm", out_names=[out] if out else None)

    def transpose(self, ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray) -> str:
        return ctx.b.op("Gemm", [g, ctx.weight(node, w_key, w)], f"{node.name}_mmT", transB=1)
