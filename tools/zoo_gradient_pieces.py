"""Why three zoo rows show a 1-3 % gradient difference: float32 decides a ReLU or max-pool window differently.

Run from the repository root: python -m tools.zoo_gradient_pieces zoo/inception_v1
It recomputes the zoo check's gradient comparison (same x: seed 0, uniform in [-1.5, 1.5], batch 1), then evaluates
the float64 reference on the linear piece ONNX Runtime's float32 forward of the original graph lies on: every ReLU
mask and max-pool winner is taken from ONNX Runtime's float32 values of the op's input.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from explainer import Explainer
from explainer.onnx_io import load_model
from tests.support import torch_reference as tr
from tests.support.zoo_check import _without_final_softmax, model_sources


def geometry(a: dict) -> tuple:
    """MaxPool attributes as torch's (kernel, stride, padding for F.pad, ceil_mode)."""
    pads = list(a.get("pads", [0, 0, 0, 0]))
    return (list(a["kernel_shape"]), list(a.get("strides", [1, 1])), (pads[1], pads[3], pads[0], pads[2]),
            bool(a.get("ceil_mode", 0)))


def main(name: str) -> None:
    model, _ = load_model(model_sources()[name]())
    plain = _without_final_softmax(model)
    ex = Explainer(model, "gradient", source=name)
    x = np.random.default_rng(0).uniform(-1.5, 1.5, (1, *ex.input_shape)).astype(np.float32)
    g = ex.explain(x)
    ours = g.relevance
    decided = [n for n in plain.graph.node if n.op_type in ("MaxPool", "Relu")]
    names = sorted({n.input[0] for n in decided})
    probe = onnx.ModelProto()
    probe.CopyFrom(plain)
    probe.graph.output.extend(helper.make_tensor_value_info(nm, TensorProto.FLOAT, None) for nm in names)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    f32 = dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))
    flips: dict[str, int] = {}
    plain_run = tr._run

    def on_float32_piece(op, ins, a, opset, node):
        if op == "MaxPool":
            k, s, p, c = geometry(a)
            xp = F.pad(ins[0], p, value=-np.inf)
            _, own = F.max_pool2d(xp, k, s, ceil_mode=c, return_indices=True)
            _, win = F.max_pool2d(F.pad(torch.from_numpy(f32[node.input[0]]).double(), p, value=-np.inf), k, s,
                                  ceil_mode=c, return_indices=True)
            flips[f"MaxPool {node.name}"] = int((own != win).sum())
            return [xp.flatten(2).gather(2, win.flatten(2)).reshape(win.shape), None]
        if op == "Relu":
            mask = torch.from_numpy(f32[node.input[0]] > 0)
            flips[f"Relu {node.name}"] = int((mask != (ins[0] > 0)).sum())
            return [ins[0] * mask]
        return plain_run(op, ins, a, opset, node)

    _, ref64 = tr.torch_gradient(plain, x, g.target)
    tr._run = on_float32_piece
    try:
        _, piece64 = tr.torch_gradient(plain, x, g.target)
    finally:
        tr._run = plain_run
    m = np.abs(ref64).max()
    differing = {k: v for k, v in flips.items() if v}
    print(name, "decisions that differ between ONNX Runtime float32 and float64:", differing,
          "of", sum(v.size for v in f32.values()), "ReLU units and max-pool inputs")
    at_x, on_piece = np.abs(ours - ref64).max() / m, np.abs(ours - piece64).max() / m
    print(f"ours vs float64 gradient at x:                      max|diff|/max|ref| {at_x:.2e}")
    print(f"ours vs float64 gradient on float32's linear piece: max|diff|/max|ref| {on_piece:.2e}")


if __name__ == "__main__":
    main(sys.argv[1])
