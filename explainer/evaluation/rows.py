"""Per-image rows of a region-perturbation run and the JSON-lines journal they are written to (``rows.jsonl``).

One row per image and method (``"random"`` for the random-order baseline) holds everything the report needs of that
image: f(x0), the target, the mean scores and class switches of each order, and the heatmap's complexity. Rows are
appended as chunks of images finish, each append flushed and synced to disk, so that the file is a journal: a run
that is interrupted, or killed outright, resumes from it (:class:`Journal` with ``resume=True``), and the report of
local and distributed runs alike is reduced from it (:func:`read_rows`). A bad image gets an error row instead.

The first line is a header with the run's settings; a resume with other settings is refused. A last line cut short
by a kill is dropped when the journal is reopened. Python's ``repr`` of a float is exact, so numbers read back equal
those written to the last bit, and a report reduced from the file equals one computed in memory.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from explainer.errors import InputError

ROWS_FILE = "rows.jsonl"
FORMAT = "explainer-rows/1"


class Journal:
    """The rows of one run in ``path``: appended with :meth:`append` (the file is created, or with ``resume`` reopened,
    on the first append), and the images already complete (:meth:`done`) when ``resume`` finds an earlier journal
    written with the same ``settings``.

    ``runs`` names every method of a complete image (``"random"`` included). Writes never follow a symlink: a new
    journal is written under a temporary name and renamed into place, an existing one is opened with O_NOFOLLOW.
    """

    def __init__(self, path: str | os.PathLike, settings: Mapping[str, Any], runs: Sequence[str], *,
                 resume: bool = False) -> None:
        self.path = Path(path)
        self.settings = json.loads(json.dumps(settings))
        self.runs = frozenset(runs)
        self._fd: int | None = None
        self._complete: dict[int, set[str]] = {}
        self._waiting: list[Mapping[str, Any]] = []
        self._written = False
        self.resumed = 0
        if resume and os.path.lexists(self.path):
            self._reopen()

    def done(self, index: int, run: str | None = None) -> bool:
        """Whether image ``index`` has its row of method ``run`` (None: of every method) in the journal."""
        have = self._complete.get(index, ())
        return run in have if run is not None else self.runs <= set(have)

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append ``rows`` (one write, synced to disk) and note the images they complete. Error rows wait for the
        first row of an image that could be read, so that a run in which no image can be read writes nothing."""
        if self._fd is None and all("error" in row for row in rows):
            self._waiting.extend(rows)
            return
        rows = [*self._waiting, *rows]
        self._waiting.clear()
        if self._fd is None:
            self._create()
        data = "".join(json.dumps(row, allow_nan=False, separators=(",", ":")) + "\n" for row in rows)
        os.write(self._fd, data.encode("utf-8"))
        os.fsync(self._fd)
        for row in rows:
            if "error" not in row:
                self._complete.setdefault(row["image"], set()).add(row["method"])

    def finish(self) -> None:
        """Write the error rows still waiting, if the journal exists."""
        if self._fd is not None:
            self.append([])

    def rows(self) -> Iterator[dict[str, Any]]:
        """The rows written so far (the journal read back; none without a journal)."""
        if not self._written:
            return iter(list(self._waiting))
        return read_rows(self.path)[1]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            os.write(fd, (json.dumps({"format": FORMAT, "settings": self.settings}) + "\n").encode("utf-8"))
            os.replace(temp, self.path)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        self._fd, self._written = fd, True

    def _reopen(self) -> None:
        valid = 0
        for end, row in _lines(self.path):
            if end is None:  # a last line cut short: cut it off so the next append starts a line
                break
            if valid == 0:
                _check_header(row, self.settings, self.path)
            elif "error" not in row:
                self._complete.setdefault(_index(row, self.path), set()).add(str(row.get("method")))
            valid = end
        if valid == 0:
            return  # not even a header: the journal is started afresh
        self._fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW)
        os.ftruncate(self._fd, valid)
        os.lseek(self._fd, 0, os.SEEK_END)
        self._written = True
        self.resumed = sum(self.done(index) for index in self._complete)


def read_rows(path: str | os.PathLike) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """(settings of the header, the rows of the journal ``path`` in file order); a last line cut short is dropped."""
    lines = _lines(Path(path))
    first = next(lines, (None, None))
    if first[0] is None or not isinstance(first[1], dict) or first[1].get("format") != FORMAT:
        raise InputError(f"{path} is not a rows journal ({FORMAT})")
    return first[1]["settings"], (row for end, row in lines if end is not None)


def _lines(path: Path) -> Iterator[tuple[int | None, Any]]:
    """(byte offset after the line, its JSON) of each line; (None, None) for a last line without its newline or
    JSON, after which nothing follows. InputError for a damaged line in the middle."""
    offset = 0
    try:
        handle = open(path, "rb")  # noqa: SIM115 - read line by line below
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            offset += len(line)
            try:
                value = json.loads(line) if line.endswith(b"\n") else None
            except ValueError:
                value = None
            if value is None:
                if handle.read(1):
                    raise InputError(f"{path}:{number}: damaged line in the rows journal")
                yield None, None
                return
            yield offset, value


def _check_header(header: Any, settings: Mapping[str, Any], path: Path) -> None:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InputError(f"--resume: {path} is not a rows journal ({FORMAT})")
    stored = header.get("settings", {})
    changed = sorted(key for key in set(stored) | set(settings) if stored.get(key) != settings.get(key))
    if changed:
        raise InputError(f"--resume: {path} was written with other settings ({', '.join(changed)} differ); "
                         "rerun with the same settings, or without --resume to start afresh")


def _index(row: Any, path: Path) -> int:
    if not isinstance(row, dict) or not isinstance(row.get("image"), int):
        raise InputError(f"{path}: a row without an image index")
    return row["image"]
