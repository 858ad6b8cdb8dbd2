"""PyTorch reference networks with deterministic random weights: CNNs and a vision transformer.

AlexNet and VGG-16 follow torchvision's module layout (``features``, ``avgpool``, ``classifier``) so that
the layer order, shapes and ops of their ONNX exports match what users export from torchvision. The weights
are random (no downloads are possible) but kaiming-scaled so activations keep a sensible magnitude through
the depth, and every bias is a small random positive or negative number so bias handling is exercised.
The same modules serve as the autograd / Zennit reference on exactly the weights of the ONNX export. ``ViT`` is a
pre-LN vision transformer (``vit-s16``: ViT-S/16 at 224², as timm's ``vit_small_patch16_224`` is shaped); its
options build the variants the transformer tests export, and ``graphs/train_digits_vit.py`` trains a small one.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
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


POOLS = ("cls", "mean")
PATCH_EMBEDDINGS = ("conv", "linear")
GELUS = ("erf", "tanh")
ATTENTIONS = ("explicit", "sdpa")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


class Attention(nn.Module):
    """Multi-head self-attention with one qkv Linear: heads split by reshape/permute, softmax(q@kᵀ·scale)@v, heads
    merged, an output Linear. ``kind="sdpa"`` computes the same with ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int, *, kind: str = "explicit", bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.kind = _choice("attention", kind, ATTENTIONS)
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.kind == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            y = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + MLP(LN(x)) with MLP = Linear, GELU, Linear."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, *, gelu: str = "erf", attention: str = "explicit",
                 bias: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, bias=bias)
        self.attn = Attention(dim, heads, kind=attention, bias=bias)
        self.norm2 = nn.LayerNorm(dim, bias=bias)
        self.fc1 = nn.Linear(dim, mlp_dim, bias=bias)
        self.act = nn.GELU(approximate="none" if _choice("gelu", gelu, GELUS) == "erf" else "tanh")
        self.fc2 = nn.Linear(mlp_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """A small pre-LN vision transformer on ``channels`` x ``image_size`` x ``image_size`` inputs.

    ``pool``: "cls" reads the class token, "mean" averages the tokens (no class token). ``patch``: "conv" embeds
    patches with a strided Conv2d, "linear" cuts them out with reshape/permute and applies a Linear. ``gelu``: "erf"
    (exact) or "tanh". ``attention``: "explicit" or "sdpa". ``distill``: DeiT-style class and distillation tokens,
    each with its own head, the logits being the mean of the two heads'. ``bias=False`` leaves out every additive
    constant the network learns (Linear, Conv and LayerNorm biases, the position embedding).
    """

    def __init__(self, *, image_size: int = 32, patch_size: int = 8, channels: int = 1, dim: int = 48,
                 depth: int = 2, heads: int = 4, mlp_dim: int = 96, num_classes: int = 10,
                 pool: str = "cls", patch: str = "conv", gelu: str = "erf", attention: str = "explicit",
                 distill: bool = False, bias: bool = True) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        if distill and _choice("pool", pool, POOLS) != "cls":
            raise ValueError("distill=True reads the class and distillation tokens: it needs pool='cls'")
        self.pool, self.patch, self.patch_size, self.distill = _choice("pool", pool, POOLS), patch, patch_size, distill
        patches = (image_size // patch_size) ** 2
        if _choice("patch", patch, PATCH_EMBEDDINGS) == "conv":
            self.embed: nn.Module = nn.Conv2d(channels, dim, patch_size, stride=patch_size, bias=bias)
        else:
            self.embed = nn.Linear(channels * patch_size * patch_size, dim, bias=bias)
        self.num_tokens = 2 if distill else 1 if pool == "cls" else 0
        self.tokens = nn.Parameter(torch.zeros(1, self.num_tokens, dim)) if self.num_tokens else None
        self.pos = nn.Parameter(torch.zeros(1, patches + self.num_tokens, dim)) if bias else None
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_dim, gelu=gelu, attention=attention, bias=bias) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, bias=bias)
        self.head = nn.Linear(dim, num_classes, bias=bias)
        self.head_dist = nn.Linear(dim, num_classes, bias=bias) if distill else None
        for p in (self.tokens, self.pos):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> patch embeddings [N, patches, dim], row-major over the patch grid."""
        if self.patch == "conv":
            return self.embed(x).flatten(2).transpose(1, 2)
        n, c, h, w = x.shape
        p = self.patch_size
        cut = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return self.embed(cut.reshape(n, (h // p) * (w // p), c * p * p))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm's output: [N, tokens, dim]."""
        x = self.embed_patches(x)
        if self.tokens is not None:
            x = torch.cat([self.tokens.expand(x.shape[0], -1, -1), x], dim=1)
        if self.pos is not None:
            x = x + self.pos
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if self.distill:
            return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        return self.head(x[:, 0] if self.pool == "cls" else x.mean(dim=1))


INPUT_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "alexnet": (1, 3, 224, 224),
    "vgg16": (1, 3, 224, 224),
    "small": (1, 3, 32, 32),
    "vit-s16": (1, 3, 224, 224),
}
"""Example input shape (batch 1, NCHW) of each named model."""

_FACTORIES: dict[str, Callable[[int], nn.Module]] = {
    "alexnet": lambda n: AlexNet(num_classes=n),
    "vgg16": lambda n: VGG(VGG16_CFG, num_classes=n),
    "small": lambda n: SmallVGG(num_classes=n),
    "vit-s16": lambda n: ViT(image_size=224, patch_size=16, channels=3, dim=384, depth=12, heads=6, mlp_dim=1536,
                             num_classes=n),
}
_DEFAULT_CLASSES = {"alexnet": 1000, "vgg16": 1000, "small": 10, "vit-s16": 1000}

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
