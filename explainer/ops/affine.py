"""Affine: element-wise y = x ⊙ scale + shift with constant, broadcastable scale and shift (an unfolded BatchNorm, input
normalisation, Add/Sub/Mul/Div with a constant operand, a Where with a constant mask and fill). Pass-through for LRP
(as Zennit treats BatchNorm), chain rule for the gradient, or a stabilised Norm/ε rule if a composite asks for one
(AttnLRP does), where a shift that varies along more than one axis (a position embedding) keeps its share, which the
relevance graph reports. zB bounds pass through it (mapped by the affine map, swapped where the scale is negative).
An attention mask (``attrs['mask']``, from ``attention.py`` and Where) is no position embedding and is never
reported."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, attr, cnode
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import LinearRule, Norm, Pass, Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext, unsupported_rule


def convert_binary(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    """Add/Sub/Mul/Div of data and a constant operand."""
    a, b = node.input[0], node.input[1]
    op = node.op_type
    if ctx.is_data(a) and ctx.is_data(b):
        raise NotSupported(f"{op} of two non-constant tensors")
    if not (ctx.is_data(a) or ctx.is_data(b)):
        raise NotSupported("no data input")
    x, c, const_first = (a, ctx.value(b, "operand"), False) if ctx.is_data(a) else (b, ctx.value(a, "operand"), True)
    c = np.asarray(c, np.float32)  # no copy of a float32 constant (a position embedding, say)
    x_shape = ctx.shape(x)
    try:
        out_shape = np.broadcast_shapes(x_shape, c.shape)
    except ValueError:
        out_shape = None
    if out_shape != tuple(x_shape):
        raise NotSupported(f"the constant operand of shape {list(c.shape)} does not broadcast to the data input's "
                           f"shape {list(x_shape)} (an element-wise layer keeps its input's shape)")
    if op == "Div" and np.any(c == 0):
        raise NotSupported(f"division by a constant with {int(np.count_nonzero(c == 0))} zero entries")
    one, zero = np.ones_like(c), np.zeros_like(c)
    if op == "Add":
        scale, shift = one, c
    elif op == "Mul":
        scale, shift = c, zero
    elif op == "Sub":
        scale, shift = (-one, c) if const_first else (one, -c)
    else:
        if const_first:
            raise NotSupported("division of a constant by data")
        scale, shift = 1.0 / c, zero
    return [cnode("Affine", node, [x], params={"scale": np.asarray(scale, np.float32),
                                               "shift": np.asarray(shift, np.float32)})]


def convert_where(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    """Where(mask, x, fill) or Where(mask, fill, x) with a constant mask and fill (an attention mask, folded): the
    affine map x ⊙ m + fill ⊙ (1 − m), marked as a mask (never reported as a position embedding)."""
    cond, a, b = node.input
    if not ctx.is_const(cond):
        raise NotSupported("a Where whose condition is computed from the input")
    if ctx.is_data(a) == ctx.is_data(b):
        raise NotSupported("a Where needs one computed branch and one constant branch")
    keep = ctx.value(cond, "the condition").astype(bool)
    x, fill = (a, ctx.value(b, "the fill")) if ctx.is_data(a) else (b, ctx.value(a, "the fill"))
    if x == b:
        keep = ~keep
    shape = ctx.shape(x)
    try:
        out_shape = np.broadcast_shapes(shape, keep.shape, fill.shape)
    except ValueError:
        out_shape = None
    if out_shape != tuple(shape):
        raise NotSupported(f"the mask of shape {list(keep.shape)} does not broadcast to the data's {list(shape)}")
    scale = np.broadcast_to(keep, np.broadcast_shapes(keep.shape, fill.shape)).astype(np.float32)
    shift = np.where(keep, np.float32(0), fill.astype(np.float32))
    return [cnode("Affine", node, [x], mask=True, params={"scale": scale, "shift": shift})]


def convert_batchnorm(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    gamma, beta, mean, var = (ctx.value(node.input[i], n).astype(np.float64)
                              for i, n in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
    if attr(node, "training_mode", 0):
        raise NotSupported("BatchNormalization in training mode")
    denominator = var + float(attr(node, "epsilon", 1e-5))
    if not np.all(denominator > 0):
        raise NotSupported(f"variance + epsilon is not positive in {int((~(denominator > 0)).sum())} of "
                           f"{denominator.size} channels (the model's statistics are broken)")
    scale = gamma / np.sqrt(denominator)
    shift = beta - mean * scale
    bshape = (-1,) + (1,) * (len(ctx.shape(x)) - 2)
    return [cnode("Affine", node, [x], params={"scale": scale.reshape(bshape).astype(np.float32),
                                                 "shift": shift.reshape(bshape).astype(np.float32)})]


class Affine(Op):
    name = "Affine"
    kind = LayerKind.AFFINE

    def converters(self) -> Mapping[str, Converter]:
        return {"BatchNormalization": convert_batchnorm, "Add": convert_binary, "Sub": convert_binary,
                "Mul": convert_binary, "Div": convert_binary, "Where": convert_where}

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        b = ctx.b
        scaled = b.mul(node.inputs[0], ctx.weight(node, "scale", node.params["scale"]), f"{node.name}_scaled")
        b.op("Add", [scaled, ctx.weight(node, "shift", node.params["shift"])], out_names=[node.output])

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        b = ctx.b
        x = node.inputs[0]
        out_shape = ctx.shape(node.output)
        if isinstance(rule, Pass):
            return [ctx.reduce_to(r, out_shape, ctx.shape(x), f"{node.name}_rin")]
        scale = ctx.weight(node, "scale", node.params["scale"])
        if rule.is_gradient:
            return [ctx.reduce_to(b.mul(r, scale), out_shape, ctx.shape(x), f"{node.name}_rin")]
        if isinstance(rule, (Norm, LinearRule)):
            g = b.div(r, b.stabilise(node.output, rule.stabiliser, f"{node.name}_den"))
            shift = node.params["shift"]
            if sum(d > 1 for d in shift.shape) > 1 and not node.attrs.get("mask"):  # a position embedding
                ctx.absorb(f"constant added by '{node.name}'", b.mul(ctx.weight(node, "shift", shift), g))
            return [ctx.reduce_to(b.mul(b.mul(x, scale), g), out_shape, ctx.shape(x), f"{node.name}_rin")]
        raise unsupported_rule(node, rule)

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return False

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        s, t = node.params["scale"], node.params["shift"]
        a, b = low * s + t, high * s + t
        return np.minimum(a, b), np.maximum(a, b)
