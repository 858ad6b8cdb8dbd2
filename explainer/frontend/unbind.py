"""Rewrite attention's idioms that move the batch axis, so that it stays first (the canonical graph's invariant).

``hoist_unbind``: 
ViTs (timm's and most hand-written ones) compute q, k, v as ``qkv.reshape(N, T, 3, H, d).permute(2, 0, 3, 1, 4)``
and unbind the leading axis of 3: a Transpose that moves the batch axis, then a Split along axis 0 with a Squeeze of
each piece (the TorchScript exporter), a one-index Slice with a Squeeze per piece (the dynamo exporter) or one Gather
per piece (``qkv[0]``). The canonical graph keeps the
batch axis first, so such a Transpose has no canonical form; the whole idiom does: each piece is a Gather of one index
along the axis the Transpose moved to the front, then a Transpose of the remaining axes, batch first.

``merge_batch_transposes``: the dynamo exporter transposes SDPA's keys as Reshape [N, H, T, d] → [N·H, T, d],
Transpose, Reshape back to [N, H, d, T]; the three are one Transpose of the 4-D tensor."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from explainer.frontend.fold import Folded


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _const_ints(folded: Folded, node: onnx.NodeProto, index: int, attr: str) -> list[int] | None:
    """An int list given as attribute ``attr`` (old opsets) or as constant input ``index`` (new ones)."""
    value = _attr(node, attr)
    if value is not None:
        return [int(v) for v in value]
    if len(node.input) > index and node.input[index] in folded.consts:
        return [int(v) for v in np.asarray(folded.consts[node.input[index]]).reshape(-1)]
    return None


def _pieces(folded: Folded, transposed: str, consumers: dict[str, list[onnx.NodeProto]],
            ) -> list[tuple[int, str, list[onnx.NodeProto]]] | None:
    """(index along the leading axis, the piece's tensor, the nodes it replaces) for every use of ``transposed``,
    or None when some use is not a one-index selection along axis 0."""
    pieces = []
    for user in consumers.get(transposed, []):
        if user.op_type == "Gather" and int(_attr(user, "axis", 0)) == 0 and user.input[1] in folded.consts \
                and np.asarray(folded.consts[user.input[1]]).ndim == 0:
            pieces.append((int(folded.consts[user.input[1]]), user.output[0], [user]))
        elif user.op_type == "Split" and int(_attr(user, "axis", 0)) == 0:
            for i, out in enumerate(user.output):
                squeeze = _squeeze0(folded, out, consumers)
                if squeeze is None:
                    return None
                pieces.append((i, squeeze.output[0], [user, squeeze]))
        elif user.op_type == "Slice":
            start = _slice0(folded, user)
            squeeze = None if start is None else _squeeze0(folded, user.output[0], consumers)
            if squeeze is None:
                return None
            pieces.append((start, squeeze.output[0], [user, squeeze]))
        else:
            return None
    return pieces or None


def _squeeze0(folded: Folded, piece: str, consumers: dict[str, list[onnx.NodeProto]]) -> onnx.NodeProto | None:
    """The one Squeeze of axis 0 that reads ``piece`` (whose leading axis has size 1), or None."""
    users = consumers.get(piece, [])
    if folded.shapes.get(piece, (0,))[0] != 1 or len(users) != 1 or users[0].op_type != "Squeeze" \
            or _const_ints(folded, users[0], 1, "axes") != [0]:
        return None
    return users[0]


def _slice0(folded: Folded, node: onnx.NodeProto) -> int | None:
    """The start of a unit-step Slice along axis 0 only (opset 10+, constant inputs), or None."""
    starts, axes = _const_ints(folded, node, 1, "starts"), _const_ints(folded, node, 3, "axes")
    steps = _const_ints(folded, node, 4, "steps")
    if starts is None or len(starts) != 1 or (axes or [0]) != [0] or (steps or [1]) != [1]:
        return None
    return starts[0] % folded.shapes[node.input[0]][0]


def hoist_unbind(folded: Folded) -> list[str]:
    """Rewrite every batch-moving Transpose whose uses all pick one index of its leading axis (see the module
    docstring) in ``folded`` in place; the ``changes`` line saying how many."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in folded.nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replaced: dict[int, list[onnx.NodeProto]] = {}
    dropped: set[int] = set()
    count = 0
    for node in folded.nodes:
        if node.op_type != "Transpose" or node.input[0] not in folded.data:
            continue
        perm = [int(p) for p in _attr(node, "perm", [])]
        if not perm or perm[0] == 0 or perm[1] != 0:
            continue
        pieces = _pieces(folded, node.output[0], consumers)
        if pieces is None:
            continue
        axis = perm[0]
        rest = [p - (p > axis) for p in perm[1:]]
        x_shape = folded.shapes[node.input[0]]
        picked_shape = tuple(d for i, d in enumerate(x_shape) if i != axis)
        new_nodes = []
        for index, out, old in pieces:
            label = old[-1].name or out
            index_name = f"{out}__unbind_index"
            picked = f"{out}__unbind_picked"
            folded.consts[index_name] = np.array(index, np.int64)
            folded.shapes[picked] = picked_shape
            folded.data.add(picked)
            new_nodes.append(helper.make_node("Gather", [node.input[0], index_name], [picked], name=f"{label}/pick",
                                              axis=axis))
            new_nodes.append(helper.make_node("Transpose", [picked], [out], name=label, perm=rest))
            dropped.update(id(n) for n in old)
        replaced[id(node)] = new_nodes
        count += 1
    if not count:
        return []
    nodes = []
    for node in folded.nodes:
        if id(node) in replaced:
            nodes.extend(replaced[id(node)])
        elif id(node) not in dropped:
            nodes.append(node)
    folded.nodes[:] = nodes
    return [f"rewrote {count} batch-moving q/k/v Transpose(s) into per-piece Gather + Transpose"]


def merge_batch_transposes(folded: Folded) -> list[str]:
    """Replace each Reshape (merging the batch axis into the next) → Transpose (keeping that axis first) → Reshape
    (splitting it again) chain by one Transpose, in ``folded`` in place; the ``changes`` line saying how many."""
    producers = {o: n for n in folded.nodes for o in n.output}
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in folded.nodes:
        for name in node.input:
            users.setdefault(name, []).append(node)
    replace: dict[int, onnx.NodeProto] = {}
    dropped: set[int] = set()
    for split in folded.nodes:
        if split.op_type != "Reshape":
            continue
        transpose = producers.get(split.input[0])
        merge = producers.get(transpose.input[0]) if transpose is not None else None
        if transpose is None or transpose.op_type != "Transpose" or merge is None or merge.op_type != "Reshape" \
                or len(users.get(transpose.output[0], [])) != 1 or len(users.get(merge.output[0], [])) != 1:
            continue
        x = merge.input[0]
        shape, merged, out = (folded.shapes.get(t) for t in (x, merge.output[0], split.output[0]))
        perm = [int(v) for v in _attr(transpose, "perm", [])]
        if shape is None or merged is None or out is None or len(shape) < 3 or not perm or perm[0] != 0 \
                or tuple(merged) != (shape[0] * shape[1], *shape[2:]):
            continue
        full = [0, 1] + [q + 1 for q in perm[1:]]
        if tuple(out) != tuple(shape[i] for i in full):
            continue
        replace[id(split)] = helper.make_node("Transpose", [x], [split.output[0]], name=split.name or split.output[0],
                                              perm=full)
        dropped.update((id(merge), id(transpose)))
    if not replace:
        return []
    folded.nodes[:] = [replace.get(id(n), n) for n in folded.nodes if id(n) not in dropped]
    return [f"merged {len(replace)} Reshape-Transpose-Reshape chain(s) that fold the batch axis into one Transpose"]
