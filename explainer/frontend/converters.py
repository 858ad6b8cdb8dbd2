"""Per-op conversion of ONNX nodes into canonical nodes (one function per ONNX op type).

Each converter reads attributes the way the node's opset defines them (attributes became inputs over the years) and
returns canonical nodes, or an alias when the node is a no-op for explanation (Identity, Dropout, a final Softmax).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import onnx

from explainer.frontend.convert import (
    Alias,
    ConvertContext,
    NotSupported,
    attr,
    cnode,
    data_inputs,
    single_data,
    window_attrs,
)
from explainer.frontend.ir import CNode


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


def convert_binary(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    """Add/Sub/Mul/Div with one constant operand become Affine; Add of data tensors becomes Add."""
    a, b = node.input[0], node.input[1]
    op = node.op_type
    if ctx.is_data(a) and ctx.is_data(b):
        if op == "Add":
            return [cnode("Add", node, [a, b])]
        if op == "Mul":
            return convert_data_mul(ctx, node)
        raise NotSupported(f"{op} of two non-constant tensors")
    if not (ctx.is_data(a) or ctx.is_data(b)):
        raise NotSupported("no data input")
    x, c, const_first = (a, ctx.value(b, "operand"), False) if ctx.is_data(a) else (b, ctx.value(a, "operand"), True)
    c = c.astype(np.float32)
    one, zero = np.ones_like(c), np.zeros_like(c)
    if op == "Add":
        scale, shift = one, c
    elif op == "Mul":
        scale, shift = c, zero
    elif op == "Sub":
        scale, shift = (-one, c) if const_first else (one, -c)
    elif op == "Div":
        if const_first:
            raise NotSupported("division of a constant by data")
        scale, shift = 1.0 / c, zero
    else:
        raise NotSupported(op)
    return [cnode("Affine", node, [x], params={"scale": scale.astype(np.float32), "shift": shift.astype(np.float32)})]


def convert_data_mul(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    """x * sigmoid(x) is swish; x * hardsigmoid(x) is hard-swish; x * gate(y) is a gated product (SE blocks)."""
    a, b = node.input[0], node.input[1]
    for x, g in ((a, b), (b, a)):
        prod = ctx.producers.get(g)
        if prod is not None and prod.op_type in ("Sigmoid", "HardSigmoid") and prod.input[0] == x:
            if prod.op_type == "Sigmoid":
                return [cnode("Activation", node, [x], kind="swish")]
            alpha, beta = float(attr(prod, "alpha", 0.2)), float(attr(prod, "beta", 0.5))
            if abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-6:
                return [cnode("Activation", node, [x], kind="hardswish")]
    for x, g in ((a, b), (b, a)):
        prod = ctx.producers.get(g)
        if prod is not None and prod.op_type in ("Sigmoid", "HardSigmoid"):
            return [cnode("Mul", node, [x, g], gate=1)]
    raise NotSupported("product of two non-constant tensors that is neither swish nor a sigmoid gate")


def convert_sum(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode] | Alias:
    data = data_inputs(ctx, node)
    if len(data) != len([i for i in node.input if i]):
        raise NotSupported("Sum with constant operands")
    if len(data) == 1:
        return Alias(data[0])
    return [cnode("Add", node, data)]


_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": "softplus", "Elu": "elu",
                "LeakyRelu": "leakyrelu", "HardSigmoid": "hardsigmoid", "HardSwish": "hardswish", "Selu": "selu",
                "Softsign": "softsign"}


def convert_activation(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = single_data(ctx, node)
    kind = _ACTIVATIONS[node.op_type]
    attrs: dict[str, Any] = {"kind": kind}
    if kind == "leakyrelu":
        attrs["alpha"] = float(attr(node, "alpha", 0.01))
    elif kind == "elu":
        attrs["alpha"] = float(attr(node, "alpha", 1.0))
    elif kind == "selu":
        attrs["alpha"] = float(attr(node, "alpha", 1.67326319217681884765625))
        attrs["gamma"] = float(attr(node, "gamma", 1.05070102214813232421875))
    elif kind == "hardsigmoid":
        attrs["alpha"] = float(attr(node, "alpha", 0.2))
        attrs["beta"] = float(attr(node, "beta", 0.5))
    return [cnode("Activation", node, [x], **attrs)]


def convert_prelu(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    slope = ctx.value(node.input[1], "the slope").astype(np.float32)
    return [cnode("Activation", node, [node.input[0]], kind="prelu", params={"slope": slope})]


def convert_clip(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    if ctx.opset < 11:
        lo, hi = attr(node, "min", -3.4028234663852886e38), attr(node, "max", 3.4028234663852886e38)
    else:
        lo_v, hi_v = ctx.optional(node, 1), ctx.optional(node, 2)
        lo = -np.inf if lo_v is None else float(lo_v)
        hi = np.inf if hi_v is None else float(hi_v)
    return [cnode("Activation", node, [x], kind="clip", min=float(lo), max=float(hi))]


def convert_maxpool(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    if len(node.output) > 1 and node.output[1]:
        raise NotSupported("MaxPool whose indices output is used")
    if attr(node, "storage_order", 0):
        raise NotSupported("MaxPool with storage_order=1")
    attrs = window_attrs(node, ctx, x, list(attr(node, "kernel_shape")))
    return [cnode("MaxPool", node, [x], ceil_mode=int(attr(node, "ceil_mode", 0)), **attrs)]


def convert_avgpool(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    attrs = window_attrs(node, ctx, x, list(attr(node, "kernel_shape")))
    return [cnode("AveragePool", node, [x], ceil_mode=int(attr(node, "ceil_mode", 0)),
                   count_include_pad=int(attr(node, "count_include_pad", 0)), **attrs)]


def convert_global_pool(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    if node.op_type == "GlobalAveragePool":
        return [cnode("GlobalAveragePool", node, [x])]
    kernel = list(ctx.shape(x)[2:])
    n = len(kernel)
    return [cnode("MaxPool", node, [x], kernel_shape=kernel, strides=[1] * n, dilations=[1] * n,
                   pads=[0] * (2 * n), ceil_mode=0)]


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


def convert_lrn(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    return [cnode("LRN", node, [node.input[0]], size=int(attr(node, "size")), alpha=float(attr(node, "alpha", 1e-4)),
                   beta=float(attr(node, "beta", 0.75)), bias=float(attr(node, "bias", 1.0)))]


def convert_batchnorm(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    x = node.input[0]
    gamma, beta, mean, var = (ctx.value(node.input[i], n).astype(np.float64)
                              for i, n in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
    if attr(node, "training_mode", 0):
        raise NotSupported("BatchNormalization in training mode")
    scale = gamma / np.sqrt(var + float(attr(node, "epsilon", 1e-5)))
    shift = beta - mean * scale
    bshape = (-1,) + (1,) * (len(ctx.shape(x)) - 2)
    return [cnode("Affine", node, [x], params={"scale": scale.reshape(bshape).astype(np.float32),
                                                 "shift": shift.reshape(bshape).astype(np.float32)})]


def _batch_preserving_reshape(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode] | Alias:
    x = single_data(ctx, node)
    out_shape = ctx.shape(node.output[0])
    in_shape = ctx.shape(x)
    if out_shape[0] != in_shape[0]:
        raise NotSupported(f"reshape from {list(in_shape)} to {list(out_shape)} moves the batch axis")
    if out_shape == in_shape:
        return Alias(x)
    return [cnode("Reshape", node, [x], shape=[-1] + list(out_shape[1:]))]


def convert_transpose(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode] | Alias:
    x = single_data(ctx, node)
    rank = len(ctx.shape(x))
    perm = list(attr(node, "perm", list(reversed(range(rank)))))
    if perm[0] != 0:
        raise NotSupported(f"Transpose with perm {perm} moves the batch axis")
    if perm == list(range(rank)):
        return Alias(x)
    return [cnode("Transpose", node, [x], perm=perm)]


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


def convert_concat(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode] | Alias:
    """Concat of data tensors and constant pieces; ``pieces`` holds an input index or a constant array per piece."""
    rank = len(ctx.shape(node.output[0]))
    axis = int(attr(node, "axis")) % rank
    if axis == 0:
        raise NotSupported("concatenation along the batch axis")
    pieces: list[Any] = []
    data: list[str] = []
    for name in node.input:
        if ctx.is_data(name):
            pieces.append(len(data))
            data.append(name)
        else:
            value = ctx.value(name, "a non-data piece").astype(np.float32)
            if value.ndim != rank or value.shape[0] != 1:
                raise NotSupported("a constant piece without a batch axis of 1")
            pieces.append(value)
    if len(pieces) == 1:
        return Alias(data[0])
    return [cnode("Concat", node, data, axis=axis, pieces=pieces,
                   sizes=[ctx.shape(data[p])[axis] if isinstance(p, int) else p.shape[axis] for p in pieces])]


def convert_passthrough(ctx: ConvertContext, node: onnx.NodeProto) -> Alias:
    return Alias(single_data(ctx, node), reason=None)


def convert_cast(ctx: ConvertContext, node: onnx.NodeProto) -> Alias:
    if attr(node, "to") not in (onnx.TensorProto.FLOAT,):
        raise NotSupported(f"Cast to {onnx.TensorProto.DataType.Name(attr(node, 'to'))} inside the data path")
    return Alias(node.input[0])


def convert_softmax(ctx: ConvertContext, node: onnx.NodeProto) -> Alias:
    if node.output[0] not in ctx.output_chain:
        raise NotSupported(f"{node.op_type} inside the network (only a final one is removed)")
    return Alias(node.input[0], reason=f"removed final {node.op_type} '{node.name or node.output[0]}' "
                                       "(relevance starts from the pre-softmax logits)")


CONVERTERS: dict[str, Callable[[ConvertContext, onnx.NodeProto], Any]] = {
    "Conv": convert_conv,
    "Gemm": convert_gemm,
    "MatMul": convert_matmul,
    "Add": convert_binary, "Sub": convert_binary, "Mul": convert_binary, "Div": convert_binary,
    "Sum": convert_sum,
    **{op: convert_activation for op in _ACTIVATIONS},
    "PRelu": convert_prelu,
    "Clip": convert_clip,
    "MaxPool": convert_maxpool,
    "AveragePool": convert_avgpool,
    "GlobalAveragePool": convert_global_pool,
    "GlobalMaxPool": convert_global_pool,
    "ReduceMean": convert_reduce_mean,
    "LRN": convert_lrn,
    "BatchNormalization": convert_batchnorm,
    "Flatten": _batch_preserving_reshape,
    "Reshape": _batch_preserving_reshape,
    "Squeeze": _batch_preserving_reshape,
    "Unsqueeze": _batch_preserving_reshape,
    "Transpose": convert_transpose,
    "Pad": convert_pad,
    "Slice": convert_slice,
    "Concat": convert_concat,
    "Identity": convert_passthrough,
    "Dropout": convert_passthrough,
    "Cast": convert_cast,
    "Softmax": convert_softmax,
    "LogSoftmax": convert_softmax,
}

#: ops that only ever compute shapes or constants; folded away before conversion
SHAPE_OPS = {"Shape", "Size", "Constant", "ConstantOfShape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice",
             "Cast", "Range", "Reshape", "Mul", "Add", "Sub", "Div", "Floor", "Ceil", "Max", "Min", "Equal", "Where",
             "ReduceProd", "Identity"}
