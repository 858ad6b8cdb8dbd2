"""Run the original model once in ONNX Runtime with every intermediate tensor exposed.

The canonicaliser uses the values to fold constant and shape sub-graphs (ConstantOfShape weights, Shape->Gather->
Concat flatten chains) and the shapes to pin every tensor to a static per-sample shape.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, shape_inference

from explainer.errors import ModelError
from explainer.onnx_io import InMemoryModel
from explainer.runtime.sessions import make_session


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor that ONNX type inference can name."""
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:
        inferred = model
    types: dict[str, int] = {}
    graph = inferred.graph
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    return types


def with_input_shape(model: onnx.ModelProto, input_name: str, shape: tuple[int | str, ...]) -> onnx.ModelProto:
    """``model`` (changed in place and returned) with input ``input_name`` of the given (possibly symbolic) shape."""
    copy = model
    for vi in copy.graph.input:
        if vi.name == input_name:
            dims = vi.type.tensor_type.shape.dim
            del dims[:]
            for d in shape:
                dim = dims.add()
                if isinstance(d, str):
                    dim.dim_param = d
                else:
                    dim.dim_value = int(d)
    return copy


def run_probe(model: InMemoryModel, input_name: str, x: np.ndarray, source: str,
              types: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Every node output's value for input ``x`` (tensors whose type is unknown are left out)."""
    types = types if types is not None else tensor_types(model.skeleton)
    probe = InMemoryModel(onnx.ModelProto(), model.external)
    probe.skeleton.CopyFrom(model.skeleton)
    existing = {o.name for o in probe.skeleton.graph.output}
    for node in probe.skeleton.graph.node:
        for out in node.output:
            if out and out not in existing and out in types:
                probe.skeleton.graph.output.append(helper.make_tensor_value_info(out, types[out], None))
                existing.add(out)
    try:
        sess = make_session(probe, "cpu", optimize="basic")
        names = [o.name for o in sess.get_outputs()]
        values = sess.run(names, {input_name: x})
    except Exception as exc:
        raise ModelError(f"{source}: ONNX Runtime cannot run the model on an input of shape {list(x.shape)} "
                         f"({exc.__class__.__name__}: {' '.join(str(exc).split())[:400]})") from None
    return dict(zip(names, values))


def evaluate_constant_node(node: onnx.NodeProto, consts: dict[str, np.ndarray], opset: int) -> dict[str, np.ndarray]:
    """Values of a node whose inputs are all constant, with ONNX's reference evaluator (used where type inference
    could not name the outputs' types, so the ONNX Runtime probe left them out)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    feeds = {name: consts[name] for name in node.input if name}
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype),
                                            list(np.shape(v))) for name, v in feeds.items()]
    graph = helper.make_graph([node], "constant", inputs, [helper.make_value_info(o, onnx.TypeProto())
                                                           for o in node.output if o])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:
        results = ReferenceEvaluator(model).run(None, feeds)
    except Exception:
        return {}
    return {name: np.asarray(value) for name, value in zip(node.output, results) if name}
