"""ONNX Runtime sessions: provider choice (CUDA only when a device really works) and session options."""
from __future__ import annotations

import functools
import os

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from .errors import InputError
from .model_io import InMemoryModel, serialise

PROVIDERS = ("auto", "cpu", "cuda")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"


@functools.lru_cache(maxsize=1)
def cuda_works() -> bool:
    """True when the CUDA provider is installed *and* runs a tiny graph on a device (the GPU package lists CUDA
    even on machines without a GPU or without CUDA libraries)."""
    if _CUDA not in ort.get_available_providers():
        return False
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    ort.set_default_logger_severity(4)
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=[_CUDA])
        if sess.get_providers()[0] != _CUDA:
            return False
        return bool(sess.run(None, {"x": np.ones(1, np.float32)})[0][0] == 2.0)
    except Exception:
        return False
    finally:
        ort.set_default_logger_severity(3)


def resolve_provider(provider: str = "auto") -> str:
    """'cpu' or 'cuda' for the requested provider; 'cuda' raises when no working CUDA device exists."""
    provider = (provider or "auto").lower()
    if provider not in PROVIDERS:
        raise InputError(f"unknown provider '{provider}'; choose one of {', '.join(PROVIDERS)}")
    if os.environ.get("EXPLAINER_PROVIDER") and provider == "auto":
        provider = os.environ["EXPLAINER_PROVIDER"].lower()
    if provider == "cpu":
        return "cpu"
    if cuda_works():
        return "cuda"
    if provider == "cuda":
        raise InputError("provider 'cuda' was requested but no working CUDA device is available "
                         f"(ONNX Runtime providers: {', '.join(ort.get_available_providers())})")
    return "cpu"


def make_session(model: InMemoryModel | bytes | str, provider: str, *, threads: int | None = None,
                 optimize: str = "all") -> ort.InferenceSession:
    """A session on the given resolved provider ('cpu' or 'cuda'); large weights of an InMemoryModel are handed
    over as OrtValues (the session keeps a reference to the arrays, which must outlive it)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                     "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[optimize]
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    providers = [_CUDA, _CPU] if provider == "cuda" else [_CPU]
    if isinstance(model, InMemoryModel):
        arrays = list(model.external.items())
        if arrays:
            opts.add_external_initializers([n for n, _ in arrays],
                                           [ort.OrtValue.ortvalue_from_numpy(a) for _, a in arrays])
        sess = ort.InferenceSession(serialise(model.skeleton), opts, providers=providers)
        sess._explainer_arrays = arrays
        return sess
    return ort.InferenceSession(model, opts, providers=providers)


def run_bound(session: ort.InferenceSession, outputs: list[str], feeds: dict[str, np.ndarray],
              provider: str) -> list[np.ndarray]:
    """Run ``session`` with I/O binding: inputs are copied to the device once and outputs allocated there by ONNX
    Runtime (no per-run host staging on CUDA); on the CPU provider the same path binds host memory."""
    binding = session.io_binding()
    device = "cuda" if provider == "cuda" else "cpu"
    for name, value in feeds.items():
        if device == "cpu":
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        else:
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), device, 0))
    for name in outputs:
        binding.bind_output(name, device)
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()
