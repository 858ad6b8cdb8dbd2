"""Hostile and broken models, and careless calls of the Python API (issue 15): each ends in one ``ExplainerError``
whose message names the culprit, before anything is read from outside the model's folder, allocated at a declared
size, or written over the model.

Classes of defect covered: external data of models given as bytes or a ModelProto (read from the working folder),
tensor data shorter than its declared shape, non-ExplainerError exceptions from the API (a table of bad calls),
custom-domain ops and model-local functions, non-finite weights, composite parameters given as data, complex input,
relevance that vanishes, invalid declared dims, and declared sizes past the memory limit.
"""
from __future__ import annotations

import errno
import os
import tracemalloc
from collections.abc import Callable

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from explainer import Composite, Explainer, ExplainerError, InputError, ModelError, UnsupportedOpError
from explainer.frontend.check import check_model
from explainer.lrp.composites import kind
from explainer.lrp.rules import Epsilon
from explainer.onnx_io import load_model
from tests.support.bad_models import small_cnn, with_external_weight, x_for
from tests.support.onnx_graphs import G, run


@pytest.fixture(autouse=True)
def default_memory_limit(monkeypatch):
    monkeypatch.delenv("EXPLAINER_MAX_BYTES", raising=False)


@pytest.fixture(scope="module")
def cnn() -> Explainer:
    return Explainer(small_cnn(), "epsilon-plus", provider="cpu")


def _one_line(exc: BaseException, *fragments: str) -> str:
    message = str(exc)
    assert "\n" not in message and "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# ---------------------------------------------------------------------------------------------- item 2: external data
@pytest.mark.parametrize("form", ["bytes", "proto", "check"])
@pytest.mark.parametrize("location", ["secret.bin", "/etc/hostname"])
def test_external_data_of_bytes_or_a_proto_is_never_read_from_the_working_folder(tmp_path, monkeypatch, form,
                                                                                location):
    """Regression: ``location: secret.bin`` in a model given as bytes or a ModelProto loaded ./secret.bin (the working
    folder) into the weights; an absolute location ended in onnx's ValidationError."""
    model, name, data = with_external_weight(small_cnn(), location)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(data)          # valid data where the old code looked for it
    load = {"bytes": lambda: Explainer(model.SerializeToString()), "proto": lambda: Explainer(model),
            "check": lambda: check_model(model)}[form]
    with pytest.raises(ModelError) as info:
        load()
    _one_line(info.value, f"'{name}'", repr(location), "base_dir")


def test_base_dir_reads_external_data_inside_it_and_leaves_the_proto_unchanged(tmp_path):
    model, name, data = with_external_weight(small_cnn(), "weights/w.bin")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "w.bin").write_bytes(data)
    before = model.SerializeToString()
    x = x_for()
    for given in (model, before):
        ex = Explainer(given, "gradient", provider="cpu", base_dir=tmp_path)
        np.testing.assert_allclose(ex.forward(x), run(small_cnn(), x), rtol=1e-5, atol=1e-5)
    assert model.SerializeToString() == before, "loading the external data changed the caller's ModelProto"
    with pytest.raises(InputError, match="not a folder"):
        Explainer(model, base_dir=tmp_path / "weights" / "w.bin")


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/hostname", "weights/../../secret.bin"])
def test_base_dir_applies_the_same_containment_check_as_a_model_file(tmp_path, location):
    folder = tmp_path / "model"
    (folder / "weights").mkdir(parents=True)
    model, name, data = with_external_weight(small_cnn(), location)
    (tmp_path / "secret.bin").write_bytes(data)
    with pytest.raises(ModelError) as info:
        Explainer(model, base_dir=folder)
    _one_line(info.value, f"'{name}'", f"'{location}'", "outside the model's folder")


@pytest.mark.parametrize("case", ["short-file", "length-mismatch", "offset-past-end"])
def test_external_data_that_does_not_fill_the_declared_shape_is_refused_before_reading(tmp_path, case):
    model, name, data = with_external_weight(small_cnn(), "w.bin")
    tensor = model.graph.initializer[0]
    info = {e.key: e for e in tensor.external_data}
    if case == "short-file":
        data = data[:-4]
    elif case == "length-mismatch":
        info["length"].value = str(len(data) - 4)
    else:
        info["offset"].value = str(len(data) + 100)
    (tmp_path / "w.bin").write_bytes(data)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    for load in (Explainer, load_model, check_model):
        with pytest.raises(ModelError) as exc:
            load(path)
        _one_line(exc.value, str(path), f"'{name}'", str(list(tensor.dims)), "432 bytes")


def test_external_data_is_read_only_as_far_as_the_tensor_declares(tmp_path):
    """Regression: without a length field the whole file was read (a weight file shared by tensors, a large file)
    and the tensor then failed to reshape."""
    model, name, data = with_external_weight(small_cnn(), "w.bin")
    tensor = model.graph.initializer[0]
    kept = [e for e in tensor.external_data if e.key != "length"]
    del tensor.external_data[:]
    tensor.external_data.extend(kept)
    (tmp_path / "w.bin").write_bytes(data + b"\x00" * 4096)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    x = x_for()
    np.testing.assert_allclose(Explainer(path, "gradient", provider="cpu").forward(x), run(small_cnn(), x),
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- item 10: short data
def _short_raw(model: onnx.ModelProto) -> str:
    tensor = model.graph.initializer[0]
    tensor.raw_data = tensor.raw_data[:10]
    return "10 bytes"


def _ten_gigabytes(model: onnx.ModelProto) -> str:
    tensor = model.graph.initializer[0]
    del tensor.dims[:]
    tensor.dims.extend([50_000, 50_000])
    tensor.raw_data = b"\x00" * 4
    return "4 bytes"


def _short_typed(model: onnx.ModelProto) -> str:
    tensor = model.graph.initializer[0]
    values = numpy_helper.to_array(tensor).ravel()[:5]
    tensor.ClearField("raw_data")
    tensor.float_data.extend(values.tolist())
    return "5 stored values"


def _short_constant(model: onnx.ModelProto) -> str:
    """The Gemm bias as a Constant node whose value declares 5 floats and holds 3."""
    value = numpy_helper.from_array(np.ones(5, np.float32), "bias")
    value.raw_data = value.raw_data[:12]
    gemm = model.graph.node[-1]
    model.graph.node.insert(0, helper.make_node("Constant", [], ["bias"], name="bias_const", value=value))
    gemm.input.append("bias")
    return "12 bytes"


@pytest.mark.parametrize("damage", [_short_raw, _ten_gigabytes, _short_typed, _short_constant])
def test_tensor_data_shorter_than_its_declared_shape_is_a_model_error(damage):
    """Regression: ``ValueError: cannot reshape`` (or buffer size) tracebacks. The message names the tensor, its
    declared shape and the data present, and nothing of the declared size (10 GB) is allocated."""
    model = small_cnn()
    present = damage(model)
    tracemalloc.start()
    try:
        with pytest.raises(ModelError) as info:
            Explainer(model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20
    tensor_name = "bias" if damage is _short_constant else model.graph.initializer[0].name
    shape = [5] if damage is _short_constant else list(model.graph.initializer[0].dims)
    _one_line(info.value, f"'{tensor_name}'", f"shape {shape}", present)
    report = check_model(model)
    assert not report.ok and f"'{tensor_name}'" in report.error


# ---------------------------------------------------------------------------------------------- item 13: bad calls
def _saved_onto_its_source(tmp_path, cnn):
    path = tmp_path / "m.onnx"
    onnx.save(small_cnn(), str(path))
    Explainer(path, "gradient", provider="cpu").save(path)


def _saved_under_a_file(tmp_path, cnn):
    (tmp_path / "file").write_text("not a folder")
    cnn.save(tmp_path / "file" / "relevance.onnx")


def _raising_predicate(layer):
    raise KeyError("no such layer")


#: (call, expected error class, fragments of the message); each call gets the tmp_path and the small explainer
BAD_CALLS: list[tuple[str, Callable, type, tuple[str, ...]]] = [
    ("model None", lambda t, e: Explainer(None), InputError, ("NoneType",)),
    ("model int", lambda t, e: Explainer(3), InputError, ("int",)),
    ("model list", lambda t, e: Explainer([small_cnn()]), InputError, ("list",)),
    ("model empty path", lambda t, e: Explainer(""), InputError, ("empty",)),
    ("model NUL path", lambda t, e: Explainer("m\x00.onnx"), ModelError, ("m\x00.onnx",)),
    ("model /dev/zero", lambda t, e: Explainer("/dev/zero"), ModelError, ("/dev/zero",)),
    ("base_dir with a path", lambda t, e: Explainer(t / "m.onnx", base_dir=t), InputError, ("base_dir",)),
    ("bad regex", lambda t, e: e.with_method({"name:(": "epsilon"}), InputError, ("'('",)),
    ("pairs not pairs", lambda t, e: e.with_method([1, 2]), InputError, ("entry 1",)),
    ("pairs as string", lambda t, e: e.with_method([(kind("conv"), "zplus"), "dense"]), InputError, ("'dense'",)),
    ("rule name in a Composite", lambda t, e: Composite("c", [(kind("conv"), "zplus")]), InputError, ("'zplus'",)),
    ("predicate raises", lambda t, e: e.with_method(Composite("c", [(_raising_predicate, Epsilon())])), InputError,
     ("predicate", "KeyError")),
    ("provider int", lambda t, e: Explainer(small_cnn(), provider=3), InputError, ("provider",)),
    ("source int", lambda t, e: Explainer(small_cnn(), source=3), InputError, ("source",)),
    ("input_shape negative", lambda t, e: Explainer(small_cnn(), input_shape=(3, -8, 8)), InputError,
     ("input_shape", "-8")),
    ("input_shape text", lambda t, e: Explainer(small_cnn(), input_shape="3x8x8"), InputError, ("input_shape",)),
    ("batch_size negative", lambda t, e: e.explain(x_for(), batch_size=-1), InputError, ("batch_size", "-1")),
    ("batch_size float", lambda t, e: e.forward(x_for(), batch_size=1.5), InputError, ("batch_size", "1.5")),
    ("ragged input", lambda t, e: e.explain([[1.0, 2.0], [3.0]]), InputError, ("not an array",)),
    ("complex input", lambda t, e: e.explain(x_for() + 1j), InputError, ("complex",)),
    ("bool input", lambda t, e: e.forward(x_for() > 0), InputError, ("bool",)),
    ("timedelta input", lambda t, e: e.forward(np.zeros((1, 3, 8, 8), "m8[s]")), InputError, ("timedelta",)),
    ("float64 past float32", lambda t, e: e.forward(np.full((1, 3, 8, 8), 1e300)), InputError, ("float32",)),
    ("save None", lambda t, e: e.save(None), InputError, ("NoneType",)),
    ("save empty", lambda t, e: e.save(""), InputError, ("''",)),
    ("save to a folder", lambda t, e: e.save(t), InputError, (str(os.sep), "folder")),
    ("save under a file", _saved_under_a_file, OSError, ("relevance.onnx",)),
    ("save onto its source", _saved_onto_its_source, InputError, ("m.onnx", "made from")),
]


@pytest.mark.parametrize("call, error, fragments", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_every_bad_call_is_an_explainer_error_naming_the_culprit(tmp_path, cnn, call, error, fragments):
    """Regression: TypeError (None, 3), re.error, AttributeError (provider=3), ValueError (ragged input, a negative
    batch_size), IsADirectoryError (save to a folder) and silent acceptance (complex input) escaped the API."""
    onnx.save(small_cnn(), str(tmp_path / "m.onnx"))
    with pytest.raises(ExplainerError) as info:
        call(tmp_path, cnn)
    assert isinstance(info.value, error)
    _one_line(info.value, *fragments)


def test_a_failed_save_leaves_nothing_and_names_the_path(tmp_path, cnn, monkeypatch):
    """A write error (a full disk) is an OutputError (an ExplainerError and an OSError) naming the file; no partial
    file and no folder made for it remain."""
    from explainer.errors import OutputError

    def full_disk(model, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", full_disk)
    target = tmp_path / "new" / "deeper" / "relevance.onnx"
    with pytest.raises(OutputError) as info:
        cnn.save(target)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    _one_line(info.value, str(target), "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_save_replaces_a_planted_symlink_without_writing_through_it(tmp_path, cnn):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "relevance.onnx"
    link.symlink_to(victim)
    cnn.save(link)
    assert victim.read_text() == "keep me"
    assert not link.is_symlink() and onnx.load(str(link)).graph.output[1].name == "relevance"


# ---------------------------------------------------------------------------------------------- item 14: foreign ops
def _with_call(op: str, domain: str, functions: list[onnx.FunctionProto] = ()) -> onnx.ModelProto:
    """Conv -> ``domain.op`` -> Flatten -> Gemm."""
    g = G()
    c = g.conv("x", 3, 4, pads=[1, 1, 1, 1])
    r = g.node(op, [c])
    g.nodes[-1].domain = domain
    out = g.node("Gemm", [g.node("Flatten", [r], axis=1), g.w((5, 4 * 8 * 8))], transB=1)
    model = g.model(["N", 3, 8, 8], out)
    model.opset_import.append(helper.make_opsetid(domain, 1))
    model.functions.extend(functions)
    return model


def _function(name: str, body: list[onnx.NodeProto], extra: tuple = ()) -> onnx.FunctionProto:
    return helper.make_function("custom", name, ["x"], ["y"], body, [helper.make_opsetid("", 14), *extra])


def test_a_custom_domain_op_is_reported_by_op_and_node_not_by_onnx_runtime():
    """Regression: ONNX Runtime's "com.acme:Relu(-1) is not a registered function/op" instead of our message."""
    model = _with_call("Relu", "com.acme")
    node = model.graph.node[1].name
    with pytest.raises(UnsupportedOpError) as info:
        Explainer(model)
    assert info.value.nodes == [(node, "com.acme.Relu")]
    assert "ONNX Runtime" not in _one_line(info.value, f"com.acme.Relu (node '{node}')")
    status = {op: s for op, _, s in check_model(model).ops}
    assert status["com.acme.Relu"].startswith("UNSUPPORTED") and node in status["com.acme.Relu"]


def test_model_local_functions_of_supported_ops_are_inlined_and_explained():
    """A function calling a function, both made of supported ops, explains like the same model written out."""
    inner = _function("Inner", [helper.make_node("Relu", ["x"], ["y"])])
    outer = _function("Outer", [helper.make_node("Inner", ["x"], ["t"], domain="custom"),
                                helper.make_node("Identity", ["t"], ["y"])], (helper.make_opsetid("custom", 1),))
    model = _with_call("Outer", "custom", [inner, outer])
    plain = _with_call("Relu", "")
    del plain.opset_import[1:]
    x = x_for()
    ex = Explainer(model, "epsilon-plus", provider="cpu")
    np.testing.assert_allclose(ex.forward(x), run(model, x), rtol=1e-5, atol=1e-5)
    reference = Explainer(plain, "epsilon-plus", provider="cpu").explain(x, 2).relevance
    np.testing.assert_allclose(ex.explain(x, 2).relevance, reference, rtol=1e-5, atol=1e-7)
    assert "inlined model-local functions: custom.Outer×1" in ex.changes
    report = check_model(model)
    assert report.ok and dict((op, s) for op, _, s in report.ops)["custom.Outer"] == "model-local function (inlined)"


def test_a_model_local_function_with_an_unsupported_op_names_the_op_and_its_function():
    model = _with_call("MyAtan", "custom", [_function("MyAtan", [helper.make_node("Atan", ["x"], ["y"])])])
    with pytest.raises(UnsupportedOpError) as info:
        Explainer(model)
    [(node, op)] = info.value.nodes
    assert op == "Atan" and node.startswith("custom.MyAtan/")
    _one_line(info.value, f"Atan (node '{node}')")
    report = check_model(model)
    status = {op: s for op, _, s in report.ops}
    assert not report.ok and status["Atan"].startswith("UNSUPPORTED") and "custom.MyAtan" in status["Atan"]


# ---------------------------------------------------------------------------------------------- item 15: NaN weights
@pytest.mark.parametrize("value, counts", [(np.nan, "2 NaN and 0 Inf"), (np.inf, "0 NaN and 2 Inf")])
def test_non_finite_weights_are_named_at_canonicalisation(value, counts):
    """Regression: ``check`` said "can be explained" and ``explain`` blamed the method."""
    model = small_cnn()
    tensor = model.graph.initializer[0]
    weights = numpy_helper.to_array(tensor).copy()
    weights.flat[[3, 7]] = value
    tensor.CopyFrom(numpy_helper.from_array(weights, tensor.name))
    with pytest.raises(ModelError) as info:
        Explainer(model)
    _one_line(info.value, f"'{tensor.name}' has {counts} of its {weights.size} values", "not finite")
    report = check_model(model)
    assert not report.ok and f"'{tensor.name}'" in report.error


def test_infinite_bounds_are_not_broken_weights_and_derived_non_finite_values_are_named():
    """Clip(0, +Inf) is a ReLU (the control); a BatchNormalization variance below zero (NaN scores) and weights whose
    products overflow float32 (Inf scores) are refused at canonicalisation rather than blamed on a method."""
    g = G()
    clip = g.node("Clip", [g.conv("x", 3, 4, pads=[1, 1, 1, 1]), g.w((), value=0.0), g.w((), value=np.inf)])
    model = g.model(["N", 3, 8, 8], g.node("Gemm", [g.node("Flatten", [clip]), g.w((5, 256))], transB=1))
    x = x_for()
    np.testing.assert_allclose(Explainer(model, provider="cpu").forward(x), run(model, x), rtol=1e-5, atol=1e-5)
    g = G()
    ones, zeros = np.ones(4), np.zeros(4)
    bn = g.node("BatchNormalization", [g.conv("x", 3, 4), g.w((4,), value=ones), g.w((4,), value=zeros),
                                       g.w((4,), value=zeros), g.w((4,), value=-ones)])
    model = g.model(["N", 3, 8, 8], g.node("Gemm", [g.node("Flatten", [bn]), g.w((5, 144))], transB=1))
    with pytest.raises(ModelError) as info:
        Explainer(model)
    _one_line(info.value, "BatchNormalization", "variance + epsilon is not positive in 4 of 4 channels")
    g = G()
    r = g.node("Relu", [g.conv("x", 3, 4, pads=[1, 1, 1, 1])])
    model = g.model(["N", 3, 8, 8], g.node("Gemm", [g.node("Flatten", [r]), g.w((5, 256), value=np.full((5, 256),
                                                                                                     3e38))], transB=1))
    with pytest.raises(ModelError) as info:
        Explainer(model)
    _one_line(info.value, "scores for a standard-normal test input are not finite")


# ---------------------------------------------------------------------------------------------- item 16
@pytest.mark.parametrize("spec, parameter", [
    ({"dense": {"rule": "epsilon", "epsilon": -1}}, "epsilon"),
    ({"dense": {"rule": "epsilon", "epsilon": float("nan")}}, "epsilon"),
    ({"dense": {"rule": "epsilon", "epsilon": 1e39}}, "epsilon"),
    ({"conv": {"rule": "zplus", "stabiliser": 0}}, "stabiliser"),
    ({"first": {"rule": "flat", "stabiliser": 0.0}}, "stabiliser"),
    ({"add": {"rule": "norm", "stabiliser": 0}}, "stabiliser"),
    ({"conv": {"rule": "gamma", "gamma": float("inf")}}, "gamma"),
    ({"conv": {"rule": "alpha-beta", "alpha": float("nan"), "beta": 1.0}}, "alpha"),
    ({"conv": {"rule": "zplus", "stabiliser": True}}, "stabiliser"),
    ({"dense": {"rule": "epsilon", "bias": "no"}}, "bias"),
])
def test_composite_parameters_given_as_data_are_validated(cnn, spec, parameter):
    """Regression: a spec's ε < 0, stabiliser 0, NaN, a bool or a string for a number were accepted."""
    with pytest.raises(InputError) as info:
        cnn.with_method(spec)
    _one_line(info.value, parameter)


def test_an_epsilon_past_float32_range_is_refused_up_front(cnn):
    """Regression: ``--epsilon 1e308`` became Inf in the float32 graph and gave all-zero relevance without a word."""
    with pytest.raises(InputError) as info:
        cnn.with_method("lrp-epsilon", epsilon=1e308)
    _one_line(info.value, "epsilon", "1e+308")


def test_relevance_that_vanishes_is_an_error_naming_the_method_and_parameter(cnn):
    """An ε that absorbs all relevance (a non-zero logit, a non-zero input, an all-zero map) is an InputError naming
    the method and the parameter to lower; an all-zero input, which leaves nothing to multiply, is not."""
    with pytest.raises(InputError) as info:
        cnn.with_method("lrp-epsilon", epsilon=1e30).explain(x_for())
    _one_line(info.value, "'lrp-epsilon'", "all-zero relevance", "epsilon (now 1e+30)")
    huge = {"rule": "epsilon", "epsilon": 1e30}
    with pytest.raises(InputError) as info:
        cnn.with_method({"conv": huge, "dense": huge}).explain(x_for())
    _one_line(info.value, "'custom'", "all-zero relevance", "largest 1e+30")
    zero = cnn.with_method("lrp-epsilon", epsilon=1e30).explain(np.zeros((1, 3, 8, 8), np.float32))
    assert not zero.relevance.any() and zero.conservation[0] == 0.0


def test_an_all_zero_map_from_a_network_with_dead_units_is_its_own_answer():
    """The control for the error above: ReLUs that are never active leave the logit to the last layer's bias; with
    small stabilisers the all-zero map is the answer (conservation 0), not an error."""
    g = G()
    dead = g.node("Relu", [g.node("Conv", ["x", g.w((4, 3, 3, 3), value=np.zeros((4, 3, 3, 3))),
                                           g.w((4,), value=-np.ones(4))], kernel_shape=[3, 3], pads=[1, 1, 1, 1])])
    model = g.model(["N", 3, 8, 8], g.node("Gemm", [g.node("Flatten", [dead]), g.w((5, 256)),
                                                    g.w((5,), value=np.arange(1.0, 6.0))], transB=1))
    for method in ("epsilon-plus", {"conv": "zplus", "dense": "epsilon"}):
        e = Explainer(model, method, provider="cpu").explain(x_for(), 4)
        assert not e.relevance.any() and np.all(e.logits[:, 4] == 5.0) and np.all(e.conservation == 0.0)


def test_explanations_report_how_much_relevance_is_conserved():
    """Sum of relevance / target logit: 1 for LRP-0 on a ReLU network without biases, None for the gradient."""
    g = G(1)
    r = g.node("Relu", [g.conv("x", 3, 4, pads=[1, 1, 1, 1], bias=False)])
    model = g.model(["N", 3, 8, 8], g.node("Gemm", [g.node("Flatten", [r]), g.w((5, 256))], transB=1))
    x = x_for(3)
    e = Explainer(model, "lrp-0", provider="cpu").explain(x, 1)
    expected = e.relevance.reshape(3, -1).sum(axis=1) / e.logits[:, 1]
    np.testing.assert_allclose(e.conservation, 1.0, rtol=1e-4)
    np.testing.assert_allclose(e.conservation, expected, rtol=1e-5)
    assert Explainer(model, "gradient", provider="cpu").explain(x, 1).conservation is None


@pytest.mark.parametrize("axis, dim", [(2, 0), (3, -3), (0, 0)])
def test_a_declared_dim_below_one_is_invalid_not_dynamic(axis, dim):
    """Regression: a declared dim of 0 was reported as "dynamic dims [2]" (and a batch dim of 0 as ONNX Runtime's
    "Got invalid dimensions")."""
    model = small_cnn()
    model.graph.input[0].type.tensor_type.shape.dim[axis].dim_value = dim
    for load in (Explainer, lambda m: check_model(m).error):
        try:
            message = load(model)
        except ModelError as exc:
            message = _one_line(exc)
        assert f"dim {axis} = {dim}" in message and "'x'" in message and "at least 1" in message
        assert "has dynamic dims" not in message and "ONNX Runtime" not in message


# ---------------------------------------------------------------------------------------------- item 9: declared sizes
def _huge_input(dims: tuple[int | str, int | str]) -> onnx.ModelProto:
    """The small CNN with its input's spatial dims declared as ``dims`` (a string is a dynamic dim)."""
    model = small_cnn()
    for axis, value in zip((2, 3), dims):
        dim = model.graph.input[0].type.tensor_type.shape.dim[axis]
        if isinstance(value, str):
            dim.dim_param = value
        else:
            dim.dim_value = value
    return model


@pytest.mark.parametrize("make, figure", [
    (lambda: Explainer(_huge_input((10**9, 10**9))), "EiB"),
    (lambda: Explainer(_huge_input((10**10, 1))), "GiB"),
    (lambda: check_model(_huge_input((10**9, 10**9))).error, "EiB"),
    (lambda: Explainer(_huge_input(("H", "W")), input_shape=(3, 50_000, 50_000)), "GiB"),
])
def test_declared_input_sizes_past_the_memory_limit_are_refused_before_allocating(make, figure):
    """Regression: ``ValueError: array is too big`` or MemoryError from a declared input of 1e9 x 1e9."""
    tracemalloc.start()
    try:
        try:
            message = make()
        except InputError as exc:
            message = _one_line(exc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20
    assert "'x'" in message and figure in message and "more than the limit" in message


def test_a_model_that_grows_its_input_past_the_limit_is_refused_before_running_it():
    g = G()
    tiled = g.node("Tile", ["x", g.w((4,), value=[1, 1, 20_000, 20_000], dtype=np.int64)])
    model = g.model(["N", 3, 8, 8], g.node("ReduceSum", [g.node("Flatten", [tiled])], keepdims=1))
    with pytest.raises(InputError) as info:
        Explainer(model)
    _one_line(info.value, "GiB", "more than the limit")
