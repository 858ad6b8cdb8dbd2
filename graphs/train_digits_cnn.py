"""Train the small digits CNN shipped as ``graphs/digits_cnn.onnx`` and write the example images.

Data: scikit-learn's bundled ``load_digits`` (no download): 1797 8x8 handwritten digits with values 0..16,
upsampled to 32x32 with bilinear interpolation and scaled to [0, 1]. A stratified, seeded 80/20 split gives
train and test sets. The network is a plain VGG-style stack (Conv/ReLU/MaxPool blocks, Flatten, two dense
layers) so every op has an LRP rule. It trains in about 20 s on one CPU thread.

Writes ``graphs/digits_cnn.onnx`` (input "input" [N,1,32,32] in [0,1], output "logits" [N,10]),
``graphs/digits_cnn.json`` (accuracy, settings, data source and licence), ``examples/digit_<k>.png`` (one
correctly classified test image per class, 32x32 grayscale) and ``examples/digits_labels.txt``.

Usage: ``python -m graphs.train_digits_cnn [--epochs 40] [--seed 0]``.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

REPO = Path(__file__).resolve().parents[1]

from graphs.export import check_export, export  # noqa: E402

IMAGE_SIZE = 32
NUM_CLASSES = 10
ONNX_PATH = REPO / "graphs" / "digits_cnn.onnx"
META_PATH = REPO / "graphs" / "digits_cnn.json"
EXAMPLES = REPO / "examples"
DATA_SOURCE = (
    "scikit-learn sklearn.datasets.load_digits (bundled copy of the test part of the UCI ML 'Optical Recognition "
    "of Handwritten Digits' data set, E. Alpaydin and C. Kaynak, 1998; https://doi.org/10.24432/C50P49)"
)
DATA_LICENCE = "CC BY 4.0 (UCI Machine Learning Repository licence for this data set)"


@dataclass(frozen=True)
class TrainSettings:
    """Everything that determines the trained weights."""

    seed: int = 0
    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 4e-3
    weight_decay: float = 1e-4
    test_fraction: float = 0.2
    max_shift_px: int = 2
    optimizer: str = "AdamW, cosine learning-rate decay"
    augmentation: str = "random integer translation by up to max_shift_px pixels (zero fill)"


class DigitsCNN(nn.Module):
    """VGG-style digit classifier on 1x32x32 inputs: three Conv/ReLU/MaxPool blocks and a two-layer dense head."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(inplace=False),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def load_images() -> tuple[np.ndarray, np.ndarray]:
    """All digits as float32 [N,1,32,32] in [0,1] (bilinear upsampling of the 8x8 originals) and int64 labels."""
    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    big = F.interpolate(small, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return big.clamp(0.0, 1.0).numpy(), digits.target.astype(np.int64)


def split(x: np.ndarray, y: np.ndarray, settings: TrainSettings) -> tuple[np.ndarray, ...]:
    """Stratified, seeded train/test split; returns x_train, x_test, y_train, y_test."""
    return tuple(train_test_split(x, y, test_size=settings.test_fraction, random_state=settings.seed, stratify=y))


def _shift(batch: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate the whole batch by one random integer offset, filling with zeros (background)."""
    if max_shift == 0:
        return batch
    dy, dx = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
    padded = F.pad(batch, (max_shift, max_shift, max_shift, max_shift))
    h, w = batch.shape[-2:]
    return padded[..., max_shift + dy: max_shift + dy + h, max_shift + dx: max_shift + dx + w]


def train(x_train: np.ndarray, y_train: np.ndarray, settings: TrainSettings) -> DigitsCNN:
    """Train a :class:`DigitsCNN` deterministically from ``settings.seed``; returns it in eval mode."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    model = DigitsCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps_per_epoch = -(-len(x_train) // settings.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings.epochs * steps_per_epoch)
    return fit(model, opt, sched, x_train, y_train, settings, gen, _shift)


def fit(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, x_train: np.ndarray, y_train: np.ndarray,
        settings: Any, gen: torch.Generator, augment: Any) -> nn.Module:
    """The training loop both digits models share: ``settings.epochs`` shuffled passes in batches of
    ``settings.batch_size``, each batch augmented by ``augment(batch, settings.max_shift_px, gen)``, cross-entropy,
    one scheduler step per batch; the model is returned in eval mode."""
    xs, ys = torch.from_numpy(x_train), torch.from_numpy(y_train)
    model.train()
    for _ in range(settings.epochs):
        order = torch.randperm(len(xs), generator=gen)
        for start in range(0, len(xs), settings.batch_size):
            idx = order[start: start + settings.batch_size]
            loss = F.cross_entropy(model(augment(xs[idx], settings.max_shift_px, gen)), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Predicted class of each image."""
    with torch.no_grad():
        return model(torch.from_numpy(x)).argmax(1).numpy()


def to_png_pixels(image: np.ndarray) -> np.ndarray:
    """[1,32,32] float in [0,1] -> uint8 [32,32], the exact pixels stored in the example PNGs."""
    return np.clip(np.rint(image[0] * 255.0), 0, 255).astype(np.uint8)


def write_examples(model: nn.Module, x_test: np.ndarray, y_test: np.ndarray, directory: Path) -> list[Path]:
    """Save, per class, the test image the model classifies correctly with the largest logit margin, as PNG.

    The margin is computed on the PNG-quantised pixels, so the saved file is what gets classified.
    """
    directory.mkdir(parents=True, exist_ok=True)
    quantised = np.stack([to_png_pixels(im) for im in x_test])[:, None].astype(np.float32) / 255.0
    with torch.no_grad():
        logits = model(torch.from_numpy(quantised)).numpy()
    top2 = np.sort(logits, axis=1)[:, -2:]
    margin = np.where(logits.argmax(1) == y_test, top2[:, 1] - top2[:, 0], -np.inf)
    paths = []
    for k in range(NUM_CLASSES):
        candidates = np.flatnonzero(y_test == k)
        best = candidates[np.argmax(margin[candidates])]
        path = directory / f"digit_{k}.png"
        Image.fromarray(to_png_pixels(x_test[best]), mode="L").save(path, optimize=True)
        paths.append(path)
    (directory / "digits_labels.txt").write_text("".join(f"{k}\n" for k in range(NUM_CLASSES)))
    return paths


def publish(model: nn.Module, onnx_path: Path, meta_path: Path, description: str, settings: Any, *,
            accuracy: dict, seconds: float, threads: int, opset: int | None = None, **extra: Any) -> None:
    """Export a trained digits model (legacy exporter, one file), check it against torch and write its metadata JSON
    (accuracy, settings, data source and licence, ``extra`` entries last); print a one-line summary."""
    shape = (1, 1, IMAGE_SIZE, IMAGE_SIZE)
    result = export(model, onnx_path, exporter="legacy", input_shape=shape, opset=opset)
    diff, _ = check_export(model, onnx_path, shape, batch=8, seed=1)
    meta = {
        "model": description,
        "parameters": sum(p.numel() for p in model.parameters()),
        "onnx": {
            "file": onnx_path.name, "exporter": "torch.onnx legacy (TorchScript)", "opset": result.opset,
            "input": {"name": "input", "shape": ["batch", 1, IMAGE_SIZE, IMAGE_SIZE], "dtype": "float32",
                      "range": [0.0, 1.0], "layout": "NCHW, grayscale, white digit on black background"},
            "output": {"name": "logits", "shape": ["batch", NUM_CLASSES], "meaning": "unnormalised class scores"},
            "labels": "examples/digits_labels.txt (class k is digit k)",
            "max_abs_diff_vs_torch": diff, "bytes": onnx_path.stat().st_size,
        },
        "accuracy": accuracy,
        "training": {**asdict(settings), "seconds": round(seconds, 1), "threads": threads,
                     "torch": torch.__version__},
        "preprocessing": "8x8 images / 16, bilinear upsampling to 32x32 (align_corners=False), clipped to [0, 1]",
        "data": {"source": DATA_SOURCE, "licence": DATA_LICENCE},
        **extra,
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"trained in {seconds:.1f} s: train acc {accuracy['train']:.4f}, test acc {accuracy['test']:.4f}; "
          f"wrote {onnx_path} ({onnx_path.stat().st_size} bytes), ONNX vs torch max |diff| {diff:.2e}")


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate, export and write metadata and examples."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=TrainSettings.seed)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (fixed for reproducibility; 1 is fastest for these small convs)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = TrainSettings(seed=args.seed, epochs=args.epochs)

    x, y = load_images()
    x_train, x_test, y_train, y_test = split(x, y, settings)
    start = time.perf_counter()
    model = train(x_train, y_train, settings)
    seconds = time.perf_counter() - start
    train_acc = float(np.mean(predict(model, x_train) == y_train))
    test_acc = float(np.mean(predict(model, x_test) == y_test))

    examples = write_examples(model, x_test, y_test, EXAMPLES)
    publish(model, ONNX_PATH, META_PATH, "DigitsCNN (graphs/train_digits_cnn.py)", settings,
            accuracy={"test": test_acc, "train": train_acc, "n_test": int(len(y_test)), "n_train": int(len(y_train))},
            seconds=seconds, threads=args.threads, examples=[str(p.relative_to(REPO)) for p in examples])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
