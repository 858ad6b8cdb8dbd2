"""Resize (from ONNX Resize with constant scales or sizes off the batch and channel axes, and from the older
Upsample): the upsampling of U-Nets, FPNs and segmentation heads. Along each resized axis a Resize is a fixed matrix A
(outputs × inputs) that ONNX's coordinate transformation and mode define (``interpolation_matrix``), so the op is
linear and separable; its transposed product applies Aᵀ axis by axis (a block sum where it only copies).

Two canonical ops, tried in this order:

* ``ResizeNearest`` (mode 'nearest'): every output is a copy of one input, so relevance goes back summed over the
  copies whatever the rule (the z-rule of a copy is exactly that sum); a structural op like Concat or Pad.
* ``ResizeLinear`` (mode 'linear', bilinear for images): each output is a convex combination of inputs (weights ≥ 0,
  summing to 1), treated as average pooling is (layer kind ``avgpool``): the Norm rule R_in = x ⊙ Aᵀ(R / stab(Ax)),
  or the plain gradient for gradient-like methods.

Upsample and Resize of opset 10 take scales only, with asymmetric coordinates and nearest rounding down. Refused with
the reason: cubic interpolation, 'tf_crop_and_resize', antialiased downscaling, ``exclude_outside``, a resized batch
or channel axis, sizes with a keep-aspect-ratio policy. The output is never negative where the input is not; zB
bounds pass (a convex combination of bounded values lies within the combined bounds)."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from explainer.frontend.convert import ConvertContext, Converter, NotSupported, attr, cnode
from explainer.frontend.ir import CNode
from explainer.lrp.composites import LayerKind
from explainer.lrp.rules import LinearRule, Norm, Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext, unsupported_rule

#: coordinate transformations (ONNX Resize's ``coordinate_transformation_mode``) this module computes
TRANSFORMS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric")
#: how a nearest Resize rounds a source coordinate (``nearest_mode``)
ROUNDING = {"round_prefer_floor": lambda v: np.ceil(v - 0.5), "round_prefer_ceil": lambda v: np.floor(v + 0.5),
            "floor": np.floor, "ceil": np.ceil}


def source_coordinates(size_in: int, size_out: int, scale: float, transform: str) -> np.ndarray:
    """Where each output position along one axis samples the input (ONNX Resize's coordinate transformation)."""
    x = np.arange(size_out, dtype=np.float64)
    if transform == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if transform == "half_pixel_symmetric":
        adjustment = size_out / (scale * size_in)
        return size_in / 2.0 * (1.0 - adjustment) + (x + 0.5) / scale - 0.5
    if transform == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if size_out > 1 else np.zeros(size_out)
    if transform == "align_corners":
        return x * (size_in - 1) / (size_out - 1) if size_out > 1 else np.zeros(size_out)
    if transform == "asymmetric":
        return x / scale
    raise ValueError(f"unknown coordinate transformation {transform!r}")


def interpolation_matrix(size_in: int, size_out: int, scale: float, mode: str, transform: str,
                         rounding: str = "round_prefer_floor") -> np.ndarray:
    """A [size_out, size_in] (float64) with output = A @ input along one axis: one 1 per row for 'nearest' (the
    rounded source coordinate, clamped to the input), the two linear weights of the neighbours for 'linear' (source
    coordinates clamped to the input, as ONNX's edge padding does)."""
    source = source_coordinates(size_in, size_out, scale, transform)
    matrix = np.zeros((size_out, size_in))
    rows = np.arange(size_out)
    if mode == "nearest":
        matrix[rows, np.clip(ROUNDING[rounding](source), 0, size_in - 1).astype(np.int64)] = 1.0
        return matrix
    clamped = np.clip(source, 0.0, size_in - 1.0)
    low = np.floor(clamped).astype(np.int64)
    high = np.minimum(low + 1, size_in - 1)
    upper = clamped - low
    np.add.at(matrix, (rows, low), 1.0 - upper)
    np.add.at(matrix, (rows, high), upper)
    return matrix


def _mode(node: onnx.NodeProto) -> str:
    """The node's interpolation mode ('bilinear', Upsample-7's name for it, as 'linear')."""
    mode = attr(node, "mode", "nearest")
    return "linear" if mode == "bilinear" else mode


def _legacy(ctx: ConvertContext, node: onnx.NodeProto) -> bool:
    """Whether the node is an Upsample or a Resize of opset 10: scales only (an input, or Upsample-7's attribute),
    asymmetric coordinates, nearest rounding down (what ONNX Runtime computes for them)."""
    return node.op_type == "Upsample" or ctx.opset < 11


def _scales(ctx: ConvertContext, node: onnx.NodeProto, rank: int) -> list[float] | None:
    """The per-axis scales the node gives (None where it gives sizes instead)."""
    if _legacy(ctx, node):
        given = attr(node, "scales", None)
        if given is None:
            given = ctx.value(node.input[1], "the scales").reshape(-1).tolist() if len(node.input) > 1 else []
    elif len(node.input) > 2 and node.input[2] and ctx.value(node.input[2], "the scales").size > 0:
        given = ctx.value(node.input[2], "the scales").reshape(-1).tolist()
    elif len(node.input) > 3 and node.input[3]:
        ctx.value(node.input[3], "the sizes")
        if attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
            raise NotSupported("Resize to sizes with a keep_aspect_ratio_policy other than 'stretch'")
        return None
    else:
        given = []
    if not given:
        raise NotSupported(f"{node.op_type} without scales or sizes")
    scales = [1.0] * rank
    for axis, scale in zip([int(a) % rank for a in attr(node, "axes", range(rank))], given):
        scales[axis] = float(scale)
    return scales


def convert_resize(ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
    """Canonical ResizeNearest or ResizeLinear (by the node's mode); NotSupported for what neither computes."""
    x = node.input[0]
    if not ctx.is_data(x):
        raise NotSupported("the resized input is constant")
    mode = _mode(node)
    if mode not in ("nearest", "linear"):
        raise NotSupported(f"{node.op_type} with mode '{mode}' (only 'nearest' and 'linear' are supported)")
    legacy = _legacy(ctx, node)
    transform = "asymmetric" if legacy else attr(node, "coordinate_transformation_mode", "half_pixel")
    if transform not in TRANSFORMS:
        raise NotSupported(f"Resize with coordinate_transformation_mode '{transform}'")
    rounding = "floor" if legacy else attr(node, "nearest_mode", "round_prefer_floor")
    if rounding not in ROUNDING:
        raise NotSupported(f"Resize with nearest_mode '{rounding}'")
    if mode == "linear" and attr(node, "exclude_outside", 0):
        raise NotSupported("Resize with exclude_outside=1")
    in_shape, out_shape = ctx.shape(x), ctx.shape(node.output[0])
    given = _scales(ctx, node, len(in_shape))
    scales = given or [o / i for o, i in zip(out_shape, in_shape)]
    if any(s != 1.0 for s in scales[:2]) or tuple(out_shape[:2]) != tuple(in_shape[:2]):
        raise NotSupported(f"{node.op_type} of the batch or channel axis")
    if mode == "linear" and attr(node, "antialias", 0) and any(s < 1.0 for s in scales):
        raise NotSupported("antialiased Resize that downscales")
    if given and any(o != math.floor(i * s + 1e-9) for i, o, s in zip(in_shape, out_shape, scales)):
        raise NotSupported(f"{node.op_type} whose output shape {list(out_shape)} is not the input's "
                           f"{list(in_shape)} times the scales {scales}")
    op = "ResizeNearest" if mode == "nearest" else "ResizeLinear"
    forward = {"scales": scales} if given else {"sizes": list(out_shape[1:])}
    return [cnode(op, node, [x], mode=mode, transform=transform, rounding=rounding, axis_scales=scales, **forward)]


def _matrices(ctx: EmitContext, node: CNode) -> dict[int, np.ndarray]:
    """Axis -> interpolation matrix for every axis the Resize changes (axes it leaves as they are are skipped)."""
    a = node.attrs
    in_shape, out_shape = ctx.shape(node.inputs[0]), ctx.shape(node.output)
    matrices = {}
    for axis in range(2, len(in_shape)):
        m = interpolation_matrix(in_shape[axis], out_shape[axis], a["axis_scales"][axis], a["mode"], a["transform"],
                                 a["rounding"])
        if m.shape[0] != m.shape[1] or not np.array_equal(m, np.eye(m.shape[0])):
            matrices[axis] = m
    return matrices


def _block_factor(m: np.ndarray) -> int | None:
    """s where ``m`` copies each input to s consecutive outputs (nearest upsampling by a whole factor), else None."""
    size_out, size_in = m.shape
    if size_out % size_in:
        return None
    s = size_out // size_in
    return s if np.array_equal(m, np.repeat(np.eye(size_in), s, axis=0)) else None


def _transpose(ctx: EmitContext, node: CNode, g: str) -> str:
    """Aᵀ g along every resized axis: a block sum where every axis copies by a whole factor, else one MatMul per
    axis (the axis moved last and back where it is not one of the last two)."""
    b = ctx.b
    matrices = _matrices(ctx, node)
    in_shape = ctx.shape(node.inputs[0])
    factors = {axis: _block_factor(m) for axis, m in matrices.items()}
    if all(f is not None for f in factors.values()):
        split = [0]
        summed = []
        for axis in range(1, len(in_shape)):
            split.append(in_shape[axis])
            if axis in factors:
                split.append(factors[axis])
                summed.append(len(split) - 1)
        blocks = b.op("Reshape", [g, b.ints(split)], f"{node.name}_blocks")
        return b.op("ReduceSum", [blocks, b.ints(summed)], f"{node.name}_copies", keepdims=0)
    rank = len(in_shape)
    for axis, m in matrices.items():
        if axis == rank - 1:
            g = b.op("MatMul", [g, ctx.weight(node, f"A{axis}", m)], f"{node.name}_At{axis}")
        elif axis == rank - 2:
            g = b.op("MatMul", [ctx.weight(node, f"At{axis}", m.T), g], f"{node.name}_At{axis}")
        else:
            perm = list(range(rank))
            perm[axis], perm[-1] = perm[-1], perm[axis]
            moved = b.op("Transpose", [g], f"{node.name}_moved{axis}", perm=perm)
            g = b.op("Transpose", [b.op("MatMul", [moved, ctx.weight(node, f"A{axis}", m)], f"{node.name}_At{axis}")],
                     f"{node.name}_back{axis}", perm=perm)
    return g


def _resize_numpy(values: np.ndarray, matrices: dict[int, np.ndarray]) -> np.ndarray:
    for axis, m in matrices.items():
        values = np.moveaxis(np.tensordot(m, values, axes=([1], [axis])), 0, axis)
    return values


class _Resize(Op):
    """What both Resize ops share: the forward Resize as the model has it, the sign rule and the bounds."""

    def converters(self) -> Mapping[str, Converter]:
        return {"Resize": self._convert, "Upsample": self._convert}

    def _convert(self, ctx: ConvertContext, node: onnx.NodeProto) -> list[CNode]:
        """The node as this op; a node of the other op's mode is refused before any other check (so that a refusal
        names its reason once)."""
        linear = _mode(node) == "linear"
        if linear != (self.name == "ResizeLinear"):
            raise NotSupported("a linear Resize (ResizeLinear's)" if linear else "not a linear Resize")
        return convert_resize(ctx, node)

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        b, a, x = ctx.b, node.attrs, node.inputs[0]
        if "scales" in a:
            inputs = [x, "", b.const(a["scales"])]
        else:  # the batch axis as the input has it at run time
            batch = b.op("Slice", [ctx.shape_of(x), b.ints([0]), b.ints([1])], f"{node.name}_batch")
            inputs = [x, "", "", b.op("Concat", [batch, b.ints(a["sizes"])], f"{node.name}_sizes", axis=0)]
        b.op("Resize", inputs, out_names=[node.output], mode=a["mode"], coordinate_transformation_mode=a["transform"],
             nearest_mode=a["rounding"])

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return all(inputs_nonnegative)

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        a = node.attrs
        matrices = {axis: interpolation_matrix(low.shape[axis], math.floor(low.shape[axis] * s + 1e-9)
                                               if "scales" in a else a["sizes"][axis - 1], s, a["mode"],
                                               a["transform"], a["rounding"])
                    for axis, s in enumerate(a["axis_scales"]) if axis >= 2}
        return _resize_numpy(low, matrices), _resize_numpy(high, matrices)


class ResizeNearest(_Resize):
    name = "ResizeNearest"
    kind = None

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        return [_transpose(ctx, node, r)]


class ResizeLinear(_Resize):
    name = "ResizeLinear"
    kind = LayerKind.AVGPOOL

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        x = node.inputs[0]
        if rule.is_gradient:
            return [_transpose(ctx, node, r)]
        if not isinstance(rule, (Norm, LinearRule)):
            raise unsupported_rule(node, rule)
        b = ctx.b
        s = b.div(r, b.stabilise(node.output, rule.stabiliser, f"{node.name}_den"), f"{node.name}_s")
        return [b.mul(x, _transpose(ctx, node, s), f"{node.name}_rin")]
