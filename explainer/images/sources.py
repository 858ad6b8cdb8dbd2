"""Where a run's images come from: files, folders (optionally recursive), quoted glob patterns and manifest files.

A manifest lists one image per line, either a bare path or CSV ``path,target`` (the target class index; give it on
every line or on none). Blank lines and lines starting with ``#`` are skipped, a first line ``path`` or
``path,target`` is taken as a header, and relative paths resolve against the manifest's folder. Only the paths are
gathered here (a few bytes per image, read line by line); the pixels are decoded later, a chunk at a time, by the
command that evaluates them.
"""
from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from explainer.errors import InputError
from explainer.images.io import IMAGE_EXTENSIONS

GLOB_CHARACTERS = frozenset("*?[")
"""An argument with one of these that is not an existing path is expanded as a glob pattern (``**`` recurses)."""


@dataclass(frozen=True)
class ImageList:
    """The images of a run, in order, and their target classes from a manifest (None: predicted by the model)."""

    paths: list[Path]
    targets: list[int] | None = None


def gather_images(entries: Sequence[str | os.PathLike], *, manifests: Sequence[str | os.PathLike] = (),
                  recursive: bool = False) -> ImageList:
    """The image files named by ``entries`` (files, folders, glob patterns) and then by the ``manifests``, in the
    order given (folders and pattern matches sorted by path).

    A folder contributes its image files (:data:`~explainer.images.io.IMAGE_EXTENSIONS`, any case; hidden files and
    folders skipped), with ``recursive`` those of its subfolders too. InputError for a path that does not exist, a
    folder or pattern without images, a bad manifest line, targets on some manifest lines only, or no image at all.
    """
    if isinstance(entries, (str, os.PathLike)):
        entries = [entries]
    paths: list[Path] = []
    for entry in entries:
        paths.extend(_expand(entry, recursive))
    targets: list[int] = []
    untargeted = len(paths)
    for manifest in manifests:
        for path, target in read_manifest(manifest):
            paths.append(path)
            if target is None:
                untargeted += 1
            else:
                targets.append(target)
    if not paths:
        raise InputError("no image paths given")
    if targets and untargeted:
        raise InputError(f"{len(targets)} image(s) have a target class from a manifest and {untargeted} have none: "
                         "give a target for every image or for none")
    return ImageList(paths, targets or None)


def read_manifest(manifest: str | os.PathLike) -> Iterator[tuple[Path, int | None]]:
    """(path, target or None) of each image line of ``manifest``, read one line at a time."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise InputError(f"manifest not found or not a file: {manifest}")
    folder = manifest.parent
    try:
        with open(manifest, newline="", encoding="utf-8") as handle:
            for number, fields in enumerate(csv.reader(handle), start=1):
                if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
                    continue
                fields = [field.strip() for field in fields]
                if number == 1 and fields[0].lower() == "path" and fields[1:] in ([], ["target"]):
                    continue
                yield _manifest_entry(fields, folder, f"{manifest}:{number}")
    except UnicodeDecodeError as exc:
        raise InputError(f"manifest {manifest} is not UTF-8 text: {exc}") from None
    except csv.Error as exc:
        raise InputError(f"manifest {manifest}: {exc}") from None


def _manifest_entry(fields: list[str], folder: Path, where: str) -> tuple[Path, int | None]:
    if len(fields) > 2 or not fields[0]:
        raise InputError(f"{where}: expected 'path' or 'path,target'; got {','.join(fields)!r}")
    path = Path(fields[0]).expanduser()
    path = path if path.is_absolute() else folder / path
    if len(fields) == 1 or not fields[1]:
        return path, None
    try:
        target = int(fields[1])
    except ValueError:
        raise InputError(f"{where}: target {fields[1]!r} is not a class index") from None
    if target < 0:
        raise InputError(f"{where}: target {target} is negative")
    return path, target


def _expand(entry: str | os.PathLike, recursive: bool) -> list[Path]:
    path = Path(entry)
    if path.is_dir():
        found = sorted(_folder_images(path, recursive))
        if not found:
            known = ", ".join(sorted(IMAGE_EXTENSIONS))
            where = " or its subfolders" if recursive else ""
            raise InputError(f"directory {path}{where} contains no image files (looked for {known})")
        return found
    if path.exists():
        return [path]
    text = os.fspath(entry)
    if GLOB_CHARACTERS & set(text):
        matches = sorted(Path(match) for match in glob.glob(text, recursive=True))
        files = [match for match in matches if match.is_file()]
        if not files:
            raise InputError(f"pattern {text!r} matches no image file")
        return files
    raise InputError(f"image path not found: {path}")


def _folder_images(folder: Path, recursive: bool) -> Iterator[Path]:
    for child in folder.iterdir():
        if child.name.startswith("."):
            continue
        if child.is_file() and child.suffix.lower() in IMAGE_EXTENSIONS:
            yield child
        elif recursive and child.is_dir() and not child.is_symlink():
            yield from _folder_images(child, recursive)
