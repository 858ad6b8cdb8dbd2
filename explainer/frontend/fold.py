"""Constant and shape folding at batch size 1: which tensors depend on the input's values (data), the value of every
other tensor the remaining nodes read, and the static shape of every data tensor.

The libraries do the work. ONNX shape inference with data propagation gives each tensor's static shape once the
input is pinned to ``[1, ...]``; onnx-graphsurgeon drops what does not reach the output (``cleanup``), orders the
graph (``toposort``) and folds everything computable without the input's values (``fold_constants``, which evaluates
the constant sub-graph in ONNX Runtime: Constant/ConstantOfShape weights, the Gather->Unsqueeze->Concat arithmetic of
flatten chains). Own code remains only where they cannot decide, each place marked "Own code" with the reason:
folding Shape/Size (below), a second shape inference after folding (old opsets), an ONNX Runtime probe for the
tensors both inferences leave open, and refusing, by op and node, what ONNX Runtime cannot run (custom-domain ops)
before anything runs the model.
"""
from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import helper, numpy_helper, shape_inference
from onnx_graphsurgeon.logger import G_LOGGER

from explainer.errors import ModelError, UnsupportedOpError, describe
from explainer.frontend.inputs import DEFAULT_DOMAINS
from explainer.onnx_io import InMemoryModel, tensor_array
from explainer.runtime.providers import quiet_onnxruntime
from explainer.runtime.sessions import make_session

#: constants larger than this enter shape inference as typed inputs, not initializers: their values cannot matter
#: (data propagation follows small integer shape tensors only) and copying them would cost the weights' memory again
_INFERENCE_MAX_BYTES = 1 << 16
#: from this many bytes of initializers on, folding ends with a full garbage collection (see ``fold``); it costs from a
#: few milliseconds to a few hundred (it visits every object in the process), too much for a small model
_COLLECT_MIN_BYTES = 1 << 24


@dataclass
class Folded:
    """What folding leaves for conversion (see the module docstring)."""

    nodes: list[onnx.NodeProto]
    """the nodes that read data, in the model's order"""
    consts: dict[str, np.ndarray]
    """the value of every initializer and of every folded tensor the remaining nodes read"""
    data: set[str]
    """the explained tensor and every tensor computed from it"""
    shapes: dict[str, tuple[int, ...]]
    """the static shape of every data tensor at batch size 1"""
    folded_ops: Counter
    """op type -> nodes folded into constants"""
    unused_ops: Counter
    """op type -> nodes that do not reach the output"""
    probed: list[str]
    """tensors whose shape neither shape inference pinned, taken from an ONNX Runtime run instead"""
    side_nodes: list[onnx.NodeProto] = field(default_factory=list)
    """the nodes computed from fixed feeds alone (an attention mask's arithmetic, the embedding lookup of token
    ids), in the model's order: kept as they are, never converted"""
    side: set[str] = field(default_factory=set)
    """the fixed feeds and every tensor the side nodes compute"""


def fold(model: onnx.ModelProto, input_name: str, shape: tuple[int, ...], output: str, source: str,
         weights: dict[str, np.ndarray] | None = None, *, feeds: dict[str, np.ndarray] | None = None,
         explained: str | None = None, also: tuple[str, ...] = ()) -> Folded:
    """Fold ``model`` with its input ``input_name`` pinned to ``shape`` (batch axis 1), keeping only what output
    ``output`` needs. ``weights`` holds the values of initializers kept outside the protobuf
    (``InMemoryModel.from_loaded``); the others are read from it. A model with several inputs passes ``feeds``: a
    value at batch size 1 for every input (``input_name`` included: its shape and type pin the folding, and a run
    that must probe shapes uses them), and ``explained``, the tensor relevance is taken at when it is not the input
    itself (the embedding of token ids), and ``also``, further inputs that receive relevance; what depends on the
    inputs but on none of those is left as side nodes.

    Own code, for memory: onnx-graphsurgeon's graphs are reference cycles (each node's and tensor's lists point back
    at it) that only a full garbage collection frees, and the model's TensorProtos they hold keep the whole protobuf
    alive (sub-messages share one arena), past the caller's ``del`` (+230 MB resident for AlexNet). For a large
    model the collection runs here, right after folding."""
    weights = weights or {}
    initializers = {t.name: weights[t.name] if t.name in weights else tensor_array(t, source, f"initializer '{t.name}'")
                    for t in model.graph.initializer}
    if feeds is None:
        feeds = {input_name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    folded = _fold(model, initializers, feeds, explained or input_name, output, source, also)
    if sum(a.nbytes for a in initializers.values()) >= _COLLECT_MIN_BYTES:
        gc.collect()
    return folded


def _fold(model: onnx.ModelProto, initializers: dict[str, np.ndarray], feeds: dict[str, np.ndarray], explained: str,
          output: str, source: str, also: tuple[str, ...] = ()) -> Folded:
    with G_LOGGER.suppress():
        graph = _import(model, initializers, output, source)
        before = Counter(node.op for node in graph.nodes)
        graph.cleanup()
        refuse_foreign_ops(graph, source)
        kept = Counter(node.op for node in graph.nodes)
        shapes = {**{name: tuple(v.shape) for name, v in feeds.items()},
                  **infer_shapes(model, model.graph.node, initializers, feeds)}
        _fold_graph(graph, shapes, source)
        probed: list[str] = []
        if _open(graph, shapes):
            # Own code: before opset ~15, data propagation cannot follow Shape->Gather->Concat chains, so Reshape
            # outputs stay open; with the chains folded to constants, plain inference pins them.
            nodes, consts = _node_protos(model, graph), _constants(graph, initializers)
            shapes.update(infer_shapes(model, nodes, consts, feeds))
            if any(node.op in ("Shape", "Size") and node.inputs[0].name in shapes for node in graph.nodes):
                _fold_graph(graph, shapes, source)  # Shape/Size of the tensors this round pinned (SDPA's scale)
            probed = _open(graph, shapes)
        if probed:
            # Own code: what neither inference pins (ops without shape inference) comes from one ONNX Runtime run
            # that exposes just those tensors; Shape/Size nodes reading them fold in a second round.
            values = run_model(model, initializers, feeds, probed, source)
            shapes.update({name: tuple(int(d) for d in value.shape) for name, value in values.items()})
            _fold_graph(graph, shapes, source)
    nodes = _node_protos(model, graph)
    data = {explained, *also}
    for node in nodes:
        if data.intersection(node.input):
            data.update(o for o in node.output if o)
    if output not in data:
        raise ModelError(f"{source}: output '{output}' does not depend on the input "
                         f"{'(it folds to a constant)' if len(feeds) == 1 else f'tensor {explained!r}'}")
    side_nodes = [node for node in nodes if not data.intersection(node.output) or explained in node.output]
    side = (set(feeds) | {o for node in side_nodes for o in node.output if o}) - data
    return Folded(nodes=[node for node in nodes if data.intersection(node.output) and explained not in node.output],
                  consts=_constants(graph, initializers), data=data,
                  shapes={name: shapes[name] for name in data | side if name in shapes},
                  folded_ops=kept - Counter(node.op for node in graph.nodes), unused_ops=before - kept, probed=probed,
                  side_nodes=side_nodes, side=side)


def refuse_foreign_ops(graph: gs.Graph, source: str) -> None:
    """Own code: nodes that reach the output and that ONNX Runtime cannot run (an op of another domain, or one no
    ONNX opset defines) are unsupported: say so, by op and node, before anything runs the model. (Conversion would
    refuse them anyway; checked here, they do not surface as ONNX Runtime's "not a registered function/op" first.)"""
    foreign = [(node.name or node.outputs[0].name, node.op if _default(node) else f"{node.domain}.{node.op}")
               for node in graph.nodes if not _default(node) or not onnx.defs.has(node.op)]
    if foreign:
        raise UnsupportedOpError(foreign, source)


def _default(node: gs.Node) -> bool:
    return (node.domain or "") in DEFAULT_DOMAINS


def infer_shapes(model: onnx.ModelProto, nodes: Iterable[onnx.NodeProto], consts: dict[str, np.ndarray],
                 feeds: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """The static shapes that ONNX shape inference (with data propagation) pins for ``nodes`` when the inputs have
    the shapes and types of ``feeds`` and ``consts`` are the constants. The exporter's value_info is left out on
    purpose: it may be stale or assume another batch size."""
    skeleton = onnx.ModelProto()
    skeleton.ir_version = max(model.ir_version, 4)  # IR 3 ignores initializers that are not also graph inputs
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    graph = skeleton.graph
    graph.node.extend(nodes)
    graph.input.extend(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype),
                                                     list(value.shape)) for name, value in feeds.items())
    for name, value in consts.items():
        if value.nbytes <= _INFERENCE_MAX_BYTES:
            graph.initializer.append(numpy_helper.from_array(value, name))
        else:
            graph.input.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype),
                                                             list(value.shape)))
    graph.output.extend(helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, None)
                        for o in model.graph.output)
    try:
        inferred = shape_inference.infer_shapes(skeleton, strict_mode=False, data_prop=True)
    except Exception:
        # inference gave up on the whole graph (an op it cannot reason about): the probe decides instead
        return {}
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        ttype = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and ttype.HasField("shape") \
                and all(d.HasField("dim_value") for d in ttype.shape.dim):
            shapes[vi.name] = tuple(int(d.dim_value) for d in ttype.shape.dim)
    return _without_disputed_pooling(nodes, shapes)


_POOLS = ("MaxPool", "AveragePool", "LpPool")


def _without_disputed_pooling(nodes: Iterable[onnx.NodeProto],
                              shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Own code: with ``ceil_mode=1`` and padding, ONNX shape inference (onnx 1.23) and ONNX Runtime disagree on the
    pooled size (ONNX Runtime, like PyTorch, drops a last window that would start in the end padding: 5 wide,
    kernel 2, stride 2, pads 1+1 pool to 3, not 4). What ONNX Runtime computes is what the rewritten graph must match,
    so a disputed pooling output and everything computed from it are left open, for the probe run to pin."""
    open_names: set[str] = set()
    for node in nodes:
        if open_names.intersection(node.input):
            open_names.update(o for o in node.output if o)
        elif node.op_type in _POOLS and _ort_pooled_shape(node, shapes) not in (None, shapes.get(node.output[0])):
            open_names.update(o for o in node.output if o)
    return {name: s for name, s in shapes.items() if name not in open_names}


def _ort_pooled_shape(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    """The output shape ONNX Runtime gives a ceil-mode pooling node with explicit pads, or None (not such a node, or
    its input shape is unknown)."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    x = shapes.get(node.input[0])
    if not attrs.get("ceil_mode") or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"") or x is None:
        return None
    kernel = list(attrs["kernel_shape"])
    n = len(kernel)
    strides, dilations = attrs.get("strides", [1] * n), attrs.get("dilations", [1] * n)
    pads = attrs.get("pads", [0] * (2 * n))
    spatial = []
    for i, size in enumerate(x[2:]):
        span = size + pads[i] + pads[i + n] - (dilations[i] * (kernel[i] - 1) + 1)
        out = -(-span // strides[i]) + 1
        if (out - 1) * strides[i] >= size + pads[i]:
            out -= 1
        spatial.append(out)
    return (*x[:2], *spatial)


def run_model(model: onnx.ModelProto, consts: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
              names: list[str], source: str) -> dict[str, np.ndarray]:
    """The values of tensors ``names`` of the original model for the inputs ``feeds``: one ONNX Runtime run, the
    large initializers handed over from ``consts`` without another copy."""
    runnable = InMemoryModel.from_model(model, consts)
    del runnable.skeleton.graph.output[:]
    runnable.skeleton.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in names)
    try:
        values = make_session(runnable, "cpu", optimize="basic", one_shot=True).run(names, feeds)
    except Exception as exc:
        shown = ", ".join(f"{list(v.shape)}" for v in feeds.values())
        raise ModelError(f"{source}: ONNX Runtime cannot run the model on an input of shape {shown} "
                         f"({describe(exc, 400)})") from None
    return dict(zip(names, values))


def _import(model: onnx.ModelProto, initializers: dict[str, np.ndarray], output: str, source: str) -> gs.Graph:
    """The model as an onnx-graphsurgeon graph whose only output is ``output``; its initializers hold the arrays
    already read (folding would otherwise read a second copy of each weight it touches from the protobuf, and an
    initializer kept outside the protobuf has no data there)."""
    try:
        graph = gs.import_onnx(model)
    except Exception as exc:
        raise ModelError(f"{source}: onnx-graphsurgeon cannot read the model ({describe(exc, 400)})") from None
    for name, tensor in graph.tensors().items():
        if isinstance(tensor, gs.Constant) and name in initializers:
            tensor.values = initializers[name]
    graph.outputs = [t for t in graph.outputs if t.name == output]
    return graph


def _fold_graph(graph: gs.Graph, shapes: dict[str, tuple[int, ...]], source: str) -> None:
    """Fold Shape/Size of statically shaped tensors, then every node that reads only constants; drop what that
    leaves unused."""
    _fold_shape_ops(graph, shapes)
    quiet_onnxruntime()
    try:
        # fold_shapes=False: _fold_shape_ops did that, correctly. error_ok=False: a constant sub-graph ONNX Runtime
        # cannot evaluate is the model's fault, to be reported, not silently left unfolded (it would surface later
        # as a puzzling "must be a constant" from a converter).
        graph.toposort().fold_constants(fold_shapes=False, partitioning=None, error_ok=False,
                                        recurse_subgraphs=False, flatten_subgraphs=False, recurse_functions=False)
        graph.cleanup()
    except Exception as exc:
        raise ModelError(f"{source}: cannot fold the model's constant computations ({describe(exc, 400)})") from None


def _fold_shape_ops(graph: gs.Graph, shapes: dict[str, tuple[int, ...]]) -> None:
    """Own code: Shape and Size of tensors with a static shape become constants. onnx-graphsurgeon 0.6's shape
    folding ignores Shape's start/end (opset 15), giving wrong values, and does not fold Size."""
    for node in graph.nodes:
        if node.op not in ("Shape", "Size") or node.inputs[0].name not in shapes:
            continue
        static = shapes[node.inputs[0].name]
        if node.op == "Size":
            value = np.array(int(np.prod(static)), np.int64)
        else:
            value = np.array(static[node.attrs.get("start", 0):node.attrs.get("end", len(static))], np.int64)
        out = node.outputs[0]
        out.to_constant(value)
        out.inputs.clear()


def _open(graph: gs.Graph, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Data tensors that a node reads or that are the output, without a static shape."""
    return sorted({t.name for node in graph.nodes for t in node.outputs
                   if t.name and t.name not in shapes and (t.outputs or t in graph.outputs)})


def _node_protos(model: onnx.ModelProto, graph: gs.Graph) -> list[onnx.NodeProto]:
    """The graph's nodes as the model's own NodeProtos, in the model's (topological) order. Folding only turns
    tensors into constants and removes nodes, so every remaining node is an original one, attributes untouched."""
    remaining = {tuple(t.name for t in node.outputs) for node in graph.nodes}
    return [node for node in model.graph.node if tuple(node.output) in remaining]


def _constants(graph: gs.Graph, initializers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every initializer as already loaded (a run of the original model needs them all) and every folded tensor the
    graph's nodes read."""
    folded = {name: np.asarray(t.values) for name, t in graph.tensors().items()
              if isinstance(t, gs.Constant) and name not in initializers}
    return {**initializers, **folded}

