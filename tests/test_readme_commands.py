"""Every ``explainer ...`` command in README.md's code blocks runs verbatim on the files the repository ships.

Rules (stated here, so that no command is dropped silently):

* A command is a shell line of a fenced code block (continuation lines joined, comments dropped) or a part of one
  between ``&&``/``;`` that starts with ``explainer``: ``pip install . && explainer explain ...`` runs its second
  part.
* A usage synopsis is not run: a line with an upper-case placeholder (``MODEL``, ``IMAGE...``) or an ``[optional]``
  part.
* A command runs when every path it reads lies in ``graphs/`` or ``examples/`` (the shipped models and images).
  Commands reading other paths (the EfficientNet graph that ``python -m graphs.efficientnet`` builds into
  ``~/.cache``, the photos ``python -m tools.photos`` writes) are not run; they are listed in ``NOT_SHIPPED``, which
  must name exactly those commands, so a new one fails here until it is listed.

* An option's value is an output path, not a file read, for the options of :data:`OUTPUT_OPTIONS` of that command:
  ``-o``/``--output`` of ``report`` and ``rewrite`` name the file they write, whereas ``--output NAME`` of ``explain``
  and ``check`` names the model output to explain.

Each command runs in-process, from a fresh working folder in which ``graphs`` and ``examples`` link to the
repository's, so relative paths resolve as in a checkout and outputs land in the temporary folder; it must exit 0
and write its output folder.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from explainer.cli import main
from tests.support.paths import ROOT

README = ROOT / "README.md"
SHIPPED = ("graphs", "examples")
#: per command, the options whose value is an output path, not a file the command reads
OUTPUT_OPTIONS = {"explain": ("--out",), "evaluate": ("--out",), "audit": ("--report",),
                  "report": ("-o", "--output"), "rewrite": ("-o", "--out")}
#: where each command writes by default (its --out/--report folder), checked after the run
DEFAULT_OUTPUT = {"explain": "explanations", "evaluate": "evaluation", "audit": "audit"}
NOT_SHIPPED = {
    "explainer explain ~/.cache/explainer/graphs/efficientnet_lite0.onnx photos/chelsea.png photos/coffee.png --sr":
        "the EfficientNet-Lite0 graph is built by python -m graphs.efficientnet, the photos by python -m tools.photos",
    "explainer explain /tmp/unet/unet.onnx /tmp/unet/dense_shapes.png --target 2 --region 5 19 12 26 --colorbar "
    "--out /tmp/unet/out": "the U-Net and its scene are trained and drawn by python -m tests.support.unet (torch)",
    "explainer evaluate graphs/docstring_topics.onnx ids.npy --fixed attention_mask=mask.npy --order both --methods "
    "auto,gradient-x-input,gradient,random": "the held-out sentences' ids are encoded by the Python lines above it "
                                             "(1 min 49 s to evaluate)",
}
COMMAND_START = re.compile(r"(^|[;&|])\s*explainer\s")
PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*(\.\.\.)?([|.].*)?")


def code_blocks(text: str) -> list[list[str]]:
    """The lines of every fenced code block of a shell or no language (Python blocks hold no commands)."""
    blocks, current = [], None
    for line in text.splitlines():
        fence = line.strip()
        if fence.startswith("```"):
            if current is None:
                current = [] if fence[3:].strip() in ("", "bash", "sh", "shell", "console") else False
            else:
                if current is not False:
                    blocks.append(current)
                current = None
        elif current is not None and current is not False:
            current.append(line)
    return blocks


def shell_commands(lines: list[str]) -> list[list[str]]:
    """The ``explainer`` commands of a block as argument lists (continuations joined, comments dropped)."""
    joined, pending = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    commands = []
    for line in joined:
        if not COMMAND_START.search(line):   # block text that is no command (trees, tables, output) is not parsed
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        part: list[str] = []
        for token in [*lexer, ";"]:
            if token in (";", "&&", "||", "|", "&"):
                if part and part[0] == "explainer":
                    commands.append(part)
                part = []
            else:
                part.append(token)
    return commands


def is_synopsis(argv: list[str]) -> bool:
    return any(PLACEHOLDER.fullmatch(a) or a.startswith("[") for a in argv[1:])


def output_options(argv: list[str]) -> tuple[str, ...]:
    """The options of the command ``argv`` (``explainer COMMAND ...``) whose value is a path it writes."""
    return OUTPUT_OPTIONS.get(argv[1], ()) if len(argv) > 1 else ()


def written_path(argv: list[str]) -> str | None:
    """Where the command writes: its output option's value, else its default output folder (None if it has none)."""
    options = output_options(argv)
    return next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a in options), DEFAULT_OUTPUT.get(argv[1]))


def read_paths(argv: list[str]) -> list[str]:
    """The arguments that name files the command reads: path-like words that are not the value of an output option."""
    paths, options = [], output_options(argv)
    for previous, arg in zip(["", *argv[1:]], argv[1:]):
        if arg.startswith("-") or previous in options:
            continue
        if "/" in arg or "~" in arg or Path(arg).suffix in (".onnx", ".png", ".jpg", ".jpeg", ".txt", ".json", ".npy"):
            paths.append(arg)
    return paths


def shipped(path: str) -> bool:
    parts = Path(path).parts
    return bool(parts) and parts[0] in SHIPPED and (ROOT / path).exists()


def readme_commands() -> list[list[str]]:
    return [argv for block in code_blocks(README.read_text(encoding="utf-8")) for argv in shell_commands(block)]


def runnable() -> list[list[str]]:
    """The commands to run, as written, one list per code block: a block is one session, so a command may read
    what an earlier one of its block wrote (``explainer report`` reads the folders ``evaluate`` and ``audit`` wrote)."""
    blocks = []
    for block in code_blocks(README.read_text(encoding="utf-8")):
        found = [shlex.join(argv) for argv in shell_commands(block)
                 if not is_synopsis(argv) and all(shipped(p) for p in read_paths(argv))]
        if found:
            blocks.append(found)
    return blocks


def test_the_rules_find_the_readme_commands():
    """The extraction sees the README's commands: the quick start, the ViT example, the synopsis lines."""
    commands = readme_commands()
    texts = [" ".join(argv) for argv in commands]
    assert any(t.startswith("explainer explain graphs/digits_cnn.onnx examples/digit_3.png") for t in texts), texts
    assert "explainer explain graphs/digits_vit.onnx examples/digit_3.png --sr" in texts
    synopses = {argv[1] for argv in commands if is_synopsis(argv)}
    assert {"check", "explain", "evaluate", "audit"} <= synopses


def test_output_options_are_per_command():
    """``--output`` is the written file of ``report`` but the explained model output of ``check``, ``explain`` and
    ``rewrite`` (whose file is ``-o``/``--out``), whose value is then neither read nor written."""
    check = shlex.split("explainer check graphs/wine_mlp.onnx --output logits")
    assert written_path(check) is None and read_paths(check) == ["graphs/wine_mlp.onnx"]
    explain = shlex.split("explainer explain graphs/x.onnx examples/rows.npy --output scores --out out/")
    assert written_path(explain) == "out/" and read_paths(explain) == ["graphs/x.onnx", "examples/rows.npy"]
    assert written_path(shlex.split("explainer explain m.onnx rows.npy")) == "explanations"
    report = shlex.split("explainer report explanations audit -o pages/report.html")
    assert written_path(report) == "pages/report.html" and read_paths(report) == []
    rewrite = shlex.split("explainer rewrite graphs/x.onnx --method lrp-0 --output scores --out out/relevance.onnx")
    assert written_path(rewrite) == "out/relevance.onnx" and read_paths(rewrite) == ["graphs/x.onnx"]
    audit = shlex.split("explainer audit graphs/x.onnx examples/ --report ci/audit")
    assert written_path(audit) == "ci/audit" and read_paths(audit) == ["graphs/x.onnx", "examples/"]


def test_commands_on_files_not_shipped_are_the_listed_ones():
    not_run = {" ".join(argv) for argv in readme_commands()
               if not is_synopsis(argv) and not all(shipped(p) for p in read_paths(argv))}
    assert not_run == set(NOT_SHIPPED)


@pytest.mark.parametrize("block", runnable(), ids=lambda block: " / ".join(c.split()[1] for c in block))
def test_readme_commands_run_verbatim(block, tmp_path, monkeypatch):
    for folder in SHIPPED:
        (tmp_path / folder).symlink_to(ROOT / folder, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    for command in block:
        argv = shlex.split(command)
        assert main(argv[1:]) == 0, command
        out = written_path(argv)
        if out is not None:
            written = tmp_path / out
            assert (written.is_file() and written.stat().st_size) or any(written.iterdir()), \
                f"{command} wrote nothing to {out}"


def test_the_readme_shows_evaluate_audit_and_report_on_the_shipped_model():
    texts = [command for block in runnable() for command in block]
    for command in ("evaluate", "audit", "report", "check"):
        assert any(t.startswith(f"explainer {command} ") for t in texts), command
