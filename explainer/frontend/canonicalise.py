"""Bring an exported ONNX classifier into canonical form (see ``ir.py``) without changing its logits.

``canonicalise`` is a list of passes, each a small function with a small result:

0. ``inline_functions``: calls of model-local functions become their bodies, so that a function made of supported
   ops is explained (and one that is not is refused by op and node); ``check_tensors`` refuses tensor data that does
   not fit its declared shape;
1. ``pin_input``: the one image input and its static per-sample shape (the batch axis is pinned to 1 for folding),
   after ``refuse_subgraphs``; ``model_output`` names the output that holds the scores;
2. ``fold``: everything that does not depend on the input's values becomes a constant (initializers,
   Constant/ConstantOfShape weights, Shape->Gather->Concat flatten chains), nodes that do not reach the output go,
   and every data tensor gets its static shape (``fold.py``); ``check_sizes`` refuses a tensor too large to allocate
   and ``refuse_non_finite`` weights with NaN or Inf values, naming them;
   ``hoist_unbind`` and ``merge_batch_transposes`` rewrite attention's q/k/v unbinding (a Transpose moving the batch
   axis, then one selection per piece) and key transposes that fold the batch axis into the heads, so that the batch
   axis stays first (``unbind.py``); ``fuse_patterns`` rewrites the element-wise arithmetic
   exporters write for LayerNorm, GELU, hard-sigmoid, hard-swish and Mish into those ONNX ops (``patterns.py``);
3. ``run_reference``: one plain forward of the original model, the reference rewritten graphs are verified against;
4. ``convert``: each remaining node through its op's converter (``explainer.ops.CONVERTERS``): BatchNorm and Mul/Add
   with constants become Affine, MatMul+Add become Dense, a final Softmax is dropped, Identity/Dropout vanish;
5. ``normalise_output``: the output becomes a [N, outputs] score vector (a dense output flattened, its shape kept);
6. ``simplify``: Affine nodes fold into the linear layer before them where that is exact (``simplify.py``);
7. ``rename_reserved``: names the relevance graph's interface uses are freed.

Every canonical graph is batch-agnostic by construction: converters keep the batch axis first and dynamic (reshapes
get -1 for it, ops that would move or mix it are refused) and constants broadcast along it, so the batch size an
exporter baked in (a declared input of [1, ...], a Reshape to [1, -1]) is folded away at batch 1 and never reaches the
canonical graph.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
import onnx.inliner

from explainer.errors import ModelError, UnsupportedOpError, describe
from explainer.frontend.convert import Alias, ConvertContext, NotSupported
from explainer.frontend.fold import Folded, fold, run_model
from explainer.frontend.inputs import DEFAULT_DOMAINS, PinnedInput, image_input, model_opset, pin_input
from explainer.frontend.ir import CanonicalGraph, CNode
from explainer.frontend.patterns import fuse_patterns
from explainer.frontend.simplify import simplify
from explainer.frontend.unbind import hoist_unbind, merge_batch_transposes
from explainer.limits import check_tensor, tensor_bytes
from explainer.onnx_io import iter_tensors, tensor_array
from explainer.ops import CONVERTERS

_OUTPUT_CHAIN_OPS = {"Softmax", "LogSoftmax", "Identity", "Dropout", "Cast", "Flatten", "Reshape", "Squeeze"}
_RESHAPES = ("Flatten", "Reshape", "Squeeze", "Unsqueeze")
RESERVED = ("logits", "relevance", "target", "seed", "explained_target", "absorbed")


@dataclass
class Converted:
    """The canonical nodes, the tensor holding the model's scores, and what conversion changed."""

    nodes: list[CNode]
    output: str
    changes: list[str]
    removed_ops: Counter


def canonicalise(model: onnx.ModelProto, source: str, *, input_shape: tuple[int, ...] | None = None,
                 weights: dict[str, np.ndarray] | None = None) -> CanonicalGraph:
    """Canonical graph of ``model``; raises ModelError / UnsupportedOpError naming every node at fault. ``weights``
    holds the values of the initializers that ``model`` keeps outside the protobuf (``InMemoryModel.from_loaded``)."""
    model, inlined = inline_functions(model, source)
    refuse_subgraphs(model, source)
    check_tensors(model, source)
    image = pin_input(model, source, input_shape)
    output = model_output(model, source)
    folded = fold(model, image.name, image.batch_shape, output, source, weights)
    check_sizes(folded, source)
    refuse_non_finite(folded, source)
    rewritten = hoist_unbind(folded) + merge_batch_transposes(folded)
    fused = fuse_patterns(folded)
    chain = output_chain(folded, output)
    reference = run_reference(model, folded, image, chain, source)
    converted = convert(model, folded, chain, source)
    out_shape = tuple(int(d) for d in folded.shapes[converted.output][1:]) if converted.output in folded.shapes else ()
    scores = normalise_output(converted, folded.shapes, image, source)
    cg = CanonicalGraph(input_name=image.name, input_shape=image.shape, layout=image.layout,
                        output_name=scores.output, output_shape=out_shape or (folded.shapes[scores.output][-1],),
                        nodes=scores.nodes, shapes=folded.shapes, opset=model_opset(model),
                        changes=inlined + describe_folding(folded) + rewritten + fused + scores.changes,
                        source_ops=dict(Counter(n.op_type for n in model.graph.node)),
                        folded_ops=dict(folded.folded_ops), removed_ops=dict(scores.removed_ops + folded.unused_ops),
                        reference=reference_logits(model, folded, image, reference, converted.output, source))
    simplify(cg)
    rename_reserved(cg, source)
    return cg


def inline_functions(model: onnx.ModelProto, source: str) -> tuple[onnx.ModelProto, list[str]]:
    """``model`` with every call of a model-local function replaced by the function's body (onnx's inliner, on a
    copy; ``model`` itself when it has no functions), and the ``changes`` line saying so. The body's nodes are named
    '<domain>.<function>/<node>' (the inliner appends a call counter), so a refusal names the function it came from."""
    if not model.functions:
        return model, []
    functions = {(f.domain, f.name) for f in model.functions}
    calls = Counter(f"{n.domain}.{n.op_type}" for n in model.graph.node if (n.domain, n.op_type) in functions)
    prepared = onnx.ModelProto()
    prepared.CopyFrom(model)
    for function in prepared.functions:
        for node in function.node:
            node.name = f"{function.domain}.{function.name}/{node.name or node.op_type}"
    try:
        inlined = onnx.inliner.inline_local_functions(prepared, convert_version=True)
    except Exception as exc:
        raise ModelError(f"{source}: cannot inline the model's local functions "
                         f"({describe(exc)})") from None
    return inlined, ([f"inlined model-local functions: {_counts(calls)}"] if calls else [])


def check_tensors(model: onnx.ModelProto, source: str) -> None:
    """Tensors outside the initializer list (Constant values, sparse initializers) must hold the data their type and
    shape declare (initializers are checked as ``fold`` reads them)."""
    for tensor, what in iter_tensors(model, initializers=False):
        tensor_array(tensor, source, what)


def check_sizes(folded: Folded, source: str) -> None:
    """The largest tensor one sample makes must fit the memory limit (``explainer.limits``): a model that grows its
    input (Tile, Expand, Resize, ConstantOfShape) is refused with the figure before anything runs it."""
    if folded.shapes:
        name, shape = max(folded.shapes.items(), key=lambda item: tensor_bytes(item[1]))
        check_tensor(shape, f"{source}: the model's tensor '{name}' (one sample)")


#: constant inputs where ±Inf is a meaningful value (a bound, a padding value, a masked score) rather than a broken
#: weight
_INF_ALLOWED = {("Clip", 1), ("Clip", 2), ("Pad", 2), ("Where", 1), ("Where", 2)}


def refuse_non_finite(folded: Folded, source: str) -> None:
    """Every floating-point constant the remaining nodes read (weights, folded constants) must be finite: NaN or Inf
    weights make NaN scores and relevance, which would otherwise be blamed on the explanation method."""
    bad: dict[str, str] = {}
    for node in folded.nodes:
        for i, name in enumerate(node.input):
            value = folded.consts.get(name)
            if value is None or name in bad or value.dtype.kind != "f":
                continue
            with np.errstate(invalid="ignore", over="ignore"):  # Inf - Inf is NaN: still not finite
                if math.isfinite(float(np.sum(value, dtype=np.float64))):
                    continue
            nan, inf = int(np.isnan(value).sum()), int(np.isinf(value).sum())
            if (node.op_type, i) in _INF_ALLOWED:
                inf = 0
            if nan or inf:
                label = node.name or node.output[0]
                bad[name] = (f"'{name}' has {nan} NaN and {inf} Inf of its {value.size} values (read by "
                             f"{node.op_type} node '{label}')")
    if bad:
        raise ModelError(f"{source}: the model's weights are not finite: {'; '.join(bad.values())}; its scores "
                         "cannot be meaningful, so there is nothing to explain")


def refuse_subgraphs(model: onnx.ModelProto, source: str) -> None:
    """Control flow (If/Loop/Scan bodies) cannot be explained; refuse it before any work."""
    for node in model.graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise UnsupportedOpError([(node.name or node.output[0], node.op_type)], source)


def model_output(model: onnx.ModelProto, source: str) -> str:
    """The output that holds the class scores: the first one (the others, and what only they need, are ignored)."""
    if not model.graph.output:
        raise ModelError(f"{source}: the model has no outputs")
    return model.graph.output[0].name


def describe_folding(folded: Folded) -> list[str]:
    """The ``changes`` lines for what folding did."""
    changes = []
    if folded.folded_ops:
        changes.append("folded constant/shape nodes: " + _counts(folded.folded_ops))
    if folded.unused_ops:
        changes.append("removed nodes that do not reach the output: " + _counts(folded.unused_ops))
    if folded.probed:
        names = ", ".join(f"'{n}'" for n in folded.probed[:5]) + (" …" if len(folded.probed) > 5 else "")
        changes.append(f"shape inference left {len(folded.probed)} tensor(s) open ({names}); their static shapes "
                       "come from an ONNX Runtime run")
    return changes


def output_chain(folded: Folded, output: str) -> list[str]:
    """The output and the tensors it is computed from through score-preserving ops, output first (a final Softmax
    in it may go; the scores are read from one of these tensors)."""
    producers = {o: n for n in folded.nodes for o in n.output}
    chain = [output]
    while chain[-1] in producers and producers[chain[-1]].op_type in _OUTPUT_CHAIN_OPS:
        chain.append(producers[chain[-1]].input[0])
    return chain


@dataclass
class Reference:
    """A fixed N(0, 1) input and the original model's values for it of the output chain's tensors."""

    x: np.ndarray
    values: dict[str, np.ndarray]


def run_reference(model: onnx.ModelProto, folded: Folded, image: PinnedInput, chain: list[str],
                  source: str) -> Reference:
    """One plain ONNX Runtime forward of the original model, returning the output chain. It runs before conversion
    so that the session's memory is gone before the converted weights take theirs."""
    x = np.random.default_rng(0).standard_normal(image.batch_shape).astype(np.float32)
    return Reference(x, run_model(model, folded.consts, image.name, x, chain, source))


def convert(model: onnx.ModelProto, folded: Folded, chain: list[str], source: str) -> Converted:
    """Each data node through its op's converter; every node that cannot be converted is collected into one
    UnsupportedOpError (with the converter's reason where it gave one)."""
    initializers = {t.name for t in model.graph.initializer}
    producers = {o: n for n in folded.nodes for o in n.output}
    ctx = ConvertContext(folded.consts, folded.data, folded.shapes, model_opset(model), producers, set(chain))
    aliases: dict[str, str] = {}
    nodes: list[CNode] = []
    changes: list[str] = []
    removed: Counter = Counter()
    unsupported: list[tuple[str, str]] = []
    reasons: dict[str, str] = {}
    for node in folded.nodes:
        label = node.name or node.output[0]
        conv = CONVERTERS.get(node.op_type) if node.domain in DEFAULT_DOMAINS else None
        if conv is None:
            unsupported.append((label, node.op_type if node.domain in DEFAULT_DOMAINS
                                else f"{node.domain}.{node.op_type}"))
            continue
        resolved = onnx.NodeProto()
        resolved.CopyFrom(node)
        for i, name in enumerate(resolved.input):
            resolved.input[i] = aliases.get(name, name)
        try:
            result = conv(ctx, resolved)
        except NotSupported as exc:
            unsupported.append((label, node.op_type))
            reasons[label] = str(exc)
            continue
        if isinstance(result, Alias):
            aliases[node.output[0]] = aliases.get(result.source, result.source)
            changes.append(result.reason or f"dropped {node.op_type} '{label}'")
            removed[node.op_type] += 1
            continue
        nodes.extend(result)
        if node.op_type in _RESHAPES and len(node.input) > 1 and node.input[1] in folded.consts \
                and node.input[1] not in initializers:
            changes.append(f"static Reshape for {node.op_type} '{label}' (shape computed by folded nodes)")
    if unsupported:
        raise UnsupportedOpError(unsupported, source, reasons)
    return Converted(nodes, aliases.get(chain[0], chain[0]), changes, removed)


def normalise_output(converted: Converted, shapes: dict[str, tuple[int, ...]], image: PinnedInput,
                     source: str) -> Converted:
    """The scores as [N, outputs]: a dense output (segmentation logits [N, K, H, W], a heat map, [N, classes, 1, 1])
    is flattened in C order, and its per-sample shape is kept in ``CanonicalGraph.output_shape`` so that seeds over
    a region, a mask or a channel can be laid out on it."""
    out = converted.output
    if out == image.name:
        raise ModelError(f"{source}: the output is the input; nothing to explain")
    out_shape = shapes[out]
    if len(out_shape) == 2:
        return converted
    flat = out + "__scores"
    shapes[flat] = (1, int(np.prod(out_shape[1:])))
    reshape = CNode("Reshape", [out], flat, "scores_flatten", "Reshape", {"shape": [-1, shapes[flat][1]]})
    what = "a score vector" if int(np.prod(out_shape[1:])) == max(out_shape[1:] or (1,)) else "one score per value"
    return Converted(converted.nodes + [reshape], flat,
                     converted.changes + [f"flattened output of shape {list(out_shape[1:])} to {what}"],
                     converted.removed_ops)


def reference_logits(model: onnx.ModelProto, folded: Folded, image: PinnedInput, reference: Reference, scores: str,
                     source: str) -> tuple[np.ndarray, np.ndarray]:
    """The reference input and the original model's pre-softmax scores (tensor ``scores``) for it, against which
    every rewritten graph is verified; they must be finite (checked after conversion, whose reasons are more
    precise: a division by zero, a negative variance)."""
    value = reference.values.get(scores)
    if value is None:
        # conversion dropped an op outside the output chain at the very end (an identity Transpose, say)
        value = run_model(model, folded.consts, image.name, reference.x, [scores], source)[scores]
    value = np.asarray(value, np.float32).reshape(1, -1)
    if not np.all(np.isfinite(value)):
        raise ModelError(f"{source}: the model's scores for a standard-normal test input are not finite "
                         f"({int((~np.isfinite(value)).sum())} of {value.size} are NaN or Inf): its weights make NaN "
                         "or Inf (values past float32's range, say); there is nothing to explain")
    return reference.x, value


def rename_reserved(cg: CanonicalGraph, source: str) -> None:
    """Keep the names the relevance graph's interface uses free (a model's own output is often called 'logits')."""
    if cg.input_name in RESERVED:
        raise ModelError(f"{source}: the model's input is named '{cg.input_name}', which the relevance graph "
                         "reserves for its own interface; rename the input")
    rename = {name: f"{name}__model" for name in cg.shapes if name in RESERVED}
    if not rename:
        return
    for node in cg.nodes:
        node.inputs = [rename.get(i, i) for i in node.inputs]
        node.output = rename.get(node.output, node.output)
    cg.shapes.update({new: cg.shapes[old] for old, new in rename.items()})
    cg.output_name = rename.get(cg.output_name, cg.output_name)


def _counts(ops: Counter) -> str:
    return ", ".join(f"{k}×{v}" for k, v in sorted(ops.items()))


__all__ = ["canonicalise", "image_input", "model_opset"]
