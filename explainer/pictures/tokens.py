"""Token relevance as coloured text: for a terminal (ANSI background colours), as HTML, and as a PNG.

Each token's background is red where its relevance speaks for the explained output and blue where it speaks against,
white at zero; the intensity is ``|R| / max |R|`` over the tokens shown (one scale per text). Token strings come from a
tokenizer or a file, so they are treated as hostile: control characters (an ANSI escape sequence included) are shown
escaped (``\\x1b``) in the terminal and the PNG, and HTML is escaped. Without colour (the stream is not a terminal,
``NO_COLOR`` is set, ``TERM=dumb``) the terminal text is the tokens with their signed values: ``word[+0.123]``.

Uses matplotlib's object API with the Agg canvas for the PNG, imported on first use.
"""
from __future__ import annotations

import html
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from explainer.cli.text import EscapedStdout, printable
from explainer.errors import InputError

#: full-intensity colours: relevance for (red) and against (blue) the explained output
FOR_RGB = np.array([0.84, 0.11, 0.11])
AGAINST_RGB = np.array([0.11, 0.32, 0.84])
_RESET = "\x1b[0m"


def _checked(tokens: Sequence[str], values: Sequence[float] | np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float64).reshape(-1)
    if len(values) != len(tokens):
        raise InputError(f"{len(tokens)} tokens but {len(values)} relevance values")
    return values


def token_colours(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Background colours float [T, 3] in [0, 1]: white blended towards :data:`FOR_RGB` (positive) or
    :data:`AGAINST_RGB` (negative) by ``|R| / max |R|`` (all white when every value is 0 or not finite)."""
    values = np.nan_to_num(np.asarray(values, np.float64).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    peak = np.abs(values).max(initial=0.0)
    share = np.abs(values) / peak if peak > 0 else np.zeros_like(values)
    full = np.where(values[:, None] >= 0, FOR_RGB, AGAINST_RGB)
    return 1.0 - share[:, None] * (1.0 - full)


def _ink(rgb: np.ndarray) -> np.ndarray:
    """Black or white text, whichever reads better on each background (by luminance)."""
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    return np.where(luminance[:, None] > 0.5, 0.0, 1.0) * np.ones(3)


def use_colour(stream: Any) -> bool:
    """Whether to colour text written to ``stream``: a terminal, ``NO_COLOR`` unset or empty, ``TERM`` not dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):
        return False


def _ansi(rgb: np.ndarray, background: bool, truecolour: bool) -> str:
    r, g, b = (int(round(float(c) * 255)) for c in rgb)
    kind = 48 if background else 38
    if truecolour:
        return f"\x1b[{kind};2;{r};{g};{b}m"
    cube = [int(round(c / 255 * 5)) for c in (r, g, b)]
    return f"\x1b[{kind};5;{16 + 36 * cube[0] + 6 * cube[1] + cube[2]}m"


def terminal_text(tokens: Sequence[str], values: Sequence[float] | np.ndarray, *, colour: bool = False,
                  truecolour: bool = True) -> str:
    """The tokens as one line of text, separated by spaces: with ``colour``, each on its ANSI background colour
    (24-bit, or the 256-colour cube without ``truecolour``); without, each followed by its signed value. Token text
    is passed through :func:`~explainer.cli.text.printable`, so no control character of its own reaches the
    terminal."""
    values = _checked(tokens, values)
    if not colour:
        return " ".join(f"{printable(t)}[{v:+.3g}]" for t, v in zip(tokens, values))
    backgrounds = token_colours(values)
    inks = _ink(backgrounds)
    return " ".join(f"{_ansi(bg, True, truecolour)}{_ansi(ink, False, truecolour)}{printable(t)}{_RESET}"
                    for t, bg, ink in zip(tokens, backgrounds, inks))


def write_tokens(tokens: Sequence[str], values: Sequence[float] | np.ndarray, stream: TextIO | None = None) -> None:
    """Write :func:`terminal_text` and a line break to ``stream`` (default ``sys.stdout``), coloured when
    :func:`use_colour` says so (24-bit when ``COLORTERM`` is truecolor/24bit, else 256 colours). Through the CLI's
    :class:`~explainer.cli.text.EscapedStdout` the coloured line goes to the stream beneath it, which would
    otherwise show the colour codes escaped; the token text in it is already escaped."""
    stream = sys.stdout if stream is None else stream
    colour = use_colour(stream)
    truecolour = os.environ.get("COLORTERM", "").lower() in ("truecolor", "24bit")
    line = terminal_text(tokens, values, colour=colour, truecolour=truecolour)
    target = stream.stream if colour and isinstance(stream, EscapedStdout) else stream
    target.write(line)
    target.write("\n")  # apart: EscapedStdout lets a line break through only as a write of its own


def _hex(rgb: np.ndarray) -> str:
    return "#" + "".join(f"{int(round(float(c) * 255)):02x}" for c in rgb)


def html_fragment(tokens: Sequence[str], values: Sequence[float] | np.ndarray) -> str:
    """A ``<p>`` of ``<span>`` elements, one per token, on its background colour, with the signed value as a
    tooltip (``title``); token text HTML-escaped, control characters shown escaped."""
    values = _checked(tokens, values)
    backgrounds = token_colours(values)
    spans = [f'<span style="background-color:{_hex(bg)};color:{_hex(ink)};padding:0 2px;border-radius:2px" '
             f'title="{v:+.4g}">{html.escape(printable(t), quote=True)}</span>'
             for t, v, bg, ink in zip(tokens, values, backgrounds, _ink(backgrounds))]
    return '<p class="token-relevance" style="line-height:1.8;font-family:monospace">' + " ".join(spans) + "</p>"


def html_page(rows: Sequence[tuple[Sequence[str], Sequence[float] | np.ndarray, str]], title: str = "") -> str:
    """A standalone HTML page: ``title``, then per row (tokens, values, caption) its escaped caption and
    :func:`html_fragment`, with a line on how to read the colours."""
    parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">',
             f"<title>{html.escape(printable(title or 'token relevance'))}</title></head><body>"]
    if title:
        parts.append(f"<h1>{html.escape(printable(title))}</h1>")
    parts.append("<p>Red: relevance for the explained output, blue: against; intensity |R| / max |R| per text. "
                 "Hover a token for its value.</p>")
    for tokens, values, caption in rows:
        if caption:
            parts.append(f"<h2>{html.escape(printable(caption))}</h2>")
        parts.append(html_fragment(tokens, values))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


#: the PNG's layout: characters per line, inches per character and per line
_LINE_CHARS, _CHAR_IN, _LINE_IN = 72, 0.093, 0.34


def _layout(tokens: Sequence[str]) -> tuple[list[tuple[int, int, str]], int]:
    """(line, column, text) per token, wrapping at :data:`_LINE_CHARS`, and the number of lines."""
    placed, line, column = [], 0, 0
    for token in tokens:
        text = printable(token)
        if len(text) > _LINE_CHARS:
            text = text[:_LINE_CHARS - 1] + "…"
        if column and column + len(text) > _LINE_CHARS:
            line, column = line + 1, 0
        placed.append((line, column, text))
        column += len(text) + 1
    return placed, line + 1


def plot_token_rows(rows: Sequence[tuple[Sequence[str], Sequence[float] | np.ndarray, str]], path: str | Path, *,
                    title: str = "") -> Path:
    """Texts (tokens, values, caption) drawn one under the other as tokens on coloured boxes, each text on its own
    scale, with a legend line; written as a PNG to ``path`` (returned)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    blocks = []
    for tokens, values, caption in rows:
        values = _checked(tokens, values)
        placed, lines = _layout(tokens)
        blocks.append((placed, lines, token_colours(values), caption, np.abs(values).max(initial=0.0)))
    total = sum(lines + 1 for _, lines, *_ in blocks) + (1 if title else 0) + 1
    width, height = _LINE_CHARS * _CHAR_IN + 0.4, total * _LINE_IN + 0.3
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.2 / width, 0.15 / height, 1 - 0.4 / width, 1 - 0.3 / height))
    axes.set_xlim(0, _LINE_CHARS)
    axes.set_ylim(total, 0)
    axes.axis("off")
    font = {"family": "monospace", "size": 11}
    y = 0.0
    if title:
        axes.text(0, y + 0.5, printable(title), va="center", ha="left", fontsize=11, fontweight="bold")
        y += 1
    for placed, lines, colours, caption, peak in blocks:
        axes.text(0, y + 0.5, printable(f"{caption}  (max |R| {peak:.3g})" if caption else f"max |R| {peak:.3g}"),
                  va="center", ha="left", fontsize=10, color="0.25")
        y += 1
        for (line, column, text), bg, ink in zip(placed, colours, _ink(colours)):
            axes.add_patch(Rectangle((column - 0.1, y + line + 0.12), len(text) + 0.2, 0.76, facecolor=bg,
                                     edgecolor="0.8", linewidth=0.5))
            axes.text(column, y + line + 0.5, text, va="center", ha="left", color=ink, **font)
        y += lines
    axes.text(0, y + 0.5, "red: for the explained output, blue: against; intensity |R| / max |R| per text",
              va="center", ha="left", fontsize=9, color="0.35")
    out = Path(path)
    figure.savefig(out, format="png")
    return out


def plot_tokens(tokens: Sequence[str], values: Sequence[float] | np.ndarray, path: str | Path, *,
                title: str = "") -> Path:
    """One text's tokens on coloured boxes (:func:`plot_token_rows` with one row), written as a PNG to ``path``."""
    return plot_token_rows([(tokens, values, "")], path, title=title)
