"""Hand-built ONNX graphs in the shapes exporters produce, for canonicaliser and emitter tests."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class G:
    """Tiny graph-building helper: ``g.w(shape)`` adds a random initializer, ``g.node(...)`` a node."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}{self.count}"

    def w(self, shape, scale: float | None = None, value=None, dtype=np.float32) -> str:
        name = self.name("w")
        if value is None:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            value = self.rng.standard_normal(shape) * (scale if scale is not None else np.sqrt(2.0 / max(fan_in, 1)))
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: int = 1, **attrs) -> str | list[str]:
        outs = [self.name(op.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(f"{op}_node"), **attrs))
        return outs[0] if outputs == 1 else outs

    def conv(self, x: str, cin: int, cout: int, k: int = 3, group: int = 1, bias: bool = True, **attrs) -> str:
        inputs = [x, self.w((cout, cin // group, k, k))] + ([self.w((cout,), 0.1)] if bias else [])
        return self.node("Conv", inputs, kernel_shape=[k, k], group=group, **attrs)

    def model(self, x_shape, output: str, opset: int = 14, input_name: str = "x",
              extra_inputs: list[onnx.ValueInfoProto] | None = None) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "test", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                                                                    list(x_shape))]
                                  + (extra_inputs or []),
                                  [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
                                  initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        return model


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]
