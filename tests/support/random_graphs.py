"""Random small CNN classifiers for property tests: a hypothesis strategy, the ONNX graph, and an independent
float64 NumPy forward pass.

A network is a list of :class:`Step` s (a tiny IR of our own). :meth:`RandomCNN.onnx` turns the steps into ONNX
nodes with ``onnx.helper``; :meth:`RandomCNN.forward64` evaluates the same steps in float64 with NumPy (grouped,
dilated, strided, asymmetrically padded convolution as a sum over kernel offsets, pooling as a max/mean over window
offsets), so a test can compare the explainer against a reference that shares no code with it or with ONNX Runtime.

Shape of the generated networks::

    [NHWC input -> Transpose(0,3,1,2)]
    1-3 blocks of:  Conv(k 1-3 per axis, stride 1-2, pads incl. asymmetric, dilation 1-2, groups incl. depthwise)
                    [BatchNormalization] [Add(block input) when the conv keeps the shape] Relu
                    (with relu_after_conv: Relu, then [Add(block input)])
                    [MaxPool | AveragePool (kernel 2, stride 1-2)] [Concat(y, 1x1 Conv(y) [Relu])]
    Flatten | Reshape([0, -1]) | Reshape([-1, F])
    Gemm (transB 0/1, alpha, beta) | MatMul + Add   [Relu + a second dense layer]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


@dataclass
class Step:
    """One operation: ``op`` reads tensors ``inputs`` and writes ``output``; ``params`` holds attributes/weights."""

    op: str
    inputs: list[str]
    output: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RandomCNN:
    """A generated classifier: its steps, per-sample input shape, layout and the structural choices made."""

    steps: list[Step]
    input_name: str
    output_name: str
    input_shape: tuple[int, int, int]        # per sample, in the model's own layout
    layout: str                              # 'NCHW' or 'NHWC'
    num_classes: int
    has_bias: bool
    has_bn: bool
    description: list[str]

    def __repr__(self) -> str:   # what hypothesis prints for a falsifying example
        return (f"RandomCNN({self.layout} {list(self.input_shape)} -> {self.num_classes} classes: "
                + "; ".join(self.description) + ")")

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))

    # ------------------------------------------------------------------ ONNX
    def onnx(self) -> onnx.ModelProto:
        nodes: list[onnx.NodeProto] = []
        inits: list[onnx.TensorProto] = []

        def const(name: str, value: np.ndarray, dtype=np.float32) -> str:
            inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
            return name

        for i, s in enumerate(self.steps):
            p, name = s.params, f"{s.op}_{i}"
            if s.op == "transpose":
                nodes.append(helper.make_node("Transpose", s.inputs, [s.output], name=name, perm=p["perm"]))
            elif s.op == "conv":
                ins = s.inputs + [const(f"{name}_W", p["W"])]
                if p["B"] is not None:
                    ins.append(const(f"{name}_B", p["B"]))
                kh, kw = p["W"].shape[2:]
                nodes.append(helper.make_node("Conv", ins, [s.output], name=name, kernel_shape=[kh, kw],
                                              strides=list(p["strides"]), pads=list(p["pads"]),
                                              dilations=list(p["dilations"]), group=p["group"]))
            elif s.op == "bn":
                ins = s.inputs + [const(f"{name}_{k}", p[k]) for k in ("scale", "bias", "mean", "var")]
                nodes.append(helper.make_node("BatchNormalization", ins, [s.output], name=name, epsilon=p["eps"]))
            elif s.op == "relu":
                nodes.append(helper.make_node("Relu", s.inputs, [s.output], name=name))
            elif s.op in ("maxpool", "avgpool"):
                op = "MaxPool" if s.op == "maxpool" else "AveragePool"
                nodes.append(helper.make_node(op, s.inputs, [s.output], name=name, kernel_shape=[2, 2],
                                              strides=[p["stride"]] * 2))
            elif s.op == "add":
                nodes.append(helper.make_node("Add", s.inputs, [s.output], name=name))
            elif s.op == "concat":
                nodes.append(helper.make_node("Concat", s.inputs, [s.output], name=name, axis=1))
            elif s.op == "flatten":
                nodes.append(helper.make_node("Flatten", s.inputs, [s.output], name=name, axis=1))
            elif s.op == "reshape":
                shape = const(f"{name}_shape", p["shape"], np.int64)
                nodes.append(helper.make_node("Reshape", s.inputs + [shape], [s.output], name=name))
            elif s.op == "gemm":
                w = p["W"].T if p["transB"] else p["W"]          # W is stored (in, out)
                ins = s.inputs + [const(f"{name}_W", w)]
                if p["B"] is not None:
                    ins.append(const(f"{name}_B", p["B"]))
                nodes.append(helper.make_node("Gemm", ins, [s.output], name=name, transB=p["transB"],
                                              alpha=p["alpha"], beta=p["beta"]))
            elif s.op == "matmul_add":
                mid = f"{name}_mm"
                nodes.append(helper.make_node("MatMul", [s.inputs[0], const(f"{name}_W", p["W"])], [mid],
                                              name=f"{name}_matmul"))
                nodes.append(helper.make_node("Add", [mid, const(f"{name}_B", p["B"])], [s.output],
                                              name=f"{name}_add"))
            else:  # pragma: no cover - the generator only makes the ops above
                raise AssertionError(s.op)
        x = helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT, ["N", *self.input_shape])
        y = helper.make_tensor_value_info(self.output_name, TensorProto.FLOAT, ["N", self.num_classes])
        graph = helper.make_graph(nodes, "random_cnn", [x], [y], initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        return model

    # ------------------------------------------------------------------ float64 reference
    def forward64(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, classes) in float64, computed with NumPy only."""
        env: dict[str, np.ndarray] = {self.input_name: np.asarray(x, np.float64)}
        for s in self.steps:
            a = [env[i] for i in s.inputs]
            p = s.params
            if s.op == "transpose":
                out = np.transpose(a[0], p["perm"])
            elif s.op == "conv":
                out = conv2d(a[0], p["W"], p["B"], p["strides"], p["pads"], p["dilations"], p["group"])
            elif s.op == "bn":
                shape = (1, -1, 1, 1)
                out = (a[0] - p["mean"].astype(np.float64).reshape(shape)) / np.sqrt(
                    p["var"].astype(np.float64).reshape(shape) + np.float64(np.float32(p["eps"])))
                out = out * p["scale"].astype(np.float64).reshape(shape) + p["bias"].astype(np.float64).reshape(shape)
            elif s.op == "relu":
                out = np.maximum(a[0], 0.0)
            elif s.op in ("maxpool", "avgpool"):
                out = pool2d(a[0], p["stride"], "max" if s.op == "maxpool" else "mean")
            elif s.op == "add":
                out = a[0] + a[1]
            elif s.op == "concat":
                out = np.concatenate(a, axis=1)
            elif s.op in ("flatten", "reshape"):
                out = a[0].reshape(len(a[0]), -1)
            elif s.op == "gemm":
                out = p["alpha"] * (a[0] @ p["W"].astype(np.float64))
                if p["B"] is not None:
                    out = out + p["beta"] * p["B"].astype(np.float64)
            elif s.op == "matmul_add":
                out = a[0] @ p["W"].astype(np.float64) + p["B"].astype(np.float64)
            else:  # pragma: no cover
                raise AssertionError(s.op)
            env[s.output] = out
        return env[self.output_name]


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides, pads, dilations, group: int) -> np.ndarray:
    """ONNX Conv semantics in float64: pads = [top, left, bottom, right]; a sum over the kernel's offsets."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilations
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    wg = w.astype(np.float64).reshape(group, o // group, cg, kh, kw)
    out = np.zeros((n, group, o // group, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw]
            out += np.einsum("ngchw,goc->ngohw", patch.reshape(n, group, cg, ho, wo), wg[..., i, j])
    out = out.reshape(n, o, ho, wo)
    if b is not None:
        out = out + b.astype(np.float64).reshape(1, -1, 1, 1)
    return out


def pool2d(x: np.ndarray, stride: int, how: str) -> np.ndarray:
    """2x2 max/average pooling without padding."""
    h, w = x.shape[2:]
    ho, wo = (h - 2) // stride + 1, (w - 2) // stride + 1
    windows = [x[:, :, i: i + stride * (ho - 1) + 1: stride, j: j + stride * (wo - 1) + 1: stride]
               for i in range(2) for j in range(2)]
    return np.max(windows, axis=0) if how == "max" else np.mean(windows, axis=0)


def avg_pool2d(x: np.ndarray, kernel, strides, pads, dilations) -> np.ndarray:
    """ONNX AveragePool semantics in float64 (count_include_pad=0, no ceil_mode): each dilated window's sum over its
    taps inside the input, divided by their number; pads = [top, left, bottom, right]."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilations
    width = ((pads[0], pads[2]), (pads[1], pads[3]))
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), *width))
    inside = np.pad(np.ones((h, w)), width)
    ho = conv_out(h, kh, sh, pads[0] + pads[2], dh)
    wo = conv_out(w, kw, sw, pads[1] + pads[3], dw)
    total, count = np.zeros((n, c, ho, wo)), np.zeros((ho, wo))
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
            cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
            total += xp[:, :, rows, cols]
            count += inside[rows, cols]
    return total / count


def conv_out(size: int, k: int, stride: int, pad_total: int, dilation: int) -> int:
    return (size + pad_total - dilation * (k - 1) - 1) // stride + 1


@st.composite
def random_cnns(draw, *, bias: bool = True, batchnorm: bool = True, layout: str | None = None,
                relu_after_conv: bool = False) -> RandomCNN:
    """A random small CNN. ``bias=False`` makes every conv/dense bias zero (or absent); ``batchnorm=False`` leaves
    BatchNormalization out; ``layout`` forces 'NCHW' or 'NHWC' (default: either). ``relu_after_conv=True`` sends
    every conv (+BN) output through a ReLU before anything else reads it: the residual Add then comes after the
    ReLU and the Concat side branch gets its own ReLU (the nets where the z+ rule is conservative)."""
    weight_seed = draw(st.integers(0, 2 ** 32 - 1), label="weight seed")
    rng = np.random.default_rng(weight_seed)
    layout = layout or draw(st.sampled_from(["NCHW", "NHWC"]))
    c = draw(st.integers(1, 3), label="channels")
    h, w = draw(st.integers(6, 14), label="H"), draw(st.integers(6, 14), label="W")
    input_name = draw(st.sampled_from(["x", "input", "image"]))
    output_name = draw(st.sampled_from(["scores", "logits", "output"]))
    steps: list[Step] = []
    desc: list[str] = [f"weight seed {weight_seed}"]
    count = [0]
    has_bn = False

    def new(hint: str) -> str:
        count[0] += 1
        return f"{hint}{count[0]}"

    def vec(n: int, scale: float) -> np.ndarray:
        return (rng.standard_normal(n) * scale).astype(np.float32)

    if layout == "NHWC":
        input_shape = (h, w, c)
        cur = new("nchw")
        steps.append(Step("transpose", [input_name], cur, {"perm": [0, 3, 1, 2]}))
        desc.append("Transpose[0,3,1,2]")
    else:
        input_shape = (c, h, w)
        cur = input_name

    for _ in range(draw(st.integers(1, 3), label="blocks")):
        block_in, cin = cur, c
        residual = draw(st.booleans(), label="residual")
        group = draw(st.sampled_from([g for g in range(1, cin + 1) if cin % g == 0]), label="group")
        cout = cin if residual else group * draw(st.integers(1, max(1, 8 // group)), label="channel multiplier")
        ks = [draw(st.integers(1, 3), label="kernel") for _ in range(2)]
        dil = [draw(st.integers(1, 2), label="dilation") if k > 1 else 1 for k in ks]
        if residual:
            strides = [1, 1]
            begin = [draw(st.integers(0, d * (k - 1)), label="pad begin") for k, d in zip(ks, dil)]
            pads = begin + [d * (k - 1) - b for k, d, b in zip(ks, dil, begin)]
        else:
            strides = [draw(st.integers(1, 2), label="stride") for _ in range(2)]
            pads = [draw(st.integers(0, d * (k - 1)), label="pad") for k, d in zip(ks, dil) for _ in range(2)]
            pads = [pads[0], pads[2], pads[1], pads[3]]        # [top, left, bottom, right]
            for axis, size in enumerate((h, w)):                # keep at least one output row/column
                if conv_out(size, ks[axis], strides[axis], pads[axis] + pads[axis + 2], dil[axis]) < 1:
                    extent = dil[axis] * (ks[axis] - 1)
                    pads[axis], pads[axis + 2] = extent // 2, extent - extent // 2
        fan_in = cin // group * ks[0] * ks[1]
        weight = (rng.standard_normal((cout, cin // group, *ks)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        conv_bias = vec(cout, 0.2) if bias and draw(st.booleans(), label="conv bias") else None
        if not bias and draw(st.booleans(), label="explicit zero bias"):
            conv_bias = np.zeros(cout, np.float32)
        out = new("conv")
        steps.append(Step("conv", [cur], out, {"W": weight, "B": conv_bias, "strides": strides, "pads": pads,
                                                "dilations": dil, "group": group}))
        h = conv_out(h, ks[0], strides[0], pads[0] + pads[2], dil[0])
        w = conv_out(w, ks[1], strides[1], pads[1] + pads[3], dil[1])
        desc.append(f"Conv {cin}->{cout} k{ks} s{strides} p{pads} d{dil} g{group}"
                    + ("" if conv_bias is not None else " nobias"))
        cur, c = out, cout
        if batchnorm and draw(st.booleans(), label="batchnorm"):
            has_bn = True
            out = new("bn")
            steps.append(Step("bn", [cur], out, {
                "scale": rng.uniform(0.5, 1.5, c).astype(np.float32), "bias": vec(c, 0.2),
                "mean": vec(c, 0.2), "var": rng.uniform(0.5, 2.0, c).astype(np.float32), "eps": 1e-5}))
            desc.append("BN")
            cur = out
        for stage in ("add", "relu") if not relu_after_conv else ("relu", "add"):
            if stage == "add" and residual:
                out = new("add")
                steps.append(Step("add", [cur, block_in], out))
                desc.append("Add(residual)")
                cur = out
            elif stage == "relu":
                out = new("relu")
                steps.append(Step("relu", [cur], out))
                desc.append("Relu")
                cur = out
        pool = draw(st.sampled_from([None, "maxpool", "avgpool"]), label="pool")
        if pool and h >= 2 and w >= 2:
            stride = draw(st.integers(1, 2), label="pool stride")
            out = new(pool)
            steps.append(Step(pool, [cur], out, {"stride": stride}))
            h, w = (h - 2) // stride + 1, (w - 2) // stride + 1
            desc.append(f"{pool} s{stride}")
            cur = out
        if draw(st.booleans(), label="concat"):
            extra = draw(st.integers(1, 3), label="concat channels")
            side = new("side")
            side_bias = vec(extra, 0.2) if bias else None
            steps.append(Step("conv", [cur], side, {
                "W": (rng.standard_normal((extra, c, 1, 1)) * np.sqrt(2.0 / c)).astype(np.float32), "B": side_bias,
                "strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1}))
            if relu_after_conv:
                steps.append(Step("relu", [side], side + "_relu"))
                side += "_relu"
            out = new("concat")
            steps.append(Step("concat", [cur, side], out))
            desc.append(f"Concat(+1x1 conv {c}->{extra}{' +Relu' if relu_after_conv else ''})")
            cur, c = out, c + extra

    features = c * h * w
    how = draw(st.sampled_from(["flatten", "reshape0", "reshape-1"]), label="flatten")
    out = new("flat")
    if how == "flatten":
        steps.append(Step("flatten", [cur], out))
    else:
        steps.append(Step("reshape", [cur], out, {"shape": [0, -1] if how == "reshape0" else [-1, features]}))
    desc.append(f"{how} ({features})")
    cur = out
    num_classes = draw(st.integers(2, 6), label="classes")
    widths = [num_classes]
    if draw(st.booleans(), label="two dense layers"):
        widths.insert(0, draw(st.integers(3, 12), label="hidden"))
    fan = features
    for i, width in enumerate(widths):
        weight = (rng.standard_normal((fan, width)) * np.sqrt(2.0 / fan)).astype(np.float32)
        dense_bias = vec(width, 0.2) if bias else np.zeros(width, np.float32)
        last = i == len(widths) - 1
        out = output_name if last else new("dense")
        if draw(st.booleans(), label="gemm"):
            alpha = draw(st.sampled_from([1.0, 0.5, 2.0]), label="alpha")
            beta = draw(st.sampled_from([1.0, 0.5, 2.0]), label="beta")
            trans = draw(st.integers(0, 1), label="transB")
            if not bias and draw(st.booleans(), label="no C"):
                dense_bias = None
            steps.append(Step("gemm", [cur], out, {"W": weight, "B": dense_bias, "transB": trans,
                                                   "alpha": alpha, "beta": beta}))
            desc.append(f"Gemm {fan}->{width} transB={trans} alpha={alpha} beta={beta}")
        else:
            steps.append(Step("matmul_add", [cur], out, {"W": weight, "B": dense_bias}))
            desc.append(f"MatMul+Add {fan}->{width}")
        cur, fan = out, width
        if not last:
            relu = new("relu")
            steps.append(Step("relu", [cur], relu))
            desc.append("Relu")
            cur = relu
    return RandomCNN(steps, input_name, output_name, input_shape, layout, num_classes, bias, has_bn, desc)


def random_input(net: RandomCNN, n: int, seed: int, bound: float | None = None) -> np.ndarray:
    """A float32 batch for ``net``; with ``bound``, values are clipped to [-bound, bound]."""
    x = np.random.default_rng(seed).standard_normal((n, *net.input_shape))
    if bound is not None:
        x = np.clip(x, -bound, bound)
    return x.astype(np.float32)
