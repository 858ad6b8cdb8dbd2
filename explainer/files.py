"""Writing result files safely (a group of files appears complete or not at all, and no write follows a symlink),
and reading the JSON reports the commands wrote back with bounds (``read_json``).

A :class:`FileGroup` hands out paths inside a fresh private temporary folder (``.explainer-tmp-*``, mode 0700) next to
the destination; the caller writes there with any library (Pillow, NumPy, matplotlib, onnx), under the files' final
names. On success each file is flushed to disk and moved into place with :func:`os.replace`, which swaps the directory
entry: an existing symlink at the destination is replaced, its target is never opened. On any failure, interruption
included, the temporary folder is removed and files of the group already moved are taken back out, so the group is
complete or absent. SIGINT and SIGTERM are held back while a group is moved into place or cleaned up.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

TEMP_PREFIX = ".explainer-tmp-"
"""Name prefix of the temporary folders; one is left behind only when the process is killed outright (SIGKILL)."""

_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C while :func:`sigterm_as_interrupt` is active, so clean-up code runs."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"terminated by signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` (in the main thread) instead of killing the process at
    once, so unfinished files are removed; the previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block (POSIX); they are delivered when it ends."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def check_file_name(name: str) -> str:
    """``name`` if it is a plain file name (no folder part, not '.' or '..'), else ValueError."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"not a plain file name: {name!r}")
    return name


class FileGroup:
    """Files written together into ``folder`` (which must exist): see the module docstring.

    ``with FileGroup(folder) as group: image.save(group.path("a.png")); np.savez(group.path("a.npz"), ...)``. Files
    that a writer adds next to a requested one (an ONNX model's ``.data`` file) are moved too, before the requested
    ones. An OSError while writing or moving names the file's final path (``filename``), not the temporary one.
    """

    def __init__(self, folder: str | os.PathLike, *, fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.fsync = fsync
        self.names: list[str] = []
        self.written: list[Path] = []
        self._temp: Path | None = None
        self._current: str | None = None

    def path(self, name: str) -> Path:
        """Where to write the file that will become ``folder/name``."""
        check_file_name(name)
        if name in self.names:
            raise ValueError(f"{name!r} is already part of this group")
        self._current = name
        if self._temp is None:
            with signals_held():           # an interruption cannot fall between creating the folder and noting it
                self._temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self.folder))
        self.names.append(name)
        return self._temp / name

    def __enter__(self) -> FileGroup:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.commit()
            return
        self.discard()
        if isinstance(exc, OSError):
            raise self._named(exc) from exc

    def commit(self) -> list[Path]:
        """Flush every file to disk and move the group into place; returns the final paths."""
        if self._temp is None:
            return []
        extras = sorted(p.name for p in self._temp.iterdir() if p.name not in self.names)
        order = [*extras, *(n for n in self.names if (self._temp / n).exists())]
        try:
            with signals_held():
                for name in order:
                    self._current = name
                    if self.fsync:
                        _fsync(self._temp / name)
                for name in order:
                    self._current = name
                    os.replace(self._temp / name, self.folder / name)
                    self.written.append(self.folder / name)
                self._current = None
                self._remove_temp()
                if self.fsync:
                    _fsync(self.folder)
        except OSError as exc:
            self.discard()
            raise self._named(exc) from exc
        return list(self.written)

    def discard(self) -> None:
        """Remove the temporary folder and whatever of the group was already moved into place."""
        with signals_held():
            for path in self.written:
                with contextlib.suppress(OSError):
                    path.unlink()
            self.written.clear()
            self._remove_temp()

    def _remove_temp(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    def _named(self, exc: OSError) -> OSError:
        """``exc`` with the final path of the file being written as its filename."""
        where = self.folder / self._current if self._current else self.folder
        return OSError(exc.errno, exc.strerror or str(exc), str(where))


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk; folders that cannot be opened (Windows) are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: the largest JSON report ``read_json`` reads (a report of 10,000 images and 100 steps is about 20 MB)
JSON_MAX_BYTES = 64 * 2**20
#: the deepest nesting of lists and objects ``read_json`` accepts (a report nests 5 deep)
JSON_MAX_DEPTH = 32


def read_json(path: str | os.PathLike, where: str) -> Any:
    """The JSON document in ``path``, read with bounds: at most :data:`JSON_MAX_BYTES` (``/dev/zero`` is refused,
    not read forever) and nested at most :data:`JSON_MAX_DEPTH` deep (never recursed into); an ``InputError``
    beginning with ``where`` otherwise."""
    from explainer.errors import InputError
    try:
        with open(path, "rb") as stream:
            data = stream.read(JSON_MAX_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{where}: is a folder, expected a JSON report") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > JSON_MAX_BYTES:
        raise InputError(f"{where}: larger than {JSON_MAX_BYTES // 2**20} MiB; not a report written by explainer")
    try:
        parsed = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise InputError(f"{where}: JSON nested more than {JSON_MAX_DEPTH} levels deep") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{where}: not a readable JSON report ({exc})") from None
    if _depth(parsed) > JSON_MAX_DEPTH:
        raise InputError(f"{where}: JSON nested more than {JSON_MAX_DEPTH} levels deep")
    return parsed


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level + 1)
        if deepest > JSON_MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest
