"""The ``explainer`` command line: rewrite, check, explain, evaluate, audit.

Exit codes: 0 success, 1 a failed audit, 2 bad input (model, image, option, path) with a one-line message on stderr.
``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import ExplainerError
from . import audit, check, evaluate, explain, rewrite

COMMANDS = {"rewrite": rewrite, "check": check, "explain": explain, "evaluate": evaluate, "audit": audit}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="explainer", description="Explain ONNX image classifiers with LRP.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except ExplainerError as exc:
        if args.debug:
            raise
        print(f"explainer: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if args.debug:
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"explainer: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("explainer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
