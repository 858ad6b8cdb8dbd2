"""ONNX Runtime sessions: options (threads, optimisation level), in-memory weights, and I/O-bound runs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from explainer.onnx_io import InMemoryModel, serialise
from explainer.runtime.providers import CPU, CUDA

#: (op, input) pairs whose weight ONNX Runtime reads on the CPU as fast from a run-time input as from an initializer:
#: its GEMM packs B on every call unless pre-packed, and a pre-packed copy of a large weight costs its memory again
_FED = frozenset({("Gemm", 1), ("MatMul", 0), ("MatMul", 1)})
#: a one-shot session optimises at the basic level only, where no rewrite (NCHWc) needs a Conv's weight constant
_FED_ONE_SHOT = _FED | {("Conv", 1), ("ConvTranspose", 1)}


class Session(ort.InferenceSession):
    """A session some of whose weights are graph inputs, fed from NumPy arrays on every run (``fed``): ONNX Runtime
    copies the initializers it is handed as OrtValues into memory of its own, but reads inputs in place, so a fed
    weight exists once. ``run`` and ``run_bound`` feed them; ``get_inputs`` lists the model's own inputs only."""

    def __init__(self, model: bytes | str, options: ort.SessionOptions, providers: list[str],
                 fed: dict[str, np.ndarray]) -> None:
        self.fed = fed
        super().__init__(model, options, providers=providers)

    def get_inputs(self) -> list[Any]:
        return [i for i in super().get_inputs() if i.name not in self.fed]

    def run(self, output_names: list[str] | None, input_feed: dict[str, Any], run_options: Any = None) -> list[Any]:
        return super().run(output_names, {**input_feed, **self.fed}, run_options)


def make_session(model: InMemoryModel | bytes | str, provider: str, *, threads: int | None = None,
                 optimize: str = "all", one_shot: bool = False, save_to: Path | None = None) -> ort.InferenceSession:
    """A session on the given resolved provider ('cpu' or 'cuda'). The large weights of an InMemoryModel are handed
    over without a copy of the model: on the CPU those that only GEMMs read (Convs too in a one-shot session) as
    inputs fed on every run (``Session``), the others as OrtValues (ONNX Runtime copies them; the session keeps a
    reference to the arrays all the same, as versions that read them in place need).

    ``one_shot`` is for a session run once (the front end's reference run): weight pre-packing, which pays off only
    over many runs, is off. In other sessions it stays on: the GEMM weights it would copy are fed, and for the rest
    (NCHWc convolutions) it changes neither time nor memory measurably. Memory patterns are off on the CPU: the
    second run of a batch shape would allocate one block for the whole plan beside the arena's chunks of the first
    (+1 activation footprint, 0.4 GB for VGG-16 at batch 4) for no measurable speed.

    ``save_to``: ONNX Runtime also writes the optimised graph there, its initializers in ``<save_to>.data`` (the
    session cache, ``explainer.runtime.cache``); fed weights stay graph inputs in it."""
    opts = _options(provider, threads, optimize)
    if one_shot:
        opts.add_session_config_entry("session.disable_prepacking", "1")
    if save_to is not None:
        opts.optimized_model_filepath = str(save_to)
        opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", save_to.name + ".data")
        opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    providers = [CUDA, CPU] if provider == "cuda" else [CPU]
    if not isinstance(model, InMemoryModel):
        return ort.InferenceSession(model, opts, providers=providers)
    fed = _fed_weights(model, _FED_ONE_SHOT if one_shot else _FED) if provider != "cuda" else {}
    arrays = [(name, a) for name, a in model.external.items() if name not in fed]
    if arrays:
        opts.add_external_initializers([n for n, _ in arrays], [ort.OrtValue.ortvalue_from_numpy(a) for _, a in arrays])
    if fed:
        sess = Session(serialise(_as_inputs(model.skeleton, fed)), opts, providers, fed)
    else:
        sess = ort.InferenceSession(serialise(model.skeleton), opts, providers=providers)
    sess._explainer_arrays = arrays
    return sess


def load_optimised(path: Path, provider: str, fed: dict[str, np.ndarray], *,
                   threads: int | None = None) -> ort.InferenceSession:
    """A session on an optimised graph that ``make_session(save_to=)`` wrote: no graph optimisation (it is done), its
    initializers mapped from the data file next to it, ``fed`` fed on every run as ``make_session`` would."""
    opts = _options(provider, threads, "none")
    providers = [CUDA, CPU] if provider == "cuda" else [CPU]
    if fed:
        return Session(str(path), opts, providers, fed)
    return ort.InferenceSession(str(path), opts, providers=providers)


def _options(provider: str, threads: int | None, optimize: str) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                     "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                     "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[optimize]
    opts.log_severity_level = 3
    opts.enable_mem_pattern = provider == "cuda"
    if threads:
        opts.intra_op_num_threads = threads
    return opts


def _fed_weights(model: InMemoryModel, readers: frozenset[tuple[str, int]]) -> dict[str, np.ndarray]:
    """The large weights of ``model`` that only ``readers`` (op, input index) read, contiguous (fed without a copy)."""
    uses: dict[str, set[tuple[str, int]]] = {}
    for node in model.skeleton.graph.node:
        for i, name in enumerate(node.input):
            uses.setdefault(name, set()).add((node.op_type, i))
    outputs = {o.name for o in model.skeleton.graph.output}
    return {name: a for name, a in model.external.items()
            if name in uses and uses[name] <= readers and name not in outputs and a.flags.c_contiguous}


def _as_inputs(skeleton: onnx.ModelProto, fed: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``skeleton`` in which the initializers ``fed`` are graph inputs of their type and shape."""
    model = onnx.ModelProto()
    model.CopyFrom(skeleton)
    kept = [t for t in model.graph.initializer if t.name not in fed]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    model.graph.input.extend(onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(a.dtype),
                                                                list(a.shape)) for name, a in fed.items())
    return model


def run_bound(session: ort.InferenceSession, outputs: list[str], feeds: dict[str, np.ndarray],
              provider: str) -> list[np.ndarray]:
    """Run ``session`` with I/O binding: inputs are copied to the device once and outputs allocated there by ONNX
    Runtime (no per-run host staging on CUDA); on the CPU provider the same path binds host memory, a ``Session``'s
    fed weights included."""
    binding = session.io_binding()
    device = "cuda" if provider == "cuda" else "cpu"
    for name, value in {**feeds, **getattr(session, "fed", {})}.items():
        if device == "cpu":
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        else:
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), device, 0))
    for name in outputs:
        binding.bind_output(name, device)
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()
