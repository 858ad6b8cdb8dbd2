"""`explainer check MODEL`: inputs/outputs, detected layout, op support and canonicalisation; exit 0 if explainable."""
from __future__ import annotations

import argparse

from explainer.frontend.check import check_model

HELP = "report whether a model can be explained (inputs, layout, ops, canonicalisation)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--input-shape", type=int, nargs="+", metavar="D",
                   help="per-sample input shape for models with dynamic dims, e.g. 3 224 224")


def run(args: argparse.Namespace) -> int:
    report = check_model(args.model, input_shape=tuple(args.input_shape) if args.input_shape else None)
    print(report.format())
    return 0 if report.ok else 2
