"""Where the shipped graphs and example images are, and the digits model's input, for tests that use them."""
from __future__ import annotations

from pathlib import Path

from explainer.images.spec import InputSpec

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "graphs" / "digits_cnn.onnx"
TF2ONNX = ROOT / "graphs" / "tf2onnx_small.onnx"
EXAMPLES = ROOT / "examples"
LABELS = EXAMPLES / "digits_labels.txt"
DIGITS_SPEC = InputSpec(layout="NCHW", channels=1, height=32, width=32, name="input")


def digit_path(k: int) -> Path:
    """The shipped example image of digit ``k``."""
    return EXAMPLES / f"digit_{k}.png"
