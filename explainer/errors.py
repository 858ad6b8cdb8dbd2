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
    name to why its op's converter refused it (nodes without an entry have an op nothing converts).

    ``str()`` is one line of bounded length however many nodes there are (a ViT can have hundreds): the ops with
    their counts, then every node when there are few, else one example node per op, each with its converter's
    reason; ``explainer check`` prints the whole table."""

    #: the message's length past the source, the ops it counts (then "…"), up to how many nodes it lists them all
    #: (more: one example per op), and the length it cuts each op name, node name and reason to (a lone node's
    #: reason: to what the length leaves)
    LIMIT, OPS, ALL_NODES_UP_TO = 320, 4, 4
    OP_CHARS, NAME_CHARS, REASON_CHARS = 40, 60, 90

    def __init__(self, nodes: list[tuple[str, str]], where: str = "", reasons: dict[str, str] | None = None) -> None:
        self.nodes = list(nodes)
        self.reasons = dict(reasons or {})
        super().__init__((f"{where}: " if where else "") + self._summary())

    @property
    def by_op(self) -> dict[str, list[str]]:
        """{op: names of its unsupported nodes}, the op with the most nodes first (ties: first seen first)."""
        groups: dict[str, list[str]] = {}
        for name, op in self.nodes:
            groups.setdefault(op, []).append(name)
        return dict(sorted(groups.items(), key=lambda item: -len(item[1])))

    def _example(self, name: str, op: str, reason_chars: int | None = None) -> str:
        """``Op (node 'name')``, with its converter's reason when it gave one, each part shortened."""
        text = f"{shorten(op, self.OP_CHARS)} (node '{shorten(name, self.NAME_CHARS)}')"
        reason = self.reasons.get(name)
        return f"{text}: {shorten(reason, reason_chars or self.REASON_CHARS)}" if reason else text

    def _summary(self) -> str:
        groups = self.by_op
        if len(self.nodes) == 1:
            return f"unsupported op(s): {shorten(self._example(*self.nodes[0], self.LIMIT), self.LIMIT - 19)}"
        head = "unsupported op(s): " + ", ".join(f"{shorten(op, self.OP_CHARS)} ×{len(names)}"
                                                 for op, names in list(groups.items())[:self.OPS])
        head += f", … ({len(groups)} ops, " if len(groups) > self.OPS else " ("
        head += f"{len(self.nodes)} nodes); "
        few = len(self.nodes) <= self.ALL_NODES_UP_TO
        pairs = [(name, op) for op, names in list(groups.items())[:None if few else self.OPS]
                 for name in (names if few else names[:1])]
        hint = "; run `explainer check MODEL` for every node"
        room = self.LIMIT - len(head) - len("e.g. ") - len(hint)
        for reason_chars in (self.REASON_CHARS, 50, 25):   # shorter reasons before fewer examples
            examples = [self._example(name, op, reason_chars) for name, op in pairs]
            if len("; ".join(examples)) <= room:
                break
        while len(examples) > 1 and len("; ".join(examples)) > room:
            examples.pop()
        listed = shorten("; ".join(examples), room)
        if len(examples) == len(self.nodes):
            return head + listed
        return f"{head}e.g. {listed}{hint}"


class InputError(ExplainerError):
    """A user-supplied input (image, array, target, path, option) is invalid."""


class OutputError(ExplainerError, OSError):
    """A result cannot be written (its folder cannot be made, the disk is full, the path is not writable). Also an
    :class:`OSError` with ``errno``, ``strerror`` and ``filename``, so code that handles OSError keeps working."""


def describe(exc: BaseException, limit: int = 300) -> str:
    """A library's exception as one short line for our own messages: its class and its text, whitespace collapsed."""
    return f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:limit]}"


def shorten(text: str, limit: int) -> str:
    """``text`` on one line (whitespace collapsed), cut to ``limit`` characters, the last one "…", if longer."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:max(limit - 1, 0)].rstrip() + "…"
