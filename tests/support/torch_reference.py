"""An independent float64 evaluation of ONNX graphs with PyTorch ops, for gradient checks with autograd.

It interprets the original (not canonicalised) graph node by node with torch.nn.functional, so it shares no code
with the package. It covers the ops of the Caffe2 model-zoo graphs, PyTorch (CNNs and transformers: LayerNorm,
softmax, batched MatMul, GELU, opset-23 Attention) and tf2onnx exports.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pad_input(x: torch.Tensor, pads: list[int], value: float = 0.0) -> torch.Tensor:
    n = len(pads) // 2
    torch_pads: list[int] = []
    for i in reversed(range(n)):
        torch_pads += [pads[i], pads[i + n]]
    return F.pad(x, torch_pads, value=value) if any(torch_pads) else x


def _same_pads(node_attrs: dict, spatial, kernel, strides, dilations) -> list[int]:
    auto = node_attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        return list(node_attrs.get("pads", [0] * (2 * len(kernel))))
    if auto == "VALID":
        return [0] * (2 * len(kernel))
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        begins.append(small if auto == "SAME_UPPER" else total - small)
        ends.append(total - small if auto == "SAME_UPPER" else small)
    return begins + ends


def torch_function(model: onnx.ModelProto) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(x) -> the model's first output, computed in float64 with torch ops (differentiable)."""
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 13)
    consts = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in consts]
    output = model.graph.output[0].name

    def f(x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {k: (v.double() if v.is_floating_point() else v) for k, v in consts.items()}
        env[inputs[0]] = x
        for node in model.graph.node:
            a = _attrs(node)
            ins = [env[i] if i else None for i in node.input]
            outs = _run(node.op_type, ins, a, opset, node)
            for name, value in zip(node.output, outs):
                if name:
                    env[name] = value
        return env[output]
    return f


def _ints(t: torch.Tensor) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


def _same_kind(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both operands float64 when either is floating point (shape arithmetic mixes int64 and float constants)."""
    if x.is_floating_point() != y.is_floating_point():
        return x.double(), y.double()
    return x, y


#: element-wise ops of one input without attributes
_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Erf": torch.erf, "Sqrt": torch.sqrt,
    "Exp": torch.exp, "Log": torch.log, "Neg": torch.neg, "Abs": torch.abs, "Reciprocal": torch.reciprocal,
    "Softplus": F.softplus, "Mish": F.mish, "HardSwish": F.hardswish, "Not": torch.logical_not,
}


def _axes(ins: list, a: dict, attribute_until: int, opset: int) -> list[int] | None:
    """A Reduce/Split-style ``axes``: an attribute before opset ``attribute_until``, the second input from then on."""
    if opset < attribute_until:
        return list(a["axes"]) if "axes" in a else None
    return _ints(ins[1]) if len(ins) > 1 and ins[1] is not None and ins[1].numel() else None


def _reduce(op: str, x: torch.Tensor, axes: list[int] | None, a: dict) -> torch.Tensor:
    """ReduceMean/Sum/Max/SumSquare over ``axes`` (all of them when None, unless ``noop_with_empty_axes``)."""
    if axes is None:
        if a.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.dim()))
    dims = tuple(ax % x.dim() for ax in axes)
    keep = bool(a.get("keepdims", 1))
    if op == "ReduceMean":
        return x.mean(dim=dims, keepdim=keep)
    if op == "ReduceSum":
        return x.sum(dim=dims, keepdim=keep)
    if op == "ReduceMax":
        return x.amax(dim=dims, keepdim=keep)
    return (x * x).sum(dim=dims, keepdim=keep)  # ReduceSumSquare


def _layer_norm(ins: list, a: dict) -> list:
    """LayerNormalization over the axes from ``axis`` on: (y, mean, 1 / standard deviation)."""
    x, scale = ins[0], ins[1]
    axis = a.get("axis", -1) % x.dim()
    dims = tuple(range(axis, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    inv_std = 1.0 / torch.sqrt(((x - mean) ** 2).mean(dim=dims, keepdim=True) + a.get("epsilon", 1e-5))
    y = (x - mean) * inv_std * scale
    return [y + ins[2] if len(ins) > 2 and ins[2] is not None else y, mean, inv_std]


def _softmax(x: torch.Tensor, a: dict, opset: int, log: bool) -> torch.Tensor:
    """Softmax over ``axis`` (opset ≥ 13), or over everything from ``axis`` on, flattened (before 13)."""
    fn = torch.log_softmax if log else torch.softmax
    if opset >= 13:
        return fn(x, dim=a.get("axis", -1))
    axis = a.get("axis", 1) % x.dim()
    return fn(x.reshape(int(np.prod(x.shape[:axis])), -1), dim=1).reshape(x.shape)


def _split(x: torch.Tensor, ins: list, a: dict, opset: int, outputs: int) -> list:
    """Split by the sizes given (an attribute before opset 13, an input from then on), else into ``num_outputs`` (or
    as many as the node has outputs) parts, the last one smaller when the axis does not divide evenly."""
    axis = a.get("axis", 0)
    sizes = list(a["split"]) if opset < 13 and "split" in a else (
        _ints(ins[1]) if opset >= 13 and len(ins) > 1 and ins[1] is not None else None)
    if sizes is None:
        parts = a.get("num_outputs", outputs)
        chunk = -(-x.shape[axis] // parts)
        sizes = [min(chunk, x.shape[axis] - i * chunk) for i in range(parts)]
    return list(torch.split(x, sizes, dim=axis))


def _attention(ins: list, a: dict) -> list:
    """ONNX's opset-23 Attention: softmax(q·kᵀ·scale + mask)·v per head, 3-D ([B, S, heads·D]) or 4-D
    ([B, heads, S, D]) inputs, boolean or additive mask, causal option, grouped-query key/value heads."""
    q, k, v = ins[:3]
    mask = ins[3] if len(ins) > 3 else None
    if len(ins) > 4 and any(t is not None for t in ins[4:]):
        raise NotImplementedError("torch_reference: Attention with a key/value cache")
    three_d = q.dim() == 3
    if three_d:
        def heads(t: torch.Tensor, n: int) -> torch.Tensor:
            return t.reshape(t.shape[0], t.shape[1], n, -1).transpose(1, 2)
        q, k, v = heads(q, a["q_num_heads"]), heads(k, a["kv_num_heads"]), heads(v, a["kv_num_heads"])
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    scores = q @ k.transpose(-2, -1) * a.get("scale", 1.0 / float(np.sqrt(q.shape[-1])))
    if a.get("softcap", 0.0):
        scores = a["softcap"] * torch.tanh(scores / a["softcap"])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    if a.get("is_causal", 0):
        allowed = torch.ones(scores.shape[-2:], dtype=torch.bool).tril(scores.shape[-1] - scores.shape[-2])
        scores = scores.masked_fill(~allowed, float("-inf"))
    y = torch.softmax(scores, dim=-1) @ v
    if three_d:
        y = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], -1)
    return [y, None, None, None]


def _run(op: str, ins: list, a: dict, opset: int, node: onnx.NodeProto) -> list:
    x = ins[0] if ins else None
    if op == "Constant":
        if "value" not in a:  # value_float(s) / value_int(s)
            (key, value), = a.items()
            return [torch.tensor(value, dtype=torch.float64 if key.startswith("value_float") else torch.int64)]
        value = torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
        return [value.double() if value.is_floating_point() else value]
    if op == "ConstantOfShape":
        value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
        dtype = torch.float64 if value.dtype.kind == "f" else torch.int64
        return [torch.full(_ints(x), float(value.reshape(-1)[0]), dtype=dtype)]
    if op == "Conv":
        w = ins[1]
        kernel = list(a.get("kernel_shape", w.shape[2:]))
        n = len(kernel)
        strides, dil = list(a.get("strides", [1] * n)), list(a.get("dilations", [1] * n))
        pads = _same_pads(a, x.shape[2:], kernel, strides, dil)
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
        return [conv(_pad_input(x, pads), w, ins[2] if len(ins) > 2 else None, strides, 0, dil, a.get("group", 1))]
    if op in ("MaxPool", "AveragePool"):
        kernel = list(a["kernel_shape"])
        n = len(kernel)
        strides = list(a.get("strides", [1] * n))
        dil = list(a.get("dilations", [1] * n))
        pads = _same_pads(a, x.shape[2:], kernel, strides, dil)
        symmetric = pads[:n] == pads[n:] and all(p <= k // 2 for p, k in zip(pads[:n], kernel))
        ceil = bool(a.get("ceil_mode", 0))
        if op == "MaxPool":
            if symmetric:
                return [F.max_pool2d(x, kernel, strides, pads[:n], dil, ceil_mode=ceil), None]
            return [F.max_pool2d(_pad_input(x, pads, float("-inf")), kernel, strides, 0, dil, ceil_mode=ceil), None]
        include = bool(a.get("count_include_pad", 0))
        if symmetric:
            return [F.avg_pool2d(x, kernel, strides, pads[:n], ceil_mode=ceil, count_include_pad=include)]
        ones = torch.ones_like(x[:1, :1])
        summed = F.avg_pool2d(_pad_input(x, pads), kernel, strides, 0, ceil_mode=ceil, divisor_override=1)
        count = F.avg_pool2d(_pad_input(ones, pads, 1.0 if include else 0.0), kernel, strides, 0, ceil_mode=ceil,
                             divisor_override=1)
        return [summed / count]
    if op == "GlobalAveragePool":
        return [x.mean(dim=tuple(range(2, x.dim())), keepdim=True)]
    if op == "GlobalMaxPool":
        return [x.amax(dim=tuple(range(2, x.dim())), keepdim=True)]
    if op == "LRN":
        return [F.local_response_norm(x, a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0))]
    if op in _UNARY:
        return [_UNARY[op](x)]
    if op == "LeakyRelu":
        return [F.leaky_relu(x, a.get("alpha", 0.01))]
    if op == "Gelu":
        return [F.gelu(x, approximate=a.get("approximate", "none"))]
    if op == "HardSigmoid":
        return [torch.clamp(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0.0, 1.0)]
    if op == "Pow":
        base, exponent = _same_kind(x, ins[1])
        return [torch.pow(base, exponent)]
    if op == "Clip":
        lo, hi = (a.get("min"), a.get("max")) if opset < 11 else (
            ins[1] if len(ins) > 1 else None, ins[2] if len(ins) > 2 else None)
        return [torch.clamp(x, None if lo is None else float(lo), None if hi is None else float(hi))]
    if op in ("Add", "Sub", "Mul", "Div"):
        x, y = _same_kind(x, ins[1])
        if op == "Div" and not x.is_floating_point():
            return [torch.div(x, y, rounding_mode="trunc")]
        return [{"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}[op](x, y)]
    if op == "Equal":
        return [torch.eq(*_same_kind(x, ins[1]))]
    if op == "Where":
        return [torch.where(x.bool(), *_same_kind(ins[1], ins[2]))]
    if op == "Expand":
        shape = torch.broadcast_shapes(tuple(x.shape), tuple(_ints(ins[1])))
        return [x.expand(shape)]
    if op == "Sum":
        return [sum(ins[1:], ins[0])]
    if op == "Gemm":
        A = ins[0].t() if a.get("transA", 0) else ins[0]
        B = ins[1].t() if a.get("transB", 0) else ins[1]
        y = a.get("alpha", 1.0) * A @ B
        return [y + a.get("beta", 1.0) * ins[2] if len(ins) > 2 and ins[2] is not None else y]
    if op == "MatMul":
        return [torch.matmul(ins[0], ins[1])]
    if op == "Einsum":
        return [torch.einsum(a["equation"].decode() if isinstance(a["equation"], bytes) else a["equation"], *ins)]
    if op == "LayerNormalization":
        return _layer_norm(ins, a)
    if op == "Attention":
        return _attention(ins, a)
    if op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceSumSquare"):
        return [_reduce(op, x, _axes(ins, a, 13 if op == "ReduceSum" else 18, opset), a)]
    if op == "Split":
        return _split(x, ins, a, opset, len(node.output))
    if op == "BatchNormalization":
        scale, bias, mean, var = ins[1:5]
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + a.get("epsilon", 1e-5))
        return [y * scale.reshape(shape) + bias.reshape(shape)]
    if op in ("Dropout", "Identity"):
        return [x, None]
    if op in ("Softmax", "LogSoftmax"):
        return [_softmax(x, a, opset, log=op == "LogSoftmax")]
    if op == "Flatten":
        axis = a.get("axis", 1)
        return [x.reshape(int(np.prod(x.shape[:axis])), -1)]
    if op == "Reshape":
        shape = list(a["shape"]) if opset < 5 else _ints(ins[1])
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return [x.reshape(shape)]
    if op == "Transpose":
        return [x.permute(*a.get("perm", list(reversed(range(x.dim())))))]
    if op == "Concat":
        return [torch.cat(ins, dim=a["axis"])]
    if op == "Unsqueeze":
        axes = list(a["axes"]) if opset < 13 else _ints(ins[1])
        for ax in sorted(v % (x.dim() + len(axes)) for v in axes):
            x = x.unsqueeze(ax)
        return [x]
    if op == "Squeeze":
        axes = list(a.get("axes", [])) if opset < 13 else (_ints(ins[1]) if len(ins) > 1 else [])
        return [x.squeeze(tuple(axes)) if axes else x.squeeze()]
    if op == "Shape":
        return [torch.tensor(list(x.shape)[a.get("start", 0):a.get("end", x.dim())], dtype=torch.int64)]
    if op == "Gather":
        axis = a.get("axis", 0) % x.dim()
        index = ins[1].long() % x.shape[axis]
        return [torch.index_select(x, axis, index.reshape(-1)).reshape(
            x.shape[:axis] + index.shape + x.shape[axis + 1:])]
    if op == "Cast":
        to = a["to"]
        return [x.double() if to in (1, 10, 11, 16) else x.bool() if to == onnx.TensorProto.BOOL else x.long()]
    if op == "Pad":
        pads = list(a["pads"]) if opset < 11 else _ints(ins[1])
        value = float(a.get("value", 0.0)) if opset < 11 else (
            float(ins[2].reshape(-1)[0]) if len(ins) > 2 and ins[2] is not None and ins[2].numel() else 0.0)
        return [_pad_input(x, pads, value)]
    if op == "Slice":
        if opset < 10:
            starts, ends = list(a["starts"]), list(a["ends"])
            axes, steps = list(a.get("axes", range(len(starts)))), [1] * len(starts)
        else:
            starts, ends = _ints(ins[1]), _ints(ins[2])
            axes = _ints(ins[3]) if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
            steps = _ints(ins[4]) if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
        index = [slice(None)] * x.dim()
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            size = x.shape[ax % x.dim()]
            if sp > 0:  # exporters write INT64_MAX for "to the end", which torch warns about
                st, en = (min(max(v, -size), size) for v in (st, en))
            index[ax % x.dim()] = slice(st, None if (sp < 0 and en < -size) else en, sp)
        if any(sp < 0 for sp in steps):
            return [torch.from_numpy(x.detach().numpy()[tuple(index)].copy())]
        return [x[tuple(index)]]
    raise NotImplementedError(f"torch_reference: op {op} (node {node.name})")


def torch_gradient(model: onnx.ModelProto, x: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, ∂ logit_target / ∂x) in float64 via autograd on the original graph (Softmax outputs are undone by
    taking the log, which leaves gradients of the logit differences; callers compare pre-softmax models)."""
    f = torch_function(model)
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    out = f(xt).reshape(len(x), -1)
    out.gather(1, torch.from_numpy(target.astype(np.int64))[:, None]).sum().backward()
    return out.detach().numpy(), xt.grad.numpy()
