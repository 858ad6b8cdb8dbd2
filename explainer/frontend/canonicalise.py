"""Bring an exported ONNX classifier into canonical form (see ``ir.py``) without changing its logits.

``canonicalise`` is a list of passes, each a small function with a small result:

0. ``to_float32``: a float16/bfloat16 model (weights, inputs, casts) is computed in float32, and how far that moves
   its scores is measured (``precision.py``); ``inline_functions``: calls of model-local functions become their
   bodies, so that a function made of supported ops is explained (and one that is not is refused by op and node);
   ``check_tensors`` refuses tensor data that does not fit its declared shape;
1. ``pin_inputs``: the input that receives relevance (an image, features, a signal, or token ids, whose embedding
   lookup's output is then the explained tensor) and its static per-sample shape (the batch axis is pinned to 1 for
   folding), and every other input as a fixed feed, after ``refuse_subgraphs``; ``model_output`` names the output
   that holds the scores; ``reference_feeds`` one sample for every input;
2. ``fold``: everything that does not depend on the input's values becomes a constant (initializers,
   Constant/ConstantOfShape weights, Shape->Gather->Concat flatten chains), nodes that do not reach the output go,
   and every data tensor gets its static shape (``fold.py``); ``check_sizes`` refuses a tensor too large to allocate
   and ``refuse_non_finite`` weights with NaN or Inf values, naming them;
   ``hoist_unbind`` and ``merge_batch_transposes`` rewrite attention's q/k/v unbinding (a Transpose moving the batch
   axis, then one selection per piece) and key transposes that fold the batch axis into the heads, so that the batch
   axis stays first (``unbind.py``); ``fuse_patterns`` rewrites the element-wise arithmetic
   exporters write for LayerNorm, GELU, hard-sigmoid, hard-swish and Mish into those ONNX ops (``patterns.py``);
   what depends on fixed feeds alone stays as side nodes, emitted as they are (``fixed_tensors`` labels those that
   converted nodes read: their relevance is kept and reported);
3. the reference: one plain forward of the original model, the reference rewritten graphs are verified against;
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
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx.inliner

from explainer.errors import ModelError, UnsupportedOpError, describe
from explainer.frontend.convert import Alias, ConvertContext, NotSupported
from explainer.frontend.fold import Folded, fold, run_model
from explainer.frontend.inputs import (
    DEFAULT_DOMAINS,
    Inputs,
    PinnedInput,
    image_input,
    is_attention_mask,
    model_opset,
    pin_inputs,
)
from explainer.frontend.ir import CanonicalGraph, CNode
from explainer.frontend.patterns import fuse_patterns
from explainer.frontend.precision import to_float32
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
                 weights: dict[str, np.ndarray] | None = None,
                 input: str | Sequence[str] | None = None) -> CanonicalGraph:
    """Canonical graph of ``model``; raises ModelError / UnsupportedOpError naming every node at fault. ``weights``
    holds the values of the initializers that ``model`` keeps outside the protobuf (``InMemoryModel.from_loaded``).
    ``input`` names the input that receives relevance when the model has several, or a list of them (see
    ``pin_inputs``)."""
    precision = to_float32(model, weights, source)
    model, weights = precision.model, precision.weights
    model, inlined = inline_functions(model, source)
    refuse_subgraphs(model, source)
    check_tensors(model, source)
    inputs = pin_inputs(model, source, input_shape, input)
    image = inputs.explained
    output = model_output(model, source)
    feeds = reference_feeds(inputs, model)
    folded = fold(model, inputs.feeds[0].name, (1, *inputs.feeds[0].shape), output, source, weights, feeds=feeds,
                  explained=image.name, also=tuple(p.name for p in inputs.also))
    check_sizes(folded, source)
    refuse_non_finite(folded, source)
    rewritten = hoist_unbind(folded) + merge_batch_transposes(folded)
    fused = fuse_patterns(folded)
    chain = output_chain(folded, output)
    reference = Reference(feeds, run_model(model, folded.consts, feeds, chain, source))
    precise = precision.changes + [line for line in [precision.deviation(feeds)] if line]
    fixed = fixed_tensors(folded, inputs)
    side_nodes, side_consts = side_graph(model, folded, inputs, list(fixed), source)
    converted = convert(model, folded, chain, source, fixed)
    out_shape = tuple(int(d) for d in folded.shapes[converted.output][1:]) if converted.output in folded.shapes else ()
    scores = normalise_output(converted, folded.shapes, image, source)
    cg = CanonicalGraph(input_name=image.name, input_shape=image.shape, layout=image.layout,
                        output_name=scores.output, output_shape=out_shape or (folded.shapes[scores.output][-1],),
                        nodes=scores.nodes, shapes=folded.shapes, opset=model_opset(model),
                        changes=precise + inlined + describe_folding(folded) + rewritten + fused + scores.changes,
                        source_ops=dict(Counter(n.op_type for n in model.graph.node)),
                        folded_ops=dict(folded.folded_ops), removed_ops=dict(scores.removed_ops + folded.unused_ops),
                        reference=reference_logits(model, folded, reference, converted.output, source, inputs),
                        feeds=[(f.name, f.shape, f.elem_type) for f in inputs.feeds], token_input=inputs.token_input,
                        side_nodes=side_nodes, side_consts=side_consts, fixed=fixed,
                        also=[(p.name, p.shape, p.layout) for p in inputs.also])
    if inputs.also:
        cg.changes.append("inputs receiving relevance besides the first: "
                          + ", ".join(f"'{p.name}'" for p in inputs.also))
    if inputs.fixed:
        cg.changes.append("fixed inputs fed as given, receiving no relevance: "
                          + ", ".join(f"'{f.name}'" for f in inputs.fixed))
    if inputs.token_input:
        cg.changes.append(f"token ids '{inputs.token_input}': relevance taken at their embedding "
                          f"'{image.name}' (table '{inputs.embedding}')")
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
    """Fixed inputs (the explained one N(0, 1), token ids drawn from the vocabulary) and the original model's values
    for them of the output chain's tensors."""

    feeds: dict[str, np.ndarray]
    values: dict[str, np.ndarray]


def reference_feeds(inputs: Inputs, model: onnx.ModelProto, sample: int = 0) -> dict[str, np.ndarray]:
    """One sample for every input: floats N(0, 1), token ids uniform over the embedding's rows, attention masks
    (an integer or boolean input named like a mask) ones (``sample`` 1: the last third zeros, as padding),
    other integer inputs (token types) zeros."""
    rng = np.random.default_rng(sample)
    values = {}
    for feed in inputs.feeds:
        shape, dtype = (1, *feed.shape), feed.dtype
        if feed.name == inputs.token_input:
            rows = next(t.dims[0] for t in model.graph.initializer if t.name == inputs.embedding)
            values[feed.name] = rng.integers(0, rows, shape).astype(dtype)
        elif dtype.kind == "f":
            values[feed.name] = rng.standard_normal(shape).astype(dtype)
        elif is_attention_mask(feed.name):
            mask = np.ones(shape, dtype)
            if sample and shape[-1] > 1:
                mask[..., shape[-1] - max(1, shape[-1] // 3):] = 0
            values[feed.name] = mask
        else:
            values[feed.name] = np.zeros(shape, dtype)
    return values


def side_graph(model: onnx.ModelProto, folded: Folded, inputs: Inputs, fixed: list[str],
               source: str) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
    """The model's own nodes (unfolded, in its order) and the initializers they read that compute the ``fixed``
    tensors and a token model's embedding from the inputs. They are taken from the model, not from the folded
    graph: folding ran at batch size 1, and the arithmetic of an attention mask often indexes the batch (a
    constant folded there would give every sample the first one's mask). A node that reads the explained input's
    descendants does so for their shape alone: a Shape node becomes the first input's batch size and the static
    rest (canonical tensors keep the batch axis first), any other such node its folded value."""
    targets = fixed + ([inputs.explained.name] if inputs.token_input else [])
    if not targets:
        return [], {}
    producers = {o: n for n in model.graph.node for o in n.output if o}
    initializers = {t.name for t in model.graph.initializer}
    feeds = {f.name for f in inputs.feeds}
    derived = folded.data - {inputs.explained.name}
    chosen: set[int] = set()
    consts: dict[str, np.ndarray] = {}
    made: list[onnx.NodeProto] = []
    stack, seen = list(targets), set()
    while stack:
        name = stack.pop()
        if not name or name in seen or name in feeds:
            continue
        seen.add(name)
        if name in initializers:
            consts[name] = folded.consts[name]
            continue
        node = producers.get(name)
        if node is not None and derived.intersection(node.input):
            if node.op_type == "Shape" and node.input[0] in folded.shapes:
                made.extend(_batch_shape(node, folded.shapes[node.input[0]], inputs.feeds[0].name, consts))
                continue
            node = None
        if node is None:
            if name not in folded.consts:
                raise ModelError(f"{source}: cannot compute tensor '{name}' from the fixed inputs alone")
            consts[name] = folded.consts[name]
            continue
        chosen.add(id(node))
        stack.extend(node.input)
    return made + [n for n in model.graph.node if id(n) in chosen], consts


def _batch_shape(node: onnx.NodeProto, shape: tuple[int, ...], first: str,
                 consts: dict[str, np.ndarray]) -> list[onnx.NodeProto]:
    """Nodes computing ``node``'s output, the Shape of a tensor of static ``shape`` whose batch axis (axis 0) is
    that of input ``first``: Shape(first)[0] and the static rest, sliced as ``node``'s start/end ask."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    rank = len(shape)
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    start, end = (start + rank if start < 0 else start), (end + rank if end < 0 else end)
    start, end = max(0, min(rank, start)), max(0, min(rank, end))
    out = node.output[0]
    rest = np.array(shape[max(start, 1):end], np.int64)
    if start >= 1 or end <= start:
        consts[out] = np.array(shape[start:end], np.int64)
        return []
    consts[f"{out}__rest"] = rest
    batch = onnx.helper.make_node("Shape", [first], [f"{out}__batch"], end=1)
    return [batch, onnx.helper.make_node("Concat", [f"{out}__batch", f"{out}__rest"], [out], axis=0)]


def fixed_tensors(folded: Folded, inputs: Inputs) -> dict[str, str]:
    """The tensors computed from fixed inputs alone that converted nodes read (a token-type embedding, an attention
    mask's additive bias), each with a label naming the inputs it comes from: their relevance is kept, and
    reported, like a constant's."""
    origin: dict[str, set[str]] = {f.name: {f.name} for f in inputs.feeds}
    for node in folded.side_nodes:
        came = set().union(*(origin.get(i, set()) for i in node.input))
        for o in node.output:
            origin[o] = came
    read = [i for node in folded.nodes for i in node.input if i in folded.side]
    return {name: "fixed input " + ", ".join(f"'{f}'" for f in sorted(origin.get(name, {name}))) for name in read}


def convert(model: onnx.ModelProto, folded: Folded, chain: list[str], source: str,
            fixed: dict[str, str] | None = None) -> Converted:
    """Each data node through its op's converter; every node that cannot be converted is collected into one
    UnsupportedOpError (with the converter's reason where it gave one). ``fixed`` tensors (computed from fixed inputs)
    are data to the converters: an Add of one is a sum of two branches, whose relevance on that side is kept."""
    initializers = {t.name for t in model.graph.initializer}
    producers = {o: n for n in folded.nodes for o in n.output}
    ctx = ConvertContext(folded.consts, folded.data | set(fixed or ()), folded.shapes, model_opset(model), producers,
                         set(chain), set(fixed or ()))
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


def reference_logits(model: onnx.ModelProto, folded: Folded, reference: Reference, scores: str,
                     source: str, inputs: Inputs) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The reference inputs and the original model's pre-softmax scores (tensor ``scores``) for them, against which
    every rewritten graph is verified; they must be finite (checked after conversion, whose reasons are more
    precise: a division by zero, a negative variance). With fixed inputs, a second sample (other values, a mask
    with padding) is run on its own and joins the first: verifying both in one batch shows a rewrite that gives
    every sample the first one's fixed inputs."""
    value = reference.values.get(scores)
    if value is None:
        # conversion dropped an op outside the output chain at the very end (an identity Transpose, say)
        value = run_model(model, folded.consts, reference.feeds, [scores], source)[scores]
    value = np.asarray(value, np.float32).reshape(1, -1)
    feeds = reference.feeds
    if inputs.fixed:
        second = reference_feeds(inputs, model, 1)
        other = run_model(model, folded.consts, second, [scores], source)[scores]
        value = np.concatenate([value, np.asarray(other, np.float32).reshape(1, -1)])
        feeds = {name: np.concatenate([feeds[name], second[name]]) for name in feeds}
    if not np.all(np.isfinite(value)):
        raise ModelError(f"{source}: the model's scores for a standard-normal test input are not finite "
                         f"({int((~np.isfinite(value)).sum())} of {value.size} are NaN or Inf): its weights make NaN "
                         "or Inf (values past float32's range, say); there is nothing to explain")
    return feeds, value


def rename_reserved(cg: CanonicalGraph, source: str) -> None:
    """Keep the names the relevance graph's interface uses free (a model's own output is often called 'logits')."""
    for name in [cg.input_name] + [f[0] for f in cg.feeds]:
        if name in RESERVED:
            raise ModelError(f"{source}: the model's input is named '{name}', which the relevance graph "
                             "reserves for its own interface; rename the input")
    rename = {name: f"{name}__model" for name in cg.shapes if name in RESERVED or re.fullmatch(r"relevance_\d+", name)}
    if not rename:
        return
    for node in cg.nodes:
        node.inputs = [rename.get(i, i) for i in node.inputs]
        node.output = rename.get(node.output, node.output)
    for node in cg.side_nodes:
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]
    cg.fixed = {rename.get(k, k): v for k, v in cg.fixed.items()}
    cg.shapes.update({new: cg.shapes[old] for old, new in rename.items()})
    cg.output_name = rename.get(cg.output_name, cg.output_name)


def _counts(ops: Counter) -> str:
    return ", ".join(f"{k}×{v}" for k, v in sorted(ops.items()))


__all__ = ["canonicalise", "image_input", "model_opset"]
