"""Region tiling and ordering for region perturbation: scores, MoRF/LeRF/random orders, fixed grid vs sliding."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from explainer.errors import InputError
from explainer.evaluation.regions import (
    grid_cells,
    grid_region_scores,
    max_regions,
    order_regions,
    window_region_scores,
)


def squares(origins: np.ndarray, size: int) -> np.ndarray:
    """(L, 4) boxes of the ``size`` squares whose top-left corners are ``origins`` (L, 2)."""
    return np.concatenate([origins, origins + size], axis=1)


def coverage(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(L, H, W) boolean masks of ``boxes`` (L, 4): top, left, bottom, right (exclusive)."""
    rows, cols = np.arange(shape[0]), np.arange(shape[1])
    in_rows = (rows >= boxes[:, :1]) & (rows < boxes[:, 2:3])
    in_cols = (cols >= boxes[:, 1:2]) & (cols < boxes[:, 3:])
    return in_rows[:, :, None] & in_cols[:, None, :]


def picked_scores(heatmap: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    return (coverage(boxes, heatmap.shape) * heatmap).sum(axis=(1, 2))


def test_window_scores_match_brute_force_masks() -> None:
    rng = np.random.default_rng(1)
    heatmaps = rng.normal(size=(2, 12, 13))
    size = 3
    scores = window_region_scores(heatmaps, size)
    assert scores.shape == (2, 10, 11)
    r, c = np.meshgrid(np.arange(10), np.arange(11), indexing="ij")
    origins = np.stack([r.ravel(), c.ravel()], axis=1)
    for i in range(2):
        np.testing.assert_allclose(scores[i].ravel(), picked_scores(heatmaps[i], squares(origins, size)),
                                   atol=1e-12)


def test_grid_covers_the_image_with_centred_partial_border_cells() -> None:
    starts, stops = grid_cells(40, 9)  # 5 cells, 5 missing rows: 2 before, 3 after
    assert starts.tolist() == [0, 7, 16, 25, 34] and stops.tolist() == [7, 16, 25, 34, 40]
    starts, stops = grid_cells(224, 9)  # the paper's size: 25 cells, the last one 8 px
    assert len(starts) == 25 and starts[0] == 0 and stops[-1] == 224 and stops[-1] - starts[-1] == 8
    assert grid_cells(36, 9)[0].tolist() == [0, 9, 18, 27]
    assert max_regions(40, 31, 9) == 20


def test_grid_scores_are_sums_over_the_cells_inside_the_image() -> None:
    heatmaps = np.random.default_rng(2).normal(size=(3, 40, 31))
    grid = grid_region_scores(heatmaps, 9)
    assert grid.shape == (3, 5, 4)
    (r0, r1), (c0, c1) = grid_cells(40, 9), grid_cells(31, 9)
    boxes = np.array([[r0[i], c0[j], r1[i], c1[j]] for i in range(5) for j in range(4)])
    for n in range(3):
        np.testing.assert_allclose(grid[n].ravel(), picked_scores(heatmaps[n], boxes), atol=1e-12)
    np.testing.assert_allclose(grid.sum(axis=(1, 2)), heatmaps.sum(axis=(1, 2)), atol=1e-9)


def test_every_pixel_is_perturbed_when_all_cells_are_taken() -> None:
    """The paper's 224 x 224 input with 9 x 9 cells: the fixed grid reaches the last 8 rows and columns too."""
    heatmap = np.random.default_rng(9).normal(size=(1, 224, 224))
    boxes = order_regions(heatmap, max_regions(224, 224, 9), order="morf")[0]
    counts = coverage(boxes, (224, 224)).sum(axis=0)
    assert counts.min() == 1 and counts.max() == 1


@pytest.mark.parametrize("grid", ["fixed", "sliding"])
def test_morf_takes_highest_first_lerf_smallest_abs_and_signed_lerf_lowest(grid: str) -> None:
    heatmaps = np.random.default_rng(3).normal(size=(2, 45, 45))
    steps = 12
    morf, lerf, signed = (order_regions(heatmaps, steps, order=order, grid=grid)
                          for order in ("morf", "lerf", "lerf-signed"))
    scores = grid_region_scores if grid == "fixed" else window_region_scores
    candidates, magnitudes = scores(heatmaps, 9), scores(np.abs(heatmaps), 9)
    for i in range(2):
        up = picked_scores(heatmaps[i], morf[i])
        least = picked_scores(np.abs(heatmaps[i]), lerf[i])
        down = picked_scores(heatmaps[i], signed[i])
        assert up[0] == pytest.approx(candidates[i].max(), abs=1e-9)
        assert least[0] == pytest.approx(magnitudes[i].min(), abs=1e-9)
        assert down[0] == pytest.approx(candidates[i].min(), abs=1e-9)
        assert np.all(np.diff(up) <= 1e-9) and np.all(np.diff(down) >= -1e-9) and np.all(np.diff(least) >= -1e-9)


def test_lerf_takes_the_region_nearest_zero_not_the_most_negative() -> None:
    heatmap = np.zeros((1, 18, 18))
    heatmap[0, :9, :9] = 1.0
    heatmap[0, :9, 9:] = -1.0
    heatmap[0, 9:, :9] = 0.01
    heatmap[0, 9:, 9:] = 0.5
    assert order_regions(heatmap, 1, order="lerf")[0, 0].tolist() == [9, 0, 18, 9]
    assert order_regions(heatmap, 1, order="lerf-signed")[0, 0].tolist() == [0, 9, 9, 18]
    assert order_regions(-heatmap, 1, order="lerf")[0, 0].tolist() == [9, 0, 18, 9]


@pytest.mark.parametrize("grid", ["fixed", "sliding"])
@pytest.mark.parametrize("order", ["morf", "lerf", "random"])
def test_exactly_l_regions_inside_the_image_without_overlap(grid: str, order: str) -> None:
    heatmaps = np.random.default_rng(4).normal(size=(3, 50, 47))
    steps = 10
    boxes = order_regions(heatmaps, steps, order=order, grid=grid, rng=np.random.default_rng(0))
    assert boxes.shape == (3, steps, 4)
    assert boxes.min() >= 0 and np.all(boxes[..., 2] <= 50) and np.all(boxes[..., 3] <= 47)
    assert np.all(boxes[..., 2] > boxes[..., 0]) and np.all(boxes[..., 3] > boxes[..., 1])
    for i in range(3):
        assert coverage(boxes[i], (50, 47)).sum(axis=0).max() == 1
    if grid == "sliding":
        assert np.all(boxes[..., 2:] - boxes[..., :2] == 9)


def test_fixed_grid_with_all_steps_is_a_permutation_of_the_cells() -> None:
    heatmaps = np.random.default_rng(5).normal(size=(1, 27, 36))
    boxes = order_regions(heatmaps, 12, order="morf")[0]
    cells = {(r, c, r + 9, c + 9) for r in range(0, 27, 9) for c in range(0, 36, 9)}
    assert {tuple(b) for b in boxes.tolist()} == cells


def test_sliding_window_finds_an_unaligned_hot_square_that_the_grid_cannot() -> None:
    heatmap = np.zeros((1, 36, 36))
    heatmap[0, 5:14, 7:16] = 1.0
    sliding = order_regions(heatmap, 4, order="morf", grid="sliding")
    fixed = order_regions(heatmap, 4, order="morf", grid="fixed")
    assert tuple(sliding[0, 0]) == (5, 7, 14, 16)
    assert picked_scores(heatmap[0], sliding[0, :1])[0] == pytest.approx(81.0)
    assert picked_scores(heatmap[0], fixed[0, :1])[0] < 81.0


def test_ties_keep_row_major_order() -> None:
    boxes = order_regions(np.zeros((1, 18, 27)), 6, order="morf")[0]
    assert boxes[:, :2].tolist() == [[0, 0], [0, 9], [0, 18], [9, 0], [9, 9], [9, 18]]


def test_random_order_is_reproducible_and_seed_dependent() -> None:
    heatmaps = np.zeros((2, 90, 90))
    a = order_regions(heatmaps, 30, order="random", rng=np.random.default_rng(7))
    b = order_regions(heatmaps, 30, order="random", rng=np.random.default_rng(7))
    c = order_regions(heatmaps, 30, order="random", rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])


def test_too_few_regions_is_an_error_naming_the_counts() -> None:
    with pytest.raises(InputError, match=r"17x17 image holds only 4 9x9 regions; steps=5"):
        order_regions(np.zeros((1, 17, 17)), 5)


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
    order=st.sampled_from(["morf", "lerf", "lerf-signed", "random"]),
    seed=st.integers(0, 2**16),
)
def test_property_regions_never_overlap(height: int, width: int, size: int, grid: str, order: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    heatmap = rng.normal(size=(1, height, width))
    steps = max(1, max_regions(height, width, size) // 3)
    try:
        boxes = order_regions(heatmap, steps, size=size, order=order, grid=grid, rng=rng)[0]
    except InputError as error:
        assert grid == "sliding" and "ran out" in str(error)
        return
    assert len(boxes) == steps
    assert coverage(boxes, (height, width)).sum(axis=0).max() == 1
