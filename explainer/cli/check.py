"""`explainer check MODEL`: the verdict on the first line, then every input and output (which can be explained),
detected layout, op support (one example node per unsupported op), the family the ops point to and
canonicalisation; exit 0 if explainable, else 2 with the one-line reason on stderr too."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from explainer.cli.common import add_output_option, input_spec, positive_int
from explainer.cli.text import image_size, print_error, printable
from explainer.errors import InputError, ModelError
from explainer.frontend.check import check_model
from explainer.limits import check_tensor

HELP = "report whether a model can be explained (inputs and outputs, layout, ops, canonicalisation)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="ONNX model file")
    add_output_option(p)
    p.add_argument("--input", metavar="NAME", help="the input that receives relevance when the model has several "
                                                   "(default: the one float input, else the token ids)")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--size", type=image_size, metavar="N|HxW",
                       help="input size for models with dynamic dims, as for the other commands: N or HxW, e.g. 224 "
                            "or 224x160 (default: the model's own)")
    shape.add_argument("--input-shape", type=positive_int, nargs="+", metavar="D",
                       help="per-sample input shape instead of --size, for inputs that are not 4-D images or have "
                            "no declared shape, e.g. 3 224 224, 2 1000 (signals) or 8 (features) (default: the "
                            "model's own)")


def _escaped(value: Any) -> Any:
    """``value`` with every string in it (also inside lists and tuples) passed through :func:`printable`."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_escaped(v) for v in value)
    return value


def sized_shape(model: str, size: tuple[int, int]) -> tuple[int, ...] | None:
    """The per-sample input shape of ``model`` at ``--size``, from its graph alone (external data is not read). None
    when the model cannot be read or has no single input: :func:`check_model` then reports why."""
    import onnx

    try:
        proto = onnx.load(model, load_external_data=False)
    except Exception:  # not a readable ONNX file (missing, a folder, not protobuf): check_model says what is wrong
        return None
    try:
        spec = input_spec(proto, model)
    except ModelError:
        return None
    except InputError as exc:
        raise InputError(f"{exc}; --size is for 4-D image inputs, give the shape with --input-shape instead") from None
    return spec.batch_shape(1, size)[1:]


def run(args: argparse.Namespace) -> int:
    if args.size:
        shape = sized_shape(args.model, args.size)
    else:
        shape = tuple(args.input_shape) if args.input_shape else None
        if shape:
            check_tensor(shape, "--input-shape: an input")
    report = check_model(args.model, input_shape=shape, output=args.output, input=args.input)
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
