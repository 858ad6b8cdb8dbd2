"""Class names for model outputs: user label files, names stored in the model's metadata, the bundled ImageNet-1k
list, top-k tables.

A labels file is UTF-8 text (at most 16 MiB) with one class name per line, in class-index order. Lines starting
with ``#`` at the top of the file are a header and are skipped; trailing blank lines are ignored;
a blank line between names is an error (it would shift every later index).

Names in a model's metadata (:data:`METADATA_LABEL_KEYS`, the first entry whose names number the model's classes):
a JSON list, a JSON object or Python dict literal from index to name (Ultralytics' ``names``), or text with one name
per line (PaddleOCR/PaddleClas' ``character``, taken verbatim, so a space or ``#`` is a name too) or, on one line,
separated by commas.
"""
from __future__ import annotations

import ast
import functools
import json
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


def load_labels(path: str | Path | None, num_classes: int,
                metadata: dict[str, str] | None = None) -> list[str] | None:
    """Names for a model with ``num_classes`` outputs: the first of :func:`find_labels`."""
    return find_labels(path, num_classes, metadata)[0]


def find_labels(path: str | Path | None, num_classes: int,
                metadata: dict[str, str] | None = None) -> tuple[list[str] | None, str]:
    """Names for a model with ``num_classes`` outputs, and where they came from, in words.

    With ``path``: that file's names, which must number exactly ``num_classes``. Without: the names in the
    model's ``metadata`` (see the module docstring) when they number ``num_classes``, else the ImageNet-1k names
    when ``num_classes == 1000``, else ``None`` (callers show indices). Names in the metadata that do not fit are
    not used, and the second item says why.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise InputError(f"number of classes must be a positive integer, got {num_classes!r}")
    if path is not None:
        names = read_labels(path)
        if len(names) != num_classes:
            raise InputError(
                f"labels file {path} has {len(names)} names but the model has {num_classes} output classes"
            )
        return names, f"labels file {path}"
    names, where = metadata_labels(metadata or {}, num_classes)
    if names is not None:
        return names, where
    if num_classes == IMAGENET_NUM_CLASSES:
        return imagenet_labels(), "ImageNet-1k names" + (f" ({where})" if where else "")
    return None, "class indices" + (f" ({where})" if where else "")


#: model metadata keys that may hold class names, in the order they are tried
METADATA_LABEL_KEYS = ("explainer.labels", "labels", "names", "classes", "character")


def metadata_labels(metadata: dict[str, str], num_classes: int) -> tuple[list[str] | None, str]:
    """The class names in a model's metadata: ``(names, "model metadata 'KEY'")`` from the first entry of
    :data:`METADATA_LABEL_KEYS` that holds ``num_classes`` names; else ``(None, why the entries present were not
    used)``, with an empty reason when there are none."""
    reasons = []
    for key in METADATA_LABEL_KEYS:
        text = metadata.get(key)
        if not text:
            continue
        names = _metadata_names(text)
        if names is None:
            reasons.append(f"model metadata '{key}' is not a list of names")
        elif len(names) != num_classes:
            reasons.append(f"model metadata '{key}' has {len(names)} names for {num_classes} classes")
        else:
            return names, f"model metadata '{key}'"
    return None, "; ".join(reasons)


def _metadata_names(text: str) -> list[str] | None:
    """Names from a metadata entry (formats in the module docstring), or None for anything else."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_LABELS_BYTES or "\0" in text:
        return None
    value = None
    if text.lstrip()[:1] in ("[", "{"):
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                return None
    if isinstance(value, dict):
        keys = [int(k) if isinstance(k, str) and k.isdigit() else k for k in value]
        if set(keys) != set(range(len(keys))):
            return None
        value = [dict(zip(keys, value.values()))[i] for i in range(len(keys))]
    if isinstance(value, list):
        ok = all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value)
        return [str(v) for v in value] if ok and value else None
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    if len(lines) > 1:
        return lines if all(lines) else None
    names = [name.strip() for name in text.split(",")]
    return names if all(names) else None


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
