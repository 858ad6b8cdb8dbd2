"""ONNX Runtime sessions: options (threads, optimisation level), in-memory weights, and I/O-bound runs."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from explainer.onnx_io import InMemoryModel, serialise
from explainer.runtime.providers import CPU, CUDA


def make_session(model: InMemoryModel | bytes | str, provider: str, *, threads: int | None = None,
                 optimize: str = "all", one_shot: bool = False) -> ort.InferenceSession:
    """A session on the given resolved provider ('cpu' or 'cuda'); large weights of an InMemoryModel are handed
    over as OrtValues (the session keeps a reference to the arrays, which must outlive it). ``one_shot`` is for a
    session run once (the front end's reference run): weight pre-packing, which pays off only over many runs, is off."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                     "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[optimize]
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    if one_shot:
        opts.add_session_config_entry("session.disable_prepacking", "1")
    providers = [CUDA, CPU] if provider == "cuda" else [CPU]
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
