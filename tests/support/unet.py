"""A small seeded U-Net-style segmentation net and its ONNX exports (both PyTorch exporters): Conv-BN-ReLU blocks,
max-pooling down, upsampling back (nearest ``Upsample``, bilinear ``Upsample`` or a 2×2 stride-2 ``ConvTranspose2d``),
skip connections concatenated along channels, and a 1×1 conv head giving per-pixel class logits [N, K, H, W].

``seeded_unet``'s weights come from a seeded generator (no training; batch-norm statistics are seeded too, so the
folded affine maps are not the identity). ``trained_unet`` learns to segment squares and disks in synthetic scenes
(``shapes``); ``python -m tests.support.unet FOLDER`` writes it with a held-out scene (the README's picture).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

#: per-sample input shape of the tiny net the fast tests use, and its number of classes
SHAPE = (1, 16, 16)
CLASSES = 3
#: the upsampling kinds ``UNet`` can be built with
UPSAMPLING = ("nearest", "bilinear", "transpose")


def _block(c_in: int, c_out: int, *, bias: bool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias), nn.BatchNorm2d(c_out), nn.ReLU())


class UNet(nn.Module):
    """Two levels down, two up: [N, C, H, W] -> [N, classes, H, W] (H and W divisible by 4).

    ``up`` is each upsampling's kind (``UPSAMPLING``, one per level, innermost first). ``bias`` False leaves out
    every bias and batch norm (so that LRP-0 conserves the explained logits exactly)."""

    def __init__(self, channels: int = 1, classes: int = CLASSES, width: int = 4,
                 up: tuple[str, str] = ("nearest", "transpose"), *, bias: bool = True) -> None:
        super().__init__()
        w = width
        block = (lambda a, b: _block(a, b, bias=True)) if bias else \
            (lambda a, b: nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.ReLU()))
        self.down0, self.down1, self.bottom = block(channels, w), block(w, 2 * w), block(2 * w, 4 * w)
        self.pool = nn.MaxPool2d(2)
        self.up1 = _upsample(up[0], 4 * w, bias)
        self.dec1 = block(4 * w + 2 * w, 2 * w)
        self.up0 = _upsample(up[1], 2 * w, bias)
        self.dec0 = block(2 * w + w, w)
        self.head = nn.Conv2d(w, classes, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = self.down0(x)
        s1 = self.down1(self.pool(s0))
        h = self.bottom(self.pool(s1))
        h = self.dec1(torch.cat([self.up1(h), s1], dim=1))
        h = self.dec0(torch.cat([self.up0(h), s0], dim=1))
        return self.head(h)


def _upsample(kind: str, channels: int, bias: bool) -> nn.Module:
    if kind == "transpose":
        return nn.ConvTranspose2d(channels, channels, 2, stride=2, bias=bias)
    if kind in ("nearest", "bilinear"):
        return nn.Upsample(scale_factor=2, mode=kind)
    raise ValueError(f"unknown upsampling {kind!r}; expected one of {UPSAMPLING}")


def seeded_unet(seed: int = 0, **kwargs) -> UNet:
    """``UNet(**kwargs)`` with weights, biases and batch-norm statistics from a generator seeded with ``seed``
    (weights scaled by 1/√fan-in so that activations stay of order one), in eval mode."""
    model = UNet(**kwargs)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                fan_in = p.shape[1] * p[0, 0].numel() if "up" not in name else p.shape[0] * p[0, 0].numel() / 4
                p.copy_(torch.randn(p.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def export_unet(model: nn.Module, path: Path, *, shape: tuple[int, ...] = SHAPE, dynamo: bool = False) -> Path:
    """``model`` exported to ``path`` with input 'x', output 'logits' and a dynamic batch axis (the legacy exporter,
    opset 17, unless ``dynamo``)."""
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["x"], output_names=["logits"],
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},), verbose=False,
                              external_data=False)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    return path


def exported_unet(folder: Path, *, dynamo: bool = False, up: tuple[str, str] = ("nearest", "transpose"),
                  bias: bool = True) -> Path:
    """The seeded tiny U-Net exported into ``folder`` (the file is reused when it exists)."""
    path = folder / f"unet_{'_'.join(up)}{'_dynamo' if dynamo else ''}{'' if bias else '_nobias'}.onnx"
    if not path.exists():
        export_unet(seeded_unet(up=up, bias=bias), path, dynamo=dynamo)
    return path


#: the picture size, the classes and the scene of the synthetic shapes task (``shapes``)
SHAPES_SIZE = 32
SHAPES_CLASSES = ("background", "square", "disk")


def shapes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` synthetic scenes [n, 1, 32, 32] in [0, 1]: a bright square and a bright disk (sides and radii 5–9 px)
    at random places on a noisy background, and their label maps [n, 32, 32] (0 background, 1 square, 2 disk;
    the disk is drawn last, over the square where they overlap)."""
    gen = torch.Generator().manual_seed(seed)
    size = SHAPES_SIZE
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.rand(n, 1, size, size, generator=gen) * 0.3
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        side = int(torch.randint(5, 10, (1,), generator=gen))
        top, left = (int(v) for v in torch.randint(0, size - side, (2,), generator=gen))
        square = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        radius = float(torch.randint(3, 5, (1,), generator=gen))
        cy, cx = (float(v) for v in torch.randint(5, size - 5, (2,), generator=gen))
        disk = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius ** 2
        labels[i][square] = 1
        labels[i][disk] = 2
        images[i, 0][square | disk] += 0.6
    return images.clamp(0, 1), labels


def trained_unet(steps: int = 150, seed: int = 0) -> UNet:
    """A width-8 ``UNet`` trained with Adam on fresh ``shapes`` batches to segment squares and disks (seeded; about
    30 s on two CPU cores), in eval mode."""
    torch.manual_seed(seed)
    model = UNet(classes=len(SHAPES_CLASSES), width=8)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        images, labels = shapes(16, seed=seed * 100_000 + step)
        loss = nn.functional.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def main(folder: str) -> None:
    """Write the trained shapes U-Net (``unet.onnx``), one held-out scene (``dense_shapes.png``) and its label map
    (``dense_shapes_labels.npy``) into ``folder``."""
    import numpy as np
    from PIL import Image

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    model = trained_unet()
    export_unet(model, out / "unet.onnx", shape=(1, SHAPES_SIZE, SHAPES_SIZE))
    images, labels = shapes(1, seed=999_999)
    Image.fromarray((images[0, 0].numpy() * 255).round().astype(np.uint8)).save(out / "dense_shapes.png")
    np.save(out / "dense_shapes_labels.npy", labels[0].numpy())
    accuracy = float((model(images).argmax(1) == labels).float().mean())
    print(f"wrote {out}/unet.onnx, dense_shapes.png and dense_shapes_labels.npy (pixel accuracy on it {accuracy:.1%})")


if __name__ == "__main__":
    import sys

    main(sys.argv[1] if len(sys.argv) > 1 else "unet_shapes")
