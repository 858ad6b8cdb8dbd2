"""A small hand-built ONNX graph shaped like a Keras CNN converted by tf2onnx, and an independent NumPy reference.

tf2onnx graphs differ from PyTorch exports in ways the explainer must cope with: an NHWC input named
``input_1`` with a symbolic batch dim, Transposes around the NCHW convolution block, a flatten spelled as
Shape -> Gather(0) -> Unsqueeze -> Concat([N, -1]) -> Reshape, dense layers as MatMul + Add, an inference-mode
BatchNormalization after a dense layer folded into Mul + Add with constant vectors, and a Softmax output.

``python -m graphs.tf2onnx_style`` rewrites the committed ``graphs/tf2onnx_small.onnx`` (weights seeded, so the
file is reproducible). :func:`reference_forward` recomputes the pre-softmax logits in float64 NumPy from the
same seeded weights, without ONNX.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

GRAPH_PATH = Path(__file__).resolve().parent / "tf2onnx_small.onnx"
INPUT_NAME = "input_1"
OUTPUT_NAME = "dense_1"
IMAGE_SIZE = 32
CHANNELS = (3, 8, 8)
HIDDEN = 16
NUM_CLASSES = 10
BN_EPSILON = 1e-3
OPSET = 13
IR_VERSION = 8
SEED = 0
_PREFIX = "StatefulPartitionedCall/sequential"


def make_weights(seed: int = SEED) -> dict[str, np.ndarray]:
    """Seeded float32 parameters: conv kernels in ONNX OIHW layout, dense kernels as [in, out], BN statistics."""
    rng = np.random.default_rng(seed)

    def kaiming(shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def bias(n: int) -> np.ndarray:
        return rng.uniform(-0.1, 0.1, n).astype(np.float32)

    c0, c1, c2 = CHANNELS
    flat = (IMAGE_SIZE // 2) ** 2 * c2
    return {
        "conv1_w": kaiming((c1, c0, 3, 3), c0 * 9), "conv1_b": bias(c1),
        "conv2_w": kaiming((c2, c1, 3, 3), c1 * 9), "conv2_b": bias(c2),
        "dense_w": kaiming((flat, HIDDEN), flat), "dense_b": bias(HIDDEN),
        "bn_gamma": rng.uniform(0.5, 1.5, HIDDEN).astype(np.float32),
        "bn_beta": rng.uniform(-0.2, 0.2, HIDDEN).astype(np.float32),
        "bn_mean": rng.uniform(-0.3, 0.3, HIDDEN).astype(np.float32),
        "bn_var": rng.uniform(0.5, 2.0, HIDDEN).astype(np.float32),
        "dense_1_w": kaiming((HIDDEN, NUM_CLASSES), HIDDEN), "dense_1_b": bias(NUM_CLASSES),
    }


def folded_batchnorm(w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Scale and shift of the inference-mode BatchNormalization, as Keras/tf2onnx fold it into Mul + Add."""
    scale = w["bn_gamma"] / np.sqrt(w["bn_var"] + np.float32(BN_EPSILON))
    shift = w["bn_beta"] - w["bn_mean"] * scale
    return scale.astype(np.float32), shift.astype(np.float32)


def build_model(seed: int = SEED) -> onnx.ModelProto:
    """Assemble the tf2onnx-style graph (opset 13) with weights from :func:`make_weights`."""
    w = make_weights(seed)
    scale, shift = folded_batchnorm(w)
    p = _PREFIX
    inits = {
        f"{p}/conv2d/Conv2D/ReadVariableOp:0": w["conv1_w"],
        f"{p}/conv2d/BiasAdd/ReadVariableOp:0": w["conv1_b"],
        f"{p}/conv2d_1/Conv2D/ReadVariableOp:0": w["conv2_w"],
        f"{p}/conv2d_1/BiasAdd/ReadVariableOp:0": w["conv2_b"],
        f"{p}/dense/MatMul/ReadVariableOp:0": w["dense_w"],
        f"{p}/dense/BiasAdd/ReadVariableOp:0": w["dense_b"],
        f"{p}/batch_normalization/batchnorm/mul:0": scale,
        f"{p}/batch_normalization/batchnorm/sub:0": shift,
        f"{p}/dense_1/MatMul/ReadVariableOp:0": w["dense_1_w"],
        f"{p}/dense_1/BiasAdd/ReadVariableOp:0": w["dense_1_b"],
        "const_fold_opt__20": np.array(-1, dtype=np.int64).reshape(1),
        "const_axes__12": np.array([0], dtype=np.int64),
        "const_starts__0": np.array(0, dtype=np.int64),
    }
    initializers = [numpy_helper.from_array(v, name=k) for k, v in inits.items()]
    n = helper.make_node
    nodes = [
        n("Transpose", [INPUT_NAME], [f"{p}/conv2d/Conv2D__6:0"], name=f"{p}/conv2d/Conv2D__6", perm=[0, 3, 1, 2]),
        n("Conv", [f"{p}/conv2d/Conv2D__6:0", f"{p}/conv2d/Conv2D/ReadVariableOp:0",
                   f"{p}/conv2d/BiasAdd/ReadVariableOp:0"], [f"{p}/conv2d/BiasAdd:0"], name=f"{p}/conv2d/BiasAdd",
          kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1),
        n("Relu", [f"{p}/conv2d/BiasAdd:0"], [f"{p}/conv2d/Relu:0"], name=f"{p}/conv2d/Relu"),
        n("MaxPool", [f"{p}/conv2d/Relu:0"], [f"{p}/max_pooling2d/MaxPool:0"], name=f"{p}/max_pooling2d/MaxPool",
          kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", [f"{p}/max_pooling2d/MaxPool:0", f"{p}/conv2d_1/Conv2D/ReadVariableOp:0",
                   f"{p}/conv2d_1/BiasAdd/ReadVariableOp:0"], [f"{p}/conv2d_1/BiasAdd:0"],
          name=f"{p}/conv2d_1/BiasAdd", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1],
          group=1),
        n("Relu", [f"{p}/conv2d_1/BiasAdd:0"], [f"{p}/conv2d_1/Relu:0"], name=f"{p}/conv2d_1/Relu"),
        n("Transpose", [f"{p}/conv2d_1/Relu:0"], [f"{p}/conv2d_1/Relu__15:0"], name=f"{p}/conv2d_1/Relu__15",
          perm=[0, 2, 3, 1]),
        n("Shape", [f"{p}/conv2d_1/Relu__15:0"], [f"{p}/flatten/Shape:0"], name=f"{p}/flatten/Shape"),
        n("Gather", [f"{p}/flatten/Shape:0", "const_starts__0"], [f"{p}/flatten/strided_slice:0"],
          name=f"{p}/flatten/strided_slice", axis=0),
        n("Unsqueeze", [f"{p}/flatten/strided_slice:0", "const_axes__12"],
          [f"{p}/flatten/Reshape/shape_Unsqueeze__18:0"], name=f"{p}/flatten/Reshape/shape_Unsqueeze__18"),
        n("Concat", [f"{p}/flatten/Reshape/shape_Unsqueeze__18:0", "const_fold_opt__20"],
          [f"{p}/flatten/Reshape/shape_Concat__19:0"], name=f"{p}/flatten/Reshape/shape_Concat__19", axis=0),
        n("Reshape", [f"{p}/conv2d_1/Relu__15:0", f"{p}/flatten/Reshape/shape_Concat__19:0"],
          [f"{p}/flatten/Reshape:0"], name=f"{p}/flatten/Reshape"),
        n("MatMul", [f"{p}/flatten/Reshape:0", f"{p}/dense/MatMul/ReadVariableOp:0"], [f"{p}/dense/MatMul:0"],
          name=f"{p}/dense/MatMul"),
        n("Add", [f"{p}/dense/MatMul:0", f"{p}/dense/BiasAdd/ReadVariableOp:0"], [f"{p}/dense/BiasAdd:0"],
          name=f"{p}/dense/BiasAdd"),
        n("Mul", [f"{p}/dense/BiasAdd:0", f"{p}/batch_normalization/batchnorm/mul:0"],
          [f"{p}/batch_normalization/batchnorm/mul_1:0"], name=f"{p}/batch_normalization/batchnorm/mul_1"),
        n("Add", [f"{p}/batch_normalization/batchnorm/mul_1:0", f"{p}/batch_normalization/batchnorm/sub:0"],
          [f"{p}/batch_normalization/batchnorm/add_1:0"], name=f"{p}/batch_normalization/batchnorm/add_1"),
        n("Relu", [f"{p}/batch_normalization/batchnorm/add_1:0"], [f"{p}/activation/Relu:0"],
          name=f"{p}/activation/Relu"),
        n("MatMul", [f"{p}/activation/Relu:0", f"{p}/dense_1/MatMul/ReadVariableOp:0"], [f"{p}/dense_1/MatMul:0"],
          name=f"{p}/dense_1/MatMul"),
        n("Add", [f"{p}/dense_1/MatMul:0", f"{p}/dense_1/BiasAdd/ReadVariableOp:0"], [f"{p}/dense_1/BiasAdd:0"],
          name=f"{p}/dense_1/BiasAdd"),
        n("Softmax", [f"{p}/dense_1/BiasAdd:0"], [OUTPUT_NAME], name=f"{p}/dense_1/Softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tf2onnx",
        [helper.make_tensor_value_info(
            INPUT_NAME, TensorProto.FLOAT, ["unk__21", IMAGE_SIZE, IMAGE_SIZE, CHANNELS[0]]
        )],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["unk__22", NUM_CLASSES])],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="graphs.tf2onnx_style",
        doc_string="Hand-built imitation of a tf2onnx-converted Keras CNN (NHWC input, MatMul+Add dense, folded BN).",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _conv_same_nhwc(x: np.ndarray, kernel_oihw: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """3x3 stride-1 'same' convolution of an NHWC float64 array (cross-correlation, as Keras/ONNX define it)."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = sliding_window_view(padded, (3, 3), axis=(1, 2))  # N, H, W, C, kh, kw
    return np.einsum("nhwcij,ocij->nhwo", windows, kernel_oihw.astype(np.float64)) + bias


def _maxpool2_nhwc(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def reference_forward(x_nhwc: np.ndarray, seed: int = SEED) -> np.ndarray:
    """Pre-softmax logits [N, 10] of the graph for NHWC input [N, 32, 32, 3], in float64 NumPy.

    Computed directly in NHWC with the unfolded BatchNormalization formula, i.e. independently of the ONNX graph.
    """
    w = {k: v.astype(np.float64) for k, v in make_weights(seed).items()}
    x = np.asarray(x_nhwc, dtype=np.float64)
    h = np.maximum(_conv_same_nhwc(x, w["conv1_w"], w["conv1_b"]), 0)
    h = _maxpool2_nhwc(h)
    h = np.maximum(_conv_same_nhwc(h, w["conv2_w"], w["conv2_b"]), 0)
    h = h.reshape(h.shape[0], -1) @ w["dense_w"] + w["dense_b"]
    h = (h - w["bn_mean"]) / np.sqrt(w["bn_var"] + BN_EPSILON) * w["bn_gamma"] + w["bn_beta"]
    h = np.maximum(h, 0)
    return h @ w["dense_1_w"] + w["dense_1_b"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def write(path: str | Path = GRAPH_PATH, seed: int = SEED) -> Path:
    """Write the graph to ``path`` (default: the committed ``graphs/tf2onnx_small.onnx``)."""
    path = Path(path)
    onnx.save(build_model(seed), str(path))
    return path


if __name__ == "__main__":
    print(write())
