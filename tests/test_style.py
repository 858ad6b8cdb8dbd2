"""The code follows one style: ruff's checks as configured in pyproject.toml (pyflakes, pycodestyle, isort, bugbear,
pyupgrade) pass on the whole tree."""
from __future__ import annotations

import subprocess
import sys

from tests.support.paths import ROOT


def test_ruff_is_clean():
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
