"""The ``explainer`` command line: rewrite, check, explain, evaluate, audit.

Exit codes: 0 success, 1 a failed audit, 2 bad input (model, image, option, path) with a one-line message on stderr,
130 interrupted (Ctrl-C: ``explainer: interrupted``, no traceback), 141 stdout closed early (``| head -1``: the run
stops quietly, as a command killed by SIGPIPE would). ``--debug`` shows the traceback instead of the one-line message.
Everything printed is escaped (see :mod:`explainer.cli.text`), so names from models, label and image files cannot
run terminal escape sequences or forge lines.

This module imports only the standard library and light modules at the top: the sub-commands (NumPy, ONNX, ONNX
Runtime) load inside :func:`main`, where Ctrl-C is already handled.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence

from explainer.cli.text import escaped_stdout, print_error
from explainer.errors import ExplainerError

COMMANDS = ("rewrite", "check", "explain", "evaluate", "audit", "report")
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class Parser(argparse.ArgumentParser):
    """argparse with our error format: one line on stderr and exit code 2 (``--help`` still prints usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print_error(f"{message} (see '{self.prog} --help')")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="explainer", description="Explain ONNX image classifiers with LRP.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"explainer.cli.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``explainer ARGV``; returns the exit code."""
    interrupted = _CtrlC()
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return _report_interrupt()
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except Exception:
        # Ctrl-C inside an extension module's import comes back as that module's ImportError (NumPy's C code turns
        # the KeyboardInterrupt into "could not import module 'datetime'"): still an interruption, not a failure.
        if interrupted.seen:
            return _report_interrupt()
        raise
    finally:
        interrupted.restore()


def _report_interrupt() -> int:
    print_error("interrupted", prefix="explainer: ")
    return EXIT_INTERRUPTED


class _CtrlC:
    """Records that SIGINT arrived (then raises KeyboardInterrupt as Python's own handler does). Libraries can swallow
    that KeyboardInterrupt (one raised inside an optional ``try: import ... except ImportError``), so the output
    writer also asks :func:`ctrl_c_seen` before each result set."""

    seen = False

    def __init__(self) -> None:
        _CtrlC.seen = False
        self.previous = None
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        _CtrlC.seen = True
        raise KeyboardInterrupt

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def ctrl_c_seen() -> bool:
    """Whether Ctrl-C arrived during this run of :func:`main`, even if a library swallowed its KeyboardInterrupt."""
    return _CtrlC.seen


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file=None,
                      line: str | None = None) -> None:
    """Warnings (vanishing relevance, say) as one line on stderr, like errors, without Python's file:line."""
    print_error(str(message), prefix="explainer: warning: ")


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        # explain's inputs are optional (--text needs none), so argparse takes them as empty when an option comes
        # between the model and them (MODEL --size 32 IMAGE); they are the leftover paths
        if extras and isinstance(getattr(args, "images", None), list) and not any(e.startswith("-") for e in extras):
            args.images.extend(extras)
        elif extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    except SystemExit as exc:
        return int(exc.code or 0)
    with escaped_stdout(), warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            if hasattr(args, "provider"):
                from explainer.runtime.providers import env_provider
                env_provider()  # a bad EXPLAINER_PROVIDER is refused before any model work
            code = int(args.run(args) or 0)
            sys.stdout.flush()
            return code
        except BrokenPipeError:  # an OSError, but not a failure of the run: main ends quietly
            raise
        except ExplainerError as exc:
            if args.debug:
                raise
            print_error(exc)
            return 2
        except MemoryError as exc:
            if args.debug:
                raise
            print_error(f"out of memory{': ' + str(exc) if str(exc) else ''} (the request is larger than this "
                        "machine can hold; try a smaller size or batch)")
            return 2
        except OSError as exc:
            if args.debug:
                raise
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            print_error(f"{exc.strerror or exc}{where}")
            return 2


def _discard_stdout() -> None:
    """After the reader of stdout went away: point stdout at /dev/null, so that the interpreter's final flush does
    not report the broken pipe (the recipe of Python's documentation on SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
