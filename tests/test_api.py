"""The public API: a small, lazily loaded top level; Explainer hooks for threads and stage timings; with_method
siblings that share the model; explanations that know their layout."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import explainer
from explainer import Explainer, InputError
from tests.support.paths import DIGITS, TF2ONNX, digit_path


def test_top_level_is_small_and_every_name_resolves():
    assert 10 <= len(explainer.__all__) <= 16
    for name in explainer.__all__:
        assert getattr(explainer, name) is not None
    with pytest.raises(AttributeError):
        explainer.render  # noqa: B018  (reachable through its subpackage, explainer.pictures, only)


def test_import_does_not_load_plotting_or_scipy():
    code = ("import sys, explainer; from explainer import Explainer, METHODS, make_composite; "
            "print(sorted(m for m in ('matplotlib', 'scipy', 'tqdm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_threads_and_stage_timings():
    ex = Explainer(DIGITS, "epsilon-plus-flat", threads=1)
    assert set(ex.timings) == {"load", "canonicalise", "verify", "build", "session"}
    assert all(t >= 0 for t in ex.timings.values())
    sibling = ex.with_method("gradient")
    assert set(sibling.timings) == {"build", "session"}
    assert sibling.graph is ex.graph and sibling._forward is ex._forward and sibling.threads == 1
    assert ex.method == "epsilon-plus-flat" and sibling.method == "gradient"
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(InputError, match="threads"):
            Explainer(DIGITS, threads=bad)


def test_load_images_uses_the_models_preprocessing():
    ex = Explainer(DIGITS)
    x, pixels = explainer.load_images([digit_path(3), digit_path(7)], ex)
    assert x.shape == (2, 1, 32, 32) and x.dtype == np.float32 and pixels.shape == (2, 32, 32, 1)
    np.testing.assert_allclose(x[:, 0], pixels[..., 0] / 255.0, rtol=0, atol=1e-6)  # 'unit' for 1-channel models
    assert list(ex.explain(x).target) == [3, 7]


def test_relevance_map_sums_the_models_channel_axis():
    ex = Explainer(TF2ONNX, "gradient")
    assert ex.layout == "NHWC"
    x = np.random.default_rng(0).standard_normal((2, *ex.input_shape)).astype(np.float32)
    e = ex.explain(x)
    assert e.layout == "NHWC"
    np.testing.assert_allclose(e.relevance_map(), e.relevance.sum(axis=-1), rtol=1e-6)


def test_only_the_runtime_imports_onnxruntime():
    from pathlib import Path

    package = Path(explainer.__file__).parent
    importers = [str(p.relative_to(package)) for p in package.rglob("*.py") if p.parent.name != "runtime"
                 and any(line.lstrip().startswith(("import onnxruntime", "from onnxruntime"))
                         for line in p.read_text(encoding="utf-8").splitlines())]
    assert importers == []


def test_a_forward_graph_onnx_runtime_cannot_run_is_a_model_error_and_changes_nothing(monkeypatch):
    """The forward graph is built only when forward() is first called (the constructor verifies the relevance
    graph's own logits); when ONNX Runtime fails on it: one ModelError naming the model, no retry, and the graph's
    recorded changes stay what the front end said. explain() never needs it."""
    import explainer.api as api
    from explainer.frontend.canonicalise import canonicalise
    from explainer.onnx_io import load_model

    real_build = api.build_forward_model
    seen: list = []

    def broken(graph):
        seen.append((id(graph), list(graph.changes)))
        model = real_build(graph)
        model.skeleton.graph.node[0].op_type = "NoSuchOp"
        return model

    monkeypatch.setattr(api, "build_forward_model", broken)
    ex = Explainer(DIGITS, "gradient")
    x = np.zeros((2, 1, 32, 32), np.float32)
    assert ex.explain(x).target.shape == (2,) and seen == []
    with pytest.raises(api.ModelError, match=r"digits_cnn\.onnx: ONNX Runtime cannot load the forward graph"):
        ex.forward(x)
    assert len(seen) == 1
    assert seen[0][1] == canonicalise(load_model(DIGITS)[0], str(DIGITS)).changes


def test_a_relevance_graph_onnx_runtime_cannot_load_is_a_model_error(monkeypatch):
    import explainer.api as api

    real_build = api.build_relevance_model

    def broken(graph, composite, **kwargs):
        model = real_build(graph, composite, **kwargs)
        model.skeleton.graph.node[-1].op_type = "NoSuchOp"
        return model

    monkeypatch.setattr(api, "build_relevance_model", broken)
    with pytest.raises(api.ModelError, match=r"cannot load the relevance graph of method 'gradient'"):
        Explainer(DIGITS, "gradient")
