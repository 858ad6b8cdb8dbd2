"""What an op's converter gets and returns: the conversion context (constants, data-ness, static shapes, opset),
``NotSupported`` (the node cannot be explained, and why), ``Alias`` (the node is a no-op for explanation), and small
helpers for reading attributes the way every opset defines them."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from explainer.frontend.ir import CNode


class NotSupported(Exception):
    """Raised by a converter: the node cannot be explained; the message says why."""


@dataclass
class Alias:
    """The node's output is its (data) input unchanged, as far as explanation goes."""

    source: str
    reason: str | None = None


class ConvertContext:
    """What a converter may ask about tensors: constant values, data-ness, static shapes, the node's opset."""

    def __init__(self, consts: dict[str, np.ndarray], data: set[str], shapes: dict[str, tuple[int, ...]],
                 opset: int, producers: dict[str, onnx.NodeProto], output_chain: set[str],
                 fixed: set[str] | None = None) -> None:
        self.consts = consts
        self.data = data
        #: data tensors computed from fixed inputs alone (an attention mask): they receive no relevance
        self.fixed = fixed or set()
        self.shapes = shapes
        self.opset = opset
        self.producers = producers
        self.output_chain = output_chain

    def is_const(self, name: str) -> bool:
        return name == "" or name in self.consts

    def is_data(self, name: str) -> bool:
        return name in self.data

    def value(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise NotSupported(f"{what} ('{name}') must be a constant")
        return self.consts[name]

    def optional(self, node: onnx.NodeProto, index: int) -> np.ndarray | None:
        if len(node.input) > index and node.input[index]:
            return self.value(node.input[index], f"input {index}")
        return None

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.shapes:
            raise NotSupported(f"the shape of '{name}' is unknown")
        return self.shapes[name]


#: an op's converter for one ONNX op type: canonical nodes, an alias, or ``NotSupported`` with the reason
Converter = Callable[[ConvertContext, onnx.NodeProto], list[CNode] | Alias]


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def data_inputs(ctx: ConvertContext, node: onnx.NodeProto) -> list[str]:
    return [i for i in node.input if i and ctx.is_data(i)]


def single_data(ctx: ConvertContext, node: onnx.NodeProto) -> str:
    data = data_inputs(ctx, node)
    if len(data) != 1:
        raise NotSupported(f"expected exactly one non-constant input, found {len(data)}")
    return data[0]


def cnode(op: str, node: onnx.NodeProto, inputs: list[str], output: str | None = None, **attrs: Any) -> CNode:
    params = attrs.pop("params", {})
    return CNode(op=op, inputs=inputs, output=output or node.output[0], name=node.name or node.output[0],
                 source_op=node.op_type, attrs=attrs, params=params)


def resolve_pads(node: onnx.NodeProto, in_spatial: tuple[int, ...], kernel: list[int], strides: list[int],
                 dilations: list[int]) -> list[int]:
    """Explicit [begin..., end...] pads, resolving auto_pad SAME_UPPER/SAME_LOWER/VALID."""
    n = len(kernel)
    auto_pad = attr(node, "auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", "", None):
        pads = list(attr(node, "pads", [0] * (2 * n)))
        return pads
    if auto_pad == "VALID":
        return [0] * (2 * n)
    begins, ends = [], []
    for size, k, s, d in zip(in_spatial, kernel, strides, dilations):
        out = math.ceil(size / s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        if auto_pad == "SAME_UPPER":
            begins.append(small)
            ends.append(total - small)
        else:
            begins.append(total - small)
            ends.append(small)
    return begins + ends


def window_attrs(node: onnx.NodeProto, ctx: ConvertContext, x: str, kernel: list[int]) -> dict[str, Any]:
    n = len(kernel)
    strides = list(attr(node, "strides", [1] * n))
    dilations = list(attr(node, "dilations", [1] * n))
    pads = resolve_pads(node, ctx.shape(x)[2:], kernel, strides, dilations)
    return {"kernel_shape": list(kernel), "strides": strides, "dilations": dilations, "pads": pads}
