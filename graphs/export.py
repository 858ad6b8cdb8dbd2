"""Export a PyTorch CNN to ONNX with the legacy (TorchScript) or the dynamo exporter, then check it with ONNX Runtime.

Both exporters are kept because they produce differently shaped graphs of the same network: the legacy one
emits ``Flatten`` and a single self-contained file; the dynamo one (``torch.export`` based) emits ``Reshape``,
a newer opset and an external ``.data`` file holding the weights. The explainer must handle both.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
import torch

Exporter = Literal["legacy", "dynamo"]
EXPORTERS: tuple[str, ...] = ("legacy", "dynamo")
LEGACY_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"


class ExportMismatchError(RuntimeError):
    """The exported graph's output under ONNX Runtime differs from the torch module's beyond tolerance."""


@dataclass(frozen=True)
class ExportResult:
    """Where an export went, how long it took and how closely ONNX Runtime reproduces torch."""

    path: Path
    exporter: str
    opset: int
    seconds: float
    max_abs_diff: float
    max_abs_logit: float


def _opset_of(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _export_legacy(model: torch.nn.Module, x: torch.Tensor, path: Path, dynamic_batch: bool, opset: int) -> None:
    axes = {INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # choosing the legacy exporter is deliberate here
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes,
        )


def _export_dynamo(model: torch.nn.Module, x: torch.Tensor, path: Path, dynamic_batch: bool, opset: int | None) -> None:
    shapes = ({0: torch.export.Dim(BATCH_DIM, min=1, max=4096)},) if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # raised inside torch.export's own pytree handling
        torch.onnx.export(
            model, (x,), str(path), dynamo=True, opset_version=opset, dynamic_shapes=shapes, external_data=True,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False,
        )


def check_export(
    model: torch.nn.Module, path: str | Path, input_shape: tuple[int, ...], *, batch: int = 2, seed: int = 0
) -> tuple[float, float]:
    """Run ``path`` under ONNX Runtime (CPU) and ``model`` in torch on one seeded batch.

    Returns ``(max_abs_diff, max_abs_logit)`` so callers can judge the difference against the output scale.
    """
    shape = (batch, *input_shape[1:])
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return float(np.max(np.abs(got - expected))), float(np.max(np.abs(expected)))


def export(
    model: torch.nn.Module,
    path: str | Path,
    *,
    exporter: Exporter = "legacy",
    input_shape: tuple[int, ...] = (1, 3, 224, 224),
    dynamic_batch: bool = True,
    opset: int | None = None,
    rtol: float = 1e-4,
) -> ExportResult:
    """Export ``model`` (put in eval mode) to ``path`` with input "input" and output "logits", then verify it.

    ``opset`` defaults to 17 for the legacy exporter and to the dynamo exporter's own default. The check runs a
    batch of 2 when the batch axis is dynamic (1 otherwise) and raises :class:`ExportMismatchError` when
    ``max_abs_diff > rtol * max(1, max_abs_logit)``.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    x = torch.zeros(input_shape)
    start = time.perf_counter()
    if exporter == "legacy":
        _export_legacy(model, x, path, dynamic_batch, LEGACY_OPSET if opset is None else opset)
    else:
        _export_dynamo(model, x, path, dynamic_batch, opset)
    seconds = time.perf_counter() - start
    diff, scale = check_export(model, path, input_shape, batch=2 if dynamic_batch else 1)
    if diff > rtol * max(1.0, scale):
        raise ExportMismatchError(
            f"{exporter} export {path}: ONNX Runtime differs from torch by {diff:.3g} (max |logit| {scale:.3g})"
        )
    return ExportResult(path, exporter, _opset_of(path), seconds, diff, scale)
