"""A cache of optimised relevance graphs, so that a second ``Explainer()`` of the same model costs about one session
creation: ONNX Runtime's optimised model (``SessionOptions.optimized_model_filepath``, its weights in an external data
file that ONNX Runtime maps into memory), the weights fed to it at run time (``sessions.Session``) and what the
explainer needs to know about the model without reading its graph (``meta.json``).

Where: ``$EXPLAINER_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/explainer/sessions`` (``~/.cache/...``); off with
``EXPLAINER_CACHE=0``. Each entry is a folder named by its key, a SHA-256 over the model's bytes and everything that
shapes the optimised graph (``key``). Safety, as for every file explainer writes (``explainer.files``): an entry is
written in a private temporary folder and renamed into place whole; nothing in the cache is followed through a
symlink; every file's SHA-256 is stored, and an entry that does not match (truncated, damaged, half-deleted) is removed
and rebuilt without a word; the cache is kept under ``EXPLAINER_CACHE_MAX_BYTES`` (default 4 GiB) by removing the
least recently used entries.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from explainer.files import TEMP_PREFIX

#: bump when the layout of an entry changes
FORMAT = 1
DEFAULT_MAX_BYTES = 4 << 30
MODEL_FILE, FED_FILE, META_FILE = "relevance.onnx", "fed.bin", "meta.json"
DATA_FILE = MODEL_FILE + ".data"
#: fed arrays start at multiples of this in ``fed.bin`` (page-aligned, so they can be mapped)
_ALIGN = 4096
_KEY = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 22
_STALE_TEMP_S = 86400


def cache_dir() -> Path | None:
    """The cache folder, or None when ``EXPLAINER_CACHE=0`` turns the cache off."""
    if os.environ.get("EXPLAINER_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if os.environ.get("EXPLAINER_CACHE_DIR"):
        return Path(os.environ["EXPLAINER_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "explainer" / "sessions"


def max_bytes() -> int:
    """The cache's size limit (``EXPLAINER_CACHE_MAX_BYTES``, default 4 GiB)."""
    with contextlib.suppress(KeyError, ValueError):
        return max(0, int(os.environ["EXPLAINER_CACHE_MAX_BYTES"]))
    return DEFAULT_MAX_BYTES


def file_digest(path: Path, *, follow: bool = False) -> str:
    """SHA-256 of a regular file, opened without following a symlink unless ``follow`` (OSError otherwise)."""
    # O_NONBLOCK: a FIFO in the model's place must not hang the open
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0)))
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise OSError(f"{path}: not a regular file")
        h = hashlib.sha256()
        while chunk := stream.read(_CHUNK):
            h.update(chunk)
        return h.hexdigest()


def model_digest(path: Path) -> str:
    """SHA-256 of a model file (the user's path, a symlink to the model included)."""
    return file_digest(path, follow=True)


def _code_fingerprint() -> str:
    """The explainer package's version and its source files' sizes and times: a changed rule or op invalidates every
    entry, also between releases."""
    import explainer
    root = Path(explainer.__file__).parent
    h = hashlib.sha256(explainer.__version__.encode())
    for path in sorted(root.rglob("*.py")):
        st = path.stat()
        h.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def _machine() -> str:
    """What ONNX Runtime's layout optimisations depend on: the architecture and the CPU's feature flags."""
    flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line.split(":", 1)[1].strip()
                break
    return f"{platform.machine()} {hashlib.sha256(flags.encode()).hexdigest()[:16]}"


def key(model_digest: str, settings: dict[str, Any]) -> str:
    """The entry's name: a SHA-256 over the model's digest, ``settings`` (method, rule parameters, input shape,
    bounds, seed, provider, threads: JSON, anything else by ``repr``), the explainer's code, ONNX Runtime's version
    and the machine."""
    import onnxruntime as ort
    parts = {"format": FORMAT, "model": model_digest, "settings": settings, "code": _code_fingerprint(),
             "onnxruntime": ort.__version__, "machine": _machine()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()


def _signed(body: dict) -> dict:
    return {"body": body, "digest": hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()}


@dataclass
class Entry:
    """A verified entry: the optimised model's path, the fed weights (read-only, mapped from ``fed.bin``), the
    model's external data files it was made from (relative name -> path) and the ``info`` the explainer stored."""

    model_path: Path
    fed: dict[str, np.ndarray]
    external: dict[str, Path]
    info: dict[str, Any]


def lookup(root: Path, name: str, base: Path | None) -> Entry | None:
    """The entry ``name`` if it is complete, every file matches its stored digest, and the model's external data
    files (in folder ``base``) still have the digests they had when it was written; None otherwise, removing an
    entry that is damaged or stale."""
    folder = root / name
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            _remove(folder)
            return None
    except OSError:
        return None
    try:
        entry = _read(folder, base)
    except (OSError, ValueError, KeyError, TypeError):
        entry = None
    if entry is None:
        _remove(folder)
        return None
    with contextlib.suppress(OSError):
        os.utime(folder / META_FILE, follow_symlinks=False)  # most recently used: evicted last
    return entry


def _read(folder: Path, base: Path | None) -> Entry | None:
    fd = os.open(folder / META_FILE, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as stream:
        signed = json.loads(stream.read(1 << 24))
    body = signed["body"]
    if signed["digest"] != _signed(body)["digest"] or body["format"] != FORMAT:
        return None
    external = {rel: base / rel for rel in body["external"]} if base is not None else {}
    if len(external) != len(body["external"]) or any(".." in Path(rel).parts or Path(rel).is_absolute()
                                                     for rel in external):
        return None
    if any(file_digest(path, follow=True) != body["external"][rel] for rel, path in external.items()):
        return None
    names = {p.name for p in folder.iterdir()}
    if names != set(body["files"]) | {META_FILE}:
        return None
    for file_name, digest in body["files"].items():
        if file_digest(folder / file_name) != digest:
            return None
    fed = {}
    if body["fed"]:
        size = os.lstat(folder / FED_FILE).st_size
        for spec in body["fed"]:
            dtype, shape, offset = np.dtype(spec["dtype"]), tuple(int(d) for d in spec["shape"]), int(spec["offset"])
            if dtype.kind not in "biuf" or offset < 0 or offset + dtype.itemsize * int(np.prod(shape)) > size:
                return None
            fed[spec["name"]] = np.memmap(folder / FED_FILE, dtype, "r", offset, shape)
    return Entry(folder / MODEL_FILE, fed, external, body["info"])


class Writer:
    """An entry being written: ``model_path`` is where ONNX Runtime saves the optimised model (inside a private
    temporary folder in the cache); ``commit`` adds the fed weights and ``meta.json`` and renames the folder into
    place, ``discard`` removes it. Write failures (a full disk, a read-only cache) only mean no entry."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=root))
        self.model_path = self.temp / MODEL_FILE

    def commit(self, name: str, fed: dict[str, np.ndarray], external: dict[str, Path], info: dict[str, Any]) -> bool:
        """Complete the entry ``name`` and move it into place; False (and nothing left behind) on any failure."""
        try:
            specs, fed_digest = _write_fed(self.temp / FED_FILE, fed) if fed else ([], None)
            files = {p.name: fed_digest if p.name == FED_FILE else file_digest(p) for p in sorted(self.temp.iterdir())}
            body = {"format": FORMAT, "files": files, "fed": specs, "info": info,
                    "external": {rel: file_digest(path, follow=True) for rel, path in external.items()}}
            (self.temp / META_FILE).write_text(json.dumps(_signed(body)))
            target = self.root / name
            if os.path.lexists(target):
                _remove(target)
            os.rename(self.temp, target)
        except (OSError, ValueError):
            self.discard()
            return False
        evict(self.root, keep=name)
        return True

    def discard(self) -> None:
        shutil.rmtree(self.temp, ignore_errors=True)


def _write_fed(path: Path, fed: dict[str, np.ndarray]) -> tuple[list[dict], str]:
    """Write the fed arrays into one file, each at a page-aligned offset; their specs for ``meta.json`` and the
    file's SHA-256 (taken from memory as it is written, not read back)."""
    specs, offset, h = [], 0, hashlib.sha256()
    with open(path, "xb") as stream:
        for name, array in fed.items():
            pad = b"\0" * (-offset % _ALIGN)
            offset += len(pad)
            specs.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset})
            data = np.ascontiguousarray(array).data.cast("B")
            for chunk in (pad, data):
                stream.write(chunk)
                h.update(chunk)
            offset += array.nbytes
    return specs, h.hexdigest()


def _remove(path: Path) -> None:
    """Remove an entry (a symlink itself, never its target), first renamed aside so that it vanishes at once."""
    with contextlib.suppress(OSError):
        if os.path.islink(path) or not path.is_dir():
            path.unlink()
            return
        aside = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=path.parent)) / "old"
        os.rename(path, aside)
        shutil.rmtree(aside.parent, ignore_errors=True)


def _entries(root: Path) -> Iterator[tuple[Path, float, int]]:
    """(folder, last use, size in bytes) of each entry in ``root``; symlinks and foreign names are left alone."""
    with os.scandir(root) as it:
        for item in it:
            if not _KEY.fullmatch(item.name) or not item.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                files = list(os.scandir(item.path))
                size = sum(f.stat(follow_symlinks=False).st_size for f in files)
                used = max((f.stat(follow_symlinks=False).st_mtime for f in files if f.name == META_FILE),
                           default=0.0)
                yield Path(item.path), used, size


def evict(root: Path, keep: str | None = None) -> None:
    """Remove the least recently used entries until the cache fits ``max_bytes()`` (never ``keep``), and temporary
    folders a killed process left behind (older than a day)."""
    with contextlib.suppress(OSError), os.scandir(root) as it:
        for item in it:
            if item.name.startswith(TEMP_PREFIX) and item.is_dir(follow_symlinks=False) \
                    and time.time() - item.stat(follow_symlinks=False).st_mtime > _STALE_TEMP_S:
                shutil.rmtree(item.path, ignore_errors=True)
    with contextlib.suppress(OSError):
        entries = sorted(_entries(root), key=lambda e: e[1])
        total = sum(size for _, _, size in entries)
        for folder, _, size in entries:
            if total <= max_bytes():
                break
            if folder.name != keep:
                _remove(folder)
                total -= size
