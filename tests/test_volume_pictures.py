"""The picture of a volume's relevance (explainer.pictures.volumes): a seeded Conv3d net explained by ``Explainer``,
its relevance drawn as montages of axial slices; the PNG, its tiles and their colours are checked."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from explainer import Explainer
from explainer.errors import InputError
from explainer.pictures import volumes
from explainer.pictures.volumes import montage_columns, plot_volume, volume_picture, volume_slices
from tests.support.cli import cli
from tests.support.signal_models import export, seeded

SAMPLE = (2, 20, 6, 5)  # C, D, H, W


class VolumeNet(torch.nn.Module):
    """Conv3d-ReLU-Conv3d-ReLU-global pool-dense: a volume classifier [N, 2, D, H, W] -> [N, 3]."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv3d(2, 4, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv3d(4, 4, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3, 4)))


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """One sample and its relevance for class 1 (the default LRP method), the input zero outside slices 4-11 and the
    first layer without bias, so that relevance reaches only slices 2-13 (the flat rule of the first layer spreads
    it over its 3-slice window)."""
    net = seeded(VolumeNet())
    with torch.no_grad():
        net.features[0].bias.zero_()
    ex = Explainer(str(export(net, SAMPLE, tmp_path_factory.mktemp("volume") / "volume.onnx")), cache=False)
    assert ex.layout == "NCDHW" and ex.input_shape == SAMPLE
    x = np.zeros((1, *SAMPLE), np.float32)
    x[:, :, 4:12] = np.random.default_rng(0).standard_normal((1, 2, 8, 6, 5))
    e = ex.explain(x, target=1)
    assert e.relevance.shape == x.shape and np.abs(e.relevance[:, :, 4:12]).max() > 0
    return x[0], e.relevance[0]


def test_volume_picture_tiles_and_colours(explained: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    x, relevance = explained
    path = plot_volume(x, relevance, tmp_path / "volume.png", title="volume [0]")
    with Image.open(path) as decoded:
        assert decoded.format == "PNG"
        png = np.asarray(decoded.convert("RGB"))
    picture = volume_picture(x, relevance, title="volume [0]")
    np.testing.assert_array_equal(png, np.asarray(picture.image))
    assert picture.slices == list(range(0, 20, 2))  # 20 slices: every 2nd keeps 10 <= 16 tiles
    factor = 11  # the least whole factor that makes the longer side (6) at least 64 pixels
    cols = montage_columns(10)
    assert cols == 4
    for boxes in (picture.input_boxes, picture.relevance_boxes):
        assert len(boxes) == 10
        assert {(r - x0, b - y0) for x0, y0, r, b in boxes} == {(5 * factor, 6 * factor)}
        assert len({y0 for _, y0, _, _ in boxes}) == 3 and len({x0 for x0, _, _, _ in boxes}) == cols
        assert all(0 <= x0 and r <= png.shape[1] and b <= png.shape[0] for x0, _, r, b in boxes)
    assert picture.input_boxes[0][2] < picture.relevance_boxes[0][0]  # input left, relevance right
    summed = relevance.sum(axis=0)
    vmax = np.abs(summed).max()
    seismic = matplotlib.colormaps["seismic"]
    for tile, d in enumerate(picture.slices):
        x0, y0, _, _ = picture.relevance_boxes[tile]
        centres = png[y0 + factor // 2::factor, x0 + factor // 2::factor][:6, :5].astype(int)
        expected = seismic(0.5 + 0.5 * summed[d] / vmax, bytes=True)[..., :3].astype(int)
        np.testing.assert_allclose(centres, expected, atol=1)  # one colour scale over all slices
        blank = np.abs(summed[d]) < 1e-3 * vmax
        assert np.all(centres[blank] >= 250)  # no relevance: white
        strong = summed[d] > 0.3 * vmax
        assert np.all(centres[strong][:, 0] > centres[strong][:, 2] + 60)  # positive: red
        strong = summed[d] < -0.3 * vmax
        assert np.all(centres[strong][:, 2] > centres[strong][:, 0] + 60)  # negative: blue
        if not 2 <= d < 14:
            assert np.all(centres >= 250)  # slices beyond the first layer's reach from the block: no relevance
    grey = x.mean(axis=0)
    scaled = np.rint(255 * (grey - grey.min()) / (grey.max() - grey.min()))
    for tile, d in enumerate(picture.slices):
        x0, y0, _, _ = picture.input_boxes[tile]
        corner = png[y0 + factor * 5 + factor // 2, x0 + factor * 4 + factor // 2]  # away from the slice label
        assert tuple(corner) == (scaled[d, 5, 4],) * 3


def test_slices_and_columns() -> None:
    assert volume_slices(16) == list(range(16))
    assert volume_slices(17) == list(range(0, 17, 2))
    assert volume_slices(40) == list(range(0, 40, 3)) and len(volume_slices(40)) <= volumes.MAX_TILES
    assert volume_slices(1) == [0]
    assert [montage_columns(n) for n in (1, 2, 4, 5, 9, 16)] == [1, 2, 2, 3, 3, 4]


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(InputError, match=r"one shape \[C, D, H, W\]"):
        volume_picture(np.zeros((1, 4, 5, 5)), np.zeros((1, 4, 5, 6)))
    with pytest.raises(InputError, match=r"one shape \[C, D, H, W\]"):
        volume_picture(np.zeros((4, 5, 5)), np.zeros((4, 5, 5)))


def test_cli_writes_a_volume_picture(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = export(seeded(VolumeNet()), SAMPLE, tmp_path / "volume.onnx")
    np.save(tmp_path / "volumes.npy", np.random.default_rng(0).standard_normal((2, *SAMPLE)).astype(np.float32))
    code, out, err = cli(capsys, "explain", str(path), str(tmp_path / "volumes.npy"), "--out", str(tmp_path / "o"))
    assert code == 0, err
    pngs = sorted((tmp_path / "o").glob("volumes_*.png"))
    assert [p.name for p in pngs] == ["volumes_0.png", "volumes_1.png"]
    with Image.open(pngs[0]) as picture:
        assert picture.format == "PNG" and picture.width > 2 * 4 * 5 * 11  # two montages of 4 columns of 55 px
