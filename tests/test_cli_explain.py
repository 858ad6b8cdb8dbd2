"""End-to-end tests of ``explainer explain``, run in-process through ``explainer.cli.main``.

The shipped digits CNN (1x32x32 grayscale in [0, 1], 10 classes, trained on unit preprocessing) and its example images
``examples/digit_K.png`` (the file name says which digit it shows) are the fixture; the 3-channel NHWC path uses
``graphs/tf2onnx_small.onnx`` on a random RGB image written to a temporary folder.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from explainer import Explainer
from explainer.api import LowConservationWarning
from explainer.cli import main
from explainer.images.preprocess import load_batch, preprocessing
from explainer.images.spec import InputSpec
from explainer.pictures.heatmaps import heatmap
from tests.support.paths import DIGITS, DIGITS_SPEC, EXAMPLES, LABELS, TF2ONNX, digit_path

SELECTED = (3, 7, 0)          # example digits explained with --sr
PNG_SUFFIXES = ("_heatmap.png", "_overlay.png", "_sr.png", "_sr_overlay.png")
TOP_LINE = re.compile(r"^\s+(\d+)\. (.+) \(class (\d+)\): logit (-?[\d.]+), p ([\d.]+)(  <- explained)?$")


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(["explain", *(str(a) for a in argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def parse_top(stdout: str) -> dict[str, list[tuple[int, str, float, float, bool]]]:
    """``{image path: [(class, name, logit, p, explained), ...]}`` from the printed top-class listing."""
    result: dict[str, list] = {}
    current = None
    for line in stdout.splitlines():
        match = TOP_LINE.match(line)
        if match and current is not None:
            rank, name, cls, logit, prob, mark = match.groups()
            assert int(rank) == len(result[current]) + 1, line
            result[current].append((int(cls), name, float(logit), float(prob), bool(mark)))
        elif line.endswith(":") and not line.startswith(" "):
            current = line[:-1]
            result[current] = []
    return result


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def original_logits(model: Path, x: np.ndarray) -> np.ndarray:
    """Logits of the untouched model file (plain ONNX Runtime), as an independent reference."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    """One `explain --sr` run on three example digits; returns (exit code, stdout, output folder)."""
    out = tmp_path_factory.mktemp("explain_sr")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["explain", str(DIGITS), *[str(digit_path(k)) for k in SELECTED], "--labels", str(LABELS), "--sr",
                     "--out", str(out)])
    return code, stdout.getvalue(), out


def test_explain_sr_writes_every_documented_file(sr_run):
    code, stdout, out = sr_run
    assert code == 0
    expected = set()
    for k in SELECTED:
        stem = f"digit_{k}"
        expected |= {f"{stem}.npz"} | {stem + s for s in PNG_SUFFIXES}
        data = load_npz(out / f"{stem}.npz")
        assert set(data) == {"relevance", "relevance_channels", "relevance_channels_layout", "logits", "target", "sr",
                             "sr_input", "conservation", "seed"}
        assert str(data["sr_input"]) == "|R|, min-max scaled"
        assert str(data["seed"]) == "logit"
        assert np.isfinite(data["conservation"])
        rel, sr = data["relevance"], data["sr"]
        assert rel.shape == (32, 32) and rel.dtype == np.float32
        # the per-channel relevance in the model's layout (C x H x W for this NCHW model) sums to the map
        assert str(data["relevance_channels_layout"]) == "CHW"
        assert data["relevance_channels"].shape == (1, 32, 32) and data["relevance_channels"].dtype == np.float32
        np.testing.assert_allclose(data["relevance_channels"].sum(axis=0), rel, rtol=0, atol=1e-6)
        assert np.all(np.isfinite(rel)) and np.abs(rel).max() > 0
        assert data["logits"].shape == (10,) and np.all(np.isfinite(data["logits"]))
        assert data["target"].shape == () and np.issubdtype(data["target"].dtype, np.integer)
        assert sr.shape == (32, 32) and np.issubdtype(sr.dtype, np.floating)
        assert sr.min() >= 0.0 and sr.max() <= 1.0
        assert sr.max() - sr.min() > 0.1, "SR map is (nearly) constant"
        for suffix in PNG_SUFFIXES:
            with Image.open(out / f"{stem}{suffix}") as im:
                assert im.size == (256, 256), (suffix, im.size)   # 32 x 32 enlarged 8 times by default
                assert im.mode == "RGB", (suffix, im.mode)
                assert np.asarray(im).std() > 0, f"{stem}{suffix} is a flat image"
        # nearest-neighbour enlargement: every 8 x 8 block is one colour, the model-sized heatmap of the .npz map
        with Image.open(out / f"{stem}_heatmap.png") as im:
            big = np.asarray(im)
        np.testing.assert_array_equal(big[::8, ::8], np.asarray(heatmap(rel)))
        np.testing.assert_array_equal(big, np.repeat(np.repeat(big[::8, ::8], 8, axis=0), 8, axis=1))
    written = {p.name for p in out.iterdir()}
    assert expected <= written
    assert not {n for n in written if n.startswith(".explainer")}, "write probe left behind"
    assert f"wrote {len(SELECTED)} explanation(s)" in stdout


def test_explain_top_classes_name_the_right_digit(sr_run):
    code, stdout, out = sr_run
    assert code == 0
    tops = parse_top(stdout)
    assert set(tops) == {str(digit_path(k)) for k in SELECTED}
    for k in SELECTED:
        rows = tops[str(digit_path(k))]
        assert len(rows) == 5                     # --top defaults to 5
        cls, name, logit, prob, explained = rows[0]
        assert cls == k and name == str(k) and explained, rows[0]
        assert prob > 0.5
        assert [r[2] for r in rows] == sorted((r[2] for r in rows), reverse=True)
        assert sum(r[4] for r in rows) == 1       # exactly one line is marked as explained
        data = load_npz(out / f"digit_{k}.npz")
        assert int(data["target"]) == k
        assert int(np.argmax(data["logits"])) == k
        np.testing.assert_allclose(sorted(data["logits"], reverse=True)[:5], [r[2] for r in rows], atol=1e-3)


def test_explain_npz_matches_python_api(sr_run):
    """The CLI relevance is Explainer.explain's relevance summed over channels, for the load_batch input."""
    _, _, out = sr_run
    x, _ = load_batch([digit_path(k) for k in SELECTED], DIGITS_SPEC, preprocessing("unit", channels=1))
    e = Explainer(str(DIGITS), "epsilon-plus-flat", provider="cpu").explain(x)
    for i, k in enumerate(SELECTED):
        data = load_npz(out / f"digit_{k}.npz")
        np.testing.assert_allclose(data["relevance"], e.relevance[i].sum(axis=0), rtol=0, atol=1e-5)
        np.testing.assert_allclose(data["logits"], e.logits[i], rtol=0, atol=1e-5)
        assert int(data["target"]) == int(e.target[i])
    # and the logits are the original model file's on that input (the rewritten graph is not self-referential)
    np.testing.assert_allclose(original_logits(DIGITS, x), e.logits, rtol=0, atol=1e-4)


def test_explain_target_option(tmp_path, capsys):
    base, other = tmp_path / "default", tmp_path / "target8"
    assert run_cli(capsys, [DIGITS, digit_path(3), "--out", base])[0] == 0
    code, stdout, _ = run_cli(capsys, [DIGITS, digit_path(3), "--target", 8, "--labels", LABELS, "--out", other])
    assert code == 0
    a, b = load_npz(base / "digit_3.npz"), load_npz(other / "digit_3.npz")
    assert int(a["target"]) == 3 and int(b["target"]) == 8
    np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-5)      # same image, same forward pass
    diff = np.abs(a["relevance"] - b["relevance"]).max()
    assert diff > 0.05 * np.abs(a["relevance"]).max(), f"--target 8 barely changed the relevance ({diff})"
    rows = parse_top(stdout)[str(digit_path(3))]
    marked = [r for r in rows if r[4]]
    assert len(marked) == 1 and marked[0][0] == 8
    # the API agrees on the explicit target
    x, _ = load_batch([digit_path(3)], DIGITS_SPEC, preprocessing("unit", channels=1))
    e = Explainer(str(DIGITS), provider="cpu").explain(x, target=8)
    np.testing.assert_allclose(b["relevance"], e.relevance[0].sum(axis=0), rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["gradient", "epsilon-gamma-box", "sr-paper"])
def test_explain_method_variants(tmp_path, capsys, method):
    out = tmp_path / method
    code, stdout, _ = run_cli(capsys, [DIGITS, digit_path(7), "--method", method, "--sr", "--out", out])
    assert code == 0
    assert f"method {method}" in stdout
    data = load_npz(out / "digit_7.npz")
    assert data["relevance"].shape == (32, 32) and np.all(np.isfinite(data["relevance"]))
    assert np.abs(data["relevance"]).max() > 0
    assert 0.0 <= data["sr"].min() and data["sr"].max() <= 1.0
    for suffix in PNG_SUFFIXES:
        assert (out / f"digit_7{suffix}").is_file()
    # the CLI's default zB bounds for unit preprocessing are the images of pixel values 0 and 255: 0 and 1
    kwargs = {"low": 0.0, "high": 1.0} if method == "epsilon-gamma-box" else {}
    x, _ = load_batch([digit_path(7)], DIGITS_SPEC, preprocessing("unit", channels=1))
    e = Explainer(str(DIGITS), method, provider="cpu", **kwargs).explain(x)
    np.testing.assert_allclose(data["relevance"], e.relevance[0].sum(axis=0), rtol=0, atol=1e-5)
    # a different method gives a different map for the same image and target
    ref = Explainer(str(DIGITS), "epsilon-plus-flat", provider="cpu").explain(x, target=e.target)
    assert np.abs(data["relevance"] - ref.relevance[0, 0]).max() > 1e-3


def test_explain_folder_expands_to_its_images(tmp_path, capsys):
    out = tmp_path / "all"
    code, stdout, _ = run_cli(capsys, [DIGITS, EXAMPLES, "--labels", LABELS, "--top", 1, "--out", out])
    assert code == 0
    images = sorted(EXAMPLES.glob("*.png"))
    assert len(images) == 10
    assert sorted(p.name for p in out.glob("*.npz")) == sorted(f"{p.stem}.npz" for p in images)
    assert not list(out.glob("*_sr*.png")), "SR maps written without --sr"
    tops = parse_top(stdout)
    assert len(tops) == 10
    for path, rows in tops.items():
        digit = int(re.search(r"digit_(\d)", path).group(1))
        assert len(rows) == 1 and rows[0][0] == digit, (path, rows)


def test_explain_preprocessing_is_applied(tmp_path, capsys):
    unit, raw = tmp_path / "unit", tmp_path / "raw"
    assert run_cli(capsys, [DIGITS, digit_path(2), "--preprocess", "unit", "--out", unit])[0] == 0
    code, stdout, _ = run_cli(capsys, [DIGITS, digit_path(2), "--preprocess", "raw", "--out", raw])
    assert code == 0 and "preprocessing raw" in stdout
    a, b = load_npz(unit / "digit_2.npz"), load_npz(raw / "digit_2.npz")
    assert np.abs(a["logits"] - b["logits"]).max() > 1.0, "--preprocess raw did not change the logits"
    # each run's logits are the original model's on the correspondingly normalised input (raw = 255 x unit)
    xu, _ = load_batch([digit_path(2)], DIGITS_SPEC, preprocessing("unit", channels=1))
    xr, _ = load_batch([digit_path(2)], DIGITS_SPEC, preprocessing("raw", channels=1))
    np.testing.assert_allclose(xr, 255.0 * xu, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(a["logits"], original_logits(DIGITS, xu)[0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(b["logits"], original_logits(DIGITS, xr)[0], rtol=0, atol=1e-3)
    # the model was trained on unit inputs: only that one recognises the digit
    assert int(np.argmax(a["logits"])) == 2


def test_explain_default_preprocessing_is_unit_for_grayscale(tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, [DIGITS, digit_path(5), "--out", tmp_path])
    assert code == 0 and "preprocessing unit" in stdout
    xu, _ = load_batch([digit_path(5)], DIGITS_SPEC, preprocessing("unit", channels=1))
    np.testing.assert_allclose(load_npz(tmp_path / "digit_5.npz")["logits"], original_logits(DIGITS, xu)[0],
                               rtol=0, atol=1e-4)


def test_explain_nhwc_rgb_model(tmp_path, capsys):
    rng = np.random.default_rng(7)
    image = tmp_path / "noise rgb.png"          # a space: output stems must stay safe file names
    Image.fromarray(rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8), "RGB").save(image)
    out = tmp_path / "out"
    code, stdout, _ = run_cli(capsys, [TF2ONNX, image, "--preprocess", "unit", "--sr", "--out", out])
    assert code == 0
    assert "NHWC" in stdout and "preprocessing unit" in stdout
    stem = "noise_rgb"
    data = load_npz(out / f"{stem}.npz")
    assert data["relevance"].shape == (32, 32) and data["relevance"].dtype == np.float32
    assert data["logits"].shape == (10,) and data["sr"].shape == (32, 32)
    assert 0.0 <= data["sr"].min() and data["sr"].max() <= 1.0
    assert str(data["relevance_channels_layout"]) == "HWC" and data["relevance_channels"].shape == (32, 32, 3)
    for suffix in PNG_SUFFIXES:
        with Image.open(out / f"{stem}{suffix}") as im:
            assert im.size == (256, 256), (suffix, im.size)
    spec = InputSpec(layout="NHWC", channels=3, height=32, width=32, name="input_1")
    x, pixels = load_batch([image], spec, preprocessing("unit", channels=3))
    assert x.shape == (1, 32, 32, 3) and pixels.shape == (1, 32, 32, 3)
    e = Explainer(str(TF2ONNX), provider="cpu").explain(x)
    np.testing.assert_allclose(data["relevance"], e.relevance[0].sum(axis=-1), rtol=0, atol=1e-5)
    np.testing.assert_allclose(data["relevance_channels"], e.relevance[0], rtol=0, atol=1e-5)
    assert int(data["target"]) == int(e.target[0])
    # the model file ends in a Softmax; the CLI reports the pre-softmax logits whose softmax it is
    probs = original_logits(TF2ONNX, x)[0]
    z = np.exp(data["logits"] - data["logits"].max())
    np.testing.assert_allclose(z / z.sum(), probs, rtol=0, atol=1e-5)


def test_explain_bad_input_exits_2_with_one_line(tmp_path, capsys):
    not_image = tmp_path / "bad.png"
    not_image.write_text("not a png", encoding="utf-8")
    cases = [
        ([DIGITS, tmp_path / "missing.png"], "missing.png"),
        ([DIGITS, not_image], "bad.png"),
        ([DIGITS, digit_path(1), "--target", 10], "10"),
        ([tmp_path / "missing.onnx", digit_path(1)], "missing.onnx"),
    ]
    for argv, named in cases:
        code, _, stderr = run_cli(capsys, [*argv, "--out", tmp_path / "out"])
        assert code == 2, argv
        assert stderr.startswith("explainer: error:") and len(stderr.strip().splitlines()) == 1, stderr
        assert named in stderr, (argv, stderr)
    assert not list(tmp_path.rglob("*.npz")), "a failed run wrote explanations"


def test_explain_unsupported_model_error_names_the_file(tmp_path, capsys):
    import onnx

    from tests.support.onnx_graphs import G
    g = G(seed=1)
    h = g.node("Sin", [g.conv("x", 1, 2, k=3, pads=[1, 1, 1, 1])])
    out = g.node("Gemm", [g.node("Flatten", [h], axis=1), g.w((10, 2 * 32 * 32)), g.w((10,), 0.1)], transB=1)
    model = tmp_path / "sin_model.onnx"
    onnx.save(g.model(["N", 1, 32, 32], out, opset=17), str(model))
    code, _, stderr = run_cli(capsys, [model, digit_path(1), "--out", tmp_path / "out"])
    assert code == 2 and "Sin" in stderr
    assert str(model) in stderr, stderr


def test_explain_picture_size_and_colorbar(tmp_path, capsys):
    """--picture-size 0 keeps the model's 32 x 32; N enlarges by the whole factor that reaches N; --colorbar adds one
    bar of one size to every picture, so the four still line up, above it the picture without the bar."""
    runs = {"own": ["--picture-size", 0], "plain": ["--picture-size", 100],
            "bar": ["--picture-size", 100, "--colorbar"]}
    pictures = {}
    for name, options in runs.items():
        code, _, stderr = run_cli(capsys, [DIGITS, digit_path(4), "--sr", "--out", tmp_path / name, *options])
        assert code == 0 and stderr == "", stderr
        pictures[name] = {}
        for suffix in PNG_SUFFIXES:
            with Image.open(tmp_path / name / f"digit_4{suffix}") as im:
                pictures[name][suffix] = np.asarray(im.convert("RGB"))
    assert {p.shape for p in pictures["own"].values()} == {(32, 32, 3)}
    assert {p.shape for p in pictures["plain"].values()} == {(128, 128, 3)}      # 4 x 32 is the first >= 100
    shapes = {p.shape for p in pictures["bar"].values()}
    assert len(shapes) == 1 and shapes.pop()[0] > 128 + 20
    for suffix in PNG_SUFFIXES:
        bar, plain = pictures["bar"][suffix], pictures["plain"][suffix]
        left = (bar.shape[1] - 128) // 2
        np.testing.assert_array_equal(bar[:128, left:left + 128], plain)
        np.testing.assert_array_equal(plain[::4, ::4], pictures["own"][suffix])


def test_explain_labels_from_model_metadata(tmp_path, capsys):
    import onnx

    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    model = onnx.load(str(DIGITS))
    onnx.helper.set_model_props(model, {"labels": json.dumps(names)})
    labelled = tmp_path / "labelled.onnx"
    onnx.save(model, str(labelled))
    code, stdout, _ = run_cli(capsys, [labelled, digit_path(3), "--top", 2, "--out", tmp_path / "a"])
    assert code == 0 and "labels: model metadata 'labels'" in stdout
    rows = parse_top(stdout)[str(digit_path(3))]
    assert rows[0][:2] == (3, "three") and rows[1][1] == names[rows[1][0]]
    # --labels wins over the metadata; names that do not fit the classes are not used, and the output says why
    code, stdout, _ = run_cli(capsys, [labelled, digit_path(3), "--labels", LABELS, "--out", tmp_path / "b"])
    assert code == 0 and parse_top(stdout)[str(digit_path(3))][0][1] == "3"
    onnx.helper.set_model_props(model, {"character": "\n".join(names[:9])})
    onnx.save(model, str(labelled))
    code, stdout, _ = run_cli(capsys, [labelled, digit_path(3), "--out", tmp_path / "c"])
    assert code == 0 and "class indices (model metadata 'character' has 9 names for 10 classes)" in stdout
    assert parse_top(stdout)[str(digit_path(3))][0][1] == "3"


def test_explain_channel_order_and_letterbox(tmp_path, capsys):
    """--channel-order bgr with the imagenet preset and --resize letterbox --fill: the model gets the letterboxed
    image (scaled into 32 x 20, 6 rows of fill above and below) in BGR order, normalised with the reversed mean/std."""
    rng = np.random.default_rng(3)
    image = tmp_path / "wide.png"
    rgb = rng.integers(0, 256, size=(40, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(image)
    code, stdout, _ = run_cli(capsys, [TF2ONNX, image, "--preprocess", "imagenet", "--channel-order", "bgr",
                                       "--resize", "letterbox", "--fill", 114, 0, 255, "--out", tmp_path / "out"])
    assert code == 0
    assert "BGR channel order" in stdout and "resize letterbox" in stdout
    boxed = np.empty((32, 32, 3), np.uint8)
    boxed[...] = (114, 0, 255)
    boxed[6:26] = np.asarray(Image.fromarray(rgb).resize((32, 20), Image.Resampling.BILINEAR))
    bgr = boxed[..., ::-1].astype(np.float64) / 255
    x = ((bgr - [0.406, 0.456, 0.485]) / [0.225, 0.224, 0.229]).astype(np.float32)[None]
    probs = original_logits(TF2ONNX, x)[0]
    logits = load_npz(tmp_path / "out" / "wide.npz")["logits"]
    z = np.exp(logits - logits.max())
    np.testing.assert_allclose(z / z.sum(), probs, rtol=0, atol=1e-5)
    # a wrong order or fit gives other numbers: the options are not ignored
    code, _, _ = run_cli(capsys, [TF2ONNX, image, "--preprocess", "imagenet", "--out", tmp_path / "plain"])
    assert code == 0
    assert np.abs(load_npz(tmp_path / "plain" / "wide.npz")["logits"] - logits).max() > 1e-3


def biased_model(path: Path) -> Path:
    """A digits-sized model whose first conv adds a bias of 50 to every output: LRP rules that give the bias its
    share (ε, z+) bring about 1 % of the logit to the input; flat and zB, which leave the bias out, all of it."""
    import onnx

    from tests.support.onnx_graphs import G
    g = G(seed=3)
    conv = g.node("Conv", ["x", g.w((4, 1, 3, 3)), g.w((4,), value=np.full(4, 50.0))], kernel_shape=[3, 3],
                  pads=[1, 1, 1, 1])
    flat = g.node("Flatten", [g.node("Relu", [conv])], axis=1)
    out = g.node("Gemm", [flat, g.w((10, 4 * 32 * 32), 0.01), g.w((10,), value=np.zeros(10))], transB=1)
    onnx.save(g.model(["N", 1, 32, 32], out, opset=17), str(path))
    return path


def test_explain_warns_when_biases_absorb_the_relevance(tmp_path, capsys):
    model = biased_model(tmp_path / "biased.onnx")
    code, stdout, stderr = run_cli(capsys, [model, digit_path(3), digit_path(7), "--method", "lrp-epsilon",
                                            "--out", tmp_path / "eps"])
    assert code == 0
    lines = stderr.strip().splitlines()
    assert all(line.startswith("explainer: warning: ") for line in lines), stderr
    named = [line for line in lines if "of the explained logit reaches the input under method 'lrp-epsilon'" in line]
    assert [str(digit_path(3)) in named[0], str(digit_path(7)) in named[1]] == [True, True], stderr
    advice = [line for line in lines if "try --method" in line]
    assert len(advice) == 1 and advice[0].endswith("try --method epsilon-plus-flat"), stderr
    assert "epsilon-gamma-box 10" in advice[0] and "epsilon-plus 1." not in advice[0], advice  # both conserve
    for k in (3, 7):
        assert abs(float(load_npz(tmp_path / "eps" / f"digit_{k}.npz")["conservation"])) < 0.05
    # the method it names keeps all of it, and warns of nothing
    code, stdout, stderr = run_cli(capsys, [model, digit_path(3), "--method", "epsilon-plus-flat",
                                            "--out", tmp_path / "flat"])
    assert code == 0 and stderr == ""
    assert abs(float(load_npz(tmp_path / "flat" / "digit_3.npz")["conservation"]) - 1.0) < 1e-3


def test_api_warns_of_vanished_relevance_once_measured(tmp_path, monkeypatch):
    """The API's LowConservationWarning names the samples and the better methods; the alternatives are measured once
    per explainer; the shipped digits CNN explains without it."""
    x, _ = load_batch([digit_path(k) for k in (3, 7)], DIGITS_SPEC, preprocessing("unit", channels=1))
    ex = Explainer(str(biased_model(tmp_path / "biased.onnx")), "epsilon-plus", provider="cpu", low=0.0, high=1.0)
    made = []
    original = ex.with_method
    monkeypatch.setattr(ex, "with_method", lambda method, **kw: made.append(method) or original(method, **kw))
    with pytest.warns(LowConservationWarning) as caught:
        e = ex.explain(x)
    warning = caught[0].message
    assert list(warning.samples) == [0, 1] and np.allclose(warning.conservation, e.conservation, atol=0)
    assert np.all(np.abs(e.conservation) < 0.05)
    assert made == ["epsilon-plus-flat", "epsilon-gamma-box", "lrp-epsilon"]
    assert abs(warning.alternatives["epsilon-plus-flat"] - 1.0) < 1e-3
    assert abs(warning.alternatives["lrp-epsilon"]) < 0.05
    assert warning.better == ["epsilon-plus-flat", "epsilon-gamma-box"]
    assert "try 'epsilon-plus-flat'" in str(warning)
    with pytest.warns(LowConservationWarning):
        ex.explain(x[:1])
    assert len(made) == 3, "alternatives measured again"
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowConservationWarning)
        Explainer(str(DIGITS), provider="cpu").explain(x)


def test_seed_mode_is_recorded(capsys, tmp_path):
    code, stdout, _ = run_cli(capsys, [DIGITS, digit_path(3), "--seed-mode", "one-hot", "--out", tmp_path])
    assert code == 0 and "seed one-hot" in stdout.splitlines()[0]
    with np.load(tmp_path / "digit_3.npz") as d:
        assert str(d["seed"]) == "one-hot"
