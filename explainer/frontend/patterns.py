"""Export idioms rewritten into single standard ONNX nodes before conversion (``fuse_patterns``).

Exporters write GELU, LayerNorm, hard-sigmoid/-swish and Mish as element-wise arithmetic where the opset (or the
model's own Python code) has no op for them. The explainer's ops, and AttnLRP's rules (the identity on element-wise
non-linearities, LayerNorm as one layer), are defined on the whole function, so each idiom becomes its ONNX op:

- LayerNorm over axes A (both ReduceMeans over A, axes an attribute or, from opset 18, an input): d = x − mean(x),
  σ = sqrt(mean(d²) + ε) with d² as Pow(d, 2) or d·d, y = d / σ or d · Reciprocal(σ), times an optional γ (in any
  grouping: tf2onnx writes d · (Reciprocal(σ) · γ)) plus an optional β; and the batch-norm form TensorFlow writes,
  x·s + (β − mean·s) (or + Neg(mean·s)) with s = γ / σ. It becomes LayerNormalization(x, γ, β, axis, ε) where A are
  the trailing axes, otherwise LayerNormalization between two Transposes that move A last and back (ConvNeXt's
  channels-first LayerNorm over axis 1 of [N, C, H, W]);
- GELU: 0.5·x·(1 + erf(x/√2)) → Gelu(x); 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) → Gelu(x, approximate='tanh');
- hard-sigmoid relu6(x + 3)/6 → HardSigmoid(x, α = 1/6, β = 0.5), relu6 written as Clip(·, 0, 6), Min(Max(·, 0), 6),
  Max(Min(·, 6), 0) or Min(Relu(·), 6); hard-swish x·relu6(x + 3)/6 and x·HardSigmoid(x) (α = 1/6, β = 0.5, as
  PyTorch writes it) → HardSwish(x);
- Mish x·tanh(softplus(x)) → Mish(x).

Operands of Add and Mul may come in either order; dividing by c and multiplying by 1/c are the same; constants may
be shaped [] or [1] and are compared with a relative tolerance of 1e-5. A pattern is fused only when every tensor
inside it is read by the pattern's own nodes alone; after folding, the model output is a tensor no node reads, so it
is never inside a pattern. The fused node writes the pattern's last tensor under its last node's name: nothing
downstream changes.

How it matches: each node, last first, is tried as the last node of a pattern, so the largest match wins. Products
(Mul, Div, Reciprocal, Pow with a constant integer exponent) are flattened into factors with integer powers and one
constant coefficient (``_product``), which absorbs every grouping and operand order exporters write; the rest follows
producers (``_Index``).

Why not onnxscript's rewriter: its fusions target com.microsoft contrib ops or opset 23, it would be a runtime
dependency, and it rewrites a ModelProto, while the folded graph's constants live outside any model proto (a round
trip would copy every weight).
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import permutations

import numpy as np
import onnx
from onnx import helper

from explainer.frontend.convert import attr
from explainer.frontend.fold import Folded
from explainer.frontend.inputs import DEFAULT_DOMAINS

_RTOL = 1e-5
_PRODUCT_OPS = ("Mul", "Div", "Reciprocal", "Pow")
#: more product nodes than any pattern has
_MAX_PRODUCT_NODES = 16
_GELU_TANH_CUBIC = 0.044715


def fuse_patterns(folded: Folded) -> list[str]:
    """Replace every recognised pattern in ``folded.nodes`` by its fused node(s), in place, where its last node was
    (new constants go to ``folded.consts``, new data tensors to ``folded.data`` and ``folded.shapes``); the
    ``changes`` lines."""
    index = _Index(folded)
    matches: dict[int, _Match] = {}
    claimed: set[int] = set()
    for root in reversed(folded.nodes):
        if id(root) in claimed or root.domain not in DEFAULT_DOMAINS:
            continue
        match = _match(index, root)
        if match is not None and not claimed.intersection(map(id, match.nodes)) \
                and index.self_contained(match.nodes, root):
            matches[id(root)] = match
            claimed.update(map(id, match.nodes))
    nodes: list[onnx.NodeProto] = []
    for node in folded.nodes:
        if id(node) in matches:
            nodes.extend(matches[id(node)].replacement)
        elif id(node) not in claimed:
            nodes.append(node)
        else:
            for name in node.output:
                folded.data.discard(name)
                folded.shapes.pop(name, None)
    folded.nodes[:] = nodes
    for m in matches.values():
        folded.consts.update(m.consts)
        folded.shapes.update(m.shapes)
        folded.data.update(m.shapes)
    counts = Counter((m.label, m.fused) for m in matches.values())
    return [f"fused {n} decomposed {label} pattern{'s' if n > 1 else ''} into {fused}"
            for (label, fused), n in counts.items()]


@dataclass
class _Match:
    """A pattern found: its nodes, what replaces them, and the tensors that replacement adds."""

    label: str
    fused: str
    nodes: list[onnx.NodeProto]
    replacement: list[onnx.NodeProto]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass
class _Product:
    """A tensor as coef · ∏ factor^power, and the product nodes that computed it."""

    factors: dict[str, int]
    coef: np.ndarray
    nodes: list[onnx.NodeProto]


class _Index:
    """The folded graph as the matcher reads it: each tensor's producer and readers, constants, shapes."""

    def __init__(self, folded: Folded) -> None:
        self.consts = folded.consts
        self.data = folded.data
        self.shapes = folded.shapes
        self.producer = {o: n for n in folded.nodes for o in n.output if o}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for node in folded.nodes:
            for name in dict.fromkeys(node.input):
                if name:
                    self.readers.setdefault(name, []).append(node)
        self._names = set(self.producer) | set(folded.consts) | set(folded.data)

    def node(self, name: str, *ops: str) -> onnx.NodeProto | None:
        """The producer of ``name`` if it is one of ``ops`` (default domain)."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type in ops and node.domain in DEFAULT_DOMAINS else None

    def scalar(self, name: str) -> float | None:
        """The value of a one-element floating-point or integer constant."""
        value = self.consts.get(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def split(self, node: onnx.NodeProto) -> tuple[str, float] | None:
        """The data operand and the constant scalar operand of a binary node, in either order."""
        if len(node.input) != 2:
            return None
        for data, const in (node.input, reversed(node.input)):
            value = self.scalar(const)
            if value is not None and data in self.data and self.consts[const].ndim <= len(self.shapes.get(data, ())):
                return data, value
        return None

    def only_reader(self, name: str, node: onnx.NodeProto) -> bool:
        readers = self.readers.get(name, [])
        return len(readers) == 1 and readers[0] is node

    def self_contained(self, nodes: list[onnx.NodeProto], root: onnx.NodeProto) -> bool:
        """Whether every tensor the pattern computes, but its last, is read by the pattern's nodes alone."""
        inside = {id(n) for n in nodes}
        return all(id(r) in inside for node in nodes if node is not root for name in node.output if name
                   for r in self.readers.get(name, []))

    def fresh(self, hint: str) -> str:
        name, i = hint, 0
        while name in self._names:
            i += 1
            name = f"{hint}_{i}"
        self._names.add(name)
        return name


def _close(value: float | None, target: float) -> bool:
    return value is not None and abs(value - target) <= _RTOL * abs(target)


def _product(ix: _Index, name: str) -> _Product:
    """``name`` as a product: its producer is expanded if it is a product op, and so is each operand's producer that
    the product alone reads (at most ``_MAX_PRODUCT_NODES`` nodes, so that a long chain of products costs little);
    constants go into the coefficient, every other tensor is a factor."""
    factors: Counter[str] = Counter()
    coef = np.ones((), np.float64)
    nodes: dict[int, onnx.NodeProto] = {}
    pending: list[tuple[str, int, onnx.NodeProto | None]] = [(name, 1, None)]
    while pending:
        t, power, reader = pending.pop()
        value = ix.consts.get(t)
        if value is not None:
            with np.errstate(divide="ignore", over="ignore"):
                coef = coef * value.astype(np.float64) ** power
            continue
        node = ix.node(t, *_PRODUCT_OPS)
        exponent = ix.scalar(node.input[1]) if node is not None and node.op_type == "Pow" else 1.0
        if node is None or (reader is not None and not ix.only_reader(t, reader)) or len(nodes) == _MAX_PRODUCT_NODES \
                or exponent is None or exponent != round(exponent):
            factors[t] += power
            continue
        nodes[id(node)] = node
        if node.op_type in ("Reciprocal", "Pow"):
            pending.append((node.input[0], -power if node.op_type == "Reciprocal" else power * int(exponent), node))
        else:
            pending.append((node.input[0], power, node))
            pending.append((node.input[1], -power if node.op_type == "Div" else power, node))
    return _Product({t: k for t, k in factors.items() if k}, coef, list(nodes.values()))


def _scalar_coef(ix: _Index, p: _Product, like: str) -> float | None:
    """The product's coefficient as one number, if it is one and broadcasting it keeps ``like``'s shape."""
    if p.coef.size != 1 or p.coef.ndim > len(ix.shapes.get(like, ())):
        return None
    return float(p.coef.reshape(-1)[0])


def _match(ix: _Index, root: onnx.NodeProto) -> _Match | None:
    if root.op_type == "Where":
        return _nan_guard(ix, root)
    if root.op_type == "Add":
        return _layernorm_with_bias(ix, root) or _layernorm_batchnorm_form(ix, root)
    if root.op_type not in ("Mul", "Div"):
        return None
    p = _product(ix, root.output[0])
    for matcher in (_gelu, _hard_sigmoid, _hard_swish, _mish):
        match = matcher(ix, root, p)
        if match is not None:
            return match
    return _layernorm_centred(ix, root, p, beta=None, nodes=[])


# --- element-wise activations -----------------------------------------------------------------------------------


def _nan_guard(ix: _Index, root: onnx.NodeProto) -> _Match | None:
    """Where(IsNaN(y), c, y) with a constant c (transformers' guard against fully masked attention rows): y itself
    wherever the model's output is finite, which verification checks on the reference input."""
    if len(root.input) != 3:
        return None
    isnan = ix.node(root.input[0], "IsNaN")
    if isnan is None or root.input[2] != isnan.input[0] or root.input[1] not in ix.consts \
            or root.input[2] not in ix.data:
        return None
    fused = helper.make_node("Identity", [root.input[2]], [root.output[0]], name=root.name)
    return _Match("NaN guard Where(IsNaN(y), c, y)", "y", [isnan, root], [fused])


def _activation(label: str, root: onnx.NodeProto, x: str, nodes: list[onnx.NodeProto], op: str,
                **attrs: object) -> _Match:
    fused = helper.make_node(op, [x], [root.output[0]], name=root.name, **attrs)
    shown = op + "".join(f"({k}='{v}')" for k, v in attrs.items() if isinstance(v, str))
    return _Match(label, shown, [root, *(n for n in nodes if n is not root)], [fused])


def _pair(p: _Product) -> Iterator[tuple[str, str]]:
    """Both orders (x, other) of a product of two distinct factors, each to the power 1."""
    if len(p.factors) == 2 and all(k == 1 for k in p.factors.values()):
        yield from permutations(p.factors)


def _one_plus(ix: _Index, name: str) -> tuple[onnx.NodeProto, onnx.NodeProto] | None:
    """The Add node of ``name`` = 1 + erf(·) or 1 + tanh(·), and the Erf or Tanh node."""
    add = ix.node(name, "Add")
    operands = ix.split(add) if add is not None else None
    inner = ix.node(operands[0], "Erf", "Tanh") if operands is not None and _close(operands[1], 1.0) else None
    return (add, inner) if inner is not None else None


def _gelu(ix: _Index, root: onnx.NodeProto, p: _Product) -> _Match | None:
    for x, e in _pair(p):
        found = _one_plus(ix, e) if _close(_scalar_coef(ix, p, x), 0.5) else None
        if found is None:
            continue
        add, inner = found
        u = _product(ix, inner.input[0])
        c = _scalar_coef(ix, u, x)
        if inner.op_type == "Erf" and u.factors == {x: 1} and _close(c, 1 / math.sqrt(2)):
            return _activation("GELU", root, x, [*p.nodes, add, inner, *u.nodes], "Gelu", approximate="none")
        if inner.op_type == "Tanh" and list(u.factors.values()) == [1] and _close(c, math.sqrt(2 / math.pi)):
            cubic = _cubic(ix, next(iter(u.factors)), x)
            if cubic is not None:
                return _activation("GELU (tanh approximation)", root, x, [*p.nodes, add, inner, *u.nodes, *cubic],
                                   "Gelu", approximate="tanh")
    return None


def _cubic(ix: _Index, name: str, x: str) -> list[onnx.NodeProto] | None:
    """The nodes of ``name`` = x + 0.044715·x³ (operands in either order), or None."""
    add = ix.node(name, "Add")
    if add is None or len(add.input) != 2:
        return None
    for a, b in (add.input, reversed(add.input)):
        w = _product(ix, b)
        if a == x and w.factors == {x: 3} and _close(_scalar_coef(ix, w, x), _GELU_TANH_CUBIC):
            return [add, *w.nodes]
    return None


def _clip_bounds(ix: _Index, clip: onnx.NodeProto) -> tuple[float | None, float | None]:
    """Clip's bounds: attributes before opset 11, optional inputs since (None where absent or not constant)."""
    if any(a.name in ("min", "max") for a in clip.attribute):
        return attr(clip, "min"), attr(clip, "max")
    bounds = [ix.scalar(clip.input[i]) if len(clip.input) > i and clip.input[i] else None for i in (1, 2)]
    return bounds[0], bounds[1]


def _relu6(ix: _Index, name: str) -> tuple[str, list[onnx.NodeProto]] | None:
    """The input a and the nodes of ``name`` = min(max(a, 0), 6) in the spellings exporters use."""
    clip = ix.node(name, "Clip")
    if clip is not None:
        lo, hi = _clip_bounds(ix, clip)
        return (clip.input[0], [clip]) if _close(lo, 0.0) and _close(hi, 6.0) else None
    outer = ix.node(name, "Min", "Max")
    operands = ix.split(outer) if outer is not None else None
    if operands is None:
        return None
    inner_name, bound = operands
    if outer.op_type == "Min" and _close(bound, 6.0):
        relu = ix.node(inner_name, "Relu")
        if relu is not None:
            return relu.input[0], [outer, relu]
        inner, inner_bound = ix.node(inner_name, "Max"), 0.0
    elif outer.op_type == "Max" and _close(bound, 0.0):
        inner, inner_bound = ix.node(inner_name, "Min"), 6.0
    else:
        return None
    inner_operands = ix.split(inner) if inner is not None else None
    if inner_operands is None or not _close(inner_operands[1], inner_bound):
        return None
    return inner_operands[0], [outer, inner]


def _relu6_of_x_plus_3(ix: _Index, name: str) -> tuple[str, list[onnx.NodeProto]] | None:
    """x and the nodes of ``name`` = relu6(x + 3)."""
    relu6 = _relu6(ix, name)
    add = ix.node(relu6[0], "Add") if relu6 is not None else None
    operands = ix.split(add) if add is not None else None
    if operands is None or not _close(operands[1], 3.0):
        return None
    return operands[0], [*relu6[1], add]


def _hard_sigmoid(ix: _Index, root: onnx.NodeProto, p: _Product) -> _Match | None:
    if len(p.factors) != 1 or next(iter(p.factors.values())) != 1:
        return None
    found = _relu6_of_x_plus_3(ix, next(iter(p.factors)))
    if found is None or not _close(_scalar_coef(ix, p, found[0]), 1 / 6):
        return None
    return _activation("hard-sigmoid", root, found[0], [*p.nodes, *found[1]], "HardSigmoid", alpha=1 / 6, beta=0.5)


def _hard_swish(ix: _Index, root: onnx.NodeProto, p: _Product) -> _Match | None:
    for x, g in _pair(p):
        coef = _scalar_coef(ix, p, x)
        found = _relu6_of_x_plus_3(ix, g)
        if found is not None and found[0] == x and _close(coef, 1 / 6):
            return _activation("hard-swish", root, x, [*p.nodes, *found[1]], "HardSwish")
        hs = ix.node(g, "HardSigmoid")
        if hs is not None and hs.input[0] == x and _close(coef, 1.0) \
                and _close(attr(hs, "alpha", 0.2), 1 / 6) and _close(attr(hs, "beta", 0.5), 0.5):
            return _activation("hard-swish", root, x, [*p.nodes, hs], "HardSwish")
    return None


def _mish(ix: _Index, root: onnx.NodeProto, p: _Product) -> _Match | None:
    for x, t in _pair(p):
        tanh = ix.node(t, "Tanh")
        softplus = ix.node(tanh.input[0], "Softplus") if tanh is not None else None
        if softplus is not None and softplus.input[0] == x and _close(_scalar_coef(ix, p, x), 1.0):
            return _activation("Mish", root, x, [*p.nodes, tanh, softplus], "Mish")
    return None


# --- LayerNorm --------------------------------------------------------------------------------------------------


def _mean_axes(ix: _Index, node: onnx.NodeProto) -> tuple[int, ...] | None:
    """The axes a keepdims ReduceMean averages over (sorted, non-negative), or None (keepdims=0, the batch axis,
    every axis, or an input of unknown rank)."""
    rank = len(ix.shapes.get(node.input[0], ()))
    axes = attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1] in ix.consts:
        axes = ix.consts[node.input[1]].reshape(-1).tolist()
    if not rank or not axes or attr(node, "keepdims", 1) != 1:
        return None
    normalised = tuple(sorted({int(a) % rank for a in axes}))
    return None if 0 in normalised else normalised


def _variance(ix: _Index, std: str, x: str, mean: str,
              axes: tuple[int, ...]) -> tuple[float, str, list[onnx.NodeProto]] | None:
    """ε, d and the nodes of ``std`` = sqrt(mean(d²) + ε) with d = x − ``mean``, both means over ``axes``."""
    sqrt = ix.node(std, "Sqrt")
    add = ix.node(sqrt.input[0], "Add") if sqrt is not None else None
    operands = ix.split(add) if add is not None else None
    var = ix.node(operands[0], "ReduceMean") if operands is not None else None
    if var is None or operands[1] < 0 or _mean_axes(ix, var) != axes:
        return None
    square = _product(ix, var.input[0])
    d = _single_factor(square, 2)
    sub = ix.node(d, "Sub") if d is not None and _close(_scalar_coef(ix, square, d), 1.0) else None
    if sub is None or list(sub.input) != [x, mean]:
        return None
    return operands[1], d, [sqrt, add, var, *square.nodes, sub]


def _single_factor(p: _Product, power: int) -> str | None:
    """The factor of a product of one factor to ``power``."""
    return next(iter(p.factors)) if list(p.factors.values()) == [power] else None


def _mean_of(ix: _Index, mean: str) -> tuple[str, tuple[int, ...], onnx.NodeProto] | None:
    """x, the axes and the node of ``mean`` = ReduceMean(x) over non-batch axes."""
    node = ix.node(mean, "ReduceMean")
    axes = _mean_axes(ix, node) if node is not None else None
    return (node.input[0], axes, node) if axes is not None else None


def _layernorm_centred(ix: _Index, root: onnx.NodeProto, p: _Product, beta: np.ndarray | None,
                       nodes: list[onnx.NodeProto]) -> _Match | None:
    """``p`` = γ · d / σ (``nodes``: what computes the pattern after it, β's Add)."""
    d = next((t for t, k in p.factors.items() if k == 1), None)
    std = next((t for t, k in p.factors.items() if k == -1), None)
    sub = ix.node(d, "Sub") if len(p.factors) == 2 and d is not None and std is not None else None
    mean = _mean_of(ix, sub.input[1]) if sub is not None else None
    if mean is None or mean[0] != sub.input[0]:
        return None
    x, axes, mean_node = mean
    variance = _variance(ix, std, x, mean_node.output[0], axes)
    if variance is None or variance[1] != d:
        return None
    return _layernorm(ix, root, x, axes, variance[0], p.coef, beta,
                      [*nodes, *p.nodes, *variance[2], mean_node])


def _layernorm_with_bias(ix: _Index, root: onnx.NodeProto) -> _Match | None:
    """``root`` = γ · d / σ + β."""
    for t, b in (root.input, reversed(root.input)):
        if b in ix.consts and ix.node(t, "Mul", "Div") is not None:
            return _layernorm_centred(ix, root, _product(ix, t), ix.consts[b], [root])
    return None


def _layernorm_batchnorm_form(ix: _Index, root: onnx.NodeProto) -> _Match | None:
    """``root`` = x·s + (β − mean·s), or x·s + Neg(mean·s), with s = γ / σ (TensorFlow's batch_normalization)."""
    for scaled, shift in (root.input, reversed(root.input)):
        sub, neg = ix.node(shift, "Sub"), ix.node(shift, "Neg")
        if sub is not None and sub.input[0] in ix.consts:
            beta, centre = ix.consts[sub.input[0]], sub.input[1]
        elif neg is not None:
            beta, centre = None, neg.input[0]
        else:
            continue
        xs, ms = ix.node(scaled, "Mul"), ix.node(centre, "Mul")
        if xs is None or ms is None:
            continue
        for (x, s), (mean, s2) in ((a, b) for a in permutations(xs.input) for b in permutations(ms.input)):
            found = _mean_of(ix, mean)
            if s != s2 or found is None or found[0] != x:
                continue
            inv = _product(ix, s)
            std = _single_factor(inv, -1)
            variance = _variance(ix, std, x, mean, found[1]) if std is not None else None
            if variance is not None:
                shift_node = sub if sub is not None else neg
                return _layernorm(ix, root, x, found[1], variance[0], inv.coef, beta,
                                  [root, shift_node, xs, ms, *inv.nodes, *variance[2], found[2]])
    return None


def _per_axes(value: np.ndarray | None, shape: tuple[int, ...], axes: tuple[int, ...],
              default: float) -> np.ndarray | None:
    """``value``, broadcast against a tensor of ``shape``, as an array over ``axes`` alone (``default`` where absent);
    None where it would grow the tensor or varies along another axis."""
    if value is None:
        return np.full([shape[a] for a in axes], default, np.float32)
    try:
        if np.broadcast_shapes(value.shape, shape) != tuple(shape):
            return None
    except ValueError:
        return None
    full = np.broadcast_to(value, shape)
    part = full[tuple(slice(None) if i in axes else 0 for i in range(len(shape)))]
    others = tuple(i for i in range(len(shape)) if i not in axes)
    if not np.array_equal(np.broadcast_to(np.expand_dims(part, others), shape), full):
        return None
    return np.ascontiguousarray(part, np.float32)


def _layernorm(ix: _Index, root: onnx.NodeProto, x: str, axes: tuple[int, ...], eps: float, gamma: np.ndarray,
               beta: np.ndarray | None, nodes: list[onnx.NodeProto]) -> _Match | None:
    """LayerNormalization of ``x`` over ``axes`` writing ``root``'s output, between Transposes where ``axes`` are not
    the trailing ones; None where γ or β is not a per-normalised-element constant."""
    shape = ix.shapes[x]
    rank, out, name = len(shape), root.output[0], root.name or root.output[0]
    scale = _per_axes(gamma, shape, axes, 1.0)
    bias = _per_axes(beta, shape, axes, 0.0)
    if scale is None or bias is None:
        return None
    consts = {ix.fresh(f"{name}/scale"): scale, ix.fresh(f"{name}/bias"): bias}
    axis = rank - len(axes)
    if axes == tuple(range(axis, rank)):
        ln = helper.make_node("LayerNormalization", [x, *consts], [out], name=name, axis=axis, epsilon=eps)
        return _Match("LayerNorm", "LayerNormalization", nodes, [ln], consts)
    perm = [i for i in range(rank) if i not in axes] + list(axes)
    moved = tuple(shape[i] for i in perm)
    last, normalised = ix.fresh(f"{out}/axes_last"), ix.fresh(f"{out}/normalised")
    replacement = [
        helper.make_node("Transpose", [x], [last], name=f"{name}/axes_last", perm=perm),
        helper.make_node("LayerNormalization", [last, *consts], [normalised], name=name, axis=axis, epsilon=eps),
        helper.make_node("Transpose", [normalised], [out], name=f"{name}/axes_back",
                         perm=[int(i) for i in np.argsort(perm)]),
    ]
    return _Match("LayerNorm", "Transpose + LayerNormalization + Transpose", nodes, replacement, consts,
                  {last: moved, normalised: moved})
