"""PyTorch reference CNNs with deterministic random weights.

AlexNet and VGG-16 follow torchvision's module layout (``features``, ``avgpool``, ``classifier``) so that
the layer order, shapes and ops of their ONNX exports match what users export from torchvision. The weights
are random (no downloads are possible) but kaiming-scaled so activations keep a sensible magnitude through
the depth, and every bias is a small random positive or negative number so bias handling is exercised.
The same modules serve as the autograd / Zennit reference on exactly the weights of the ONNX export.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)
BIAS_SCALE = 0.1
"""Biases are drawn uniformly from ``[-BIAS_SCALE, BIAS_SCALE]``."""


class AlexNet(nn.Module):
    """AlexNet exactly as ``torchvision.models.AlexNet`` lays it out (input 3x224x224)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=False),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=False),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


class VGG(nn.Module):
    """VGG without batch norm, as ``torchvision.models.VGG`` lays it out (input 3x224x224)."""

    def __init__(self, cfg: tuple[int | str, ...] = VGG16_CFG, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                in_channels = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=False),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=False),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


class SmallVGG(nn.Module):
    """A small VGG-style net for fast tests: 3x32x32 input, conv/relu/maxpool blocks, an average pool, two dense layers.

    ``in_channels`` and ``image_size`` let the same layout serve other inputs (the digits model uses 1x32x32).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, hidden: int = 64) -> None:
        super().__init__()
        if image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(32, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=False),
            nn.AvgPool2d(kernel_size=2, stride=2),
        )
        side = image_size // 8
        self.classifier = nn.Sequential(
            nn.Linear(32 * side * side, hidden),
            nn.ReLU(inplace=False),
            nn.Dropout(p=0.5),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


INPUT_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "alexnet": (1, 3, 224, 224),
    "vgg16": (1, 3, 224, 224),
    "small": (1, 3, 32, 32),
}
"""Example input shape (batch 1, NCHW) of each named model."""

_FACTORIES: dict[str, Callable[[int], nn.Module]] = {
    "alexnet": lambda n: AlexNet(num_classes=n),
    "vgg16": lambda n: VGG(VGG16_CFG, num_classes=n),
    "small": lambda n: SmallVGG(num_classes=n),
}
_DEFAULT_CLASSES = {"alexnet": 1000, "vgg16": 1000, "small": 10}

MODEL_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def init_weights(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every Conv2d/Linear in ``model`` in module order from a private generator seeded by ``seed``.

    Weights are kaiming-normal (fan-in, ReLU gain) so the activation scale stays roughly constant with depth;
    biases are uniform in ``[-BIAS_SCALE, BIAS_SCALE]``. The global torch RNG is left untouched.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                std = math.sqrt(2.0 / fan_in)
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
                if module.bias is not None:
                    module.bias.copy_((torch.rand(module.bias.shape, generator=gen) * 2 - 1) * BIAS_SCALE)
    return model


def build(name: str, seed: int = 0, num_classes: int | None = None) -> nn.Module:
    """Build reference model ``name`` ("alexnet", "vgg16" or "small") in eval mode with seeded random weights.

    ``num_classes`` defaults to 1000 for AlexNet/VGG-16 and 10 for the small net.
    """
    key = name.lower()
    if key not in _FACTORIES:
        raise ValueError(f"unknown reference model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    n = _DEFAULT_CLASSES[key] if num_classes is None else num_classes
    model = init_weights(_FACTORIES[key](n), seed)
    return model.eval()
