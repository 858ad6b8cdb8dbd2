"""What the command line prints and how it reads option values.

Names printed by the CLI come from outside: file names, a model's node/input/output names and metadata, label files.
Printed raw, a name could run terminal escape sequences or forge a line such as ``result: can be explained``. So
every write to stdout goes through :func:`printable` (see :class:`EscapedStdout`, installed by ``main``): what
Python's ``repr`` escapes — control characters (C0, DEL, C1), line and paragraph separators, invisible format
characters such as bidirectional overrides, spaces other than U+0020 — and the surrogates that stand for undecodable
bytes in file names are shown as Python escapes (``\\x1b``, ``\\n``, ``\\u2028``, ``\\u202e``, ``\\xff``).
The only line breaks that survive are the ones ``print`` ends a line with, so each ``print`` is one line of output.
What is written is also made encodable for the stream (``backslashreplace``), so a strict ASCII or UTF-8 stdout
never raises ``UnicodeEncodeError``. The one-line error message on stderr goes through the same escaping; stderr is
not wrapped, so tqdm's progress bars keep their carriage returns.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Iterator
from typing import Any, TextIO

_SURROGATE_ESCAPES = range(0xDC80, 0xDD00)  # what os.fsdecode makes of the bytes 0x80..0xFF it cannot decode


def _escape(ch: str) -> str:
    if ord(ch) in _SURROGATE_ESCAPES:
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return repr(ch)[1:-1]


def printable(text: object) -> str:
    """``str(text)`` with every character that :meth:`str.isprintable` rejects (line breaks included) escaped as in
    Python's ``repr``; an undecodable file-name byte (a surrogate escape) is shown as ``\\xNN``."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def encodable(text: str, stream: Any) -> str:
    """``text`` with what ``stream``'s encoding cannot represent written as backslash escapes."""
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return text
    try:
        text.encode(encoding)
        return text
    except UnicodeEncodeError:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:
        return text


class EscapedStdout(io.TextIOBase):
    """A text stream that writes :func:`printable` text to ``stream``; a write of exactly ``"\\n"`` (how ``print``
    ends its line) is the only line break it lets through."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(text if text == "\n" else encodable(printable(text), self.stream))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str | None:  # type: ignore[override]
        return getattr(self.stream, "encoding", None)


@contextlib.contextmanager
def escaped_stdout() -> Iterator[None]:
    """Route ``sys.stdout`` through :class:`EscapedStdout` for the duration of the block."""
    original = sys.stdout
    if original is None:  # no console (pythonw): nothing is shown, nothing to escape
        yield
        return
    sys.stdout = EscapedStdout(original)
    try:
        yield
    finally:
        sys.stdout = original


def print_error(message: object, prefix: str = "explainer: error: ") -> None:
    """Write ``prefix + message`` as one escaped, encodable line on stderr."""
    line = prefix + printable(message)
    sys.stderr.write(encodable(line, sys.stderr) + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------- option values
def image_size(text: str) -> tuple[int, int]:
    """argparse type for ``--size``: ``N`` (square) or ``HxW`` (also ``H,W``), positive integers. One argument, so
    that ``--size 224 image.png`` leaves the image to the positionals; the memory an image of that size needs is
    checked once the model's channels are known (:meth:`explainer.images.spec.InputSpec.resolve`)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        height, width = (int(parts[0]),) * 2 if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        height = width = 0
    if len(parts) > 2 or min(height, width) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size N or HxW (e.g. 224 or 224x160), got {text!r}")
    return height, width
