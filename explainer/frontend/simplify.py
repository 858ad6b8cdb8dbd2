"""Exact simplifications of a canonical graph: dead nodes go, consecutive Affine nodes merge, and an Affine right
after a Conv/Dense folds into its weights (BatchNorm folding)."""
from __future__ import annotations

import numpy as np

from explainer.frontend.ir import CanonicalGraph, CNode


def _remove_dead(cg: CanonicalGraph) -> None:
    needed = {cg.output_name}
    keep = []
    for node in reversed(cg.nodes):
        if node.output in needed:
            keep.append(node)
            needed.update(node.inputs)
    cg.nodes = list(reversed(keep))


def _per_channel(arr: np.ndarray, out_shape: tuple[int, ...], axis: int) -> np.ndarray | None:
    """``arr`` as a [C] vector if it broadcasts along ``axis`` only of a tensor of ``out_shape``."""
    rank = len(out_shape)
    axis %= rank
    channels = out_shape[axis]
    if arr.ndim > rank:
        return None
    full = (1,) * (rank - arr.ndim) + arr.shape
    if any(d != 1 for i, d in enumerate(full) if i != axis) or full[axis] not in (1, channels):
        return None
    return np.broadcast_to(arr.reshape(-1), (channels,)).astype(np.float32)


def _absorb_affines(cg: CanonicalGraph, absorb) -> None:
    """Walk the Affine nodes in order; ``absorb(node, producers, consumers, removed)`` returns the tensor that
    replaces the node's output (the node is then dropped), or None to keep it (it may drop others via ``removed``)."""
    producers, consumers = cg.producer(), cg.consumers()
    removed: set[int] = set()
    rename: dict[str, str] = {}
    for node in cg.nodes:
        node.inputs = [rename.get(i, i) for i in node.inputs]
        if node.op != "Affine" or id(node) in removed:
            continue
        replacement = absorb(node, producers, consumers, removed)
        if replacement is not None:
            rename[node.output] = replacement
            if cg.output_name == node.output:
                cg.output_name = replacement
            removed.add(id(node))
            consumers = cg.consumers()
    cg.nodes = [n for n in cg.nodes if id(n) not in removed]


def _fold_into_linear(cg: CanonicalGraph, node: CNode, producers, consumers, removed) -> str | None:
    """Affine right after a Conv/Dense (its only consumer) with per-channel scale/shift: fold it into the layer."""
    prev = producers.get(node.inputs[0])
    if prev is None or prev.op not in ("Conv", "Dense") or len(consumers.get(prev.output, [])) != 1 \
            or prev.output == cg.output_name:
        return None
    shape = cg.shapes[prev.output]
    axis = 1 if prev.op == "Conv" else -1  # a Dense layer's features are its last axis (tokens before them)
    scale = _per_channel(node.params["scale"], shape, axis)
    shift = _per_channel(node.params["shift"], shape, axis)
    if scale is None or shift is None:
        return None
    w = prev.params["W"]
    prev.params["W"] = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1)) if prev.op == "Conv"
                        else w * scale.reshape(1, -1)).astype(np.float32)
    prev.params["B"] = (prev.params["B"] * scale + shift).astype(np.float32)
    cg.changes.append(f"folded {node.source_op} '{node.name}' into {prev.source_op} '{prev.name}'")
    return prev.output


def _merge_with_previous(cg: CanonicalGraph, node: CNode, producers, consumers, removed) -> str | None:
    """Identity affines vanish; an affine after another affine (its only consumer) absorbs it."""
    s, t = node.params["scale"], node.params["shift"]
    if np.all(s == 1) and np.all(t == 0) and node.output != cg.output_name:
        return node.inputs[0]
    prev = producers.get(node.inputs[0])
    if prev is not None and prev.op == "Affine" and len(consumers.get(prev.output, [])) == 1 \
            and id(prev) not in removed:
        node.params = {"scale": (prev.params["scale"] * s).astype(np.float32),
                       "shift": (prev.params["shift"] * s + t).astype(np.float32)}
        node.inputs = list(prev.inputs)
        removed.add(id(prev))
        cg.changes.append(f"merged {prev.source_op} '{prev.name}' with {node.source_op} '{node.name}'")
    return None


def simplify(cg: CanonicalGraph) -> None:
    """Dead-node removal and exact Affine folding (repeats until nothing changes)."""
    _remove_dead(cg)
    while True:
        before = len(cg.nodes)
        _absorb_affines(cg, lambda *a: _merge_with_previous(cg, *a))
        _absorb_affines(cg, lambda *a: _fold_into_linear(cg, *a))
        _remove_dead(cg)
        if len(cg.nodes) == before:
            break
