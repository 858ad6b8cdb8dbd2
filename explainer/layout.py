"""Detect whether an image input is channels-first (NCHW) or channels-last (NHWC)."""
from __future__ import annotations

import onnx

_PASS_THROUGH = {"Cast", "Identity", "Sub", "Div", "Mul", "Add"}


def detect_layout(model: onnx.ModelProto, vi: onnx.ValueInfoProto, shape: tuple[int | None, ...]) -> str:
    """'NCHW' or 'NHWC' for rank-4 inputs (from the first Transpose/Conv that reads the input, else the dims);
    'NC' + spatial letters otherwise."""
    if len(shape) != 4:
        return "NC" if len(shape) == 2 else "NC" + "DHW"[-(len(shape) - 2):]
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    frontier, seen = [vi.name], set()
    while frontier:
        name = frontier.pop(0)
        if name in seen:
            continue
        seen.add(name)
        for node in consumers.get(name, []):
            if node.op_type == "Transpose":
                perm = [a.ints for a in node.attribute if a.name == "perm"]
                if perm and list(perm[0]) == [0, 3, 1, 2]:
                    return "NHWC"
            elif node.op_type in ("Conv", "MaxPool", "AveragePool", "BatchNormalization"):
                return "NCHW"
            elif node.op_type in _PASS_THROUGH:
                frontier.extend(node.output)
    c_first, c_last = shape[1], shape[3]
    if c_last in (1, 3, 4) and c_first not in (1, 3, 4):
        return "NHWC"
    return "NCHW"
