"""A thin helper for emitting ONNX nodes and initializers with unique names."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper


class GraphBuilder:
    """Collects nodes and initializers; every helper returns the name of the tensor it produced."""

    def __init__(self, prefix: str = "") -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.arrays: dict[str, np.ndarray] = {}
        self._names: set[str] = set()
        self._const_cache: dict[tuple, str] = {}
        self.prefix = prefix

    def fresh(self, hint: str) -> str:
        base = f"{self.prefix}{hint}"
        name, i = base, 0
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def reserve(self, name: str) -> str:
        self._names.add(name)
        return name

    def const(self, value: Any, hint: str = "c", dtype: Any = np.float32) -> str:
        """An initializer holding ``value`` (small constants are de-duplicated)."""
        arr = np.asarray(value, dtype=dtype)
        key = None
        if arr.size <= 16:
            key = (arr.dtype.str, arr.shape, arr.tobytes())
            if key in self._const_cache:
                return self._const_cache[key]
        name = self.fresh(hint)
        self.arrays[name] = np.ascontiguousarray(arr)
        if key is not None:
            self._const_cache[key] = name
        return name

    def ints(self, values: Sequence[int], hint: str = "ints") -> str:
        """An int64 initializer (shapes, axes, pads, slice bounds)."""
        return self.const(list(values), hint, dtype=np.int64)

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, outputs: int = 1,
           out_names: Sequence[str] | None = None, **attrs: Any) -> Any:
        """Emit ``op_type``; returns the output name (or a list when ``outputs`` > 1)."""
        if out_names is None:
            out_names = [self.fresh(hint or op_type.lower()) for _ in range(outputs)]
        else:
            out_names = [self.reserve(n) for n in out_names]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), list(out_names),
                                           name=self.fresh(f"n_{op_type}"), **attrs))
        return out_names[0] if len(out_names) == 1 else list(out_names)

    # Small arithmetic helpers, so emitters read like the formulas they implement.
    def add(self, a: str, b: str, hint: str = "add") -> str:
        return self.op("Add", [a, b], hint)

    def sub(self, a: str, b: str, hint: str = "sub") -> str:
        return self.op("Sub", [a, b], hint)

    def mul(self, a: str, b: str, hint: str = "mul") -> str:
        return self.op("Mul", [a, b], hint)

    def div(self, a: str, b: str, hint: str = "div") -> str:
        return self.op("Div", [a, b], hint)

    def relu(self, a: str, hint: str = "relu") -> str:
        return self.op("Relu", [a], hint)

    def neg_part(self, a: str, hint: str = "neg") -> str:
        """min(a, 0)."""
        return self.op("Min", [a, self.const(0.0)], hint)

    def sum(self, terms: Sequence[str], hint: str = "sum") -> str:
        terms = list(terms)
        if len(terms) == 1:
            return terms[0]
        return self.op("Sum", terms, hint)

    def cast_float(self, a: str, hint: str = "cast") -> str:
        return self.op("Cast", [a], hint, to=onnx.TensorProto.FLOAT)

    def stabilise(self, z: str, epsilon: float, hint: str = "stab") -> str:
        """z + epsilon * sign(z) with sign(0) = +1; for epsilon == 0, zeros are replaced by ones (0/0 -> 0)."""
        if epsilon == 0.0:
            is_zero = self.cast_float(self.op("Equal", [z, self.const(0.0)], "iszero"))
            return self.add(z, is_zero, hint)
        nonneg = self.cast_float(self.op("GreaterOrEqual", [z, self.const(0.0)], "ge0"))
        sign = self.sub(self.mul(nonneg, self.const(2.0)), self.const(1.0), "sign")
        return self.add(z, self.mul(sign, self.const(float(epsilon))), hint)
