"""Upper bounds on what one request may allocate or read, in one place.

A model's declared input dims, ``--size``, ``--input-shape``, ``--batch-size`` × ``--repeats`` and odd image aspect
ratios all turn into array sizes; the estimate of the bytes a request needs is checked here *before* allocating, so
that an absurd request is refused with a one-line :class:`~explainer.errors.InputError` naming the figure instead of
a ``MemoryError`` (or the kernel's OOM killer) half way through. The limit is :data:`DEFAULT_MAX_BYTES` unless the
environment variable ``EXPLAINER_MAX_BYTES`` says otherwise (bytes, or a number with a K, M, G or T suffix, binary
units: ``EXPLAINER_MAX_BYTES=32G``).
"""
from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Iterable, Sequence

from explainer.errors import InputError

MAX_BYTES_ENV = "EXPLAINER_MAX_BYTES"
"""Environment variable that replaces :data:`DEFAULT_MAX_BYTES`."""

DEFAULT_MAX_BYTES = 4 * 2**30
"""Largest estimated allocation of one request (4 GiB)."""

DEFAULT_EVALUATION_BYTES = 2**30
"""Default memory budget of an evaluation's batches (``explainer evaluate --max-memory``): 1 GiB."""

MAX_LABELS_BYTES = 16 * 2**20
"""Largest labels file read (16 MiB; ImageNet-21k's names take under 1 MiB)."""

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_AMOUNT = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:I?B)?\s*", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """``'4096'``, ``'512M'``, ``'32G'``, ``'1.5GiB'`` -> a byte count (binary units); ValueError otherwise."""
    match = _AMOUNT.fullmatch(text)
    if not match:
        raise ValueError(f"not a byte count: {text!r}")
    value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"not a positive byte count: {text!r}")
    return int(value)


def memory_budget(value: int | str, what: str = "max_memory") -> int:
    """A memory budget in bytes from a positive integer or a text such as ``'512M'`` or ``'2G'`` (binary units, see
    :func:`parse_bytes`); an InputError naming ``what`` otherwise."""
    if isinstance(value, str):
        try:
            return parse_bytes(value)
        except ValueError:
            raise InputError(f"{what} {value!r} is not a byte count (e.g. 512M, 2G or 1073741824)") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"{what} must be a positive number of bytes or a text such as '512M'; got {value!r}")
    return int(value)


def fitting_batch(per_sample: int, budget: int, cap: int) -> int:
    """The largest batch, at most ``cap`` and at least 1, whose samples of ``per_sample`` bytes fit ``budget``."""
    return max(1, min(int(cap), int(budget) // max(1, int(per_sample))))


def max_bytes() -> int:
    """The limit in force: ``EXPLAINER_MAX_BYTES`` when set (and valid), else :data:`DEFAULT_MAX_BYTES`."""
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        return parse_bytes(text)
    except ValueError:
        raise InputError(f"{MAX_BYTES_ENV}={text!r} is not a byte count (e.g. 8589934592 or 8G)") from None


def format_bytes(nbytes: int) -> str:
    """``1536 -> '1.5 KiB'``: a byte count for messages (``'2^N B'`` beyond what a float holds)."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    unit = 0
    while unit < len(units) - 1 and nbytes >= 1024 ** (unit + 1):
        unit += 1
    if unit == 0:
        return f"{int(nbytes)} B"
    if nbytes >= 2**1000:
        return f"about 2^{int(nbytes).bit_length() - 1} B"
    return f"{nbytes / 1024 ** unit:.3g} {units[unit]}"


def tensor_bytes(shape: Sequence[int], itemsize: int = 4) -> int:
    """Bytes of an array of ``shape`` (exact, in Python integers: no overflow however large the dims)."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise InputError(f"shape {dims} has a negative dimension")
    return math.prod(dims) * int(itemsize)


def graph_bytes(shapes: Iterable[Sequence[int]], batch: int = 1, itemsize: int = 4) -> int:
    """Bytes of all tensors of ``shapes`` (a graph's tensors at batch size 1) for a batch of ``batch``: what a
    relevance pass holds, since its backward half reads every forward activation."""
    return int(batch) * sum(tensor_bytes(s, itemsize) for s in shapes)


def forward_bytes(shapes: Iterable[Sequence[int]], batch: int = 1, itemsize: int = 4) -> int:
    """Bytes of the two largest tensors of ``shapes`` (batch size 1) for a batch of ``batch``: about what a plain
    forward pass holds at once (ONNX Runtime frees a tensor once no later node reads it)."""
    sizes = sorted((tensor_bytes(s, itemsize) for s in shapes), reverse=True)
    return int(batch) * sum(sizes[:2])


def check_bytes(nbytes: int, what: str) -> int:
    """Refuse (InputError) when ``what`` needs more than :func:`max_bytes`; returns ``nbytes``.

    ``what`` names the request, e.g. ``"model input 'x' at 20000x20000: one image"``; the message adds the figure
    and how to raise the limit."""
    limit = max_bytes()
    if nbytes > limit:
        raise InputError(f"{what} needs {format_bytes(nbytes)} of memory, more than the limit of "
                         f"{format_bytes(limit)} (set {MAX_BYTES_ENV} to allow more)")
    return nbytes


def check_tensor(shape: Sequence[int], what: str, itemsize: int = 4) -> int:
    """:func:`check_bytes` for one array of ``shape``; ``what`` gets the shape appended."""
    return check_bytes(tensor_bytes(shape, itemsize), f"{what} of shape {[int(d) for d in shape]}")
