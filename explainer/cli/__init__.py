"""The ``explainer`` command line: rewrite, check, explain, evaluate, audit.

Exit codes: 0 success, 1 a failed audit, 2 bad input (model, image, option, path) with a one-line message on stderr.
``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from explainer.cli import audit, check, evaluate, explain, rewrite
from explainer.errors import ExplainerError

COMMANDS = {"rewrite": rewrite, "check": check, "explain": explain, "evaluate": evaluate, "audit": audit}


class Parser(argparse.ArgumentParser):
    """argparse with our error format: one line on stderr and exit code 2 (``--help`` still prints usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"explainer: error: {one_line(message)} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="explainer", description="Explain ONNX image classifiers with LRP.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def one_line(message: object) -> str:
    """The message with line breaks and other non-printable characters escaped, so an error stays one line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(message))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return int(args.run(args) or 0)
    except ExplainerError as exc:
        if args.debug:
            raise
        print(f"explainer: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if args.debug:
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"explainer: error: {one_line(exc.strerror or exc)}{one_line(where)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("explainer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
