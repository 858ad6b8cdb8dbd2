"""Train the small digits vision transformer shipped as ``graphs/digits_vit.onnx``, and define its architecture.

Data and split are those of the digits CNN (``graphs/train_digits_cnn.py``): scikit-learn's bundled ``load_digits``
upsampled to 32x32 in [0, 1], a stratified, seeded 80/20 split. The network is a pre-LN ViT (:class:`ViT`): a strided
convolution embeds 8x8 patches, a learned class token and position embedding are added, two transformer blocks
(multi-head self-attention written out as q@kᵀ, softmax, @v; a GELU MLP; residual sums) follow, and a linear head
reads the class token after a final LayerNorm. :class:`ViT` (``graphs/reference_models.py``) also builds the variants
the transformer tests export and the ViT-S/16 the benchmark times, so one definition serves all.

Writes ``graphs/digits_vit.onnx`` (legacy exporter, opset 17, one file; input "input" [N,1,32,32] in [0,1], output
"logits" [N,10]) and ``graphs/digits_vit.json`` (accuracy, settings, data source and licence).

Usage: ``python -m graphs.train_digits_vit [--epochs 60] [--seed 0] [--threads 2]``.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from graphs.reference_models import ViT
from graphs.train_digits_cnn import fit, load_images, predict, publish, split

REPO = Path(__file__).resolve().parents[1]
ONNX_PATH = REPO / "graphs" / "digits_vit.onnx"
META_PATH = REPO / "graphs" / "digits_vit.json"
OPSET = 17

@dataclass(frozen=True)
class TrainSettings:
    """Everything that determines the trained weights."""

    seed: int = 0
    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 3
    test_fraction: float = 0.2
    max_shift_px: int = 3
    optimizer: str = "AdamW, linear warm-up then cosine learning-rate decay"
    augmentation: str = "random integer translation of each image by up to max_shift_px pixels (zero fill)"


def shift_each(batch: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate every image by its own random integer offset in [-max_shift, max_shift]², filling with zeros."""
    if max_shift == 0:
        return batch
    n, _, h, w = batch.shape
    padded = F.pad(batch, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n, 1, 1), generator=gen)
    rows = (dy + torch.arange(h)[None, :, None]).expand(n, h, w)
    cols = (dx + torch.arange(w)[None, None, :]).expand(n, h, w)
    return padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def train(x_train: np.ndarray, y_train: np.ndarray, settings: TrainSettings) -> ViT:
    """Train a :class:`ViT` deterministically from ``settings.seed``; returns it in eval mode."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    model = ViT()
    opt = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps_per_epoch = -(-len(x_train) // settings.batch_size)
    total, warmup = settings.epochs * steps_per_epoch, settings.warmup_epochs * steps_per_epoch

    def rate(step: int) -> float:
        """Learning-rate factor: linear warm-up, then cosine decay to 0."""
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, rate)
    return fit(model, opt, sched, x_train, y_train, settings, gen, shift_each)


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate, export and write metadata."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=TrainSettings.seed)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (fixed for reproducibility)")
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

    publish(model, ONNX_PATH, META_PATH,
            "ViT (graphs/train_digits_vit.py): pre-LN, 8x8 patches, class token, 2 blocks, 4 heads, dim 48", settings,
            accuracy={"test": test_acc, "train": train_acc, "n_test": int(len(y_test)), "n_train": int(len(y_train))},
            seconds=seconds, threads=args.threads, opset=OPSET)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
