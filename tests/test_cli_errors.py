"""The command line fails cleanly: exit 2 and ONE line on stderr (``explainer: error: ...`` naming the culprit, no
traceback) for bad models, images, options and output folders; nothing is ever written outside ``--out``; odd but
valid images (animated GIF, 16-bit PNG, CMYK JPEG) work; ``--debug`` re-raises.

Commands run in-process through ``explainer.cli.main`` (one test runs the installed console script) on the shipped
digits CNN (1×32×32, 10 classes) and on small hand-built graphs for the model errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import PIL.Image
import pytest
from PIL import Image

from explainer import ModelError
from explainer.cli import main
from tests.support.bad_models import no_input_model, small_cnn, two_input_model, unsupported_model, with_external_weight
from tests.support.cli import cli
from tests.support.paths import DIGITS, LABELS, digit_path

DIGIT_3 = digit_path(3)
DIGIT_7 = digit_path(7)
OUTPUTS = ("{}.npz", "{}_heatmap.png", "{}_overlay.png")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Run every command from inside tmp_path: default output folders and stray writes land there."""
    monkeypatch.chdir(tmp_path)


def assert_one_line_error(rc: int, err: str, *fragments: str) -> str:
    assert rc == 2, err
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, f"expected one line on stderr, got {err!r}"
    line = err.rstrip("\n")
    assert line.startswith("explainer: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def explain(capsys, model, *images, out="out", extra=()) -> tuple[int, str, str]:
    return cli(capsys, "explain", model, *images, "--labels", LABELS, "--out", out, *extra)


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()}


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


# ---------------------------------------------------------------------------------------------- bad models
def test_missing_model(capsys, tmp_path):
    rc, out, err = explain(capsys, tmp_path / "nope.onnx", DIGIT_3)
    assert_one_line_error(rc, err, str(tmp_path / "nope.onnx"), "no such file")


@pytest.mark.parametrize("command", ["check", "rewrite", "explain", "evaluate", "audit"])
def test_missing_model_in_every_command(capsys, tmp_path, command):
    args = {"check": [], "rewrite": ["-o", tmp_path / "r.onnx"], "explain": [DIGIT_3], "evaluate": [DIGIT_3],
            "audit": [DIGIT_3]}[command]
    rc, _, err = cli(capsys, command, tmp_path / "nope.onnx", *args)
    assert_one_line_error(rc, err, "nope.onnx", "no such file")
    assert not (tmp_path / "r.onnx").exists()


def test_random_bytes(capsys, tmp_path):
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    rc, _, err = explain(capsys, path, DIGIT_3)
    assert_one_line_error(rc, err, str(path))


def test_truncated_model(capsys, tmp_path):
    data = DIGITS.read_bytes()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: len(data) // 2])
    for command in (["explain", path, DIGIT_3], ["check", path]):
        rc, _, err = cli(capsys, *command)
        assert_one_line_error(rc, err, str(path), "not a valid ONNX model")


@pytest.mark.parametrize("build, fragments", [
    (no_input_model, ["no inputs"]),
    (two_input_model, ["2 inputs", "'image_a'", "'image_b'"]),
])
def test_malformed_models(capsys, tmp_path, build, fragments):
    path = save(build(), tmp_path / "bad.onnx")
    rc, _, err = explain(capsys, path, DIGIT_3)
    assert_one_line_error(rc, err, str(path), *fragments)


def test_unsupported_ops_listed_in_one_line(capsys, tmp_path):
    model, bad = unsupported_model()
    path = save(model, tmp_path / "unsupported.onnx")
    rc, _, err = explain(capsys, path, DIGIT_3)
    assert_one_line_error(rc, err, str(path), *[f"{op} (node '{name}')" for name, op in bad])


@pytest.mark.parametrize("where", ["parent", "absolute"])
def test_external_data_outside_the_model_folder(capsys, tmp_path, where):
    folder = tmp_path / "model"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    location = "../secret.bin" if where == "parent" else str(secret)
    model, name, data = with_external_weight(small_cnn(), location)
    secret.write_bytes(data)
    path = save(model, folder / "m.onnx")
    for command in (["explain", path, DIGIT_3], ["check", path], ["rewrite", path, "-o", tmp_path / "r.onnx"]):
        rc, _, err = cli(capsys, *command)
        assert_one_line_error(rc, err, f"'{name}'", f"'{location}'", "outside the model's folder")
    assert not (tmp_path / "r.onnx").exists()


@pytest.mark.parametrize("location", ["w\x00.bin", "loop.bin"])
def test_malformed_external_location(capsys, tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    os.symlink("loop.bin", folder / "loop.bin")
    model, name, _ = with_external_weight(small_cnn(), location)
    path = save(model, folder / "m.onnx")
    for command in (["explain", path, DIGIT_3], ["check", path]):
        rc, _, err = cli(capsys, *command)
        assert_one_line_error(rc, err, str(path), f"'{name}'")


@pytest.mark.parametrize("where", ["image file name", "node name"])
def test_error_message_stays_one_line_whatever_the_names(capsys, tmp_path, where):
    """File and node names are user data: a newline in one must not split (or forge) the error line."""
    if where == "image file name":
        forged = tmp_path / "bad\nexplainer: error: forged.png"
        forged.write_text("not an image")
        rc, _, err = explain(capsys, DIGITS, forged)
        assert_one_line_error(rc, err, "forged.png")
    else:
        model, bad = unsupported_model()
        for node in model.graph.node:
            if node.op_type == "Abs":
                node.name = "abs\nexplainer: error: forged"
        rc, _, err = explain(capsys, save(model, tmp_path / "m.onnx"), DIGIT_3)
        assert_one_line_error(rc, err, "Abs (node 'abs", "forged")


def test_check_exit_codes(capsys, tmp_path):
    rc, out, err = cli(capsys, "check", DIGITS)
    assert rc == 0 and err == ""
    assert "result: can be explained" in out
    model, bad = unsupported_model()
    rc, out, err = cli(capsys, "check", save(model, tmp_path / "unsupported.onnx"))
    assert rc == 2
    assert "cannot be explained" in out and "Traceback" not in out + err
    assert_one_line_error(rc, err, "unsupported op(s)")
    for name, _ in bad:
        assert f"node '{name}'" in out
    assert any(line.strip().startswith("Atan") and "UNSUPPORTED" in line for line in out.splitlines())
    assert any(line.strip().startswith("Abs") and "UNSUPPORTED" in line for line in out.splitlines())


# ---------------------------------------------------------------------------------------------- bad options
def test_target_out_of_range(capsys, tmp_path):
    rc, _, err = explain(capsys, DIGITS, DIGIT_3, extra=["--target", "99"])
    assert_one_line_error(rc, err, "99", "10 classes")
    assert files_under(tmp_path / "out") == set()


def test_missing_labels_file(capsys, tmp_path):
    rc, _, err = cli(capsys, "explain", DIGITS, DIGIT_3, "--labels", tmp_path / "labels.txt", "--out", "out")
    assert_one_line_error(rc, err, str(tmp_path / "labels.txt"))


def test_rewrite_to_a_path_under_a_file(capsys, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    rc, _, err = cli(capsys, "rewrite", DIGITS, "--method", "gradient", "-o", blocker / "out.onnx")
    assert_one_line_error(rc, err, "file.txt")
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("option, fragment", [(["--methods", ""], "method"), (["--methods", ",,"], "method"),
                                              (["--steps", "0"], "steps"), (["--region", "0"], "region"),
                                              (["--methods", "lrp-42"], "lrp-42")])
def test_evaluate_bad_options(capsys, tmp_path, option, fragment):
    """Bad evaluate options are refused up front: exit 2, one line, and nothing computed or written."""
    rc, _, err = cli(capsys, "evaluate", DIGITS, DIGIT_3, "--out", "eval", "--steps", "3", "--repeats", "1", *option)
    assert_one_line_error(rc, err, fragment)
    assert not (tmp_path / "eval" / "aopc.json").exists()


def test_evaluate_random_only_does_not_crash(capsys, tmp_path):
    """'random' alone is either evaluated (the baseline only) or refused with a one-line error, never a crash."""
    rc, _, err = cli(capsys, "evaluate", DIGITS, DIGIT_3, "--methods", "random", "--steps", "3", "--repeats", "1",
                     "--out", "eval")
    if rc == 0:
        assert "random" in (tmp_path / "eval" / "aopc.json").read_text()
    else:
        assert_one_line_error(rc, err, "random")


@pytest.mark.parametrize("kind", ["/dev/zero", "huge", "binary", "folder"])
def test_labels_read_is_bounded(capsys, tmp_path, kind):
    """--labels is read up to 16 MiB: /dev/zero or a huge file is refused, not read into memory; so is binary data."""
    path = {"/dev/zero": Path("/dev/zero"), "huge": tmp_path / "huge.txt", "binary": tmp_path / "labels.bin",
            "folder": tmp_path}[kind]
    if kind == "huge":
        path.write_bytes(b"class\n" * (3 * 2**20))
    if kind == "binary":
        path.write_bytes(b"".join(b"%d\x00\n" % k for k in range(10)))
    fragment = {"/dev/zero": "larger than 16 MiB", "huge": "larger than 16 MiB", "binary": "NUL bytes",
                "folder": "is a folder"}[kind]
    rc, _, err = cli(capsys, "explain", DIGITS, DIGIT_3, "--labels", path, "--out", "out")
    assert_one_line_error(rc, err, str(path), fragment)
    assert files_under(tmp_path / "out") == set()


def dynamic_cnn(tmp_path: Path, dims=("N", 3, "H", "W")) -> Path:
    """x [N, 3, H, W] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> 5 scores, with the given dims."""
    from tests.support.onnx_graphs import G
    g = G()
    pooled = g.node("GlobalAveragePool", [g.node("Relu", [g.conv("x", 3, 4, pads=[1, 1, 1, 1])])])
    out = g.node("Gemm", [g.node("Flatten", [pooled], axis=1), g.w((5, 4))], transB=1)
    return save(g.model(list(dims), out), tmp_path / "dynamic.onnx")


def test_size_over_the_memory_limit(capsys, tmp_path, monkeypatch):
    """--size on a dynamic model: the image's bytes are checked before the model is run (limit: EXPLAINER_MAX_BYTES,
    default 4 GiB)."""
    model = dynamic_cnn(tmp_path)
    monkeypatch.setenv("EXPLAINER_MAX_BYTES", "4M")
    rc, _, err = cli(capsys, "explain", model, DIGIT_3, "--out", "out", "--size", "600")
    assert_one_line_error(rc, err, "one image of shape [3, 600, 600] needs 4.12 MiB of memory",
                          "limit of 4 MiB", "EXPLAINER_MAX_BYTES")
    monkeypatch.setenv("EXPLAINER_MAX_BYTES", "8M")
    rc, _, err = cli(capsys, "explain", model, DIGIT_3, "--out", "out", "--size", "600")
    assert rc == 0, err
    monkeypatch.delenv("EXPLAINER_MAX_BYTES")
    rc, _, err = cli(capsys, "explain", model, DIGIT_3, "--out", "out", "--size", "20000")
    assert_one_line_error(rc, err, "one image of shape [3, 20000, 20000] needs 4.47 GiB", "limit of 4 GiB")


@pytest.mark.parametrize("height", [10**9, 10**10])
def test_declared_input_dims_over_the_memory_limit(capsys, tmp_path, height):
    model = dynamic_cnn(tmp_path, dims=("N", 3, height, 10))
    rc, _, err = cli(capsys, "explain", model, DIGIT_3, "--out", "out")
    assert_one_line_error(rc, err, f"one image of shape [3, {height}, 10] needs",
                          {10**9: "112 GiB", 10**10: "1.09 TiB"}[height], "limit of 4 GiB")


def test_thin_strip_image_is_refused_before_the_resize(capsys, tmp_path):
    """A 3 KB 3,000,000×1 PNG passes Pillow's bomb check; covering a 32×32 crop would need a 111,000,000×37 image."""
    strip = tmp_path / "strip.png"
    Image.fromarray(np.zeros((1, 3_000_000), np.uint8)).save(strip)
    assert strip.stat().st_size < 10_000
    rc, _, err = explain(capsys, DIGITS, DIGIT_3, strip)
    assert_one_line_error(rc, err, str(strip), "resizing a 3000000x1 image to 111000000x37", "GiB of memory")
    assert files_under(tmp_path / "out") == set()


# ---------------------------------------------------------------------------------------------- images
def _png_bytes() -> bytes:
    return DIGIT_3.read_bytes()


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "empty", "text", "missing"])
def test_bad_image_files(capsys, tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    data = _png_bytes()
    content = {"corrupt": data[:60] + np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes(),
               "truncated": data[: len(data) // 2], "empty": b"", "text": b"hello, I am not a picture\n",
               "missing": None}[kind]
    if content is not None:
        path.write_bytes(content)
    rc, _, err = explain(capsys, DIGITS, DIGIT_3, path)
    assert_one_line_error(rc, err, str(path))
    assert files_under(tmp_path / "out") == set()      # the good image shares the batch: nothing half-written


@pytest.fixture(scope="module")
def digit3_reference(tmp_path_factory):
    """The relevance and target of digit_3.png itself, for comparing other encodings of the same picture."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["explain", str(DIGITS), str(DIGIT_3), "--labels", str(LABELS), "--out", str(out)]) == 0
    with np.load(out / "digit_3.npz") as f:
        return f["relevance"], int(f["target"])


def _explained(capsys, path: Path, stem: str) -> tuple[np.ndarray, int, str]:
    rc, out, err = explain(capsys, DIGITS, path)
    assert rc == 0, err
    with np.load(Path("out") / f"{stem}.npz") as f:
        return f["relevance"], int(f["target"]), out


def test_animated_gif_uses_the_first_frame(capsys, tmp_path, digit3_reference):
    frames = [Image.open(DIGIT_3).convert("L"), Image.open(DIGIT_7).convert("L")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 2
    relevance, target, out = _explained(capsys, path, "anim")
    ref_relevance, ref_target = digit3_reference
    assert ref_target == 3 and target == 3
    assert "3 (class 3)" in out.splitlines()[2]
    np.testing.assert_allclose(relevance, ref_relevance, rtol=1e-5, atol=1e-6 * np.abs(ref_relevance).max())


def test_sixteen_bit_png(capsys, tmp_path, digit3_reference):
    pixels = np.asarray(Image.open(DIGIT_3).convert("L"), dtype=np.uint16) * 257
    path = tmp_path / "deep.png"
    Image.fromarray(pixels).save(path)
    with Image.open(path) as check:
        assert check.mode in ("I;16", "I")
    relevance, target, _ = _explained(capsys, path, "deep")
    ref_relevance, ref_target = digit3_reference
    assert target == ref_target == 3
    np.testing.assert_allclose(relevance, ref_relevance, rtol=1e-5, atol=1e-6 * np.abs(ref_relevance).max())


def test_cmyk_jpeg(capsys, tmp_path, digit3_reference):
    path = tmp_path / "print.jpg"
    Image.open(DIGIT_3).convert("RGB").convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    relevance, target, _ = _explained(capsys, path, "print")
    ref_relevance, _ = digit3_reference
    assert target == 3
    cosine = float((relevance * ref_relevance).sum() / (np.linalg.norm(relevance) * np.linalg.norm(ref_relevance)))
    assert cosine > 0.97   # 0.993 measured: JPEG loses a little, an inverted or garbled image far more


@pytest.mark.parametrize("limit", [100, 700])
def test_decompression_bomb(capsys, tmp_path, monkeypatch, limit):
    """32×32 = 1024 pixels: above 2×100 is Pillow's error, between 700 and 1400 only its warning; both refuse."""
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", limit)
    rc, _, err = explain(capsys, DIGITS, DIGIT_3)
    assert_one_line_error(rc, err, str(DIGIT_3), "decompression-bomb")
    assert files_under(tmp_path / "out") == set()


# ---------------------------------------------------------------------------------------------- output folders
def test_output_folder_is_an_existing_file(capsys, tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    rc, _, err = explain(capsys, DIGITS, DIGIT_3, out=blocker)
    assert_one_line_error(rc, err, str(blocker), "not a folder")
    assert blocker.read_text() == "keep me"


def test_output_folder_under_a_file(capsys, tmp_path):
    blocker = tmp_path / "some_file"
    blocker.write_text("keep me")
    rc, _, err = explain(capsys, DIGITS, DIGIT_3, out=blocker / "sub")
    assert_one_line_error(rc, err, str(blocker / "sub"), "cannot write")
    assert blocker.read_text() == "keep me"


def test_unwritable_output_folder(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        try:
            (locked / "probe").write_bytes(b"")
            (locked / "probe").unlink()
            writable = True        # running as root: permissions do not stop writes
        except PermissionError:
            writable = False
        target = locked if not writable else (tmp_path / "some_file") / "sub"
        if writable:
            (tmp_path / "some_file").write_text("x")
        before = files_under(tmp_path)
        rc, _, err = explain(capsys, DIGITS, DIGIT_3, out=target)
        assert_one_line_error(rc, err, str(target), "cannot write")
        assert files_under(tmp_path) == before
    finally:
        locked.chmod(0o700)


def test_image_names_cannot_escape_the_output_folder(capsys, tmp_path):
    src = tmp_path / "in"
    (src / "x").mkdir(parents=True)
    (src / "sub").mkdir()
    names = {"..evil.png": "evil", "..\\evil.png": "_evil", "...png": "image", "x/ok.png": "ok"}
    for name in names:
        (src / name).write_bytes(_png_bytes())
    args = [src / "..evil.png", src / "..\\evil.png", src / "...png", Path("in/sub/../x/ok.png")]
    out = tmp_path / "deep" / "out"
    before = files_under(tmp_path)
    rc, stdout, err = explain(capsys, DIGITS, *args, out=out)
    assert rc == 0, err
    new = files_under(tmp_path) - before
    assert new and all(out in p.parents for p in new), sorted(map(str, new))
    assert {p.name for p in new} == {pattern.format(stem) for stem in names.values() for pattern in OUTPUTS}
    assert all(p.parent == out for p in new)


def test_same_stem_in_different_folders_does_not_overwrite(capsys, tmp_path):
    """a/digit.png, b/digit.png and c/digit_1.png must give three separate sets of outputs."""
    for folder, name, source in (("a", "digit.png", DIGIT_3), ("b", "digit.png", DIGIT_7),
                                 ("c", "digit_1.png", DIGIT_3)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes(source.read_bytes())
    rc, _, err = explain(capsys, DIGITS, "a/digit.png", "b/digit.png", "c/digit_1.png")
    assert rc == 0, err
    npz = sorted((tmp_path / "out").glob("*.npz"))
    assert len(files_under(tmp_path / "out")) == 9, sorted(p.name for p in files_under(tmp_path / "out"))
    targets = []
    for path in npz:
        with np.load(path) as f:
            targets.append(int(f["target"]))
    assert sorted(targets) == [3, 3, 7]


# ---------------------------------------------------------------------------------------------- --debug and the script
@pytest.mark.parametrize("position", ["before", "after"])
def test_debug_reraises(tmp_path, position):
    command = ["explain", str(tmp_path / "nope.onnx"), str(DIGIT_3)]
    argv = ["--debug", *command] if position == "before" else [command[0], "--debug", *command[1:]]
    with pytest.raises(ModelError, match="no such file"):
        main(argv)


def test_debug_reraises_os_errors(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OSError):
        main(["--debug", "rewrite", str(DIGITS), "--method", "gradient", "-o", str(blocker / "out.onnx")])


def test_installed_console_script(tmp_path):
    script = Path(sys.executable).with_name("explainer")
    assert script.exists(), script
    env = {**os.environ, "EXPLAINER_PROVIDER": "cpu"}
    proc = subprocess.run([str(script), "explain", str(tmp_path / "nope.onnx"), str(DIGIT_3)], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert_one_line_error(proc.returncode, proc.stderr, "nope.onnx", "no such file")


@pytest.mark.parametrize("size", [["--size", "32"], ["--size", "32x48"], ["--size=40,40"]])
def test_size_is_one_argument_and_leaves_the_images_alone(capsys, tmp_path, size):
    """``--size`` before the image paths takes one value (N or HxW), never an image path."""
    model = dynamic_cnn(tmp_path)
    rc, _, err = cli(capsys, "explain", model, *size, DIGIT_3, "--out", "out")
    assert rc == 0, err


def test_bad_size_is_a_one_line_error(capsys, tmp_path):
    rc, _, err = cli(capsys, "explain", dynamic_cnn(tmp_path), DIGIT_3, "--out", "out", "--size", "-5")
    assert rc == 2 and "expected a positive size N or HxW" in err and "Traceback" not in err


def test_evaluate_refuses_a_batch_or_curves_past_the_memory_limit(capsys):
    """--repeats/--batch-size are checked against the memory limit before any explanation is computed."""
    rc, _, err = cli(capsys, "evaluate", DIGITS, DIGIT_3, "--out", "out", "--repeats", "100000", "--batch-size",
                     "100000", "--steps", "100", "--region", "2")
    assert rc == 2 and "--batch-size 100000: one batch of 100000 perturbed images" in err
    assert "EXPLAINER_MAX_BYTES" in err and "Traceback" not in err
