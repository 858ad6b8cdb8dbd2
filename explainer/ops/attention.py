"""The converter of ONNX's opset-23 ``Attention`` (scaled dot-product attention in one node, which ONNX Runtime runs on
CPU and CUDA): it has no canonical op of its own but becomes the ops it is made of, so that every method explains it
as it explains attention written out (``MatMul`` ``matmul.py``, ``Affine`` for the scale and a constant mask,
``Softmax``, ``Reshape``/``Transpose`` for 3-D inputs). ``MatMul`` registers it.

Supported: 4-D [N, H, S, d] or 3-D [N, S, H·d] q/k/v with as many key/value heads as query heads, a constant mask
(boolean: False is −∞; float: added) and ``is_causal``; refused with the reason: a past key/value cache, softcap,
grouped-query heads and a mask computed from data."""
from __future__ import annotations

import math

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, NotSupported, attr, cnode
from explainer.frontend.ir import CNode


def _tensor(ctx: ConvertContext, out: list[CNode], node: onnx.NodeProto, op: str, inputs: list[str], name: str,
            dims: tuple[int, ...], **attrs) -> str:
    """Append one canonical node writing the new tensor ``name`` of shape ``dims`` (at batch 1)."""
    ctx.shapes[name] = dims
    out.append(cnode(op, node, inputs, output=name, **attrs))
    return name


def convert_attention(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    q, k, v = node.input[:3]
    if not all(ctx.is_data(t) for t in (q, k, v)):
        raise NotSupported("query, key and value must all be computed from the input")
    if any(name for name in node.input[4:]) or any(name for name in node.output[1:]):
        raise NotSupported("a past key/value cache")
    if float(attr(node, "softcap", 0.0)):
        raise NotSupported("softcap")
    q_shape, k_shape = ctx.shape(q), ctx.shape(k)
    rank = len(q_shape)
    if rank == 3:
        heads = int(attr(node, "q_num_heads", 0))
        if not heads or int(attr(node, "kv_num_heads", heads)) != heads:
            raise NotSupported("3-D attention needs q_num_heads equal to kv_num_heads")
        d = q_shape[2] // heads
    elif rank == 4:
        heads, d = q_shape[1], q_shape[3]
        if k_shape[1] != heads:
            raise NotSupported(f"grouped-query attention ({heads} query heads, {k_shape[1]} key/value heads)")
    else:
        raise NotSupported(f"attention on rank-{rank} inputs")
    s_len, l_len = q_shape[1 if rank == 3 else 2], k_shape[1 if rank == 3 else 2]
    base, out = node.output[0], []

    def heads_first(t: str, length: int, tag: str) -> str:
        if rank == 4:
            return t
        split = _tensor(ctx, out, node, "Reshape", [t], f"{base}__{tag}_split", (1, length, heads, d),
                        shape=[-1, length, heads, d])
        return _tensor(ctx, out, node, "Transpose", [split], f"{base}__{tag}_heads", (1, heads, length, d),
                       perm=[0, 2, 1, 3])

    qh, kh, vh = heads_first(q, s_len, "q"), heads_first(k, l_len, "k"), heads_first(v, l_len, "v")
    kt = _tensor(ctx, out, node, "Transpose", [kh], f"{base}__kT", (1, heads, d, l_len), perm=[0, 1, 3, 2])
    scores = _tensor(ctx, out, node, "MatMul", [qh, kt], f"{base}__scores", (1, heads, s_len, l_len))
    scale = attr(node, "scale", None)
    scale = np.float32(1.0 / math.sqrt(d) if scale is None else scale)
    shift = np.zeros((1, 1, s_len, l_len), np.float32)
    if int(attr(node, "is_causal", 0)):
        shift += np.triu(np.full((s_len, l_len), -np.inf, np.float32), 1)
    if len(node.input) > 3 and node.input[3]:
        mask = ctx.value(node.input[3], "the attention mask")
        mask = np.where(mask, 0.0, -np.inf) if mask.dtype == np.bool_ else mask.astype(np.float32)
        if mask.ndim == 4 and mask.shape[0] != 1:
            raise NotSupported("a mask that differs between samples")
        shift = shift + np.broadcast_to(mask, (1, *shift.shape[1:])).astype(np.float32)
        shift = np.broadcast_to(shift, (1, heads, s_len, l_len)).copy()
    scaled = _tensor(ctx, out, node, "Affine", [scores], f"{base}__scaled", (1, heads, s_len, l_len), mask=True,
                     params={"scale": np.full((1, 1, 1, 1), scale, np.float32), "shift": shift})
    weights = _tensor(ctx, out, node, "Softmax", [scaled], f"{base}__weights", (1, heads, s_len, l_len))
    if rank == 4:
        _tensor(ctx, out, node, "MatMul", [weights, vh], base, (1, heads, s_len, d), weights=0)
        return out
    mixed = _tensor(ctx, out, node, "MatMul", [weights, vh], f"{base}__mixed", (1, heads, s_len, d), weights=0)
    merged = _tensor(ctx, out, node, "Transpose", [mixed], f"{base}__merged", (1, s_len, heads, d), perm=[0, 2, 1, 3])
    _tensor(ctx, out, node, "Reshape", [merged], base, ctx.shape(base), shape=[-1, s_len, heads * d])
    return out


#: what ``convert_attention`` emits besides MatMul (the registering op declares these in ``also_emits``)
EMITS = ("Reshape", "Transpose", "Affine", "Softmax")
