"""Options and steps shared by the sub-commands: model and method options, preprocessing, positive integers."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np

from explainer.cli.text import image_size
from explainer.errors import InputError
from explainer.frontend.inputs import detect_layout, image_input
from explainer.images.preprocess import PRESETS, Preprocessing, input_bounds, model_preprocessing
from explainer.images.spec import InputSpec
from explainer.lrp.composites import AUTO, METHODS
from explainer.onnx_io import load_model


def add_model_options(p: argparse.ArgumentParser, *, method: bool = True, many_methods: bool = False) -> None:
    p.add_argument("model", help="ONNX model file")
    if method:
        p.add_argument("--method", default=AUTO, choices=[AUTO, *METHODS],
                       help="LRP composite or baseline (default: auto = attn-lrp for transformers, epsilon-plus-flat "
                            "otherwise)")
    p.add_argument("--epsilon", type=float, help="ε for dense layers (ε rules)")
    p.add_argument("--gamma", type=float, help="γ for the γ rule")
    p.add_argument("--stabiliser", type=float, help="stabiliser for the other rules")
    p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda"], help="ONNX Runtime provider")
    p.add_argument("--size", type=image_size, metavar="N|HxW",
                   help="input size for models with dynamic dims: N or HxW, e.g. 224 or 224x160")


def add_preprocess_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preprocess", choices=list(PRESETS),
                   help="input normalisation (default: the model's 'explainer.preprocess' metadata, else imagenet "
                        "for 3-channel and unit for 1-channel models)")
    p.add_argument("--mean", type=float, nargs="+", help="per-channel mean on the [0,1] scale (overrides preset)")
    p.add_argument("--std", type=float, nargs="+", help="per-channel std on the [0,1] scale (overrides preset)")
    p.add_argument("--low", type=float, help="lowest input value for the zB rule (default: from the preprocessing)")
    p.add_argument("--high", type=float, help="highest input value for the zB rule (default: from the preprocessing)")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def rule_params(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in ("epsilon", "gamma", "stabiliser") if getattr(args, k, None) is not None}


@dataclass
class ModelInput:
    """What the CLI needs to feed a model: its proto, where it came from, the input spec and preprocessing."""

    proto: Any
    source: str
    spec: InputSpec
    prep: Preprocessing
    size: tuple[int, int]

    def describe_preprocessing(self) -> str:
        return f"{self.prep.name} (mean {list(self.prep.mean)}, std {list(self.prep.std)})"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.spec.batch_shape(1, self.size)[1:]

    def bounds(self, args: argparse.Namespace) -> tuple[Any, Any]:
        low, high = input_bounds(self.prep, self.spec.channels)
        if getattr(args, "low", None) is not None:
            low = np.float32(args.low)
        if getattr(args, "high", None) is not None:
            high = np.float32(args.high)
        return low, high


def model_input(args: argparse.Namespace) -> ModelInput:
    """Load the model and resolve its input layout, size and preprocessing from the options."""
    proto, source = load_model(args.model)
    vi = image_input(proto, source)
    dims = [d.dim_value if d.dim_value > 0 else None for d in vi.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise InputError(f"{source}: input '{vi.name}' has rank {len(dims)}; image commands need a 4-D input")
    layout = detect_layout(proto, vi, tuple(dims))
    spec = InputSpec.from_shape(dims, layout=layout, name=vi.name)
    size = spec.resolve(args.size)
    meta = {p.key: p.value for p in proto.metadata_props}
    prep = model_preprocessing(meta, spec.channels, getattr(args, "preprocess", None), mean=getattr(args, "mean", None),
                               std=getattr(args, "std", None))
    return ModelInput(proto, source, spec, prep, size)
