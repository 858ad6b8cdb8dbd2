"""The graphs the explainer emits: a validity check, and the opsets they can be emitted at (the newest one both the
installed onnx and onnxruntime run; onnx often runs ahead of the runtime)."""
from __future__ import annotations

import functools

import onnx
from onnx import TensorProto, helper

from explainer import Explainer
from explainer.relevance.graph import build_forward_model


@functools.cache
def newest_runnable_opset() -> int:
    """The newest default-domain opset that both the installed onnx and onnxruntime support."""
    import onnxruntime as ort
    for version in range(onnx.defs.onnx_opset_version(), 17, -1):
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", version)])
        model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return version
        except Exception:
            continue
    return 17


def check_emitted_graphs(ex: Explainer) -> None:
    """``ex``'s forward and relevance graphs are valid ONNX (the checker's full check, with strict shape inference)
    at the model's own opset (at least 17), with the IR version that opset needs."""
    for model in (build_forward_model(ex.graph).full(), ex.relevance_model.full()):
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == max(17, ex.graph.opset)
        assert model.ir_version == helper.find_min_ir_version_for(list(model.opset_import))


def with_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """``model`` (built with onnx.helper from ops whose signature is the same at every opset from 17 on) declared
    at ``opset``, with the IR version that opset needs."""
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", opset))
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    return model
