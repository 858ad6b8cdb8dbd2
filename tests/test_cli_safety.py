"""What the command line writes, and never writes: no write through a symlink, no probe file, no input overwritten,
no two outputs of one run on one name, no source model replaced without --force, no half-written file or half a
result set (killed by SIGTERM/SIGINT, a full disk), no partial results or empty folders from a failed run, and the
audit's options checked before it evaluates.

Commands run in-process through ``explainer.cli.main`` on the shipped digits CNN; the signal tests run
``python -m explainer`` in a subprocess."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import explainer.cli.audit
import explainer.cli.explain
from explainer.cli import main
from explainer.errors import InputError
from explainer.evaluation.audit import BASELINE_MAX_DEPTH, read_baseline
from explainer.files import TEMP_PREFIX, FileGroup
from tests.support.bad_models import unsupported_model, with_external_weight
from tests.support.paths import DIGITS, LABELS, ROOT, digit_path

SET = ("{}.npz", "{}_heatmap.png", "{}_overlay.png")
SR_SET = SET + ("{}_sr.png", "{}_sr_overlay.png")


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, err: str, *fragments: str, progress: bool = False) -> str:
    """Exit 2 and one line on stderr naming ``fragments`` (after the progress bars of evaluate and audit)."""
    assert rc == 2, err
    assert "Traceback" not in err
    if progress:
        err = err[err.rfind("\n", 0, len(err) - 1) + 1:]
    assert err.endswith("\n") and err.count("\n") == 1, f"expected one line on stderr, got {err!r}"
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    """{relative path: bytes} of every file under ``folder`` (symlinks as 'link -> target')."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(folder))] = b"link -> " + os.readlink(path).encode()
        elif path.is_file():
            found[str(path.relative_to(folder))] = path.read_bytes()
    return found


def copy_digit(path: Path, k: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(digit_path(k).read_bytes())
    return path


def assert_sets_complete_or_absent(out: Path, stems: list[str], pattern: tuple[str, ...]) -> int:
    """Every stem's result set is all there (and valid) or not there at all; no temporary or empty file is left.
    Returns how many sets are complete."""
    complete = 0
    for stem in stems:
        present = [(out / p.format(stem)).exists() for p in pattern]
        assert all(present) or not any(present), (stem, present)
        if all(present):
            complete += 1
            with np.load(out / f"{stem}.npz") as data:
                assert data["relevance"].shape == (32, 32)
            for p in pattern[1:]:
                with Image.open(out / p.format(stem)) as im:
                    im.load()
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") or p.stat().st_size == 0]
    assert not leftovers, leftovers
    return complete


# ---------------------------------------------------------------------------------------------- symlinks, probes
def test_symlink_planted_in_out_is_replaced_never_followed(capsys, tmp_path):
    victim = tmp_path / "elsewhere" / "precious.txt"
    victim.parent.mkdir()
    victim.write_text("do not touch")
    out = tmp_path / "out"
    out.mkdir()
    for pattern in SET:
        (out / pattern.format("digit_3")).symlink_to(victim)
    rc, _, err = cli(capsys, "explain", DIGITS, digit_path(3), "--labels", LABELS, "--out", out)
    assert rc == 0, err
    assert victim.read_text() == "do not touch"
    for pattern in SET:
        written = out / pattern.format("digit_3")
        assert not written.is_symlink() and written.stat().st_size > 0, written
    with np.load(out / "digit_3.npz") as data:
        assert int(data["target"]) == 3


def test_no_probe_file_is_written_into_the_output_folder(capsys, tmp_path):
    """The old writability probe '.explainer-write-test' followed a planted symlink and truncated its target."""
    victim = tmp_path / "precious.txt"
    victim.write_text("do not touch")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".explainer-write-test").symlink_to(victim)
    rc, _, err = cli(capsys, "explain", DIGITS, digit_path(3), "--out", out)
    assert rc == 0, err
    assert victim.read_text() == "do not touch"
    assert {p.name for p in out.iterdir()} == {".explainer-write-test", *(p.format("digit_3") for p in SET)}


def test_symlink_planted_for_evaluate_and_audit_outputs(capsys, tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("do not touch")
    for command, option, names in (("evaluate", "--out", ("aopc.json", "aopc.png")),
                                   ("audit", "--report", ("report.json", "report.md"))):
        out = tmp_path / command
        out.mkdir()
        for name in names:
            (out / name).symlink_to(victim)
        rc, _, err = cli(capsys, command, DIGITS, digit_path(3), "--steps", 2, "--region", 8, "--repeats", 1,
                         option, out)
        assert rc in (0, 1) and not err.startswith("explainer: error"), err      # audit: passed or failed
        assert victim.read_text() == "do not touch"
        assert all(not (out / n).is_symlink() and (out / n).stat().st_size > 0 for n in names)


# ---------------------------------------------------------------------------------------------- inputs stay inputs
def test_out_equal_to_the_input_folder_never_overwrites_an_input(capsys, tmp_path, monkeypatch):
    """`a_heatmap.png` is an input image and would be the heatmap of `a.png`: refused before the model is even read."""
    folder = tmp_path / "images"
    copy_digit(folder / "a.png", 3)
    copy_digit(folder / "a_heatmap.png", 7)
    before = snapshot(tmp_path)
    monkeypatch.setattr(explainer.cli.explain, "model_input", lambda args: pytest.fail("the model was loaded"))
    rc, _, err = cli(capsys, "explain", DIGITS, folder, "--out", folder)
    one_line_error(rc, err, str(folder / "a_heatmap.png"), "would overwrite the input")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("link", ["hard", "sym"])
def test_output_linked_to_an_input_is_refused(capsys, tmp_path, link):
    """An output path that is a hard link to an input, or a symlink to one, is the input: refused."""
    image = copy_digit(tmp_path / "in" / "b.png", 3)
    labels = tmp_path / "in" / "labels.txt"
    labels.write_text(LABELS.read_text())
    out = tmp_path / "out"
    out.mkdir()
    target = out / "b.npz"
    if link == "hard":
        os.link(labels, target)
    else:
        target.symlink_to(labels)
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, "explain", DIGITS, image, "--labels", labels, "--out", out)
    one_line_error(rc, err, str(target), str(labels))
    assert snapshot(tmp_path) == before


def test_the_model_file_is_an_input_too(capsys, tmp_path):
    model = tmp_path / "aopc.json"
    model.write_bytes(DIGITS.read_bytes())
    before = model.read_bytes()
    rc, _, err = cli(capsys, "evaluate", model, digit_path(3), "--out", tmp_path, "--steps", 2, "--repeats", 1)
    one_line_error(rc, err, str(model), "would overwrite the input")
    assert model.read_bytes() == before and not (tmp_path / "aopc.png").exists()


def test_audit_never_overwrites_its_baseline(capsys, tmp_path):
    protocol = ["--steps", 2, "--region", 8, "--repeats", 1]
    rc, _, err = cli(capsys, "audit", DIGITS, digit_path(3), *protocol, "--report", tmp_path, "--min-gain", -1e9)
    assert rc == 0, err
    baseline = tmp_path / "report.json"
    before = baseline.read_bytes()
    rc, _, err = cli(capsys, "audit", DIGITS, digit_path(3), *protocol, "--report", tmp_path, "--baseline", baseline)
    one_line_error(rc, err, str(baseline), "--report")
    assert baseline.read_bytes() == before


# ---------------------------------------------------------------------------------------------- name collisions
def test_outputs_of_c_and_c_sr_do_not_collide(capsys, tmp_path):
    """c.png's SR overlay and c_sr.png's overlay are both 'c_sr_overlay.png': the later image gets the stem c_sr_1."""
    c = copy_digit(tmp_path / "c.png", 3)
    c_sr = copy_digit(tmp_path / "c_sr.png", 7)
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "explain", DIGITS, c, c_sr, "--sr", "--out", out)
    assert rc == 0, err
    expected = {p.format(s) for s in ("c", "c_sr_1") for p in SR_SET}
    assert {p.name for p in out.iterdir()} == expected
    for stem, digit in (("c", 3), ("c_sr_1", 7)):
        with np.load(out / f"{stem}.npz") as data:
            assert int(data["target"]) == digit


def test_stems_differing_only_in_case_get_distinct_names(capsys, tmp_path):
    """Deterministic on every file system: 'Digit' and 'digit' would be one file on a case-insensitive one."""
    upper = copy_digit(tmp_path / "a" / "Digit.png", 3)
    lower = copy_digit(tmp_path / "b" / "digit.png", 7)
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "explain", DIGITS, upper, lower, "--out", out)
    assert rc == 0, err
    assert {p.name for p in out.iterdir()} == {p.format(s) for s in ("Digit", "digit_1") for p in SET}


def test_output_name_taken_by_a_folder_is_refused_up_front(capsys, tmp_path):
    out = tmp_path / "out"
    (out / "digit_3_overlay.png").mkdir(parents=True)
    rc, _, err = cli(capsys, "explain", DIGITS, digit_path(3), digit_path(4), "--out", out)
    one_line_error(rc, err, str(out / "digit_3_overlay.png"), "folder")
    assert {p.name for p in out.iterdir()} == {"digit_3_overlay.png"}


# ---------------------------------------------------------------------------------------------- rewrite onto its source
@pytest.fixture()
def source_model(tmp_path) -> Path:
    model = tmp_path / "M.onnx"
    model.write_bytes(DIGITS.read_bytes())
    return model


@pytest.mark.parametrize("alias", ["same", "hard", "sym"])
def test_rewrite_onto_its_source_needs_force(capsys, tmp_path, source_model, alias):
    output = {"same": source_model, "hard": tmp_path / "L.onnx", "sym": tmp_path / "S.onnx"}[alias]
    if alias == "hard":
        os.link(source_model, output)
    elif alias == "sym":
        output.symlink_to(source_model)
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, "rewrite", source_model, "--method", "gradient", "-o", output)
    one_line_error(rc, err, str(output), "--force")
    assert snapshot(tmp_path) == before
    rc, _, err = cli(capsys, "rewrite", source_model, "--method", "gradient", "-o", output, "--force")
    assert rc == 0, err
    rewritten = onnx.load(str(output))
    assert [i.name for i in rewritten.graph.input] == ["input", "target"]
    assert not output.is_symlink()
    if alias != "same":          # the link was replaced, the model it pointed to is untouched
        assert source_model.read_bytes() == DIGITS.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("output", ["weights.bin", "M2.onnx"])
def test_rewrite_never_overwrites_the_source_external_data(capsys, tmp_path, output):
    """-o naming the source's external-data file, or a model whose `.data` file would be that file: refused."""
    location = "weights.bin" if output == "weights.bin" else "M2.onnx.data"
    model, _, data = with_external_weight(onnx.load(str(DIGITS)), location)
    (tmp_path / location).write_bytes(data)
    source = tmp_path / "M.onnx"
    source.write_bytes(model.SerializeToString())
    before = snapshot(tmp_path)
    rc, _, err = cli(capsys, "rewrite", source, "--method", "gradient", "-o", tmp_path / output)
    one_line_error(rc, err, location, "--force")
    assert snapshot(tmp_path) == before


def test_rewrite_to_an_empty_or_folder_path_is_refused(capsys, tmp_path):
    (tmp_path / "taken.onnx").mkdir()
    for output, fragment in (("", "-o ''"), (str(tmp_path) + "/", "-o"), (str(tmp_path / "taken.onnx"), "folder")):
        rc, _, err = cli(capsys, "rewrite", DIGITS, "--method", "gradient", "-o", output)
        one_line_error(rc, err, fragment)
    assert [p.name for p in tmp_path.iterdir()] == ["taken.onnx"] and not list((tmp_path / "taken.onnx").iterdir())


# ---------------------------------------------------------------------------------------------- atomic writes
def _explain_subprocess(images: Path, out: Path) -> subprocess.Popen:
    """``explainer explain`` in a child that takes SIGINT as a terminal's process does, also where this suite runs as
    a background job of a non-interactive shell (which starts with SIGINT ignored, and children inherit that)."""
    env = {**os.environ, "EXPLAINER_PROVIDER": "cpu", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "explainer", "explain", str(DIGITS), str(images), "--sr",
                             "--batch-size", "1", "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_killed_mid_run_leaves_complete_result_sets_only(tmp_path, signum):
    images = tmp_path / "images"
    stems = [f"img_{i:03d}" for i in range(300)]
    for i, stem in enumerate(stems):
        copy_digit(images / f"{stem}.png", i % 10)
    out = tmp_path / "out"
    proc = _explain_subprocess(images, out)
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and any(out.glob("*.npz"))):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no result set appeared"
            time.sleep(0.005)
        time.sleep(0.05)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (130, 143), (proc.returncode, stderr)
    assert "Traceback" not in stderr, stderr
    complete = assert_sets_complete_or_absent(out, stems, SR_SET)
    assert 1 <= complete < len(stems)


def _enospc(exc_after: int, real):
    """``real`` that raises ENOSPC from its ``exc_after``-th call on, after writing a few bytes of its file (the first
    path among the arguments), as a full disk does."""
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= exc_after:
            Path(next(a for a in args if isinstance(a, (str, os.PathLike)))).write_bytes(b"PK\x03")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)
    return failing


def test_write_error_names_the_file_and_leaves_nothing_partial(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(np, "savez_compressed", _enospc(3, np.savez_compressed))
    images = [copy_digit(tmp_path / "in" / f"d{k}.png", k) for k in range(5)]
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "explain", DIGITS, *images, "--out", out)
    one_line_error(rc, err, str(out / "d2.npz"), "No space left on device", "2 of 5")
    assert assert_sets_complete_or_absent(out, [f"d{k}" for k in range(5)], SET) == 2


def test_write_error_in_a_png_removes_its_whole_set(capsys, tmp_path, monkeypatch):
    real_save = Image.Image.save
    calls = {"n": 0}

    def failing_save(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:                                       # the second image's overlay
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    images = [copy_digit(tmp_path / "in" / f"d{k}.png", k) for k in range(3)]
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "explain", DIGITS, *images, "--out", out)
    one_line_error(rc, err, str(out / "d1_overlay.png"), "1 of 3")
    assert assert_sets_complete_or_absent(out, ["d0", "d1", "d2"], SET) == 1


def test_evaluate_never_leaves_aopc_json_without_its_plot(capsys, tmp_path, monkeypatch):
    import explainer.pictures.curves as curves
    monkeypatch.setattr(curves, "plot_curves", _enospc(1, curves.plot_curves))
    out = tmp_path / "eval"
    rc, _, err = cli(capsys, "evaluate", DIGITS, digit_path(3), "--steps", 2, "--repeats", 1, "--out", out)
    one_line_error(rc, err, str(out / "aopc.png"), "No space left on device", progress=True)
    assert "the report was not written; the per-image rows are kept in" in err and "--resume" in err
    monkeypatch.undo()
    # what stays is the complete journal of per-image rows, from which --resume writes the report without recomputing
    assert sorted(p.name for p in out.iterdir()) == ["rows.jsonl"]
    rc, _, err = cli(capsys, "evaluate", DIGITS, digit_path(3), "--steps", 2, "--repeats", 1, "--out", out, "--resume")
    assert rc == 0, err
    assert {"aopc.json", "aopc.png", "rows.jsonl"} <= {p.name for p in out.iterdir()}


def test_rewrite_write_error_leaves_no_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx, "save_model", _enospc(1, onnx.save_model))
    output = tmp_path / "sub" / "rel.onnx"
    rc, _, err = cli(capsys, "rewrite", DIGITS, "--method", "gradient", "-o", output)
    one_line_error(rc, err, str(output), "No space left on device")
    assert not (tmp_path / "sub").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_really_full_disk(capsys, tmp_path):
    """A 192 KiB tmpfs fills up part way through 40 result sets: one line naming a file, whole sets only."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        images = [copy_digit(tmp_path / "in" / f"d{i:02d}.png", i % 10) for i in range(40)]
        out = disk / "out"
        rc, _, err = cli(capsys, "explain", DIGITS, *images, "--out", out, "--batch-size", 40)
        one_line_error(rc, err, str(out), "No space left on device", "of 40 result sets")
        complete = assert_sets_complete_or_absent(out, [f"d{i:02d}" for i in range(40)], SET)
        assert 0 < complete < 40
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# ---------------------------------------------------------------------------------------------- failed runs
def test_a_bad_image_anywhere_means_nothing_is_written(capsys, tmp_path):
    folder = tmp_path / "images"
    for k in range(10):
        copy_digit(folder / f"d{k}.png", k)
    (folder / "zz_junk.png").write_text("not an image")
    out = tmp_path / "out" / "nested"
    rc, _, err = cli(capsys, "explain", DIGITS, folder, "--out", out)
    one_line_error(rc, err, "zz_junk.png")
    assert not (tmp_path / "out").exists()


def test_keep_going_skips_bad_images_and_exits_2(capsys, tmp_path):
    folder = tmp_path / "images"
    for k in range(4):
        copy_digit(folder / f"d{k}.png", k)
    (folder / "d2_broken.png").write_bytes(digit_path(2).read_bytes()[:40])
    (folder / "junk.png").write_text("not an image")
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "explain", DIGITS, folder, "--out", out, "--keep-going")
    assert rc == 2
    lines = err.splitlines()
    assert "Traceback" not in err and len(lines) == 3, err
    assert "d2_broken.png" in lines[0] and "junk.png" in lines[1]
    assert lines[2] == "explainer: error: 2 of 6 image(s) could not be read and were skipped"
    assert assert_sets_complete_or_absent(out, [f"d{k}" for k in range(4)], SET) == 4
    assert {p.name for p in out.iterdir()} == {p.format(f"d{k}") for k in range(4) for p in SET}
    assert "wrote 4 explanation(s)" in stdout


def test_keep_going_with_only_bad_images_writes_nothing(capsys, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    rc, _, err = cli(capsys, "explain", DIGITS, junk, "--out", tmp_path / "out", "--keep-going")
    assert rc == 2 and "junk.png" in err and "1 of 1" in err
    assert not (tmp_path / "out").exists()


def test_explain_help_states_the_exit_codes(capsys):
    assert main(["explain", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--keep-going" in text and "exit status: 0" in text and "2 bad input" in text


@pytest.mark.parametrize("command", ["explain", "evaluate", "audit"])
def test_empty_output_folder_option_is_an_error(capsys, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    option = "--report" if command == "audit" else "--out"
    rc, _, err = cli(capsys, command, DIGITS, digit_path(3), option, "")
    one_line_error(rc, err, option, "empty")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["explain", "evaluate", "audit"])
def test_failed_run_leaves_no_folder_it_created(capsys, tmp_path, command):
    """The model cannot be explained (Atan, Abs): nothing written, and neither `a` nor `a/b` is left behind."""
    model = tmp_path / "erf.onnx"
    model.write_bytes(unsupported_model()[0].SerializeToString())
    option = "--report" if command == "audit" else "--out"
    rc, _, err = cli(capsys, command, model, digit_path(3), option, tmp_path / "a" / "b")
    one_line_error(rc, err, str(model))
    assert not (tmp_path / "a").exists()


def test_a_target_out_of_range_leaves_no_folder(capsys, tmp_path):
    rc, _, err = cli(capsys, "explain", DIGITS, digit_path(3), "--target", 99, "--out", tmp_path / "out")
    one_line_error(rc, err, "99")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- audit checks first
@pytest.mark.parametrize("options, fragment", [
    (["--min-gain", "nan"], "min_gain"),
    (["--min-gain", "inf"], "min_gain"),
    (["--baseline", "{baseline}", "--max-drop", "-0.5"], "max_drop"),
    (["--baseline", "{baseline}", "--max-drop", "nan"], "max_drop"),
    (["--baseline", "{other}"], "not in the baseline"),
    (["--baseline", "{nan}"], "no finite AOPC"),
])
def test_audit_checks_its_options_before_evaluating(capsys, tmp_path, monkeypatch, options, fragment):
    files = {"baseline": {"epsilon-plus-flat": 0.5, "random": 0.1}, "other": {"gradient": 0.5, "random": 0.1},
             "nan": {"epsilon-plus-flat": None, "random": 0.1}}
    paths = {}
    for name, methods in files.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps({"methods": {m: {"aopc": a} for m, a in methods.items()}}))
    monkeypatch.setattr(explainer.cli.audit, "run_evaluation", lambda *a, **k: pytest.fail("the evaluation ran"))
    argv = [o.format(**paths) for o in options]
    rc, _, err = cli(capsys, "audit", DIGITS, digit_path(3), "--report", tmp_path / "r", *argv)
    one_line_error(rc, err, fragment)
    assert not (tmp_path / "r").exists()


def test_baseline_from_dev_zero_is_refused_quickly(tmp_path):
    start = time.monotonic()
    with pytest.raises(InputError, match="larger than 64 MiB"):
        read_baseline("/dev/zero")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("depth", [BASELINE_MAX_DEPTH + 1, 100_000])
def test_deeply_nested_baseline_is_refused(tmp_path, depth):
    path = tmp_path / "deep.json"
    path.write_text('{"methods": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(InputError, match=f"nested more than {BASELINE_MAX_DEPTH} levels"):
        read_baseline(path)


@pytest.mark.parametrize("text, fragment", [("9" * 5000, "not a readable JSON"), ("[1, 2]", "expected a report"),
                                            (b"\xff\xfe{}", "not a readable JSON")])
def test_malformed_baselines(tmp_path, text, fragment):
    path = tmp_path / "b.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError, match=fragment):
        read_baseline(path)
    with pytest.raises(InputError, match="is a folder"):
        read_baseline(tmp_path)


# ---------------------------------------------------------------------------------------------- FileGroup
def test_file_group_is_complete_or_absent(tmp_path):
    (tmp_path / "b.txt").mkdir()                                   # the second file cannot be moved into place
    group = FileGroup(tmp_path)
    with pytest.raises(OSError) as caught:
        with group:
            group.path("a.txt").write_text("a")
            group.path("b.txt").write_text("b")
    assert caught.value.filename == str(tmp_path / "b.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]


def test_file_group_moves_extra_files_first_and_leaves_no_temp(tmp_path):
    link_target = tmp_path / "target.txt"
    link_target.write_text("keep")
    (tmp_path / "m.onnx").symlink_to(link_target)
    with FileGroup(tmp_path) as group:
        path = group.path("m.onnx")
        path.write_text("model")
        path.with_name("m.onnx.data").write_text("weights")
    assert group.written == [tmp_path / "m.onnx.data", tmp_path / "m.onnx"]
    assert (tmp_path / "m.onnx").read_text() == "model" and link_target.read_text() == "keep"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
