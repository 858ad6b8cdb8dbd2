"""Options and steps shared by the sub-commands: model and method options, preprocessing, positive integers."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np

from explainer.cli.text import image_size
from explainer.errors import InputError
from explainer.frontend.inputs import detect_layout, image_input
from explainer.images.preprocess import (
    CHANNEL_ORDERS,
    PRESETS,
    RESIZE_MODES,
    Preprocessing,
    input_bounds,
    model_preprocessing,
    model_resize,
)
from explainer.images.spec import InputSpec
from explainer.lrp.composites import AUTO, METHODS
from explainer.onnx_io import load_model


def add_model_options(p: argparse.ArgumentParser, *, method: bool = True, seed_mode: bool = False) -> None:
    """The model and its method's options; ``seed_mode`` adds ``--seed-mode`` (the command must pass it on)."""
    p.add_argument("model", help="ONNX model file")
    if method:
        p.add_argument("--method", default=AUTO, choices=[AUTO, *METHODS],
                       help="LRP composite or baseline (default: auto = attn-lrp for transformers, epsilon-plus-flat "
                            "otherwise)")
    if seed_mode:
        p.add_argument("--seed-mode", choices=["logit", "one-hot"],
                       help="what relevance starts from at the output: logit (one-hot × the target's logit) or "
                            "one-hot (Zennit's usual call; with a negative target logit the logit seed flips the "
                            "map's sign) (default: the method's own: logit for LRP, one-hot for gradient-like "
                            "methods)")
    p.add_argument("--epsilon", type=float, help="ε for dense layers (ε rules) (default: the method's own)")
    p.add_argument("--gamma", type=float, help="γ for the γ rule (default: the method's own)")
    p.add_argument("--stabiliser", type=float, help="stabiliser for the other rules (default: the method's own)")
    p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda"],
                   help="ONNX Runtime provider (default: auto = CUDA when a GPU works, else CPU)")
    p.add_argument("--size", type=image_size, metavar="N|HxW",
                   help="input size for models with dynamic dims: N or HxW, e.g. 224 or 224x160 (default: the "
                        "model's own)")


def add_output_option(p: argparse.ArgumentParser) -> None:
    """``--output NAME``: the model output to explain."""
    p.add_argument("--output", metavar="NAME",
                   help="the model output to explain when it has several (default: the first; 'explainer check' "
                        "lists them)")


def add_preprocess_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preprocess", choices=list(PRESETS),
                   help="input normalisation (default: the model's 'explainer.preprocess' metadata, else imagenet "
                        "for 3-channel and unit for 1-channel models)")
    p.add_argument("--mean", type=float, nargs="+",
                   help="per-channel mean on the [0,1] scale (overrides the preset; default: the preset's)")
    p.add_argument("--std", type=float, nargs="+",
                   help="per-channel std on the [0,1] scale (overrides the preset; default: the preset's)")
    p.add_argument("--low", type=float, help="lowest input value for the zB rule (default: from the preprocessing)")
    p.add_argument("--high", type=float, help="highest input value for the zB rule (default: from the preprocessing)")
    p.add_argument("--channel-order", choices=CHANNEL_ORDERS,
                   help="the model's channel order, for any preset (default: the model's 'explainer.channel_order' "
                        "metadata, else the preset's own: bgr for caffe, rgb otherwise)")
    p.add_argument("--resize", choices=RESIZE_MODES,
                   help="how images reach the model's size: center-crop (torchvision's evaluation transform), "
                        "letterbox (whole image, padded with --fill) or stretch (default: the model's "
                        "'explainer.resize' metadata, else center-crop)")
    p.add_argument("--fill", type=int, nargs="+", metavar="V",
                   help="letterbox padding: one pixel value 0..255, or one per channel in RGB order (default 0)")


def _int_at_least(minimum: int, what: str) -> Any:
    """An argparse type: an integer >= ``minimum`` (``what`` names such integers in the error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {value}")
        return value
    parse.__name__ = f"{what.replace('-', '_')}_int"
    return parse


#: argparse types: an integer >= 1, an integer >= 0
positive_int = _int_at_least(1, "positive")
non_negative_int = _int_at_least(0, "non-negative")


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
    resize_mode: str = "center-crop"
    fill: Any = 0

    def describe_preprocessing(self) -> str:
        return f"{self.prep.describe()}, resize {self.resize_mode}"

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


def input_spec(proto: Any, source: str) -> InputSpec:
    """The model's image input: layout, channels and declared (possibly dynamic) size."""
    vi = image_input(proto, source)
    dims = [d.dim_value if d.dim_value > 0 else None for d in vi.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise InputError(f"{source}: input '{vi.name}' has rank {len(dims)}; image commands need a 4-D input")
    return InputSpec.from_shape(dims, layout=detect_layout(proto, vi, tuple(dims)), name=vi.name)


def model_input(args: argparse.Namespace, loaded: tuple[Any, str] | None = None) -> ModelInput:
    """Load the model (or take ``loaded``, ``load_model``'s result) and resolve its input layout, size and
    preprocessing from the options."""
    proto, source = loaded or load_model(args.model)
    spec = input_spec(proto, source)
    size = spec.resolve(args.size)
    meta = {p.key: p.value for p in proto.metadata_props}
    prep = model_preprocessing(meta, spec.channels, getattr(args, "preprocess", None), mean=getattr(args, "mean", None),
                               std=getattr(args, "std", None), channel_order=getattr(args, "channel_order", None))
    resize_mode, fill = model_resize(meta, getattr(args, "resize", None), getattr(args, "fill", None))
    return ModelInput(proto, source, spec, prep, size, resize_mode, fill)
