"""What a sub-command writes: every output path decided and checked before any work, then written atomically.

An :class:`OutputPlan` is made from the output option (``--out``, ``--report``, ``-o``) before the model is loaded. It
refuses an empty or unusable folder, a name planned twice, an output path that is an existing folder, and an output
that is one of the run's own input files (the same path, a hard link, or a symlink to it). :meth:`OutputPlan.writing`
then writes: it creates the folder on the first write, writes each group of files (one image's result set, a
report's JSON and plot) with :class:`explainer.files.FileGroup` (complete or absent, never through a symlink), turns a
write error into one message naming the file and what was already written, and removes folders it created when
nothing was written. SIGTERM is handled like Ctrl-C meanwhile, so an interrupted run leaves no unfinished file.
"""
from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from explainer.cli import ctrl_c_seen
from explainer.errors import InputError
from explainer.files import FileGroup, check_file_name, sigterm_as_interrupt


class OutputPathError(InputError, OSError):
    """An output path that cannot or must not be written: a one-line error and exit code 2 like any InputError."""


def file_stem(path: Path) -> str:
    """A file-name stem for ``path``'s outputs: its stem with characters other than letters, digits, '-', '_' and
    '.' replaced by '_' and leading dots dropped, so an output never lands outside the output folder or hides."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in path.stem).lstrip(".") or "image"


class OutputPlan:
    """The files one run writes into one folder (see the module docstring)."""

    def __init__(self, folder: str, option: str) -> None:
        if not str(folder).strip():
            raise OutputPathError(f"{option} is empty; name an output folder")
        self.option = option
        self.folder = Path(folder)
        self.planned: dict[str, Path] = {}
        _check_folder(self.folder)

    def add(self, name: str) -> Path:
        """Plan ``folder/name``; refuses a name planned before (ignoring case) and an existing folder there."""
        path = self.folder / check_file_name(name)
        if name.casefold() in self.planned:
            raise OutputPathError(f"two outputs of this run would be written to '{path}'")
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as exc:
            raise OutputPathError(f"cannot write '{path}': {exc.strerror or exc}") from None
        if mode is not None and stat.S_ISDIR(mode):
            raise OutputPathError(f"cannot write '{path}': a folder of that name exists")
        self.planned[name.casefold()] = path
        return path

    def add_set(self, stem: str, names: Callable[[str], list[str]]) -> str:
        """Plan the files ``names(s)`` for the first of ``stem``, ``stem_1``, ``stem_2``, ... whose files clash with
        no file planned before (ignoring case); returns that stem."""
        candidate, k = stem, 0
        while any(name.casefold() in self.planned for name in names(candidate)):
            k += 1
            candidate = f"{stem}_{k}"
        for name in names(candidate):
            self.add(name)
        return candidate

    def refuse_inputs(self, inputs: Iterable[str | os.PathLike | None], *, models: Iterable[str | os.PathLike] = (),
                      advice: str = "choose another output folder") -> None:
        """Refuse (before any work) to write over any of ``inputs`` or ``models`` (with their external-data files):
        the same path, the same file through a hard link, or a symlink to one of them."""
        existing = [p for p in self.planned.values() if os.path.lexists(p)]
        if not existing:
            return
        models = [Path(m) for m in models]
        files = [Path(p) for p in inputs if p is not None] + models
        folders = {p.parent.resolve() for p in existing}
        for model in models:
            if model.parent.resolve() in folders:
                files += _external_data_files(model)
        by_path: dict[Path, Path] = {}
        by_inode: dict[tuple[int, int], Path] = {}
        for file in files:
            with contextlib.suppress(OSError):
                by_path.setdefault(file.resolve(), file)
                info = os.stat(file)
                by_inode.setdefault((info.st_dev, info.st_ino), file)
        for path in existing:
            hit = by_path.get(path.parent.resolve() / path.name)
            for follow in (False, True):
                with contextlib.suppress(OSError):
                    info = os.stat(path, follow_symlinks=follow)
                    hit = hit or by_inode.get((info.st_dev, info.st_ino))
            if hit is not None:
                raise OutputPathError(f"{self.option} {self.folder}: writing '{path}' would overwrite the input "
                                      f"'{hit}'; {advice}")

    @contextlib.contextmanager
    def writing(self, total: int = 1, noun: str = "result set", kept: str | None = None) -> Iterator[Writer]:
        """A :class:`Writer` for ``total`` groups of the planned files, with SIGTERM handled like Ctrl-C meanwhile.
        Folders the writer created stay only when a group was written. ``kept`` says what a failed write leaves
        behind on purpose (a journal to resume from), for its error message."""
        writer = Writer(self, total, noun, kept)
        try:
            with sigterm_as_interrupt():
                yield writer
        finally:
            if not writer.committed:
                writer.remove_created_folders()


class Writer:
    """Writes groups of planned files into an :class:`OutputPlan`'s folder, creating it on the first write."""

    def __init__(self, plan: OutputPlan, total: int, noun: str, kept: str | None = None) -> None:
        self.plan = plan
        self.total = total
        self.noun = noun
        self.kept = kept
        self.committed = 0
        self.created: list[Path] = []

    @contextlib.contextmanager
    def group(self) -> Iterator[FileGroup]:
        """A :class:`FileGroup` in the output folder, committed when the block ends; its files must be planned. An
        OSError becomes an :class:`OutputPathError` naming the file and how many groups were complete before it."""
        if ctrl_c_seen():  # an interrupt some library swallowed: stop before the next result set
            raise KeyboardInterrupt
        try:
            self._make_folder()
            with FileGroup(self.plan.folder) as files:
                yield files
                unplanned = [n for n in files.names if n.casefold() not in self.plan.planned]
                if unplanned:
                    raise ValueError(f"files not in the output plan: {unplanned}")
        except OSError as exc:
            done = (f"{self.committed} of {self.total} {self.noun}s had been written to {self.plan.folder}, nothing "
                    "incomplete is left" if self.total > 1 else self.kept or "nothing was written")
            error = OutputPathError(f"cannot write '{exc.filename or self.plan.folder}': {exc.strerror or exc}; {done}")
            error.errno = exc.errno
            raise error from exc
        self.committed += 1

    def _make_folder(self) -> None:
        folder = self.plan.folder
        for path in reversed([folder, *folder.parents]):
            if path.is_dir():
                continue
            try:
                path.mkdir()
            except FileExistsError:
                continue
            self.created.append(path)

    def remove_created_folders(self) -> None:
        """Remove the folders this writer created, deepest first, as long as they are empty."""
        for path in reversed(self.created):
            with contextlib.suppress(OSError):
                path.rmdir()
        self.created.clear()


def _check_folder(folder: Path) -> None:
    if os.path.lexists(folder) and not folder.exists():
        raise OutputPathError(f"output folder '{folder}' is a symlink to nothing")
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"output folder '{folder}' exists and is not a folder")
    ancestor = next(p for p in (folder, *folder.parents) if p.exists())
    if not ancestor.is_dir():
        raise OutputPathError(f"cannot write to output folder '{folder}': '{ancestor}' is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write to output folder '{folder}': no permission to write in '{ancestor}'")


def _external_data_files(model: Path) -> list[Path]:
    """The external-data files an ONNX model file refers to (none when it cannot be read: loading reports that)."""
    import onnx
    from onnx import external_data_helper

    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception:
        return []
    found = []
    for tensor in external_data_helper._get_all_tensors(proto):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = {entry.key: entry.value for entry in tensor.external_data}.get("location")
            if location:
                found.append(model.parent / location)
    return found
