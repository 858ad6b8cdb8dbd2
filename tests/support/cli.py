"""Run the command-line interface in-process and capture what it prints."""
from __future__ import annotations

import contextlib
import io

from explainer.cli import main


def run_cli(argv: list) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``explainer ARGV``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def cli(capsys, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``explainer ARGS``, captured by pytest's ``capsys``."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err
