"""Benchmark region perturbation against its cost floor: the bare (L+1) x repeats forward passes per image.

Builds a small ONNX CNN with onnx.helper (conv-relu-maxpool twice, then a dense layer), runs it in an onnxruntime
CPU session, and times (a) ``region_perturbation`` with uniform noise and (b) the same number of forward passes
on a pre-built batch with nothing else. Prints both times and their ratio (target: <= 1.2), and how much of (a)
was spent inside the model.

    python -m tools.bench.perturbation --size 224 --images 4 --repeats 2   (from the repository root)
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from explainer.evaluation.region_perturbation import as_score_fn, region_perturbation


def build_cnn(size: int, classes: int = 10, seed: int = 0) -> bytes:
    """Serialized ONNX model: 3 x size x size input -> conv3x3(16) relu pool2 -> conv3x3(32) relu pool2 -> dense."""
    rng = np.random.default_rng(seed)
    side = size // 4
    weights = {
        "w1": rng.normal(0, np.sqrt(2 / 27), (16, 3, 3, 3)),
        "b1": np.zeros(16),
        "w2": rng.normal(0, np.sqrt(2 / 144), (32, 16, 3, 3)),
        "b2": np.zeros(32),
        "w3": rng.normal(0, np.sqrt(1 / (32 * side * side)), (32 * side * side, classes)),
        "b3": rng.normal(0, 0.1, classes),
    }
    initializers = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    pool = {"kernel_shape": [2, 2], "strides": [2, 2]}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], **pool),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], **conv),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], **pool),
        helper.make_node("Flatten", ["p2"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "bench_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def bare_forwards(session: ort.InferenceSession, images: np.ndarray, rows: int, batch_size: int) -> float:
    """Seconds for ``rows`` forward passes in batches of ``batch_size`` on a pre-built batch (the cost floor)."""
    batch = np.ascontiguousarray(np.resize(images, (batch_size,) + images.shape[1:]))
    start = time.perf_counter()
    done = 0
    while done < rows:
        take = min(batch_size, rows - done)
        session.run(["logits"], {"x": batch[:take]})
        done += take
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.perturbation", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = default)")
    parser.add_argument("--trials", type=int, default=3, help="best of this many interleaved timings of each")
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(build_cnn(args.size), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    images = rng.random((args.images, 3, args.size, args.size), dtype=np.float32)
    heatmaps = rng.normal(size=(args.images, args.size, args.size)).astype(np.float32)

    floor_rows = args.images * args.repeats * (args.steps + 1)
    inner = as_score_fn(session)
    model_time = [0.0]

    def timed(x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = inner(x)
        model_time[0] += time.perf_counter() - start
        return out

    bare_forwards(session, images, args.batch_size, args.batch_size)
    evaluation, inside, bare_times = [], [], []
    for _ in range(args.trials):
        bare_times.append(bare_forwards(session, images, floor_rows, args.batch_size))
        model_time[0] = 0.0
        start = time.perf_counter()
        result = region_perturbation(timed, images, heatmaps, steps=args.steps, repeats=args.repeats, low=0.0,
                                     high=1.0, batch_size=args.batch_size, progress=False)
        evaluation.append(time.perf_counter() - start)
        inside.append(model_time[0])
    bare = min(bare_times)
    best = int(np.argmin(evaluation))
    print(f"model: 3x{args.size}x{args.size} CNN, {args.images} images, L={args.steps}, repeats={args.repeats}, "
          f"batch {args.batch_size}, threads {args.threads or 'default'}")
    print(f"bare forwards ({floor_rows} = images x repeats x (L+1)): {bare:.3f} s "
          f"({1e3 * bare / floor_rows:.2f} ms/image)")
    print(f"region_perturbation:           {evaluation[best]:.3f} s (model {inside[best]:.3f} s, "
          f"other {evaluation[best] - inside[best]:.3f} s); AOPC {result.aopc:.4f}")
    print(f"ratio evaluation / bare forwards: {evaluation[best] / bare:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
