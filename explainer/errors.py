"""Exception hierarchy: every failure a user can cause maps to one of these, with a message naming the culprit.

The CLI turns any :class:`ExplainerError` into a one-line message and exit code 2 (1 is reserved for a failed audit).
"""
from __future__ import annotations


class ExplainerError(Exception):
    """Base class of all errors the toolkit raises on purpose."""


class ModelError(ExplainerError):
    """The ONNX file cannot be read, is malformed, or is not a classifier we can explain."""


class UnsupportedOpError(ModelError):
    """One or more nodes cannot be explained. ``nodes`` lists (node name, op type) pairs; ``reasons`` maps a node
    name to why its op's converter refused it (nodes without an entry have an op nothing converts)."""

    def __init__(self, nodes: list[tuple[str, str]], where: str = "", reasons: dict[str, str] | None = None) -> None:
        self.nodes = list(nodes)
        self.reasons = dict(reasons or {})
        listed = ", ".join(f"{op} (node '{name}')" for name, op in self.nodes)
        prefix = f"{where}: " if where else ""
        details = "; ".join(f"'{name}': {why}" for name, why in self.reasons.items())
        super().__init__(f"{prefix}unsupported op(s): {listed}" + (f" [{details}]" if details else ""))


class InputError(ExplainerError):
    """A user-supplied input (image, array, target, path, option) is invalid."""


class OutputError(ExplainerError, OSError):
    """A result cannot be written (its folder cannot be made, the disk is full, the path is not writable). Also an
    :class:`OSError` with ``errno``, ``strerror`` and ``filename``, so code that handles OSError keeps working."""


def describe(exc: BaseException, limit: int = 300) -> str:
    """A library's exception as one short line for our own messages: its class and its text, whitespace collapsed."""
    return f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:limit]}"
