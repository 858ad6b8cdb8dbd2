"""Seeded transformer-era reference networks, their ONNX exports, and the torch references their explanations are
checked against.

Networks (no downloads; 3x32x32 inputs, 10 classes):

- :func:`tiny_vit`: the ViT of ``graphs/train_digits_vit.py`` (pre-LN blocks, attention written out as q@kᵀ·scale,
  softmax, @v) with random weights and any of its options: mean pooling, a Linear patch embedding, tanh GELU,
  ``scaled_dot_product_attention``, a DeiT-style distillation token, no biases;
- :class:`MobileNetV3Like`: depthwise convolutions, BatchNorm, squeeze-and-excitation, with hard-swish and the SE
  gate's hard-sigmoid written out as paddle2onnx writes them (``x * relu6(x + 3) / 6``, ``relu6(x + 3) / 6``);
- :class:`ConvNeXtLike`: ConvNeXt's stem, blocks (depthwise 7x7, LayerNorm over channels, pointwise layers, GELU,
  layer scale, residual), downsampling and head, with both ways of writing a LayerNorm over channels (permute,
  ``nn.LayerNorm``, permute; and mean/variance over dim 1).

References, all in float64 on a copy of the module: :func:`torch_gradient` (autograd), :func:`lxt_relevance`
(AttnLRP, or CP-LRP with ``cp=True``, computed with LXT's explicit functional API on the same weights).
:class:`Exports` exports each named network once per test session with ``graphs.export.export``.
"""
from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from graphs.export import export
from graphs.reference_models import ViT

INPUT_SHAPE = (1, 3, 32, 32)
NUM_CLASSES = 10
LXT_EPSILON = 1e-6
"""ε of LXT's linear and convolution rules (its own default for ``linear_epsilon``)."""


# --------------------------------------------------------------------------------------------------- networks
def _randomise(model: nn.Module, seed: int, *, qk_gain: float = 1.0) -> nn.Module:
    """Seeded random weights that exercise every part: fan-in scaled conv/linear weights (``qk_gain`` times larger
    for attention's qkv projection, so that attention is far from uniform), biases, LayerNorm and BatchNorm scales,
    shifts and statistics away from their identity defaults, class tokens, position embedding, layer scale."""
    gen = torch.Generator().manual_seed(seed)

    def normal(shape: torch.Size, std: float) -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float32) * std

    def uniform(shape: torch.Size, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float32)

    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                gain = qk_gain if name.endswith("attn.qkv") else 1.0
                module.weight.copy_(normal(module.weight.shape, gain * math.sqrt(2.0 / module.weight[0].numel())))
                if module.bias is not None:
                    module.bias.copy_(uniform(module.bias.shape, -0.1, 0.1))
            elif isinstance(module, (nn.LayerNorm, ChannelsFirstLayerNorm)):
                module.weight.copy_(uniform(module.weight.shape, 0.5, 1.5))
                if module.bias is not None:
                    module.bias.copy_(normal(module.bias.shape, 0.1))
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(uniform(module.weight.shape, 0.5, 1.5))
                module.bias.copy_(normal(module.bias.shape, 0.1))
                module.running_mean.copy_(normal(module.running_mean.shape, 0.1))
                module.running_var.copy_(uniform(module.running_var.shape, 0.5, 1.5))
        for name, param in model.named_parameters():
            if name in ("tokens", "pos"):
                param.copy_(normal(param.shape, 0.5))
            elif name.endswith("gamma"):
                param.copy_(uniform(param.shape, 0.5, 1.5))
    return model


def _without_shifts(model: nn.Module) -> nn.Module:
    """Zero every BatchNorm shift (running mean and bias), so that the folded network has no biases."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.zero_()
                module.bias.zero_()
    return model


def tiny_vit(seed: int = 0, **options: object) -> ViT:
    """A 3x32x32 ViT (8x8 patches, dim 32, 2 blocks, 2 heads, MLP 64, 10 classes) with seeded random weights, in
    eval mode; ``options`` are :class:`graphs.train_digits_vit.ViT`'s (pool, patch, gelu, attention, distill, bias)."""
    torch.manual_seed(seed)
    model = ViT(image_size=32, patch_size=8, channels=3, dim=32, depth=2, heads=2, mlp_dim=64,
                num_classes=NUM_CLASSES, **options)
    return _randomise(model, seed, qk_gain=2.0).eval()


def hard_swish(x: torch.Tensor) -> torch.Tensor:
    """Hard-swish as paddle2onnx writes it: Add, Clip, Mul, Div."""
    return x * F.relu6(x + 3) / 6


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """The squeeze-and-excitation gate as paddle2onnx writes it: Add, Clip, Div."""
    return F.relu6(x + 3) / 6


class HardSwish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hard_swish(x)


class SqueezeExcite(nn.Module):
    """x * hard_sigmoid(conv1x1(relu(conv1x1(global average of x))))."""

    def __init__(self, channels: int, reduced: int, bias: bool) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1, bias=bias)
        self.fc2 = nn.Conv2d(reduced, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * hard_sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class InvertedResidual(nn.Module):
    """MobileNetV3's block: 1x1 expansion, depthwise kxk, optional squeeze-and-excitation, 1x1 projection, and a
    residual sum where shapes allow."""

    def __init__(self, cin: int, expand: int, cout: int, kernel: int, stride: int, se: bool, act: str,
                 bias: bool) -> None:
        super().__init__()
        activation = HardSwish if act == "hswish" else nn.ReLU
        layers: list[nn.Module] = []
        if expand != cin:
            layers += [*_conv_bn(cin, expand, 1), activation()]
        layers += [*_conv_bn(expand, expand, kernel, stride, groups=expand), activation()]
        if se:
            layers.append(SqueezeExcite(expand, max(8, expand // 4), bias))
        layers += _conv_bn(expand, cout, 1)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV3Like(nn.Module):
    """A small MobileNetV3 for 3x32x32 inputs (ReLU and hard-swish blocks, three with squeeze-and-excitation).
    ``bias=False`` leaves out the SE and head biases (BatchNorm shifts are zeroed by :func:`mobilenet_v3`)."""

    #: (input channels, expansion, output channels, kernel, stride, squeeze-excite, activation)
    BLOCKS = ((16, 16, 16, 3, 1, True, "relu"), (16, 48, 24, 3, 2, False, "relu"), (24, 72, 24, 3, 1, False, "relu"),
              (24, 72, 32, 5, 2, True, "hswish"), (32, 96, 32, 5, 1, True, "hswish"))

    def __init__(self, num_classes: int = NUM_CLASSES, bias: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 16, 3, 2), HardSwish())
        self.blocks = nn.Sequential(*(InvertedResidual(*cfg, bias=bias) for cfg in self.BLOCKS))
        self.last = nn.Sequential(*_conv_bn(32, 96, 1), HardSwish())
        self.fc1 = nn.Linear(96, 64, bias=bias)
        self.fc2 = nn.Linear(64, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.last(self.blocks(self.stem(x))), 1).flatten(1)
        return self.fc2(hard_swish(self.fc1(x)))


def mobilenet_v3(seed: int = 0, bias: bool = True) -> MobileNetV3Like:
    """:class:`MobileNetV3Like` with seeded random weights and BatchNorm statistics, in eval mode; ``bias=False``
    also zeroes the BatchNorm shifts, so that no layer adds a constant."""
    torch.manual_seed(seed)
    model = _randomise(MobileNetV3Like(bias=bias), seed)
    return (model if bias else _without_shifts(model)).eval()


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over dim 1 of [N, C, H, W], written out with mean and variance as ConvNeXt's reference code does."""

    def __init__(self, channels: int, eps: float = 1e-6, bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = self.weight[:, None, None] * ((x - u) / torch.sqrt(s + self.eps))
        return x if self.bias is None else x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv, LayerNorm over channels, pointwise expansion (x4), GELU, pointwise projection, layer
    scale, residual sum. ``pointwise="linear"`` works channels-last (permute, nn.LayerNorm, Linear, Linear, permute
    back), ``"conv"`` channels-first (:class:`ChannelsFirstLayerNorm`, 1x1 convolutions)."""

    def __init__(self, dim: int, pointwise: str, bias: bool) -> None:
        super().__init__()
        if pointwise not in ("linear", "conv"):
            raise ValueError(f"pointwise must be 'linear' or 'conv', got {pointwise!r}")
        self.channels_last = pointwise == "linear"
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim, bias=bias)
        if self.channels_last:
            self.norm: nn.Module = nn.LayerNorm(dim, eps=1e-6, bias=bias)
            self.pw1: nn.Module = nn.Linear(dim, 4 * dim, bias=bias)
            self.pw2: nn.Module = nn.Linear(4 * dim, dim, bias=bias)
        else:
            self.norm = ChannelsFirstLayerNorm(dim, bias=bias)
            self.pw1 = nn.Conv2d(dim, 4 * dim, 1, bias=bias)
            self.pw2 = nn.Conv2d(4 * dim, dim, 1, bias=bias)
        self.act = nn.GELU()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x)
        if self.channels_last:
            y = self.gamma * self.pw2(self.act(self.pw1(self.norm(y.permute(0, 2, 3, 1)))))
            return x + y.permute(0, 3, 1, 2)
        return x + self.gamma[:, None, None] * self.pw2(self.act(self.pw1(self.norm(y))))


class ConvNeXtLike(nn.Module):
    """A small ConvNeXt for 3x32x32 inputs: 4x4 patchify stem and channels-first LayerNorm, a block at 32 channels,
    LayerNorm + 2x2 strided conv downsampling, a block at 64 channels, global average (ReduceMean), LayerNorm, head.
    ``bias=False`` leaves out every bias (convs, Linears, LayerNorms)."""

    def __init__(self, num_classes: int = NUM_CLASSES, pointwise: str = "linear", bias: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 4, stride=4, bias=bias), ChannelsFirstLayerNorm(32, bias=bias))
        self.stage1 = ConvNeXtBlock(32, pointwise, bias)
        self.down = nn.Sequential(ChannelsFirstLayerNorm(32, bias=bias), nn.Conv2d(32, 64, 2, stride=2, bias=bias))
        self.stage2 = ConvNeXtBlock(64, pointwise, bias)
        self.norm = nn.LayerNorm(64, eps=1e-6, bias=bias)
        self.head = nn.Linear(64, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.head(self.norm(x.mean([-2, -1])))


def convnext(seed: int = 0, **options: object) -> ConvNeXtLike:
    """:class:`ConvNeXtLike` (options: pointwise, bias) with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    return _randomise(ConvNeXtLike(**options), seed).eval()


MODELS: dict[str, Callable[[], nn.Module]] = {
    "vit": lambda: tiny_vit(),
    "vit-mean": lambda: tiny_vit(1, pool="mean"),
    "vit-linear-patch": lambda: tiny_vit(2, patch="linear"),
    "vit-tanh": lambda: tiny_vit(3, gelu="tanh"),
    "vit-sdpa": lambda: tiny_vit(4, attention="sdpa"),
    "deit": lambda: tiny_vit(5, distill=True),
    "vit-bias-free": lambda: tiny_vit(6, pool="mean", bias=False),
    "mobilenetv3": lambda: mobilenet_v3(),
    "mobilenetv3-bias-free": lambda: mobilenet_v3(1, bias=False),
    "convnext": lambda: convnext(),
    "convnext-conv": lambda: convnext(1, pointwise="conv"),
    "convnext-bias-free": lambda: convnext(2, bias=False),
}
"""The named networks, each with its own seed."""


@functools.cache
def model(name: str) -> nn.Module:
    """The named network (built once; treat it as read-only)."""
    if name not in MODELS:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]()


def inputs(n: int, seed: int = 0) -> np.ndarray:
    """A seeded batch of standard-normal float32 inputs of shape (n, 3, 32, 32)."""
    return np.random.default_rng(seed).standard_normal((n, *INPUT_SHAPE[1:])).astype(np.float32)


class Exports:
    """ONNX exports (``graphs.export.export``, dynamic batch, input "input", output "logits") of the named networks
    into ``directory``, each made once."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._paths: dict[tuple[str, str], Path] = {}

    def __call__(self, name: str, exporter: str) -> Path:
        key = (name, exporter)
        if key not in self._paths:
            path = self.directory / exporter / f"{name}.onnx"
            export(model(name), path, exporter=exporter, input_shape=INPUT_SHAPE)
            self._paths[key] = path
        return self._paths[key]


# --------------------------------------------------------------------------------------------------- references
def _float64(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).double().eval().requires_grad_(False)


def torch_logits(module: nn.Module, x: np.ndarray) -> np.ndarray:
    """The logits of ``x`` in float64 on a copy of ``module``."""
    with torch.no_grad():
        return _float64(module)(torch.from_numpy(x.astype(np.float64))).numpy()


def torch_gradient(module: nn.Module, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """∂ logit[target] / ∂x per sample, by autograd in float64 on a copy of ``module``."""
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    _float64(module)(xt).gather(1, torch.as_tensor(target, dtype=torch.int64).reshape(-1, 1)).sum().backward()
    return xt.grad.numpy()


def _lxt_layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    from lxt.explicit import functional as lf
    return lf.layer_norm(x, norm.weight, norm.bias, norm.eps)


def _lxt_attention(attn: nn.Module, x: torch.Tensor, cp: bool) -> torch.Tensor:
    """Self-attention under AttnLRP (uniform ε-rule on both matmuls, LXT's softmax rule, identity on the constant
    scale) or CP-LRP (attention weights computed without relevance, then an ε-rule product with the values)."""
    from lxt.explicit import functional as lf
    from lxt.explicit import rules

    b, t, d = x.shape
    qkv = lf.linear_epsilon(x, attn.qkv.weight, attn.qkv.bias, LXT_EPSILON)
    qkv = qkv.reshape(b, t, 3, attn.heads, d // attn.heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    if cp:
        with torch.no_grad():
            weights = torch.softmax((q @ k.transpose(-2, -1)) * attn.scale, dim=-1)
        y = rules.epsilon_lrp(torch.matmul, LXT_EPSILON, weights, v)
    else:
        weights = lf.softmax(lf.mul2(lf.matmul(q, k.transpose(-2, -1)), attn.scale), -1)
        y = lf.matmul(weights, v)
    return lf.linear_epsilon(y.transpose(1, 2).reshape(b, t, d), attn.proj.weight, attn.proj.bias, LXT_EPSILON)


def _lxt_logits(vit: ViT, x: torch.Tensor, cp: bool) -> torch.Tensor:
    """``vit``'s forward pass rewritten with LXT's functions, so that the backward pass from the logits carries
    relevance: ε-rule on the patch embedding, every Linear and the sums (residuals, position embedding, the two DeiT
    heads), LXT's LayerNorm rule, identity rule on GELU and on multiplications by constants, ε-rule on the mean."""
    from lxt.explicit import functional as lf
    from lxt.explicit import rules

    if vit.patch == "conv":
        conv = vit.embed
        tokens = rules.epsilon_lrp(lambda z: F.conv2d(z, conv.weight, conv.bias, stride=conv.stride), LXT_EPSILON, x)
        tokens = tokens.flatten(2).transpose(1, 2)
    else:
        n, c, h, w = x.shape
        p = vit.patch_size
        cut = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, c * p * p)
        tokens = lf.linear_epsilon(cut, vit.embed.weight, vit.embed.bias, LXT_EPSILON)
    if vit.tokens is not None:
        tokens = torch.cat([vit.tokens.expand(len(x), -1, -1), tokens], dim=1)
    if vit.pos is not None:
        tokens = lf.add2(tokens, vit.pos.expand_as(tokens))
    for block in vit.blocks:
        tokens = lf.add2(tokens, _lxt_attention(block.attn, _lxt_layer_norm(block.norm1, tokens), cp))
        hidden = lf.linear_epsilon(_lxt_layer_norm(block.norm2, tokens), block.fc1.weight, block.fc1.bias, LXT_EPSILON)
        hidden = rules.identity(block.act, hidden)
        tokens = lf.add2(tokens, lf.linear_epsilon(hidden, block.fc2.weight, block.fc2.bias, LXT_EPSILON))
    tokens = _lxt_layer_norm(vit.norm, tokens)
    if vit.distill:
        cls = lf.linear_epsilon(tokens[:, 0], vit.head.weight, vit.head.bias, LXT_EPSILON)
        dist = lf.linear_epsilon(tokens[:, 1], vit.head_dist.weight, vit.head_dist.bias, LXT_EPSILON)
        return lf.mul2(lf.add2(cls, dist), 0.5)
    pooled = tokens[:, 0] if vit.pool == "cls" else lf.mean(tokens, 1, False, LXT_EPSILON)
    return lf.linear_epsilon(pooled, vit.head.weight, vit.head.bias, LXT_EPSILON)


def lxt_relevance(vit: ViT, x: np.ndarray, target: np.ndarray, *, cp: bool = False) -> np.ndarray:
    """Input relevance (shape of ``x``) of each sample's ``target`` logit under AttnLRP (``cp=False``) or CP-LRP
    (``cp=True``), by LXT in float64 on a copy of ``vit``.

    LXT's autograd functions return relevance from their backward, so the gradient that reaches ``x`` from a
    backward pass seeded with the target logits' values is the relevance. The LXT forward pass is checked against
    the module's own (they must agree to 1e-9 relative), so the reference explains the exported network."""
    module = _float64(vit)
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    logits = _lxt_logits(module, xt, cp)
    with torch.no_grad():
        expected = module(xt)
    if not torch.allclose(logits, expected, rtol=0, atol=1e-9 * float(expected.abs().max())):
        raise AssertionError(f"LXT's forward pass differs from the module's by {(logits - expected).abs().max():.3g}")
    chosen = logits.gather(1, torch.as_tensor(target, dtype=torch.int64).reshape(-1, 1))
    torch.autograd.backward(chosen, chosen.detach())
    return xt.grad.numpy()
