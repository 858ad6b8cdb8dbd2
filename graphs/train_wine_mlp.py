"""Train the small tabular MLP shipped as ``graphs/wine_mlp.onnx`` and write its example rows.

Data: scikit-learn's bundled ``load_wine`` (no download): 178 wines from three cultivars, 13 chemical measurements
each. A stratified, seeded 80/20 split gives train and test sets. The network standardises its raw input with the
training split's mean and standard deviation in a first element-wise layer (``(x - mean) / std``, exported as
Sub and Div), so it takes the measurements as they are, and epsilon-plus passes relevance through that layer
unchanged (relevance relative to the training mean); then Linear 13→32, ReLU, Linear 32→16, ReLU, Linear 16→3. It
trains in about 3 s on one CPU thread, with the digits models' training loop (:func:`graphs.train_digits_cnn.fit`).

Writes ``graphs/wine_mlp.onnx`` (input "input" [N, 13] of raw measurements, output "logits" [N, 3], the class names
in the metadata entry ``explainer.labels``), ``graphs/wine_mlp.json`` (accuracy, settings, standardisation, data
source and licence), ``examples/wine_rows.npy`` (float32 [3, 13]: per class, the correctly classified test row with
the largest logit margin, in class order), ``examples/wine_features.txt`` and ``examples/wine_labels.txt``.

Then draws ``docs/img/wine.png``, the README picture: the bar charts ``explainer explain`` writes for the three rows,
side by side (``--figure-only`` redraws it from the shipped files without training).

Usage: ``python -m graphs.train_wine_mlp [--epochs 150] [--seed 0] [--figure-only]``.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graphs.export import check_export, export
from graphs.train_digits_cnn import fit, predict

REPO = Path(__file__).resolve().parents[1]
NUM_FEATURES = 13
NUM_CLASSES = 3
ONNX_PATH = REPO / "graphs" / "wine_mlp.onnx"
META_PATH = REPO / "graphs" / "wine_mlp.json"
EXAMPLES = REPO / "examples"
FIGURE_PATH = REPO / "docs" / "img" / "wine.png"
ROWS_PATH = EXAMPLES / "wine_rows.npy"
FEATURES_PATH = EXAMPLES / "wine_features.txt"
LABELS_PATH = EXAMPLES / "wine_labels.txt"
#: class k is the k-th cultivar of the data set (scikit-learn calls them class_0, class_1, class_2)
LABELS = ("cultivar 0", "cultivar 1", "cultivar 2")
DATA_SOURCE = (
    "scikit-learn sklearn.datasets.load_wine (bundled copy of the UCI ML 'Wine' data set, M. Forina et al., "
    "S. Aeberhard; https://doi.org/10.24432/C5PC7J)"
)
DATA_LICENCE = "CC BY 4.0 (UCI Machine Learning Repository licence for this data set)"


@dataclass(frozen=True)
class TrainSettings:
    """Everything that determines the trained weights."""

    seed: int = 0
    epochs: int = 150
    batch_size: int = 32
    learning_rate: float = 5e-3
    weight_decay: float = 1e-3
    test_fraction: float = 0.2
    max_shift_px: int = 0  # fit()'s augmentation argument; features are not augmented
    optimizer: str = "AdamW, cosine learning-rate decay"
    augmentation: str = "none"


class Standardise(nn.Module):
    """``(x - mean) / std`` with constant per-feature statistics: the input scaling, inside the graph."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class WineMLP(nn.Module):
    """Standardisation, then a 13→32→16→3 ReLU MLP on raw wine measurements."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.standardise = Standardise(mean, std)
        self.layers = nn.Sequential(
            nn.Linear(NUM_FEATURES, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.standardise(x))


def load_data() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All wines as float32 [178, 13] raw measurements, int64 labels and the feature names."""
    from sklearn.datasets import load_wine

    wine = load_wine()
    return wine.data.astype(np.float32), wine.target.astype(np.int64), list(wine.feature_names)


def split(x: np.ndarray, y: np.ndarray, settings: TrainSettings) -> tuple[np.ndarray, ...]:
    """Stratified, seeded train/test split; returns x_train, x_test, y_train, y_test."""
    from sklearn.model_selection import train_test_split

    return tuple(train_test_split(x, y, test_size=settings.test_fraction, random_state=settings.seed, stratify=y))


def _no_augmentation(batch: torch.Tensor, _shift: int, _gen: torch.Generator) -> torch.Tensor:
    return batch


def train(x_train: np.ndarray, y_train: np.ndarray, settings: TrainSettings) -> WineMLP:
    """Train a :class:`WineMLP` deterministically from ``settings.seed``, standardising with ``x_train``'s mean and
    standard deviation; returns it in eval mode."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    model = WineMLP(x_train.mean(0), x_train.std(0))
    opt = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps_per_epoch = -(-len(x_train) // settings.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings.epochs * steps_per_epoch)
    return fit(model, opt, sched, x_train, y_train, settings, gen, _no_augmentation)


def example_rows(model: nn.Module, x_test: np.ndarray, y_test: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Per class, the test row the model classifies correctly with the largest logit margin: float32
    [NUM_CLASSES, 13] in class order, and the rows' indices in the test split."""
    with torch.no_grad():
        logits = model(torch.from_numpy(x_test)).numpy()
    top2 = np.sort(logits, axis=1)[:, -2:]
    margin = np.where(logits.argmax(1) == y_test, top2[:, 1] - top2[:, 0], -np.inf)
    picked = []
    for k in range(NUM_CLASSES):
        candidates = np.flatnonzero(y_test == k)
        picked.append(int(candidates[np.argmax(margin[candidates])]))
    return x_test[picked].astype(np.float32), picked


def publish(model: WineMLP, settings: TrainSettings, *, accuracy: dict, seconds: float, threads: int,
            example_indices: list[int]) -> None:
    """Export the trained model (legacy exporter, one file) with the class names in its metadata, check it against
    torch and write its metadata JSON; print a one-line summary."""
    import onnx

    shape = (1, NUM_FEATURES)
    result = export(model, ONNX_PATH, exporter="legacy", input_shape=shape)
    proto = onnx.load(str(ONNX_PATH))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "explainer.labels", json.dumps(list(LABELS))
    proto.doc_string = "WineMLP (graphs/train_wine_mlp.py): 3 wine cultivars from 13 raw chemical measurements"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(ONNX_PATH))
    diff, _ = check_export(model, ONNX_PATH, shape, batch=8, seed=1)
    meta = {
        "model": "WineMLP (graphs/train_wine_mlp.py)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "onnx": {
            "file": ONNX_PATH.name, "exporter": "torch.onnx legacy (TorchScript)", "opset": result.opset,
            "input": {"name": "input", "shape": ["batch", NUM_FEATURES], "dtype": "float32",
                      "meaning": "raw measurements, in the order of examples/wine_features.txt"},
            "output": {"name": "logits", "shape": ["batch", NUM_CLASSES], "meaning": "unnormalised class scores"},
            "labels": "model metadata 'explainer.labels' and examples/wine_labels.txt (class k is cultivar k)",
            "max_abs_diff_vs_torch": diff, "bytes": ONNX_PATH.stat().st_size,
        },
        "accuracy": accuracy,
        "training": {**asdict(settings), "seconds": round(seconds, 1), "threads": threads,
                     "torch": torch.__version__},
        "preprocessing": "none outside the model: its first layer computes (x - mean) / std with the training "
                         "split's statistics (population std)",
        "standardisation": {"mean": model.standardise.mean.tolist(), "std": model.standardise.std.tolist()},
        "data": {"source": DATA_SOURCE, "licence": DATA_LICENCE},
        "examples": {"rows": str(ROWS_PATH.relative_to(REPO)), "test_indices": example_indices,
                     "classes": list(range(NUM_CLASSES))},
    }
    META_PATH.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"trained in {seconds:.1f} s: train acc {accuracy['train']:.4f}, test acc {accuracy['test']:.4f}; "
          f"wrote {ONNX_PATH} ({ONNX_PATH.stat().st_size} bytes), ONNX vs torch max |diff| {diff:.2e}")


def figure(path: Path = FIGURE_PATH) -> Path:
    """Run ``explainer explain`` on the shipped model and rows (as the README does) and paste its bar charts side by
    side into ``path`` (returned)."""
    import tempfile

    from PIL import Image

    from explainer.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        argv = ["explain", str(ONNX_PATH), str(ROWS_PATH), "--feature-names", str(FEATURES_PATH), "--out", tmp]
        if cli(argv) != 0:
            raise RuntimeError(f"explainer {' '.join(argv)} failed")
        charts = [Image.open(Path(tmp) / f"{ROWS_PATH.stem}_{k}.png").convert("RGB") for k in range(NUM_CLASSES)]
        sheet = Image.new("RGB", (sum(c.width for c in charts), max(c.height for c in charts)), "white")
        left = 0
        for chart in charts:
            sheet.paste(chart, (left, 0))
            left += chart.width
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(colors=64).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return path


def main(argv: list[str] | None = None) -> int:
    """Train, evaluate, export and write metadata and examples."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=TrainSettings.seed)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed for reproducibility)")
    parser.add_argument("--figure-only", action="store_true", help="only redraw docs/img/wine.png")
    args = parser.parse_args(argv)
    if args.figure_only:
        figure()
        return 0
    torch.set_num_threads(args.threads)
    settings = TrainSettings(seed=args.seed, epochs=args.epochs)

    x, y, names = load_data()
    x_train, x_test, y_train, y_test = split(x, y, settings)
    start = time.perf_counter()
    model = train(x_train, y_train, settings)
    seconds = time.perf_counter() - start
    accuracy = {"test": float(np.mean(predict(model, x_test) == y_test)),
                "train": float(np.mean(predict(model, x_train) == y_train)),
                "n_test": int(len(y_test)), "n_train": int(len(y_train))}

    rows, indices = example_rows(model, x_test, y_test)
    EXAMPLES.mkdir(parents=True, exist_ok=True)
    np.save(ROWS_PATH, rows)
    FEATURES_PATH.write_text("".join(f"{name}\n" for name in names))
    LABELS_PATH.write_text("".join(f"{name}\n" for name in LABELS))
    publish(model, settings, accuracy=accuracy, seconds=seconds, threads=args.threads, example_indices=indices)
    figure()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
