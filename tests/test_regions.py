"""Region tiling and ordering for region perturbation: scores, MoRF/LeRF/random orders, fixed grid vs sliding."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explainer.errors import InputError
from explainer.evaluation.regions import grid_region_scores, max_regions, order_regions, window_region_scores


def coverage(origins: np.ndarray, shape: tuple[int, int], size: int) -> np.ndarray:
    """(L, H, W) boolean masks of the squares whose top-left corners are ``origins`` (L, 2)."""
    rows, cols = np.arange(shape[0]), np.arange(shape[1])
    in_rows = (rows >= origins[:, :1]) & (rows < origins[:, :1] + size)
    in_cols = (cols >= origins[:, 1:]) & (cols < origins[:, 1:] + size)
    return in_rows[:, :, None] & in_cols[:, None, :]


def picked_scores(heatmap: np.ndarray, origins: np.ndarray, size: int) -> np.ndarray:
    return (coverage(origins, heatmap.shape, size) * heatmap).sum(axis=(1, 2))


def test_window_scores_match_brute_force_masks() -> None:
    rng = np.random.default_rng(1)
    heatmaps = rng.normal(size=(2, 12, 13))
    size = 3
    scores = window_region_scores(heatmaps, size)
    assert scores.shape == (2, 10, 11)
    r, c = np.meshgrid(np.arange(10), np.arange(11), indexing="ij")
    origins = np.stack([r.ravel(), c.ravel()], axis=1)
    for i in range(2):
        np.testing.assert_allclose(scores[i].ravel(), picked_scores(heatmaps[i], origins, size), atol=1e-12)


def test_grid_scores_are_the_aligned_windows() -> None:
    heatmaps = np.random.default_rng(2).normal(size=(3, 40, 31))
    grid = grid_region_scores(heatmaps, 9)
    assert grid.shape == (3, 4, 3)
    np.testing.assert_allclose(grid, window_region_scores(heatmaps, 9)[:, ::9, ::9][:, :4, :3], atol=1e-12)
    assert max_regions(40, 31, 9) == 12


@pytest.mark.parametrize("grid", ["fixed", "sliding"])
def test_morf_takes_highest_first_and_lerf_lowest(grid: str) -> None:
    heatmaps = np.random.default_rng(3).normal(size=(2, 45, 45))
    steps = 12
    morf = order_regions(heatmaps, steps, order="morf", grid=grid)
    lerf = order_regions(heatmaps, steps, order="lerf", grid=grid)
    candidates = grid_region_scores(heatmaps, 9) if grid == "fixed" else window_region_scores(heatmaps, 9)
    for i in range(2):
        up = picked_scores(heatmaps[i], morf[i], 9)
        down = picked_scores(heatmaps[i], lerf[i], 9)
        assert up[0] == pytest.approx(candidates[i].max(), abs=1e-9)
        assert down[0] == pytest.approx(candidates[i].min(), abs=1e-9)
        assert np.all(np.diff(up) <= 1e-9) and np.all(np.diff(down) >= -1e-9)


@pytest.mark.parametrize("grid", ["fixed", "sliding"])
@pytest.mark.parametrize("order", ["morf", "lerf", "random"])
def test_exactly_l_regions_inside_the_image_without_overlap(grid: str, order: str) -> None:
    heatmaps = np.random.default_rng(4).normal(size=(3, 50, 47))
    steps = 10
    origins = order_regions(heatmaps, steps, order=order, grid=grid, rng=np.random.default_rng(0))
    assert origins.shape == (3, steps, 2)
    assert origins.min() >= 0 and np.all(origins[..., 0] <= 50 - 9) and np.all(origins[..., 1] <= 47 - 9)
    for i in range(3):
        assert coverage(origins[i], (50, 47), 9).sum(axis=0).max() == 1
    if grid == "fixed":
        assert np.all(origins % 9 == 0)


def test_fixed_grid_with_all_steps_is_a_permutation_of_the_cells() -> None:
    heatmaps = np.random.default_rng(5).normal(size=(1, 27, 36))
    origins = order_regions(heatmaps, 12, order="morf")[0]
    cells = {(r, c) for r in range(0, 27, 9) for c in range(0, 36, 9)}
    assert {tuple(o) for o in origins.tolist()} == cells


def test_sliding_window_finds_an_unaligned_hot_square_that_the_grid_cannot() -> None:
    heatmap = np.zeros((1, 36, 36))
    heatmap[0, 5:14, 7:16] = 1.0
    sliding = order_regions(heatmap, 4, order="morf", grid="sliding")
    fixed = order_regions(heatmap, 4, order="morf", grid="fixed")
    assert tuple(sliding[0, 0]) == (5, 7)
    assert picked_scores(heatmap[0], sliding[0, :1], 9)[0] == pytest.approx(81.0)
    assert picked_scores(heatmap[0], fixed[0, :1], 9)[0] < 81.0


def test_ties_keep_row_major_order() -> None:
    origins = order_regions(np.zeros((1, 18, 27)), 6, order="morf")[0]
    assert origins.tolist() == [[0, 0], [0, 9], [0, 18], [9, 0], [9, 9], [9, 18]]


def test_random_order_is_reproducible_and_seed_dependent() -> None:
    heatmaps = np.zeros((2, 90, 90))
    a = order_regions(heatmaps, 30, order="random", rng=np.random.default_rng(7))
    b = order_regions(heatmaps, 30, order="random", rng=np.random.default_rng(7))
    c = order_regions(heatmaps, 30, order="random", rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])


def test_too_few_regions_is_an_error_naming_the_counts() -> None:
    with pytest.raises(InputError, match=r"17x17 image holds only 1 .*steps=2"):
        order_regions(np.zeros((1, 17, 17)), 2)


def test_sliding_order_that_runs_out_of_windows_is_an_error() -> None:
    heatmap = np.zeros((1, 18, 18))
    heatmap[0, 4:13, 4:13] = 1.0
    with pytest.raises(InputError, match="ran out of non-overlapping 9x9 windows after 1 of steps=2"):
        order_regions(heatmap, 2, grid="sliding")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"order": "best"}, "order must be one of"),
        ({"grid": "hex"}, "grid must be one of"),
        ({"order": "random"}, "needs a seeded numpy.random.Generator"),
        ({"size": 0}, "region size must be a positive integer"),
    ],
)
def test_bad_arguments_raise_input_error(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        order_regions(np.zeros((1, 18, 18)), 2, **kwargs)


def test_bad_heatmaps_raise_input_error() -> None:
    with pytest.raises(InputError, match=r"\(N, H, W\); got shape \(18, 18\)"):
        order_regions(np.zeros((18, 18)), 2)
    bad = np.zeros((1, 18, 18))
    bad[0, 3, 3] = np.nan
    with pytest.raises(InputError, match="finite"):
        order_regions(bad, 2)


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(9, 40),
    width=st.integers(9, 40),
    size=st.integers(2, 9),
    grid=st.sampled_from(["fixed", "sliding"]),
    order=st.sampled_from(["morf", "lerf", "random"]),
    seed=st.integers(0, 2**16),
)
def test_property_regions_never_overlap(height: int, width: int, size: int, grid: str, order: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    heatmap = rng.normal(size=(1, height, width))
    steps = max(1, max_regions(height, width, size) // 3)
    try:
        origins = order_regions(heatmap, steps, size=size, order=order, grid=grid, rng=rng)[0]
    except InputError as error:
        assert grid == "sliding" and "ran out" in str(error)
        return
    assert len(origins) == steps
    assert coverage(origins, (height, width), size).sum(axis=0).max() == 1
