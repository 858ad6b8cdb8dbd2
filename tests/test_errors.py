"""Every way a user can hand the Python API a bad model or a bad input ends in an ``ExplainerError`` subclass whose
message names the culprit (file, tensor, node, op, value), never in a protobuf/ONNX Runtime/NumPy exception."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from explainer import Explainer, ExplainerError, InputError, ModelError, UnsupportedOpError
from explainer.frontend.check import check_model
from explainer.onnx_io import load_model
from tests.support.bad_models import (
    feature_map_model,
    no_input_model,
    small_cnn,
    two_input_model,
    unsupported_model,
    with_external_weight,
    x_for,
)
from tests.support.onnx_graphs import G, run

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "graphs" / "digits_cnn.onnx"


# ---------------------------------------------------------------------------------------------- unreadable files
def test_missing_model_file_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(ModelError, match="no such file") as info:
        Explainer(missing)
    assert str(missing) in str(info.value)


def test_directory_and_empty_file_are_refused(tmp_path):
    with pytest.raises(ModelError, match="directory"):
        Explainer(tmp_path)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty") as info:
        Explainer(empty)
    assert str(empty) in str(info.value)


def test_random_bytes_are_not_a_model(tmp_path):
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelError) as info:
        Explainer(path)
    assert str(path) in str(info.value)
    assert type(info.value) is ModelError
    with pytest.raises(ModelError, match="<bytes>"):
        Explainer(path.read_bytes())


def test_truncated_model_is_refused(tmp_path):
    data = DIGITS.read_bytes()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="not a valid ONNX model") as info:
        Explainer(path)
    assert str(path) in str(info.value)
    with pytest.raises(ModelError):
        check_model(path)


# ---------------------------------------------------------------------------------------------- malformed models
def test_model_without_inputs():
    with pytest.raises(ModelError, match="no inputs"):
        Explainer(no_input_model())
    report = check_model(no_input_model())
    assert not report.ok and "no inputs" in report.error


def test_model_with_two_image_inputs_names_both():
    with pytest.raises(InputError, match="2 inputs") as info:
        Explainer(two_input_model())
    assert "'image_a'" in str(info.value) and "'image_b'" in str(info.value)
    assert not isinstance(info.value, UnsupportedOpError)


def test_unsupported_ops_are_listed_all_at_once_with_node_names():
    model, bad = unsupported_model()
    with pytest.raises(UnsupportedOpError) as info:
        Explainer(model)
    assert sorted(info.value.nodes) == sorted(bad)
    message = str(info.value)
    for name, op in bad:
        assert f"{op} (node '{name}')" in message
    assert "Conv" not in message and "Gemm" not in message
    report = check_model(model)
    assert not report.ok
    status = {op: s for op, _, s in report.ops}
    assert status["Atan"].startswith("UNSUPPORTED") and status["Abs"].startswith("UNSUPPORTED")
    assert status["Conv"] == "supported" and status["Gemm"] == "supported"


def test_unsupported_op_error_takes_the_reasons_in_its_constructor():
    err = UnsupportedOpError([("d", "Div"), ("e", "Atan")], "m.onnx", reasons={"d": "division of a constant by data"})
    assert err.nodes == [("d", "Div"), ("e", "Atan")] and err.reasons == {"d": "division of a constant by data"}
    assert str(err) == ("m.onnx: unsupported op(s): Div ×1, Atan ×1 (2 nodes); "
                        "Div (node 'd'): division of a constant by data; Atan (node 'e')")
    assert err.by_op == {"Div": ["d"], "Atan": ["e"]}
    assert UnsupportedOpError([("e", "Atan")]).reasons == {}


def test_a_converter_reason_reaches_the_error_and_the_check_report():
    g = G()
    pads = g.w((8,), value=[0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)
    p = g.node("Pad", [g.conv("x", 3, 4), pads], mode="reflect")
    model = g.model(["N", 3, 8, 8], g.node("Gemm", [g.node("Flatten", [p]), g.w((4 * 8 * 8, 5))]))
    with pytest.raises(UnsupportedOpError) as info:
        Explainer(model)
    [(name, op)] = info.value.nodes
    assert op == "Pad" and "reflect" in info.value.reasons[name] and info.value.reasons[name] in str(info.value)
    status = {op: s for op, _, s in check_model(model).ops}
    assert status["Pad"] == f"UNSUPPORTED: {info.value.reasons[name]} (node '{name}')"


def test_dense_output_is_explained_value_by_value():
    ex = Explainer(feature_map_model(), "gradient")
    assert ex.output_shape == (4, 6, 6) and ex.num_classes == 144


# ---------------------------------------------------------------------------------------------- external data
@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    return folder


def test_external_data_inside_the_folder_is_read(model_dir):
    """The control for the refusals below: a legitimate external weight file next to the model loads."""
    model, name, data = with_external_weight(small_cnn(), "weights/w.bin")
    (model_dir / "weights").mkdir()
    (model_dir / "weights" / "w.bin").write_bytes(data)
    path = model_dir / "m.onnx"
    path.write_bytes(model.SerializeToString())
    x = x_for()
    np.testing.assert_allclose(Explainer(path, "gradient").forward(x), run(small_cnn(), x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["parent", "absolute", "dotdot-inside-path", "symlink"])
def test_external_data_outside_the_folder_is_refused(model_dir, kind):
    secret = model_dir.parent / "secret.bin"
    location = {"parent": "../secret.bin", "absolute": str(secret),
                "dotdot-inside-path": "weights/../../secret.bin", "symlink": "link.bin"}[kind]
    model, name, data = with_external_weight(small_cnn(), location)
    secret.write_bytes(data)          # the file exists and holds valid data: only its place is wrong
    (model_dir / "weights").mkdir()
    if kind == "symlink":
        os.symlink(secret, model_dir / "link.bin")
    path = model_dir / "m.onnx"
    path.write_bytes(model.SerializeToString())
    for load in (Explainer, load_model, check_model):
        with pytest.raises(ModelError, match="outside the model's folder") as info:
            load(path)
        message = str(info.value)
        assert f"'{name}'" in message and f"'{location}'" in message and str(path) in message


@pytest.mark.parametrize("kind", ["nul-byte", "symlink-loop", "name-too-long"])
def test_malformed_external_locations_are_model_errors(model_dir, kind):
    """A hostile or broken location must end in a ModelError naming the tensor, not in ValueError (embedded null
    byte), RuntimeError (symlink loop) or OSError (file name too long) from pathlib."""
    location = {"nul-byte": "w\x00.bin", "symlink-loop": "loop.bin", "name-too-long": "a" * 5000}[kind]
    if kind == "symlink-loop":
        os.symlink("loop.bin", model_dir / "loop.bin")
    model, name, _ = with_external_weight(small_cnn(), location)
    path = model_dir / "m.onnx"
    path.write_bytes(model.SerializeToString())
    for load in (Explainer, check_model):
        with pytest.raises(ModelError) as info:
            load(path)
        assert f"'{name}'" in str(info.value) and str(path) in str(info.value)


def test_missing_external_data_file_is_named(model_dir):
    model, name, _ = with_external_weight(small_cnn(), "w.bin")
    path = model_dir / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match="does not exist") as info:
        Explainer(path)
    assert f"'{name}'" in str(info.value) and "'w.bin'" in str(info.value)


# ---------------------------------------------------------------------------------------------- bad inputs
@pytest.fixture(scope="module")
def digits():
    return Explainer(DIGITS, "epsilon-plus-flat")


def _digit_batch(n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, (n, 1, 32, 32)).astype(np.float32)


@pytest.mark.parametrize("target", [99, 10, -1, [3, 99]])
def test_target_out_of_range(digits, target):
    with pytest.raises(InputError, match="out of range") as info:
        digits.explain(_digit_batch(), target)
    bad = target[1] if isinstance(target, list) else target
    assert f"target index {bad}" in str(info.value) and "10 classes" in str(info.value)


def test_zero_images(digits):
    empty = np.zeros((0, 1, 32, 32), np.float32)
    for call in (digits.explain, digits.forward):
        with pytest.raises(InputError, match="empty"):
            call(empty)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_input(digits, value):
    x = _digit_batch()
    x[1, 0, 5, 7] = value
    for call in (digits.explain, digits.forward):
        with pytest.raises(InputError, match="NaN or Inf"):
            call(x)
    x64 = x.astype(np.float64)
    with pytest.raises(InputError, match="NaN or Inf"):
        digits.explain(x64)


@pytest.mark.parametrize("x, fragment", [
    (np.zeros((2, 3, 32, 32), np.float32), "does not match"),
    (np.zeros((2, 32, 32, 1), np.float32), "does not match"),
    (np.array([["a"]]), "numeric"),
])
def test_wrong_shape_or_dtype(digits, x, fragment):
    with pytest.raises(InputError, match=fragment):
        digits.explain(x)


def test_valid_input_still_works_after_errors(digits):
    """Errors must not leave the explainer in a broken state."""
    x = _digit_batch(3)
    with pytest.raises(InputError):
        digits.explain(x, 99)
    e = digits.explain(x)
    assert e.relevance.shape == x.shape and np.all(np.isfinite(e.relevance))
    np.testing.assert_array_equal(e.target, np.argmax(digits.forward(x), axis=1))


def test_bad_method_and_missing_bounds_are_input_errors():
    with pytest.raises(InputError, match="unknown method 'lrp-42'"):
        Explainer(small_cnn(), "lrp-42")
    with pytest.raises(InputError, match="low and high"):
        Explainer(small_cnn(), "epsilon-gamma-box")


def test_all_errors_share_the_base_class():
    for cls in (ModelError, UnsupportedOpError, InputError):
        assert issubclass(cls, ExplainerError)
