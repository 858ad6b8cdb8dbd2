"""`explainer check MODEL`: the verdict on the first line, then inputs/outputs, detected layout, op support (one
example node per unsupported op), the family the ops point to and canonicalisation; exit 0 if explainable, else 2
with the one-line reason on stderr too."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from explainer.cli.common import positive_int
from explainer.cli.text import print_error, printable
from explainer.frontend.check import check_model
from explainer.limits import check_tensor

HELP = "report whether a model can be explained (inputs, layout, ops, canonicalisation)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--input-shape", type=positive_int, nargs="+", metavar="D",
                   help="per-sample input shape for models with dynamic dims, e.g. 3 224 224")


def _escaped(value: Any) -> Any:
    """``value`` with every string in it (also inside lists and tuples) passed through :func:`printable`."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_escaped(v) for v in value)
    return value


def run(args: argparse.Namespace) -> int:
    shape = tuple(args.input_shape) if args.input_shape else None
    if shape:
        check_tensor(shape, "--input-shape: an input")
    report = check_model(args.model, input_shape=shape)
    # names in the report come from the model: escape them before the lines are joined, so each line printed is
    # one line of the report and a name cannot add one
    shown = dataclasses.replace(report, **{f.name: _escaped(getattr(report, f.name))
                                           for f in dataclasses.fields(report)})
    for line in shown.format().split("\n"):
        print(line)
    if not report.ok:
        print_error(report.error)
        return 2
    return 0
