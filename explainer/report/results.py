"""Read the folders that ``explain``, ``evaluate`` and ``audit`` write, into what the HTML report shows.

Every file is read with bounds (JSON size, array sizes inside an ``.npz``, Pillow's decompression-bomb limit) and a
malformed one is an :class:`~explainer.errors.InputError` naming it. Pictures are re-encoded as bounded-size
thumbnails (see :func:`thumbnail`), several at a time, so a report of hundreds of images stays light and quick.
"""
from __future__ import annotations

import base64
import io
import math
import os
import re
import zipfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from explainer import files
from explainer.errors import InputError
from explainer.images.io import load_image
from explainer.images.labels import load_labels, read_labels, top_k

THUMBNAIL_SIDE = 256
"""Longest side, in pixels, of a picture of one image in the report (larger ones are scaled down)."""
PLOT_SIDE = 1200
"""Longest side, in pixels, of the AOPC curves plot in the report."""
MAX_ARRAY_BYTES = 64 * 2**20
"""Largest array read from an ``.npz`` (the logits of a 1000-class model take 4 kB)."""
PNG_MAX_COLOURS = 4096
"""Pictures with at most this many colours are inlined as PNG, others as JPEG."""
PICTURES = (("overlay", "input and relevance"), ("heatmap", "relevance"), ("sr", "SR map"),
            ("sr_overlay", "input and SR map"))
"""The PNG suffixes of one explained image, in the order shown, with their captions."""


@dataclass(frozen=True)
class Picture:
    """An image inlined into the page: a ``data:`` URI and its pixel size."""

    uri: str
    width: int
    height: int
    caption: str


@dataclass
class Explained:
    """One image's explanation: its pictures, top classes and relevance figures."""

    stem: str
    pictures: list[Picture]
    top: list[tuple[int, str, float, float]]
    target: int
    target_name: str
    target_logit: float
    conservation: float | None = None
    absorbed: list[tuple[str, float]] = field(default_factory=list)
    seed: str | None = None

    @property
    def seed_value(self) -> float:
        """What relevance started from at the output: 1 for the one-hot seed, else the target's logit."""
        return 1.0 if self.seed == "one-hot" else self.target_logit

    @property
    def reached(self) -> float | None:
        """The share of the seed that reached the input or the constant inputs that keep relevance (as the CLI's
        low-conservation warning counts it); None without a conservation figure."""
        if self.conservation is None:
            return None
        kept = sum(value for _, value in self.absorbed)
        return self.conservation + (kept / self.seed_value if kept and self.seed_value else 0.0)


@dataclass
class Section:
    """What one result folder holds: explanations, an evaluation (``aopc.json``) and/or an audit (``report.json``)."""

    folder: Path
    explained: list[Explained] = field(default_factory=list)
    evaluation: Mapping[str, Any] | None = None
    curves: Picture | None = None
    audit: Mapping[str, Any] | None = None
    audit_evaluation: Mapping[str, Any] | None = None


def natural_key(text: str) -> list[Any]:
    """Sort key that orders 'digit_2' before 'digit_10'."""
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", text)]


def result_files(folder: str | Path) -> list[Path]:
    """The files of ``folder`` the report reads: ``*.npz`` with their PNGs, ``aopc.json``/``.png``, ``report.json``.
    Raises :class:`InputError` when ``folder`` is not a folder or holds none of them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: {'no such folder' if not folder.exists() else 'not a folder'}; expected a "
                         "folder written by explainer explain, evaluate or audit")
    names = [f"{stem}{end}" for stem in _stems(folder) for end in (".npz", *(f"_{s}.png" for s, _ in PICTURES))]
    files = [folder / name for name in (*names, "aopc.json", "aopc.png", "report.json") if (folder / name).is_file()]
    if not any(f.suffix in (".npz", ".json") for f in files):
        raise InputError(f"{folder}: holds no results of explainer explain (*.npz), evaluate (aopc.json) or audit "
                         "(report.json)")
    return files


def read_section(folder: str | Path, *, labels: str | Path | None = None, top: int = 5,
                 progress: Callable[[], None] | None = None) -> Section:
    """Read one result folder (see :func:`result_files`); ``labels`` names the classes, ``top`` is how many classes
    each image lists; ``progress`` is called once per image read."""
    folder = Path(folder)
    result_files(folder)
    section = Section(folder)
    stems = _stems(folder)
    if stems:
        names = read_labels(labels) if labels is not None else None
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # Pillow codecs release the GIL
            for explained in pool.map(lambda stem: _read_explained(folder, stem, labels, top, names), stems):
                section.explained.append(explained)
                if progress is not None:
                    progress()
    if (folder / "aopc.json").is_file():
        section.evaluation = _evaluation(read_json(folder / "aopc.json"), folder / "aopc.json")
        if (folder / "aopc.png").is_file():
            section.curves = thumbnail(folder / "aopc.png", PLOT_SIDE, "AOPC curves")
    if (folder / "report.json").is_file():
        report = read_json(folder / "report.json")
        if not isinstance(report.get("audit"), Mapping):
            raise InputError(f"{folder / 'report.json'}: not an audit report (it has no 'audit' entry)")
        section.audit = report["audit"]
        section.audit_evaluation = _evaluation(report.get("evaluation"), folder / "report.json")
    return section


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, read with bounds (``explainer.files.read_json``); :class:`InputError` naming the
    file otherwise."""
    parsed = files.read_json(path, str(path))
    if not isinstance(parsed, dict):
        raise InputError(f"{path}: expected a JSON object written by explainer")
    return parsed


def thumbnail(path: Path, side: int, caption: str) -> Picture:
    """``path`` scaled down to at most ``side`` pixels on its longer side and inlined: as PNG when it has few colours
    (rendered maps, plots: lossless and small), else as JPEG (photos: a tenth of the PNG's size)."""
    from PIL import Image

    image = Image.fromarray(load_image(path, channels=3))
    if max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    kind, options = ("png", {}) if image.getcolors(PNG_MAX_COLOURS) is not None else ("jpeg", {"quality": 85})
    buffer = io.BytesIO()
    image.save(buffer, format=kind.upper(), **options)
    uri = f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return Picture(uri, image.width, image.height, caption)


def number(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        value = float(value)
        return value if math.isfinite(value) else None
    return None


def _stems(folder: Path) -> list[str]:
    stems = [p.stem for p in folder.glob("*.npz") if p.is_file() and not p.name.startswith(".")]
    return sorted(stems, key=natural_key)


def _evaluation(report: Any, path: Path) -> Mapping[str, Any]:
    if not isinstance(report, Mapping) or not isinstance(report.get("methods"), Mapping) or not report["methods"]:
        raise InputError(f"{path}: has no 'methods' section; expected the JSON written by explainer evaluate/audit")
    return report


def _read_explained(folder: Path, stem: str, labels: str | Path | None, top: int, names: list[str] | None) -> Explained:
    """One image's result set; ``names`` are the class names read from the file ``labels`` (None: no file)."""
    path = folder / f"{stem}.npz"
    arrays = _read_npz(path)
    logits = arrays["logits"].astype(np.float64).reshape(-1)
    target = arrays["target"]
    if target.size != 1 or target.dtype.kind not in "iu" or not 0 <= int(target.reshape(-1)[0]) < logits.size:
        raise InputError(f"{path}: 'target' is not a class index of its {logits.size} logits")
    target = int(target.reshape(-1)[0])
    if names is not None and len(names) != logits.size:
        raise InputError(f"labels file {labels} has {len(names)} names but {path} has {logits.size} class scores")
    classes = names if names is not None else load_labels(None, logits.size)
    try:
        ranked = top_k(logits, top, classes)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    absorbed = []
    for key in sorted((k for k in arrays if re.fullmatch(r"absorbed_\d+", k)), key=natural_key):
        value, label = number(_scalar(arrays[key])), arrays.get(f"{key}_label")
        if value is not None:
            absorbed.append((str(label.reshape(-1)[0]) if label is not None and label.size == 1 else key, value))
    pictures = [thumbnail(folder / f"{stem}_{suffix}.png", THUMBNAIL_SIDE, caption) for suffix, caption in PICTURES
                if (folder / f"{stem}_{suffix}.png").is_file()]
    seed = arrays.get("seed")
    return Explained(stem, pictures, ranked, target, classes[target] if classes else str(target),
                     float(logits[target]), number(_scalar(arrays.get("conservation"))), absorbed,
                     _text(seed) if seed is not None else None)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The small arrays of an explanation ``.npz`` (the relevance maps are not read); unknown keys are kept."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {}
            for key in npz.files:
                if key.startswith("relevance") or key == "sr":
                    continue
                if npz.zip.getinfo(f"{key}.npy").file_size > MAX_ARRAY_BYTES:
                    raise InputError(f"{path}: array {key!r} is larger than {MAX_ARRAY_BYTES // 2**20} MiB")
                arrays[key] = npz[key]
    except InputError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable .npz written by explainer explain ({exc})") from None
    missing = [key for key in ("logits", "target") if key not in arrays]
    if missing:
        raise InputError(f"{path}: has no {' or '.join(repr(k) for k in missing)} array; expected an .npz written "
                         "by explainer explain")
    if arrays["logits"].dtype.kind not in "fiu" or arrays["logits"].size == 0:
        raise InputError(f"{path}: 'logits' is not a vector of class scores")
    return arrays


def _scalar(array: np.ndarray | None) -> Any:
    return array.reshape(-1)[0].item() if array is not None and array.size == 1 else None


def _text(array: np.ndarray) -> str | None:
    """A short description of an array whose meaning the report does not know (e.g. the seed): its text or value."""
    if array.size != 1:
        return None
    value = array.reshape(-1)[0].item()
    if isinstance(value, str):
        return value
    value = number(value)
    return None if value is None else f"{value:.4g}"
