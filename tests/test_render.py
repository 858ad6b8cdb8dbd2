"""Tests for heatmap / SR-map rendering, overlays and grids."""
from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pytest
from PIL import Image

from explainer.errors import InputError
from explainer.pictures.heatmaps import (
    colorbar,
    enlarge,
    explanation_pictures,
    grid,
    heatmap,
    heatmap_range,
    overlay,
    picture_scale,
    sr_image,
)


def _colours(cmap: str, positions) -> np.ndarray:
    """Reference colours straight from matplotlib, as int so differences can be negative."""
    positions = np.asarray(positions, dtype=float)
    rgba = np.asarray(matplotlib.colormaps[cmap](positions.ravel(), bytes=True))
    return rgba[:, :3].astype(int).reshape(positions.shape + (3,))


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(int)


def test_zero_map_renders_the_diverging_centre_colour_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = heatmap(np.zeros((6, 9)))
    assert img.mode == "RGB" and img.size == (9, 6)
    centre = _colours("seismic", 0.5)
    assert np.abs(_pixels(img) - centre).max() <= 1


def test_signed_scale_is_symmetric_around_zero():
    relevance = np.array([[2.0, -2.0, 1.0, -1.0, 0.0, -0.5]])
    expected = _colours("seismic", [[1.0, 0.0, 0.75, 0.25, 0.5, 0.375]])
    assert np.abs(_pixels(heatmap(relevance)) - expected).max() <= 1
    # The scale is +-max|R| even when only the negative side reaches it.
    only_negative_max = np.array([[-4.0, 2.0]])
    assert np.abs(_pixels(heatmap(only_negative_max)) - _colours("seismic", [[0.0, 0.75]])).max() <= 1


def test_vmax_fixes_the_scale_and_saturates_beyond_it():
    img = heatmap(np.array([[2.0, 8.0, -8.0]]), vmax=4.0)
    assert np.abs(_pixels(img) - _colours("seismic", [[0.75, 1.0, 0.0]])).max() <= 1


def test_positive_mode_clips_negatives_to_the_bottom_colour():
    img = heatmap(np.array([[-3.0, 0.0, 1.0, 2.0]]), mode="positive")
    assert np.abs(_pixels(img) - _colours("afmhot", [[0.0, 0.0, 0.5, 1.0]])).max() <= 1


def test_absolute_mode_equals_positive_mode_of_the_magnitude():
    relevance = np.random.default_rng(0).standard_normal((7, 5))
    np.testing.assert_array_equal(
        np.asarray(heatmap(relevance, mode="absolute")), np.asarray(heatmap(np.abs(relevance), mode="positive"))
    )


def test_channel_axis_sums_over_channels():
    chw = np.random.default_rng(1).standard_normal((3, 8, 6))
    summed = np.asarray(heatmap(chw.sum(axis=0), cmap="bwr"))
    np.testing.assert_array_equal(np.asarray(heatmap(chw, channel_axis=0, cmap="bwr")), summed)
    np.testing.assert_array_equal(np.asarray(heatmap(np.moveaxis(chw, 0, -1), channel_axis=-1, cmap="bwr")), summed)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"relevance": np.zeros((2, 4, 4))}, "channel_axis"),
        ({"relevance": np.zeros((4, 4)), "channel_axis": 0}, "channel_axis"),
        ({"relevance": np.zeros(4)}, "shape"),
        ({"relevance": np.array([[np.nan, 1.0]])}, "non-finite"),
        ({"relevance": np.zeros((4, 4)), "mode": "signd"}, "mode"),
        ({"relevance": np.zeros((4, 4)), "cmap": "no-such-map"}, "colormap"),
        ({"relevance": np.zeros((4, 4)), "vmax": 0.0}, "vmax"),
        ({"relevance": np.zeros((4, 4)), "vmax": float("inf")}, "vmax"),
    ],
)
def test_heatmap_rejects_bad_input(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        heatmap(**kwargs)


def test_sr_image_maps_0_and_1_to_the_colormap_ends():
    img = sr_image(np.array([[0.0, 1.0], [0.25, 0.5]]))
    assert np.abs(_pixels(img) - _colours("inferno", [[0.0, 1.0], [0.25, 0.5]])).max() <= 1
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        sr_image(np.array([[0.0, 1.5]]))


def test_overlay_is_resized_to_the_image_and_alpha_blends_linearly():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    relevance = rng.standard_normal((12, 16))
    heat = _pixels(heatmap(relevance).resize((64, 48), Image.Resampling.BILINEAR))

    at_zero = overlay(image, relevance, alpha=0.0)
    at_one = overlay(image, relevance, alpha=1.0)
    half = overlay(image, relevance, alpha=0.5)
    assert at_zero.size == at_one.size == half.size == (64, 48)
    np.testing.assert_array_equal(_pixels(at_zero), image)
    np.testing.assert_array_equal(_pixels(at_one), heat)
    assert np.abs(_pixels(half) - (image.astype(int) + heat) / 2).max() <= 1


def test_overlay_accepts_grayscale_pil_and_sr_maps():
    gray = np.full((20, 30), 100, dtype=np.uint8)
    out = overlay(gray, np.zeros((20, 30)), alpha=0.0)
    assert out.mode == "RGB" and np.all(_pixels(out) == 100)

    pil = Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8))
    sr = np.ones((10, 15))
    top = _colours("inferno", 1.0)
    assert np.abs(_pixels(overlay(pil, sr, alpha=1.0, mode="sr")) - top).max() <= 1


@pytest.mark.parametrize(
    "image, kwargs, fragment",
    [
        (np.zeros((8, 8, 3), dtype=np.uint8), {"alpha": 1.5}, "alpha"),
        (np.zeros((8, 8, 2), dtype=np.uint8), {}, "shape"),
        (np.full((8, 8), 2.0), {}, r"\[0, 1\]"),
        (np.zeros((8, 8), dtype=np.int32), {}, "dtype"),
    ],
)
def test_overlay_rejects_bad_input(image, kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        overlay(image, np.zeros((8, 8)), **kwargs)


def test_grid_size_placement_and_background():
    tiles = [Image.new("RGB", (10, 8), (i * 40, 0, 0)) for i in range(5)]
    out = grid(tiles, cols=2, pad=3)
    assert out.size == (2 * 10 + 3 * 3, 3 * 8 + 4 * 3)
    pixels = _pixels(out)
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    np.testing.assert_array_equal(pixels[3:11, 3:13], _pixels(tiles[0]))
    np.testing.assert_array_equal(pixels[3 + 8 + 3 : 3 + 16 + 3, 3 + 10 + 3 : 3 + 20 + 3], _pixels(tiles[3]))
    assert np.all(pixels[25:33, 16:26] == 255)  # the sixth cell is empty


def test_grid_uses_the_largest_cell_and_fewer_columns_than_requested():
    out = grid([Image.new("RGB", (4, 4)), Image.new("L", (6, 2))], cols=4, pad=0)
    assert out.size == (12, 4)
    with pytest.raises(InputError, match="no images"):
        grid([])
    with pytest.raises(InputError, match="cols"):
        grid([Image.new("RGB", (2, 2))], cols=0)


@pytest.mark.parametrize(("size", "minimum", "factor"), [
    ((32, 32), 256, 8), ((28, 20), 256, 10), ((224, 224), 256, 2), ((300, 100), 256, 1), ((32, 32), 0, 1),
    ((32, 32), 100, 4), ((1, 1), 1, 1)])
def test_picture_scale_reaches_the_size_by_a_whole_factor_and_never_shrinks(size, minimum, factor):
    assert picture_scale(*size, minimum) == factor
    assert max(size) * factor >= minimum


def test_picture_scale_and_enlarge_reject_bad_arguments():
    with pytest.raises(InputError, match="non-negative"):
        picture_scale(32, 32, -1)
    with pytest.raises(InputError, match="height"):
        picture_scale(0, 32)
    with pytest.raises(InputError, match="factor"):
        enlarge(Image.new("RGB", (2, 2)), 0)


def test_enlarge_repeats_every_pixel_as_a_block():
    pixels = np.random.default_rng(1).integers(0, 256, size=(3, 5, 3), dtype=np.uint8)
    big = np.asarray(enlarge(Image.fromarray(pixels), 3))
    assert big.shape == (9, 15, 3)
    np.testing.assert_array_equal(big, np.repeat(np.repeat(pixels, 3, axis=0), 3, axis=1))


def test_heatmap_range_is_the_scale_heatmap_uses():
    relevance = np.array([[2.0, -4.0], [1.0, 0.0]])
    assert heatmap_range(relevance) == (-4.0, 4.0)
    assert heatmap_range(relevance, mode="positive") == (0.0, 2.0)
    assert heatmap_range(relevance, vmax=8.0) == (-8.0, 8.0)
    assert heatmap_range(np.zeros((2, 2))) == (-1.0, 1.0)
    # the colour at +scale is the colormap's top, at -scale its bottom
    low, high = heatmap_range(relevance)
    edges = np.asarray(heatmap(np.array([[low, high]]), vmax=high)).astype(int)
    assert np.abs(edges - _colours("seismic", [[0.0, 1.0]])).max() <= 1


def test_colorbar_appends_a_labelled_bar_under_the_picture():
    picture = Image.fromarray(np.full((256, 256, 3), 40, np.uint8))
    out = colorbar(picture, low=-2.0, high=2.0, cmap="seismic", label="relevance")
    pixels = np.asarray(out).astype(int)
    assert out.width == 256 and out.height > 256 + 20
    np.testing.assert_array_equal(pixels[:256], np.asarray(picture))
    # the bar's row runs through the colormap from left to right
    bar_rows = [r for r in range(256, out.height) if np.abs(pixels[r, 5] - _colours("seismic", 0.0)).max() <= 3]
    assert bar_rows, "no bar row starts with the colormap's bottom colour"
    row = pixels[bar_rows[0]]
    assert np.abs(row[-6] - _colours("seismic", 1.0)).max() <= 3
    assert np.abs(row[out.width // 2] - _colours("seismic", 0.5)).max() <= 12
    # below the bar there is text: dark pixels on white
    below = pixels[bar_rows[-1] + 2:]
    assert (below.sum(axis=2) < 200).sum() > 20 and (below == 255).all(axis=2).mean() > 0.5
    # one bar size for one picture width, whatever the values and label, so pictures line up
    other = colorbar(picture, low=0.0, high=1e-7, cmap="inferno", label="SR")
    assert other.size == out.size


def test_colorbar_widens_a_narrow_picture_and_refuses_a_bad_scale():
    narrow = colorbar(Image.new("RGB", (16, 16), (9, 9, 9)), low=0.0, high=1.0, cmap="inferno", label="SR")
    assert narrow.width > 16
    left = (narrow.width - 16) // 2
    assert (np.asarray(narrow)[:16, left:left + 16] == 9).all()
    for low, high in ((1.0, 1.0), (0.0, float("nan")), (2.0, 1.0)):
        with pytest.raises(InputError, match="low < high"):
            colorbar(narrow, low=low, high=high, cmap="inferno", label="x")


def test_explanation_pictures_line_up():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    relevance, sr = rng.standard_normal((20, 30)), rng.random((20, 30))
    pictures = explanation_pictures(image, relevance, sr)
    assert set(pictures) == {"heatmap", "overlay", "sr", "sr_overlay"}
    assert {p.size for p in pictures.values()} == {(270, 180)}            # factor 9: 30 * 9 >= 256
    np.testing.assert_array_equal(np.asarray(pictures["heatmap"])[::9, ::9], np.asarray(heatmap(relevance)))
    np.testing.assert_array_equal(np.asarray(pictures["sr"])[::9, ::9], np.asarray(sr_image(sr)))
    blend = np.asarray(overlay(image, heatmap(relevance))).astype(int)
    assert np.abs(np.asarray(pictures["overlay"])[::9, ::9].astype(int) - blend).max() <= 1
    plain = explanation_pictures(image[..., 0], relevance, minimum=0, with_colorbar=True)
    assert set(plain) == {"heatmap", "overlay"} and plain["heatmap"].size == plain["overlay"].size
    assert plain["heatmap"].height > 20
    with pytest.raises(InputError, match="relevance map of shape"):
        explanation_pictures(image, relevance[:, :10])
