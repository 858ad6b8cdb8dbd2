"""The Caffe2 model-zoo graphs that ship inside the ``onnx`` wheel, re-seeded with random weights.

Their weights are ConstantOfShape placeholders (every weight 0.02), which makes every explanation degenerate; this
module replaces each placeholder and every float initializer with seeded random values of a sensible scale for its
role (He-normal conv/dense weights, small biases, BatchNorm statistics near identity).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ZOO_DIR = Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "light"
ZOO_NAMES = ("bvlc_alexnet", "vgg19", "zfnet512", "squeezenet", "resnet50", "inception_v1", "inception_v2",
             "densenet121", "shufflenet")


def zoo_path(name: str) -> Path:
    path = ZOO_DIR / f"light_{name}.onnx"
    if not path.exists():
        raise FileNotFoundError(f"{path} is not in this onnx wheel ({onnx.__version__})")
    return path


def _roles(model: onnx.ModelProto) -> dict[str, tuple[str, int]]:
    """tensor name -> (consumer op, input index) of its first consumer, looking through Unsqueeze/Reshape/Identity
    (Caffe2's BatchNorm is BatchNormalization followed by Mul/Add with Unsqueeze'd scale and bias)."""
    first: dict[str, onnx.NodeProto] = {}
    index: dict[str, int] = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name not in first:
                first[name], index[name] = node, i

    def role(name: str, depth: int = 0) -> tuple[str, int]:
        node = first.get(name)
        if node is None:
            return ("", -1)
        if node.op_type in ("Unsqueeze", "Reshape", "Identity", "Squeeze") and index[name] == 0 and depth < 4:
            return role(node.output[0], depth + 1)
        return (node.op_type, index[name])

    return {name: role(name) for name in first}


def _random_value(shape: tuple[int, ...], role: tuple[str, int] | None, rng: np.random.Generator) -> np.ndarray:
    op, index = role or ("", -1)
    if op in ("Conv", "Gemm", "MatMul") and index == 1:
        fan_in = int(np.prod(shape[1:])) if op == "Conv" else (shape[1] if op == "Gemm" else shape[0])
        return rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
    if op == "BatchNormalization":
        if index in (1, 4):
            return rng.uniform(0.5, 1.5, shape)
        return rng.uniform(-0.1, 0.1, shape)
    if op == "Mul":
        return rng.uniform(0.5, 1.5, shape)
    return rng.uniform(-0.1, 0.1, shape)


def reseed(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy of ``model`` with ConstantOfShape placeholders and float initializers replaced by random values."""
    rng = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    roles = _roles(out)
    keep, new_inits = [], []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in inits:
            shape = tuple(int(d) for d in numpy_helper.to_array(inits[node.input[0]]))
            value = _random_value(shape, roles.get(node.output[0]), rng).astype(np.float32)
            new_inits.append(numpy_helper.from_array(value, node.output[0]))
        else:
            keep.append(node)
    for tensor in graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT and tensor.dims and np.prod(tensor.dims) > 1:
            value = _random_value(tuple(tensor.dims), roles.get(tensor.name), rng).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(value, tensor.name))
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(new_inits)
    return out


def zoo_model(name: str, seed: int = 0) -> onnx.ModelProto:
    """Model-zoo graph ``name`` with seeded random weights."""
    return reseed(onnx.load(str(zoo_path(name))), seed)

