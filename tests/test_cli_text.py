"""What the command line prints and how the process behaves: names from models, label files and file names are
escaped (no terminal escape sequence runs, no line can be forged), output never fails to encode, a closed stdout
(``| head -1``) and Ctrl-C right after start end quietly, a bad ``EXPLAINER_PROVIDER`` is named, and ``check``
says on stderr why it exits 2.

Behaviour that depends on the real process (stdout's encoding, SIGPIPE, SIGINT during the imports) runs the CLI in a
subprocess; the rest runs in-process through ``explainer.cli.main``."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from onnx import helper

from explainer.cli.text import EscapedStdout, image_size, printable
from explainer.errors import InputError
from explainer.runtime.providers import resolve_provider
from tests.support.bad_models import small_cnn, unsupported_model
from tests.support.cli import cli
from tests.support.paths import DIGITS, LABELS, ROOT, digit_path

EVIL = "\x1b[2J\r\n result: can be explained"
CONTROL = {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))} | {"\u2028", "\u2029", "\u202e"}
RUN_CLI = [sys.executable, "-c", "import sys; from explainer.cli import main; sys.exit(main())"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def raw_controls(text: str) -> set[str]:
    """Control characters in ``text`` other than the line breaks between lines."""
    return {ch for ch in text if ch in CONTROL and ch != "\n"}


def result_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.lstrip().startswith("result:")]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: this tree first on the path, CPU provider."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "EXPLAINER_PROVIDER": "cpu", **extra}


# ---------------------------------------------------------------------------------------------- escaping
def test_printable_escapes_what_a_terminal_would_act_on():
    assert printable("plain text, café, 東京, ü") == "plain text, café, 東京, ü"
    assert printable("a\x1b[2J\r\n\tb\x7f\x9b\x85\u2028\u2029\u202e\x00") == \
        r"a\x1b[2J\r\n\tb\x7f\x9b\x85\u2028\u2029\u202e\x00"
    assert printable("bad\udcff.png") == r"bad\xff.png"      # an undecodable file-name byte, as os.fsdecode keeps it
    assert printable("\ud800") == r"\ud800"
    assert printable(3) == "3"


def test_escaped_stdout_lets_only_the_line_end_of_print_through():
    sink = io.StringIO()
    stream = EscapedStdout(sink)
    print("name\nresult: forged\x1b[31m", file=stream)
    print("a", "b\r", file=stream)
    assert sink.getvalue() == "name\\nresult: forged\\x1b[31m\na b\\r\n"


def test_escaped_stdout_backslash_escapes_what_the_encoding_cannot_hold():
    sink = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    stream = EscapedStdout(sink)
    print("café \udcff", file=stream)
    sink.flush()
    assert sink.buffer.getvalue() == b"caf\\xe9 \\xff\n"


def rename(model: onnx.ModelProto, old: str, new: str) -> None:
    """Rename tensor ``old`` to ``new`` everywhere in ``model``."""
    for value in (*model.graph.input, *model.graph.output):
        if value.name == old:
            value.name = new
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def hostile_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with escape sequences, a carriage return and a forged result line in its input, output and node
    names and in its metadata."""
    rename(model, model.graph.input[0].name, "x" + EVIL)
    rename(model, model.graph.output[0].name, "scores" + EVIL)
    for node in model.graph.node:
        node.name += EVIL
    helper.set_model_props(model, {"author" + EVIL: EVIL, "explainer.preprocess": "unit" + EVIL})
    return model


def test_check_escapes_names_from_the_model(capsys, tmp_path):
    path = tmp_path / "evil.onnx"
    onnx.save(hostile_names(small_cnn()), path)
    rc, out, err = cli(capsys, "check", path)
    assert rc == 0, err
    assert raw_controls(out) == set(), sorted(raw_controls(out))
    assert result_lines(out) == ["result: can be explained"]
    assert "x\\x1b[2J\\r\\n result: can be explained" in out


def test_check_escapes_unsupported_op_names(capsys, tmp_path):
    model, _ = unsupported_model()
    for node in model.graph.node:
        if node.op_type == "Abs":
            node.op_type = "Abs" + EVIL
    path = tmp_path / "evil_op.onnx"
    onnx.save(hostile_names(model), path)
    rc, out, err = cli(capsys, "check", path)
    assert rc == 2
    assert raw_controls(out + err) == set(), sorted(raw_controls(out + err))
    assert len(result_lines(out)) == 1 and result_lines(out)[0].startswith("result: cannot be explained: ")
    assert err.count("\n") == 1 and err.startswith("explainer: error: ") and "Abs\\x1b[2J" in err


def test_rewrite_and_explain_escape_model_names_and_metadata(capsys, tmp_path):
    path = tmp_path / "evil.onnx"
    onnx.save(hostile_names(small_cnn()), path)
    rc, out, err = cli(capsys, "rewrite", path, "--method", "gradient", "--preprocess", "unit", "-o",
                       tmp_path / "r.onnx")
    assert rc == 0, err
    assert raw_controls(out) == set() and result_lines(out) == []
    assert "'x\\x1b[2J\\r\\n result: can be explained'" in out
    rc, out, err = cli(capsys, "explain", path, digit_path(3), "--out", tmp_path / "out")
    assert rc == 2                       # the metadata names an unknown preprocessing: one escaped line
    assert err.count("\n") == 1 and raw_controls(err) == set() and "unit\\x1b[2J" in err


def test_explain_escapes_label_and_file_names(capsys, tmp_path):
    labels = tmp_path / "labels.txt"
    names = [f"digit {k}" for k in range(10)]
    names[3] = "three\x1b[2J\x07\u202e\x9b31m"
    labels.write_text("\n".join(names) + "\n", encoding="utf-8")
    image = tmp_path / "d\nresult: can be explained\x1b[31m.png"
    image.write_bytes(digit_path(3).read_bytes())
    rc, out, err = cli(capsys, "explain", DIGITS, image, "--labels", labels, "--out", tmp_path / "out")
    assert rc == 0, err
    assert raw_controls(out) == set(), sorted(raw_controls(out))
    assert result_lines(out) == []
    assert "d\\nresult: can be explained\\x1b[31m.png:" in out
    assert "1. three\\x1b[2J\\x07\\u202e\\x9b31m (class 3)" in out


# ---------------------------------------------------------------------------------------------- the real process
def test_undecodable_file_name_under_a_strict_stdout(tmp_path):
    """A non-UTF-8 file name is printed with the byte escaped; a strict ASCII stdout gets escapes for non-ASCII
    label names instead of a UnicodeEncodeError."""
    image = os.fsencode(tmp_path) + b"/digit\xff.png"
    with open(image, "wb") as f:
        f.write(digit_path(3).read_bytes())
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"zéro {k}\n" for k in range(10)), encoding="utf-8")
    for encoding, name in (("utf-8:strict", "zéro 3".encode()), ("ascii:strict", b"z\\xe9ro 3")):
        proc = subprocess.run([*RUN_CLI, "explain", str(DIGITS), os.fsdecode(image), "--labels", str(labels),
                               "--out", "out"], capture_output=True, cwd=tmp_path, timeout=120,
                              env=subprocess_env(PYTHONIOENCODING=encoding))
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        assert b"Traceback" not in proc.stderr
        assert b"/digit\\xff.png:\n" in proc.stdout
        assert b"1. " + name + b" (class 3)" in proc.stdout


def test_closed_stdout_ends_quietly(tmp_path):
    """The reader of stdout went away (``explainer check M | head -1``): no 'Broken pipe' message, no traceback."""
    read, write = os.pipe()
    proc = subprocess.Popen([*RUN_CLI, "check", str(DIGITS)], stdout=write, stderr=subprocess.PIPE, cwd=tmp_path,
                            env=subprocess_env())
    os.close(write)
    os.close(read)
    _, err = proc.communicate(timeout=120)
    assert err == b""
    assert proc.returncode == 141


def test_head_reads_the_first_line(tmp_path):
    command = " ".join(f"'{a}'" for a in [*RUN_CLI, "check", str(DIGITS)])
    proc = subprocess.run(f"{command} | head -1", shell=True, capture_output=True, text=True, cwd=tmp_path,
                          timeout=120, env=subprocess_env())
    assert proc.stdout == "result: can be explained\n"
    assert proc.stderr == ""


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see when NumPy is being loaded")
def test_ctrl_c_during_the_imports(tmp_path):
    """SIGINT while the heavy modules load (NumPy is mapped, ONNX Runtime not yet done): 'interrupted', exit 130."""
    proc = subprocess.Popen([*RUN_CLI, "explain", str(DIGITS), str(digit_path(3)), "--out", "out"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=subprocess_env(), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if "numpy" in maps.read_text():
                break
        except OSError:
            pass
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err
    assert (proc.returncode, err) == (130, "explainer: interrupted\n")


def test_ctrl_c_that_a_library_swallows_still_stops_the_run(capsys, tmp_path, monkeypatch):
    """Ctrl-C inside an optional ``try: import ... except ImportError`` of some library becomes that ImportError and
    is swallowed; the run still stops before its next result set: exit 130, only complete result sets written."""
    import explainer.pictures.heatmaps as heatmaps
    real, calls = heatmaps.heatmap, {"n": 0}

    def swallowing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)  # the handler runs here
            except KeyboardInterrupt:
                pass
        return real(*args, **kwargs)

    monkeypatch.setattr(heatmaps, "heatmap", swallowing)
    images = [digit_path(k) for k in range(3)]
    # SIGINT as in a terminal, also where the suite runs as a background job (started with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        rc, _, err = cli(capsys, "explain", DIGITS, *images, "--out", tmp_path / "out")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (rc, err.splitlines()[-1]) == (130, "explainer: interrupted")
    assert len(list((tmp_path / "out").glob("*.npz"))) <= 1


# ---------------------------------------------------------------------------------------------- options and settings
@pytest.mark.parametrize("value", ["bogus", "gpu", "cpu,cuda"])
def test_bad_provider_variable_is_named(capsys, monkeypatch, value):
    monkeypatch.setenv("EXPLAINER_PROVIDER", value)
    rc, out, err = cli(capsys, "explain", DIGITS, digit_path(3), "--out", "out")
    assert rc == 2 and out == ""
    assert err == f"explainer: error: EXPLAINER_PROVIDER={value!r} is not a provider; use one of auto, cpu, cuda " \
                  "(or leave it unset)\n"
    assert not Path("out").exists()
    with pytest.raises(InputError, match="EXPLAINER_PROVIDER"):
        resolve_provider("cpu")


@pytest.mark.parametrize("value, expected", [("", "cpu"), ("CPU", "cpu"), (" cpu ", "cpu")])
def test_good_provider_variable(monkeypatch, value, expected):
    monkeypatch.setenv("EXPLAINER_PROVIDER", value)
    assert resolve_provider("cpu") == expected
    if value:
        assert resolve_provider("auto") == expected


def test_check_says_why_on_stderr(capsys, tmp_path):
    model, bad = unsupported_model()
    path = tmp_path / "unsupported.onnx"
    onnx.save(model, path)
    rc, out, err = cli(capsys, "check", path)
    assert rc == 2
    assert err.startswith(f"explainer: error: {path}: unsupported op(s): ") and err.count("\n") == 1
    assert all(f"node '{name}'" in err for name, _ in bad)
    assert result_lines(out)[0].startswith("result: cannot be explained")


def one_channel_dynamic(tmp_path: Path) -> Path:
    from tests.support.onnx_graphs import G
    g = G()
    c = g.conv("x", 1, 2, pads=[1, 1, 1, 1])
    p = g.node("GlobalAveragePool", [g.node("Relu", [c])])
    out = g.node("Gemm", [g.node("Flatten", [p], axis=1), g.w((4, 2))], transB=1)
    path = tmp_path / "dynamic.onnx"
    onnx.save(g.model(["N", 1, "H", "W"], out), path)
    return path


@pytest.mark.parametrize("shape, fragment", [(["1", "-5", "32"], "expected a positive integer, got -5"),
                                             (["1", "0", "32"], "expected a positive integer, got 0"),
                                             (["1", "x", "32"], "expected a positive integer, got 'x'")])
def test_check_refuses_bad_input_shapes(capsys, tmp_path, shape, fragment):
    rc, out, err = cli(capsys, "check", one_channel_dynamic(tmp_path), "--input-shape", *shape)
    assert rc == 2 and out == ""
    assert err.startswith("explainer: error: argument --input-shape: ") and fragment in err and err.count("\n") == 1


def test_check_refuses_an_input_shape_over_the_memory_limit(capsys, tmp_path, monkeypatch):
    model = one_channel_dynamic(tmp_path)
    monkeypatch.setenv("EXPLAINER_MAX_BYTES", "1M")
    rc, out, err = cli(capsys, "check", model, "--input-shape", "1", "1000", "1000")
    assert (rc, out) == (2, "")
    assert err == ("explainer: error: --input-shape: an input of shape [1, 1000, 1000] needs 3.81 MiB of memory, "
                   "more than the limit of 1 MiB (set EXPLAINER_MAX_BYTES to allow more)\n")
    monkeypatch.setenv("EXPLAINER_MAX_BYTES", "8M")
    rc, out, err = cli(capsys, "check", model, "--input-shape", "1", "1000", "1000")
    assert rc == 0, err
    monkeypatch.delenv("EXPLAINER_MAX_BYTES")
    rc, out, err = cli(capsys, "check", model, "--input-shape", "1", "50000", "50000")
    assert (rc, out) == (2, "")
    assert "an input of shape [1, 50000, 50000] needs 9.31 GiB of memory, more than the limit of 4 GiB" in err


@pytest.mark.parametrize("text, size", [("224", (224, 224)), ("224x160", (224, 160)), ("32,48", (32, 48)),
                                        ("16X16", (16, 16))])
def test_size_option_values(text, size):
    assert image_size(text) == size


@pytest.mark.parametrize("text", ["0", "-5", "224x0", "1x2x3", "x", "", "224x", "big"])
def test_bad_size_option_values(text):
    import argparse
    with pytest.raises(argparse.ArgumentTypeError, match="expected a positive size N or HxW"):
        image_size(text)


def test_out_of_memory_is_one_line(capsys, tmp_path, monkeypatch):
    """A MemoryError that no estimate foresaw is still one line and exit 2 (numpy's message gives the figure)."""
    import explainer.cli.check as check

    def exhausted(*args, **kwargs):
        raise MemoryError("Unable to allocate 224. GiB for an array with shape (1, 3, 1000000000, 10)")

    monkeypatch.setattr(check, "check_model", exhausted)
    rc, out, err = cli(capsys, "check", DIGITS)
    assert rc == 2 and out == ""
    assert err.startswith("explainer: error: out of memory: Unable to allocate 224. GiB") and err.count("\n") == 1


def test_labels_file_names_print_in_the_default_table(capsys, tmp_path):
    """The shipped digits labels still print plainly (escaping leaves printable text alone)."""
    rc, out, err = cli(capsys, "explain", DIGITS, digit_path(3), "--labels", LABELS, "--out", "out")
    assert rc == 0, err
    assert f"{digit_path(3)}:\n  1. 3 (class 3): logit " in out
