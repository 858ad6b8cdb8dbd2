"""Tests for the SR map (context-aware saliency on relevance), the paper's relevance image and the Lab helper."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from explainer.errors import InputError
from explainer.sr.lab import srgb_to_lab
from explainer.sr.sr_map import _extract_patches, _single_scale_saliency, paper_relevance_image, sr_map

FAST = {"base_size": 128}  # most tests run on a 128 px base to stay fast; the algorithm is the same


def _blob_and_spikes(seed: int = 0, n: int = 128, sigma: float = 5.0, n_spikes: int = 40):
    """A Gaussian relevance blob (peak 1) plus isolated single pixels of the same peak value, far from the blob."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    cy, cx = 40, 44
    radius = np.hypot(yy - cy, xx - cx)
    relevance = np.exp(-(radius**2) / (2 * sigma**2))
    far = (radius > 4 * sigma + 10) & (yy > 3) & (yy < n - 4) & (xx > 3) & (xx < n - 4)
    spikes = rng.choice(np.flatnonzero(far), n_spikes, replace=False)
    relevance.flat[spikes] = 1.0
    return relevance, radius <= 2 * sigma, spikes


def _smooth_random(shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = rng.standard_normal(shape)
    for axis in (0, 1):
        field = (field + np.roll(field, 1, axis) + np.roll(field, -1, axis)) / 3
    return field


def test_shape_dtype_range_and_determinism_default_parameters():
    relevance = _smooth_random((60, 100))
    first = sr_map(relevance)
    second = sr_map(relevance.copy())
    assert first.shape == (60, 100)
    assert first.dtype == np.float32
    assert np.all(np.isfinite(first))
    assert first.min() >= 0.0 and first.max() <= 1.0
    assert first.max() > 0.5  # the foci keep their saliency, and saliency is normalised per scale
    np.testing.assert_array_equal(first, second)


def test_blob_gets_the_mass_not_isolated_pixels_of_equal_peak():
    relevance, inside, spikes = _blob_and_spikes()
    sr = sr_map(relevance, **FAST)
    blob_mean = sr[inside].mean()
    spike_values = sr.flat[spikes]
    assert blob_mean > 4.0 * spike_values.mean()
    assert spike_values.max() < 0.5 * blob_mean
    assert inside.flat[np.argmax(sr)]


def test_three_channel_paper_image_path_marks_the_blob():
    single, inside, spikes = _blob_and_spikes(seed=1)
    rng = np.random.default_rng(1)
    relevance = np.stack([single * 0.9, -single, single * 0.5])  # C x H x W, signs mixed like LRP output
    spike_channel = rng.integers(0, 3, size=len(spikes))
    relevance.reshape(3, -1)[:, spikes] = 0.0
    relevance.reshape(3, -1)[spike_channel, spikes] = 1.0
    image = paper_relevance_image(relevance)
    sr = sr_map(image, **FAST)
    assert sr.shape == single.shape and sr.dtype == np.float32
    assert sr.min() >= 0.0 and sr.max() <= 1.0
    assert sr[inside].mean() > 4.0 * sr.flat[spikes].mean()


def test_float_three_channel_input_equals_its_uint8_rendering_when_it_spans_0_255():
    image = paper_relevance_image(np.abs(_smooth_random((3, 40, 40), seed=3)))
    from_uint8 = sr_map(image, **FAST)
    from_float = sr_map(image.astype(np.float64), **FAST)  # float: min-max scaled over the array, here 0..255 -> 0..1
    np.testing.assert_allclose(from_float, from_uint8, atol=1e-5)


def test_grey_rgb_input_equals_the_single_channel_path_on_its_lightness():
    # Input already at the base size (no resampling) and spanning [0, 1] (float min-max is the identity): with
    # R = G = B, a* and b* are flat (ignored) and the patch distances are those of L* alone.
    field = _smooth_random((128, 128), seed=8)
    grey = (field - field.min()) / (field.max() - field.min())
    rgb = np.repeat(grey[..., None], 3, axis=2)
    lightness = srgb_to_lab(rgb)[..., 0]
    np.testing.assert_allclose(sr_map(rgb, **FAST), sr_map(lightness, **FAST), atol=1e-5)


def test_transpose_equivariance_on_square_input():
    relevance = _smooth_random((64, 64), seed=4)
    np.testing.assert_allclose(sr_map(relevance.T, **FAST), sr_map(relevance, **FAST).T, atol=1e-4)


def test_hw1_input_is_the_single_channel_path():
    relevance = _smooth_random((50, 50), seed=5)
    np.testing.assert_array_equal(sr_map(relevance[..., None], **FAST), sr_map(relevance, **FAST))


@pytest.fixture(scope="module")
def blob_reference():
    relevance, _, _ = _blob_and_spikes(seed=2)
    return relevance, sr_map(relevance, **FAST)


@pytest.mark.parametrize(
    "changed",
    [{"foci_threshold": 0.3}, {"c": 0.0}, {"k": 8}, {"scales": (1.0,)}, {"patch_size": 5}, {"stride": 3}],
)
def test_each_parameter_changes_the_result(blob_reference, changed):
    relevance, reference = blob_reference
    other = sr_map(relevance, **FAST, **changed)
    assert other.shape == reference.shape
    assert np.abs(other - reference).max() > 1e-2


def test_lower_foci_threshold_marks_more_pixels_as_foci():
    relevance = _smooth_random((64, 64), seed=6)
    strict = sr_map(relevance, foci_threshold=0.9, **FAST)
    loose = sr_map(relevance, foci_threshold=0.2, **FAST)
    # Far from every focus SR is damped towards 0; with more foci fewer pixels are far from one.
    assert np.count_nonzero(loose < 0.05) < np.count_nonzero(strict < 0.05)


def test_constant_map_gives_zeros_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for constant in (np.zeros((32, 48)), np.full((32, 48), 7.5), np.full((32, 48, 3), 200, dtype=np.uint8)):
            out = sr_map(constant, **FAST)
            assert out.shape == (32, 48) and out.dtype == np.float32
            assert np.all(out == 0.0)


def test_search_is_exact_against_a_brute_force_reference():
    rng = np.random.default_rng(7)
    base = rng.random((30, 26, 1)).astype(np.float32)
    query = _extract_patches(base, 1.0, 7, 4)
    candidates = [query, _extract_patches(base, 0.5, 7, 4), _extract_patches(base, 0.25, 7, 4)]
    got = _single_scale_saliency(query, candidates, k=5, c=3.0)

    values = np.concatenate([cand.values for cand in candidates]).astype(np.float64)
    rows = np.concatenate([cand.rows for cand in candidates]).astype(np.float64)
    cols = np.concatenate([cand.cols for cand in candidates]).astype(np.float64)
    n = len(query.values)
    d_value = np.linalg.norm(query.values[:, None, :].astype(np.float64) - values[None, :, :], axis=2)
    d_position = np.hypot(rows[:n, None] - rows[None, :], cols[:n, None] - cols[None, :])
    d = d_value / (1.0 + 3.0 * d_position)
    d[np.arange(n), np.arange(n)] = np.inf  # a patch is not its own neighbour
    expected = 1.0 - np.exp(-np.sort(d, axis=1)[:, :5].mean(axis=1))
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (np.zeros(10), "shape"),
        (np.zeros((2, 8, 8)), "shape"),
        (np.zeros((8, 8, 2)), "shape"),
        (np.zeros((1, 8, 8, 3)), "shape"),
        (np.zeros((0, 8)), "empty"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "non-finite"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "non-finite"),
        (np.ones((4, 4), dtype=complex), "dtype"),
        (np.array([["a", "b"], ["c", "d"]]), "dtype"),
    ],
)
def test_invalid_relevance_raises_input_error(bad, fragment):
    with pytest.raises(InputError, match=fragment):
        sr_map(bad)


@pytest.mark.parametrize(
    "params, name",
    [
        ({"k": 0}, "k"),
        ({"c": -1.0}, "c"),
        ({"c": float("nan")}, "c"),
        ({"scales": ()}, "scales"),
        ({"scales": (1.0, 1.5)}, "scales"),
        ({"scales": 0.5}, "scales"),
        ({"foci_threshold": 1.0}, "foci_threshold"),
        ({"patch_size": 0}, "patch_size"),
        ({"stride": 0}, "stride"),
        ({"base_size": 5}, "base_size"),
    ],
)
def test_invalid_parameters_raise_input_error(params, name):
    with pytest.raises(InputError, match=name):
        sr_map(np.eye(8), **params)


def test_paper_relevance_image_scales_abs_relevance_over_the_whole_tensor():
    relevance = np.zeros((3, 2, 2))
    relevance[0] = [[-2.0, 0.0], [1.0, 0.5]]
    relevance[1] = [[0.0, -1.0], [0.0, 0.0]]
    image = paper_relevance_image(relevance)
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    # |R| spans 0..2 over the tensor: 2 -> 255, 1 -> 127.5 (rounded to even 128), 0.5 -> 63.75 -> 64.
    np.testing.assert_array_equal(image[..., 0], [[255, 0], [128, 64]])
    np.testing.assert_array_equal(image[..., 1], [[0, 128], [0, 0]])
    np.testing.assert_array_equal(image[..., 2], np.zeros((2, 2)))
    np.testing.assert_array_equal(paper_relevance_image(np.moveaxis(relevance, 0, -1), layout="hwc"), image)


def test_paper_relevance_image_constant_and_invalid_inputs():
    assert np.all(paper_relevance_image(np.full((3, 4, 5), -3.0)) == 0)
    with pytest.raises(InputError, match="shape|3 x H x W"):
        paper_relevance_image(np.zeros((4, 5, 3)))
    with pytest.raises(InputError, match="layout"):
        paper_relevance_image(np.zeros((3, 4, 5)), layout="whc")
    with pytest.raises(InputError, match="non-finite"):
        paper_relevance_image(np.full((3, 2, 2), np.nan))


@pytest.mark.parametrize(
    "rgb, lab",
    [
        ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
        ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
        ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),
        ((0.0, 1.0, 0.0), (87.73, -86.18, 83.18)),
        ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)),
        ((0.5, 0.5, 0.5), (53.39, 0.0, 0.0)),
    ],
)
def test_srgb_to_lab_matches_published_d65_values(rgb, lab):
    np.testing.assert_allclose(srgb_to_lab(np.array(rgb)), lab, atol=0.05)


def test_srgb_to_lab_grey_has_zero_chroma():
    ramp = np.repeat(np.linspace(0.0, 1.0, 17)[:, None], 3, axis=1)
    assert np.abs(srgb_to_lab(ramp)[:, 1:]).max() < 1e-9


def test_srgb_to_lab_rejects_out_of_range_and_wrong_shape():
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        srgb_to_lab(np.array([1.2, 0.0, 0.0]))
    with pytest.raises(InputError, match="shape"):
        srgb_to_lab(np.zeros((4, 2)))
