"""Final Softmax, LogSoftmax and Sigmoid heads, also behind reshapes and concatenations, skipped for explanation.

A classifier's last Softmax/LogSoftmax, or a multi-label head's last Sigmoid, maps scores to probabilities one by one
(per row); relevance starts from the scores before it. Exporters put such heads behind reshapes, flattens, squeezes
and casts, and multi-head models concatenate several (``Concat(Softmax(a), Softmax(b))``). ``final_heads`` finds
every head whose output reaches the explained output through such value-preserving ops and Concat alone, and only
when nothing else reads the values on that way (a Softmax inside the network, attention's, is no head);
``skip_heads`` takes them out.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import onnx

#: the activations that map scores to probabilities and are skipped at the end of a model
HEADS = ("Softmax", "LogSoftmax", "Sigmoid")
#: ops whose first input reaches their output with its values unchanged (only reshaped, or cast between floats)
_PASS_THROUGH = ("Identity", "Dropout", "Cast", "Flatten", "Reshape", "Squeeze", "Unsqueeze")
_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)
#: ONNX's default operator domain (``inputs.DEFAULT_DOMAINS``; ``inputs.select_output`` imports this module)
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Head:
    """A final activation node and whether a Concat lies between it and the output."""

    node: onnx.NodeProto
    concatenated: bool

    @property
    def label(self) -> str:
        return self.node.name or self.node.output[0]


def final_heads(model: onnx.ModelProto, output: str) -> list[Head]:
    """The Softmax/LogSoftmax/Sigmoid nodes whose values reach ``output`` only through value-preserving ops
    (identity, dropout, float casts, reshapes, flattens, squeezes) and Concat (each of whose inputs is followed), with
    no other node that reaches ``output`` reading those values on the way; in graph order."""
    nodes = list(model.graph.node)
    producers = {o: n for n in nodes for o in n.output}
    trails: dict[int, list[tuple[str, ...]]] = {}  # head -> the tensors from its output to ``output``, per way
    walked: set[int] = set()
    stack: list[tuple[str, tuple[str, ...]]] = [(output, ())]
    while stack:
        name, trail = stack.pop()
        trail = (*trail, name)
        node = producers.get(name)
        if node is None or node.domain not in _DEFAULT_DOMAINS:
            continue
        if node.op_type in HEADS:
            trails.setdefault(id(node), []).append(trail)
        elif node.op_type == "Concat" or _passes_through(node):
            walked.add(id(node))
            stack.extend((i, trail) for i in (node.input if node.op_type == "Concat" else node.input[:1]) if i)
    readers = _readers(_reaching(nodes, producers, output))

    def exclusive(trail: tuple[str, ...]) -> bool:
        return all(id(r) in walked for name in trail for r in readers.get(name, ()))

    return [Head(n, any(producers[t].op_type == "Concat" for way in trails[id(n)] for t in way[:-1]))
            for n in nodes if id(n) in trails and all(exclusive(way) for way in trails[id(n)])]


def skip_heads(model: onnx.ModelProto, output: str) -> list[str]:
    """Take the final heads before ``output`` (``final_heads``) out, so that the scores before them are explained:
    the nodes that read a head's values read its input instead (a head that computes ``output`` itself becomes an
    Identity). Changes ``model`` in place (pass a copy the caller owns); returns what it changed, in words."""
    heads = final_heads(model, output)
    changes = describe_heads(heads, output)
    bypass = {h.node.output[0]: h.node.input[0] for h in heads if h.node.output[0] != output}
    for head in heads:
        if head.node.output[0] == output:
            head.node.op_type = "Identity"
            del head.node.attribute[:]
    kept = [n for n in model.graph.node if not (n.output and n.output[0] in bypass)]
    for node in kept:
        node.input[:] = [bypass.get(name, name) for name in node.input]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return changes


def describe_heads(heads: list[Head], output: str) -> list[str]:
    """The ``changes`` lines for skipped heads: one per kind (Sigmoid; Softmax and LogSoftmax)."""
    changes = []
    sigmoids = [h for h in heads if h.node.op_type == "Sigmoid"]
    softmaxes = [h for h in heads if h.node.op_type != "Sigmoid"]
    if sigmoids:
        changes.append(f"skipped the final {_named(sigmoids)} of output '{output}'{_concat(sigmoids)}: a multi-label "
                       "head is explained from its pre-sigmoid logits")
    if softmaxes:
        changes.append(f"removed final {_named(softmaxes)} of output '{output}'{_concat(softmaxes)} (relevance starts "
                       "from the pre-softmax logits)")
    return changes


def _named(heads: list[Head]) -> str:
    return ", ".join(f"{h.node.op_type} '{h.label}'" for h in heads)


def _concat(heads: list[Head]) -> str:
    if not any(h.concatenated for h in heads):
        return ""
    return f" ({len(heads)} heads concatenated)" if len(heads) > 1 else " (behind a Concat)"


def _passes_through(node: onnx.NodeProto) -> bool:
    if node.op_type not in _PASS_THROUGH or not node.input:
        return False
    if node.op_type == "Cast":
        return any(a.name == "to" and a.i in _FLOATS for a in node.attribute)
    return True


def _reaching(nodes: list[onnx.NodeProto], producers: dict[str, onnx.NodeProto],
              output: str) -> list[onnx.NodeProto]:
    """The nodes ``output`` is computed from (those that reach it), in graph order."""
    needed, stack = set(), [output]
    while stack:
        node = producers.get(stack.pop())
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            stack.extend(i for i in node.input if i)
    return [n for n in nodes if id(n) in needed]


def _readers(nodes: Iterable[onnx.NodeProto]) -> dict[str, list[onnx.NodeProto]]:
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in set(node.input):
            readers.setdefault(name, []).append(node)
    return readers
