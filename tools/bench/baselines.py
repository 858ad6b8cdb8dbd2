"""What the explainer is measured against, on the same inputs: a plain ONNX Runtime session on the exported file
and Zennit (PyTorch) on the torch module that carries the same weights."""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from explainer.images.preprocess import input_bounds, preprocessing
from tests.support.zennit_compat import import_zennit

#: ImageNet-normalised values of pixels 0 and 255 per channel: the zB rule's bounds and the inputs' range
LOW, HIGH = input_bounds(preprocessing("imagenet"), 3)


def images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Deterministic inputs inside the ImageNet-normalised pixel range (as the parity tests use)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal((n, *shape)), LOW.min(), HIGH.max()).astype(np.float32)


def bounds(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """``low``/``high`` for an ``Explainer`` of a model with per-sample input ``shape`` (none for grey models)."""
    return {"low": LOW, "high": HIGH} if shape[0] == 3 else {}


def plain_session(path: str, threads: int):
    """A plain onnxruntime CPU session on the exported file, the reference every ratio is taken against."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def torch_model(name: str, threads: int):
    """The reference torch module ``name`` (weights frozen) with ``threads`` torch threads, Zennit imported."""
    import torch

    from graphs.cache import reference_model
    torch.set_num_threads(threads)
    model = reference_model(name)
    for p in model.parameters():
        p.requires_grad_(False)
    import_zennit()
    return model


def zennit_runner(model: Any, method: str, classes: int) -> tuple[Any, Callable[[np.ndarray, np.ndarray], Any]] | None:
    """(context manager, run(x, target) -> relevance) for Zennit's version of ``method``; None when it has none here.

    gradient: plain autograd; LRP methods: ``zennit.attribution.Gradient`` with the named composite, seeded with
    output * one-hot (the hooks are registered once, on entering the context, like our session is built once)."""
    import torch
    zc = import_zennit().composites
    composites = {
        "epsilon-plus": zc.EpsilonPlus, "epsilon-plus-flat": zc.EpsilonPlusFlat,
        "epsilon-alpha2-beta1": zc.EpsilonAlpha2Beta1, "epsilon-alpha2-beta1-flat": zc.EpsilonAlpha2Beta1Flat,
        "epsilon-gamma-box": lambda: zc.EpsilonGammaBox(low=torch.as_tensor(LOW).reshape(1, -1, 1, 1),
                                                        high=torch.as_tensor(HIGH).reshape(1, -1, 1, 1)),
    }
    eye = torch.eye(classes)
    if method == "gradient":
        def run_gradient(x: np.ndarray, target: np.ndarray):
            xg = torch.from_numpy(x).requires_grad_(True)
            (grad,) = torch.autograd.grad(model(xg), xg, eye[torch.from_numpy(target)])
            return grad
        return contextlib.nullcontext(), run_gradient
    if method not in composites:
        return None
    attributor = import_zennit().attribution.Gradient(model, composites[method]())

    def run_lrp(x: np.ndarray, target: np.ndarray):
        onehot = eye[torch.from_numpy(target)]
        _, relevance = attributor(torch.from_numpy(x), lambda out: out * onehot)
        return relevance
    return attributor, run_lrp
