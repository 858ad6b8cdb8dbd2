"""The SR map's fidelity options (issue 17, items 7-9): saliency scored at every pixel (against a brute-force
reference), per-scale patch sizes, the |R| / positive-part feed and its labels, and max-pooling that overwrites
relevance where overlapping windows share an arg-max, as Li et al.'s code does."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from onnx import TensorProto, helper
from PIL import Image

from explainer import Explainer
from explainer.cli import main
from explainer.errors import InputError
from explainer.lrp.composites import Composite, kind
from explainer.lrp.rules import Epsilon, WinnerTakeAll
from explainer.sr.sr_map import (
    _extract_patches,
    _pixel_queries,
    _single_scale_saliency,
    describe_sr_input,
    paper_relevance_image,
    sr_input,
    sr_map,
)
from tests.support.emitted import check_emitted_graphs
from tests.support.paths import DIGITS, digit_path

FAST = {"base_size": 48, "scales": (1.0, 0.5), "k": 8}


def _blob(n: int = 48, centre: tuple[int, int] = (14, 16), sigma: float = 4.0, peak: float = 1.0) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    return peak * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))


# -- item 7: every pixel ------------------------------------------------------------------------------------------


def test_every_pixel_saliency_equals_a_brute_force_reference():
    """Every pixel's patch (centred on it, reflect-padded) against every candidate, in float64 loops; the query's own
    window among the candidates (same level, same centre) is excluded."""
    rng = np.random.default_rng(3)
    base = rng.random((13, 11, 2)).astype(np.float32)
    size, step, k, c = 3, 2, 5, 3.0
    candidates = [_extract_patches(base, s, size, step) for s in (1.0, 0.5, 0.25)]
    query = _pixel_queries(candidates[0], size, step)
    got = _single_scale_saliency(query, candidates, k=k, c=c, factor=2.0).reshape(query.grid)

    level = candidates[0].image.astype(np.float64)
    height, width = level.shape[:2]
    padded = np.pad(level, ((1, 1), (1, 1), (0, 0)), mode="reflect")
    values = np.concatenate([cand.values for cand in candidates]).astype(np.float64)
    rows = np.concatenate([cand.rows for cand in candidates]).astype(np.float64)
    cols = np.concatenate([cand.cols for cand in candidates]).astype(np.float64)
    same_level = np.arange(len(values)) < len(candidates[0].values)
    longer = max(height, width)
    expected = np.empty((height, width))
    for y in range(height):
        for x in range(width):
            patch = np.moveaxis(padded[y:y + size, x:x + size], -1, 0).ravel()  # (channel, row, col)
            row, col = (y + 0.5) / longer, (x + 0.5) / longer
            d_position = np.hypot(rows - row, cols - col)
            d = np.linalg.norm(values - patch, axis=1) / (1.0 + c * d_position)
            d[same_level & (np.abs(rows - row) < 1e-6) & (np.abs(cols - col) < 1e-6)] = np.inf
            expected[y, x] = 1.0 - np.exp(-2.0 * np.sort(d)[:k].mean())
    np.testing.assert_allclose(got, expected, atol=1e-5)
    own = query.own.reshape(height, width)
    assert np.count_nonzero(own >= 0) == len(candidates[0].values)  # every grid patch is some pixel's own window


def test_every_pixel_saliency_is_the_grid_saliency_at_the_grid_points():
    rng = np.random.default_rng(4)
    base = rng.random((30, 26, 1)).astype(np.float32)
    candidates = [_extract_patches(base, s, 7, 4) for s in (1.0, 0.5, 0.25)]
    grid = _single_scale_saliency(candidates[0], candidates, k=6, c=3.0)
    query = _pixel_queries(candidates[0], 7, 4)
    pixels = _single_scale_saliency(query, candidates, k=6, c=3.0)
    at_grid = query.own >= 0
    np.testing.assert_allclose(pixels[at_grid][np.argsort(query.own[at_grid])], grid, atol=1e-6)


def test_every_pixel_map_is_deterministic_and_marks_the_blob():
    relevance = _blob() + 0.02 * np.random.default_rng(5).random((48, 48))
    first = sr_map(relevance, queries="pixels", **FAST)
    np.testing.assert_array_equal(first, sr_map(relevance.copy(), queries="pixels", **FAST))
    assert first.shape == (48, 48) and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    assert np.hypot(*(np.array(np.unravel_index(np.argmax(first), first.shape)) - (14, 16))) <= 4
    grid = sr_map(relevance, **FAST)
    assert np.corrcoef(first.ravel(), grid.ravel())[0, 1] > 0.9  # a compact blob: both query layouts agree
    assert np.abs(first - grid).max() > 1e-3  # ... but they are different computations


def test_patch_size_per_scale():
    relevance = _blob() + 0.05 * np.random.default_rng(6).random((48, 48))
    np.testing.assert_array_equal(sr_map(relevance, patch_size=(5, 5), **FAST), sr_map(relevance, patch_size=5, **FAST))
    tsai = sr_map(relevance, patch_size=(5, 3), **FAST)
    assert tsai.shape == (48, 48) and np.abs(tsai - sr_map(relevance, patch_size=5, **FAST)).max() > 1e-2
    for bad in ((5,), (5, 3, 3), (5, 0), "5"):
        with pytest.raises(InputError, match="patch_size"):
            sr_map(relevance, patch_size=bad, **FAST)
    with pytest.raises(InputError, match="queries"):
        sr_map(relevance, queries="every", **FAST)


# -- item 8: what the SR map is computed on -----------------------------------------------------------------------


def _signed_map(n: int = 48) -> np.ndarray:
    """A strong negative blob and a weaker positive one on zero relevance."""
    return _blob(n, (34, 32), 4.0, -3.0) + _blob(n, (12, 12), 4.0, 1.0)


def test_positive_feed_ignores_a_strong_negative_region():
    relevance = _signed_map()[None]  # 1 x H x W
    sr = sr_map(sr_input(relevance, part="positive"), **FAST)
    negative, positive = _blob(48, (34, 32)) > 0.5, _blob(48, (12, 12)) > 0.5
    assert sr[negative].max() < 0.05 < 0.5 < sr[positive].mean()


def test_abs_feed_is_sign_blind_and_zero_is_the_darkest_value():
    relevance = np.stack([_signed_map(), 0.5 * _signed_map(), -_signed_map()])  # 3 x H x W
    image = sr_input(relevance)
    np.testing.assert_array_equal(image, paper_relevance_image(relevance))
    np.testing.assert_array_equal(image, sr_input(-relevance))
    assert image[0, 0].tolist() == [0, 0, 0]  # zero relevance is black, not mid-grey
    sr = sr_map(image, **FAST)
    strongest = _blob(48, (34, 32)) > 0.5  # |R| is largest in the negative blob: the paper counts it as relevant
    assert strongest.flat[np.argmax(sr)]
    grey = sr_input(np.moveaxis(relevance[:2], 0, -1), layout="hwc")
    np.testing.assert_allclose(grey, 1.5 * np.abs(_signed_map()))


def test_positive_feed_on_three_channels_and_labels():
    relevance = np.stack([_signed_map(), np.zeros((48, 48)), -_signed_map()])
    image = sr_input(relevance, part="positive")
    np.testing.assert_array_equal(image, paper_relevance_image(np.maximum(relevance, 0)))
    assert "|R| per colour channel" in describe_sr_input("abs", 3) and "Li et al." in describe_sr_input("abs", 3)
    assert describe_sr_input("positive", 1) == "max(R, 0), min-max scaled"
    assert describe_sr_input("abs", 4) == "|R| summed over the 4 channels, min-max scaled"
    with pytest.raises(InputError, match="part"):
        sr_input(relevance, part="signed")
    with pytest.raises(InputError, match="channel axis"):
        sr_input(relevance[0])


def test_cli_labels_what_the_sr_map_is_computed_on(tmp_path):
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["explain", str(DIGITS), str(digit_path(7)), "--sr", "--sr-input", "positive", "--out",
                     str(tmp_path)])
    assert code == 0
    assert "SR maps computed on: max(R, 0), min-max scaled" in stdout.getvalue()
    with np.load(tmp_path / "digit_7.npz") as data:
        assert str(data["sr_input"]) == "max(R, 0), min-max scaled"
        np.testing.assert_allclose(data["sr"], sr_map(sr_input(data["relevance_channels"], part="positive")),
                                   atol=1e-6)
    for name in ("digit_7_sr.png", "digit_7_sr_overlay.png"):
        with Image.open(tmp_path / name) as im:
            assert im.text["Description"].endswith("computed on max(R, 0), min-max scaled")
    with Image.open(tmp_path / "digit_7_heatmap.png") as im:
        assert "Description" not in im.text


# -- item 9: max-pooling where overlapping windows share an arg-max ------------------------------------------------


def _pool_then_dense(tmp_path, weights: np.ndarray, kernel: int = 3) -> str:
    """x (N, 2, 7, 7) -> MaxPool kernel x kernel stride 2 (3: overlapping windows) -> Flatten -> Gemm without bias."""
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[kernel, kernel], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 7, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    path = tmp_path / "pool.onnx"
    path.write_bytes(model.SerializeToString())
    return str(path)


def _reference(x: np.ndarray, weights: np.ndarray, overwrite: bool) -> tuple[np.ndarray, np.ndarray]:
    """Input relevance of LRP-0 on the dense layer and winner-take-all pooling, by loops; and how many windows picked
    each input. Overwrite keeps the last window's relevance in row-major order."""
    n, c = x.shape[:2]
    relevance, picked = np.zeros_like(x, dtype=np.float64), np.zeros(x.shape, dtype=int)
    for i in range(n):
        pooled = np.array([[[x[i, ch, 2 * oy:2 * oy + 3, 2 * ox:2 * ox + 3].max() for ox in range(3)]
                            for oy in range(3)] for ch in range(c)])
        target = int(np.argmax(weights @ pooled.ravel()))
        r_out = pooled * weights[target].reshape(pooled.shape)  # LRP-0, no bias: R_j = y_j w_tj
        for ch in range(c):
            for oy in range(3):
                for ox in range(3):
                    window = x[i, ch, 2 * oy:2 * oy + 3, 2 * ox:2 * ox + 3]
                    dy, dx = np.unravel_index(np.argmax(window), (3, 3))
                    at = (i, ch, 2 * oy + dy, 2 * ox + dx)
                    relevance[at] = r_out[ch, oy, ox] + (0.0 if overwrite else relevance[at])
                    picked[at] += 1
    return relevance, picked


@pytest.fixture(scope="module")
def pooled_relevance(tmp_path_factory):
    rng = np.random.default_rng(9)
    weights = rng.standard_normal((4, 18)).astype(np.float32)
    x = rng.random((2, 2, 7, 7)).astype(np.float32)
    x[0, 0, 2, 2] = x[0, 0, 4, 4] = x[0, 1, 2, 4] = x[1, 1, 4, 2] = x[1, 0, 2, 3] = 5.0  # shared by 4, 4, 4, 4, 2
    model = _pool_then_dense(tmp_path_factory.mktemp("pool"), weights)
    results = {}
    for label, rule in (("accumulate", None), ("overwrite", WinnerTakeAll("overwrite"))):
        rules = [(kind("maxpool"), rule)] if rule is not None else []
        composite = Composite(label, [*rules, (kind("dense"), Epsilon(0.0))])
        ex = Explainer(model, composite, provider="cpu")
        check_emitted_graphs(ex)  # Pad, Slice, Equal, Or, Not at opset 17
        results[label] = ex.explain(x).relevance
    return x, weights, results


@pytest.mark.parametrize("overlap", ["accumulate", "overwrite"])
def test_max_pool_relevance_matches_the_loop_reference(pooled_relevance, overlap):
    x, weights, results = pooled_relevance
    expected, _ = _reference(x, weights, overwrite=overlap == "overwrite")
    np.testing.assert_allclose(results[overlap], expected, rtol=1e-5, atol=1e-6)


def test_overwrite_differs_from_accumulate_exactly_where_windows_share_an_arg_max(pooled_relevance):
    x, weights, results = pooled_relevance
    _, picked = _reference(x, weights, overwrite=True)
    differs = np.abs(results["accumulate"] - results["overwrite"]) > 1e-6
    np.testing.assert_array_equal(differs, picked > 1)
    assert np.count_nonzero(picked > 1) >= 5
    logits = np.array([weights @ np.array([[x[i, ch, 2 * oy:2 * oy + 3, 2 * ox:2 * ox + 3].max() for ox in range(3)]
                                           for ch in range(2) for oy in range(3)]).ravel() for i in range(2)])
    explained = logits.max(axis=1)
    # accumulating conserves the explained logit; overwriting loses the shares of the overwritten windows
    np.testing.assert_allclose(results["accumulate"].sum(axis=(1, 2, 3)), explained, rtol=1e-5)
    assert np.all(np.abs(results["overwrite"].sum(axis=(1, 2, 3)) - explained) > 1e-3)


def test_overwrite_equals_accumulate_without_overlapping_windows(tmp_path):
    """VGG-style 2x2 stride-2 pools: no input is picked twice, so both variants route relevance alike."""
    rng = np.random.default_rng(10)
    model = _pool_then_dense(tmp_path, rng.standard_normal((4, 18)).astype(np.float32), kernel=2)
    x = rng.random((2, 2, 7, 7)).astype(np.float32)
    relevance = [Explainer(model, Composite("c", [*rules, (kind("dense"), Epsilon(0.0))]), provider="cpu")
                 .explain(x).relevance for rules in ([], [(kind("maxpool"), WinnerTakeAll("overwrite"))])]
    np.testing.assert_array_equal(relevance[0], relevance[1])
    assert np.count_nonzero(relevance[0]) > 0


def test_sr_paper_overwrite_option(pooled_relevance, tmp_path):
    """``sr-paper`` takes ``maxpool="overwrite"``; it changes only the max-pool's routing (LRP-0 and z+ elsewhere)."""
    x, weights, _ = pooled_relevance
    model = _pool_then_dense(tmp_path, weights)
    default = Explainer(model, "sr-paper", provider="cpu")
    overwrite = Explainer(model, "sr-paper", provider="cpu", maxpool="overwrite")
    _, picked = _reference(x, weights, overwrite=True)
    differs = np.abs(default.explain(x).relevance - overwrite.explain(x).relevance) > 1e-6
    assert not np.any(differs & (picked == 1)) and np.count_nonzero(differs) >= 3  # z+ gives some windows nothing
    with pytest.raises(InputError, match="overlap"):
        Explainer(model, "sr-paper", provider="cpu", maxpool="max")
