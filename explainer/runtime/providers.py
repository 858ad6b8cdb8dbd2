"""Which ONNX Runtime provider runs the graphs: CUDA only when a device really works, CPU otherwise."""
from __future__ import annotations

import functools
import os

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from explainer.errors import InputError

PROVIDERS = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROVIDER_ENV = "EXPLAINER_PROVIDER"


@functools.lru_cache(maxsize=1)
def cuda_works() -> bool:
    """True when the CUDA provider is installed *and* runs a tiny graph on a device (the GPU package lists CUDA
    even on machines without a GPU or without CUDA libraries)."""
    if CUDA not in ort.get_available_providers():
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
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=[CUDA])
        if sess.get_providers()[0] != CUDA:
            return False
        return bool(sess.run(None, {"x": np.ones(1, np.float32)})[0][0] == 2.0)
    except Exception:
        return False
    finally:
        ort.set_default_logger_severity(3)


def env_provider() -> str:
    """The provider ``EXPLAINER_PROVIDER`` asks for ('auto' when unset or empty); InputError naming the variable when
    it holds anything but auto, cpu or cuda (a typo must not silently fall back to the default)."""
    value = os.environ.get(PROVIDER_ENV, "").strip().lower()
    if not value:
        return "auto"
    if value not in PROVIDERS:
        raise InputError(f"{PROVIDER_ENV}={os.environ[PROVIDER_ENV]!r} is not a provider; use one of "
                         f"{', '.join(PROVIDERS)} (or leave it unset)")
    return value


def resolve_provider(provider: str = "auto") -> str:
    """'cpu' or 'cuda' for the requested provider ('auto' follows ``EXPLAINER_PROVIDER`` when set); 'cuda' raises
    when no working CUDA device exists."""
    provider = (provider or "auto").lower()
    if provider not in PROVIDERS:
        raise InputError(f"unknown provider '{provider}'; choose one of {', '.join(PROVIDERS)}")
    env = env_provider()
    if provider == "auto":
        provider = env
    if provider == "cpu":
        return "cpu"
    if cuda_works():
        return "cuda"
    if provider == "cuda":
        raise InputError("provider 'cuda' was requested but no working CUDA device is available "
                         f"(ONNX Runtime providers: {', '.join(ort.get_available_providers())})")
    return "cpu"


def quiet_onnxruntime() -> None:
    """Log ONNX Runtime errors only, for sessions opened without our options (onnx-graphsurgeon's constant folding):
    their optimiser's warnings about a constant sub-graph are noise to a user."""
    ort.set_default_logger_severity(3)
