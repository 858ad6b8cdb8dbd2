"""The cache of optimised relevance graphs (``explainer.runtime.cache``): a second ``Explainer()`` of the same model
and settings takes its session from the cache and explains identically; damaged, stale or linked entries are rebuilt
without a word; turning the cache off writes nothing; the cache stays within its size limit."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from explainer import Explainer
from explainer.runtime import cache
from tests.support.onnx_graphs import G

IN, HIDDEN = 16 * 8 * 8, 320  # the Dense weight (1.25 MiB) is fed at run time, so it is stored in the entry too


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("EXPLAINER_CACHE_DIR", str(folder))
    monkeypatch.delenv("EXPLAINER_CACHE", raising=False)
    monkeypatch.delenv("EXPLAINER_CACHE_MAX_BYTES", raising=False)
    return folder


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    """Conv -> Relu -> Flatten -> Gemm (a large weight) -> Relu -> Gemm, saved to a file."""
    g = G(3)
    h = g.node("Relu", [g.conv("x", 3, 16, pads=[1, 1, 1, 1])])
    h = g.node("Relu", [g.node("Gemm", [g.node("Flatten", [h], axis=1), g.w((HIDDEN, IN)), g.w((HIDDEN,), 0.1)],
                               transB=1)])
    out = g.node("Gemm", [h, g.w((HIDDEN, 10)), g.w((10,), 0.1)])
    path = tmp_path / "net.onnx"
    onnx.save(g.model(["N", 3, 8, 8], out), path)
    return path


def _entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def _x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)


def test_second_build_hits_the_cache_and_explains_identically(cache_dir: Path, model_path: Path):
    first = Explainer(model_path, "epsilon-plus-flat", provider="cpu")
    assert "cache" not in first.timings and "canonicalise" in first.timings
    [entry] = _entries(cache_dir)
    assert {p.name for p in entry.iterdir()} == {"relevance.onnx", "relevance.onnx.data", "fed.bin", "meta.json"}
    second = Explainer(model_path, "epsilon-plus-flat", provider="cpu")
    assert "cache" in second.timings and "canonicalise" not in second.timings
    assert (second.input_shape, second.num_classes, second.layout, second.changes, second.method) == \
        (first.input_shape, first.num_classes, first.layout, first.changes, first.method)
    a, b = first.explain(_x(), 3), second.explain(_x(), 3)
    np.testing.assert_array_equal(a.relevance, b.relevance)
    np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal(first.forward(_x()), second.forward(_x()))  # the graph, made on first use
    assert "canonicalise" in second.timings
    assert second.with_method("gradient").explain(_x(), 3).relevance.shape == (2, 3, 8, 8)


@pytest.mark.parametrize("damage", ["truncate", "flip", "remove", "symlink"])
def test_a_damaged_entry_is_rebuilt(cache_dir: Path, model_path: Path, tmp_path: Path, damage: str):
    reference = Explainer(model_path, "epsilon-plus-flat", provider="cpu").explain(_x(), 1).relevance
    [entry] = _entries(cache_dir)
    outside = tmp_path / "outside"
    if damage == "truncate":
        data = entry / "fed.bin"
        os.truncate(data, data.stat().st_size - 8)
    elif damage == "flip":
        data = bytearray((entry / "relevance.onnx.data").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (entry / "relevance.onnx.data").write_bytes(bytes(data))
    elif damage == "remove":
        (entry / "meta.json").unlink()
    else:  # the entry replaced by a link to a folder elsewhere: the link goes, its target stays untouched
        outside.mkdir()
        (outside / "keep.txt").write_text("mine")
        os.rename(entry, tmp_path / "moved")
        entry.symlink_to(outside, target_is_directory=True)
    rebuilt = Explainer(model_path, "epsilon-plus-flat", provider="cpu")
    assert "cache" not in rebuilt.timings and "canonicalise" in rebuilt.timings
    np.testing.assert_array_equal(rebuilt.explain(_x(), 1).relevance, reference)
    assert not entry.is_symlink() and (entry / "meta.json").is_file()  # written afresh
    assert "cache" in Explainer(model_path, "epsilon-plus-flat", provider="cpu").timings
    if damage == "symlink":
        assert [p.name for p in outside.iterdir()] == ["keep.txt"]


def test_cache_off_writes_nothing(cache_dir: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch):
    Explainer(model_path, "gradient", provider="cpu", cache=False)
    Explainer(model_path.read_bytes(), "gradient", provider="cpu", cache=False)
    monkeypatch.setenv("EXPLAINER_CACHE", "0")
    Explainer(model_path, "gradient", provider="cpu")
    again = Explainer(model_path, "gradient", provider="cpu")
    assert "cache" not in again.timings and not cache_dir.exists()


def test_settings_make_separate_entries(cache_dir: Path, model_path: Path):
    """Method, rule parameters, seed and bounds are part of the key; bytes and the file share one entry."""
    Explainer(model_path, "lrp-epsilon", provider="cpu", epsilon=0.1)
    Explainer(model_path, "lrp-epsilon", provider="cpu", epsilon=0.2)
    Explainer(model_path, "lrp-epsilon", provider="cpu", epsilon=0.2, seed="one-hot")
    Explainer(model_path, "epsilon-gamma-box", provider="cpu", low=-1.0, high=1.0)
    Explainer(model_path, "epsilon-gamma-box", provider="cpu", low=-2.0, high=1.0)
    assert len(_entries(cache_dir)) == 5
    hit = Explainer(model_path.read_bytes(), "lrp-epsilon", provider="cpu", epsilon=0.1)
    assert "cache" in hit.timings and hit.composite.params["epsilon"] == 0.1
    assert len(_entries(cache_dir)) == 5


def test_a_changed_model_misses(cache_dir: Path, model_path: Path):
    Explainer(model_path, "gradient", provider="cpu")
    model = onnx.load(model_path)
    model.graph.initializer[0].raw_data = np.full(16 * 3 * 3 * 3, 0.5, np.float32).tobytes()
    onnx.save(model, model_path)
    changed = Explainer(model_path, "gradient", provider="cpu")
    assert "cache" not in changed.timings and len(_entries(cache_dir)) == 2


def test_the_cache_keeps_within_its_limit(cache_dir: Path, model_path: Path, monkeypatch: pytest.MonkeyPatch):
    Explainer(model_path, "lrp-epsilon", provider="cpu", epsilon=0.1)
    [first] = _entries(cache_dir)
    size = sum(p.stat().st_size for p in first.iterdir())
    monkeypatch.setenv("EXPLAINER_CACHE_MAX_BYTES", str(int(size * 1.5)))
    (cache_dir / "not-an-entry").write_text("left alone")
    stale, fresh = cache_dir / ".explainer-tmp-killed", cache_dir / ".explainer-tmp-writing"
    stale.mkdir()
    fresh.mkdir()
    os.utime(stale, (0, 0))  # left by a process killed long ago; the other may be another process's, at work
    Explainer(model_path, "lrp-epsilon", provider="cpu", epsilon=0.2)
    [kept] = _entries(cache_dir)[:-1]  # the foreign file stays, the older entry goes
    assert kept != first and (cache_dir / "not-an-entry").read_text() == "left alone"
    assert not stale.exists() and fresh.is_dir()


def test_unverified_explainers_are_not_stored(cache_dir: Path, model_path: Path):
    Explainer(model_path, "gradient", provider="cpu", verify=False)
    assert not _entries(cache_dir)


def test_default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("EXPLAINER_CACHE_DIR", raising=False)
    monkeypatch.delenv("EXPLAINER_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "explainer" / "sessions"
    monkeypatch.setenv("EXPLAINER_CACHE", "0")
    assert cache.cache_dir() is None


def test_external_data_is_part_of_the_entry(cache_dir: Path, model_path: Path, tmp_path: Path):
    """A model whose weights live in an external data file: a second build hits; changed external data (the model
    file unchanged) misses and explains the new weights."""
    folder = tmp_path / "external"
    folder.mkdir()
    path = folder / "net.onnx"
    onnx.save(onnx.load(model_path), path, save_as_external_data=True, location="net.data", size_threshold=0)
    first = Explainer(path, "gradient", provider="cpu")
    second = Explainer(path, "gradient", provider="cpu")
    assert "cache" in second.timings and second._files == first._files
    np.testing.assert_array_equal(first.explain(_x(), 2).relevance, second.explain(_x(), 2).relevance)
    data = bytearray((folder / "net.data").read_bytes())
    data[:64] = np.full(16, 0.25, np.float32).tobytes()  # the first weights, whatever tensor holds them
    (folder / "net.data").write_bytes(bytes(data))
    changed = Explainer(path, "gradient", provider="cpu")
    assert "cache" not in changed.timings
    fresh = Explainer(path, "gradient", provider="cpu", cache=False)
    np.testing.assert_array_equal(changed.explain(_x(), 2).relevance, fresh.explain(_x(), 2).relevance)
    assert not np.array_equal(changed.explain(_x(), 2).relevance, first.explain(_x(), 2).relevance)
