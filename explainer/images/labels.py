"""Class names for model outputs: the bundled ImageNet-1k list, user label files, top-k tables.

A labels file is UTF-8 text (at most 16 MiB) with one class name per line, in class-index order. Lines starting
with ``#`` at the top of the file are a header and are skipped; trailing blank lines are ignored;
a blank line between names is an error (it would shift every later index).
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import numpy as np

from explainer.errors import InputError
from explainer.limits import MAX_LABELS_BYTES, format_bytes

IMAGENET_NUM_CLASSES = 1000


def read_labels(path: str | Path) -> list[str]:
    """Read a labels file (format in the module docstring) into a list of names.

    At most :data:`~explainer.limits.MAX_LABELS_BYTES` are read, so ``/dev/zero`` or a huge file is refused rather
    than read into memory; a file with NUL bytes is refused as binary."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_LABELS_BYTES + 1)
    except FileNotFoundError as exc:
        raise InputError(f"labels file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise InputError(f"labels file {path} is a folder, expected a text file") from exc
    except OSError as exc:
        raise InputError(f"cannot read labels file {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_LABELS_BYTES:
        raise InputError(f"labels file {path} is larger than {format_bytes(MAX_LABELS_BYTES)}; expected one class "
                         "name per line")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"labels file {path} is not UTF-8 text: {exc}") from exc
    if "\0" in text:
        raise InputError(f"labels file {path} is not a text file (it contains NUL bytes)")
    return _parse_labels(text, str(path))


def _parse_labels(text: str, source: str) -> list[str]:
    lines = text.splitlines()
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    names = [line.strip() for line in lines[start:]]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise InputError(f"labels file {source} contains no class names")
    blank = [start + i + 1 for i, name in enumerate(names) if not name]
    if blank:
        raise InputError(f"labels file {source} has blank line(s) between names at line(s) {blank[:10]}")
    return names


@functools.lru_cache(maxsize=1)
def _imagenet_labels() -> tuple[str, ...]:
    data = resources.files("explainer.images") / "data" / "imagenet_classes.txt"
    names = _parse_labels(data.read_text(encoding="utf-8"), "explainer/images/data/imagenet_classes.txt")
    if len(names) != IMAGENET_NUM_CLASSES:
        raise InputError(f"bundled ImageNet labels have {len(names)} names instead of {IMAGENET_NUM_CLASSES}")
    return tuple(names)


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (first WordNet synonym, e.g. 'tench')."""
    return list(_imagenet_labels())


def load_labels(path: str | Path | None, num_classes: int) -> list[str] | None:
    """Names for a model with ``num_classes`` outputs.

    With ``path``: that file's names, which must number exactly ``num_classes``. Without: the
    ImageNet-1k names when ``num_classes == 1000``, else ``None`` (callers show indices).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise InputError(f"number of classes must be a positive integer, got {num_classes!r}")
    if path is None:
        return imagenet_labels() if num_classes == IMAGENET_NUM_CLASSES else None
    names = read_labels(path)
    if len(names) != num_classes:
        raise InputError(
            f"labels file {path} has {len(names)} names but the model has {num_classes} output classes"
        )
    return names


def top_k(logits: np.ndarray, k: int, labels: list[str] | None = None) -> list[tuple[int, str, float, float]]:
    """The ``k`` highest-scoring classes as ``(index, name, logit, softmax probability)``, best first.

    The softmax is taken over all classes (so the listed probabilities sum to at most 1); ties keep
    index order; ``k`` larger than the class count lists every class. Names fall back to
    ``str(index)`` when ``labels`` is None.
    """
    scores = np.asarray(logits, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise InputError(f"top_k: expected a 1-D vector of class scores, got shape {scores.shape}")
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise InputError(f"top_k: class scores are not finite at indices {bad[:10].tolist()}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"top_k: k must be a positive integer, got {k!r}")
    if labels is not None and len(labels) != scores.size:
        raise InputError(f"top_k: {len(labels)} labels for {scores.size} class scores")
    shifted = np.exp(scores - scores.max())
    probabilities = shifted / shifted.sum()
    order = np.argsort(-scores, kind="stable")[: min(int(k), scores.size)]
    return [
        (int(i), labels[i] if labels is not None else str(int(i)), float(scores[i]), float(probabilities[i]))
        for i in order
    ]
