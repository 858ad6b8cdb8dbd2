"""Small seeded CNNs with the blocks the plain-net Zennit parity test leaves out, and their ONNX exports.

- :func:`resnet_net`: a stem Conv-BN-ReLU, then two torchvision-layout ``BasicBlock``s (Conv-BN-ReLU-Conv-BN, the
  skip ``+``, ReLU; the second downsamples with a 1×1 Conv-BN on the skip path), an average pool and a dense layer.
  The blocks subclass torchvision's ``BasicBlock`` (Zennit's stand-in for it when torchvision is absent), so that
  Zennit's ``ResNetCanonizer`` turns each ``+`` into its ``Sum`` module (Norm rule) and merges every BN into its conv.
- :func:`depthwise_net`: MobileNet-style depthwise-separable blocks (3×3 Conv with groups = channels, BN, ReLU, then
  a 1×1 Conv, BN, ReLU).
- :func:`lrn_net`: AlexNet-style Conv-ReLU-LRN-MaxPool blocks with ``LRN``, a ``torch.nn.LocalResponseNorm`` that
  the legacy exporter writes as one ONNX LRN node. Neither PyTorch exporter does that by itself: both decompose
  ``local_response_norm`` into a Pad/AveragePool/Pow/Div chain (the legacy one with an ``If``), which the explainer
  refuses; native LRN nodes come from Caffe-converted graphs (the zoo's AlexNet, ZFNet, Inception-v1).
- :func:`se_net`: a squeeze-excitation block, x ⊙ sigmoid(gate(x)); ``pass_gates`` makes its product pass all of
  the gradient to x on the torch side, as the explainer's rule for gates does (see :class:`SqueezeExcitation`).

BatchNorm layers get random running statistics and affine parameters (folding an identity BN would prove nothing);
convolutions and dense layers get ``graphs.reference_models.init_weights``. Inputs are 3×16×16, 10 classes.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from graphs.export import export
from graphs.reference_models import init_weights
from tests.support.zennit_compat import import_zennit

INPUT_SHAPE = (1, 3, 16, 16)
NUM_CLASSES = 10


def _conv_bn(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)


@functools.cache
def _block_class() -> type[nn.Module]:
    """A torchvision-layout BasicBlock (the attribute names Zennit's canonizer reads), subclassing the ``BasicBlock``
    class Zennit's canonizer looks for (torchvision's, or the stand-in ``import_zennit`` gives it)."""

    class Block(import_zennit().torchvision.ResNetBasicBlock):
        def __init__(self, c_in: int, c_out: int, stride: int) -> None:
            nn.Module.__init__(self)  # not BasicBlock's own __init__: the stand-in has none
            self.conv1, self.bn1 = _conv_bn(c_in, c_out, 3, stride)
            self.relu = nn.ReLU()
            self.conv2, self.bn2 = _conv_bn(c_out, c_out, 3)
            self.downsample = (nn.Sequential(*_conv_bn(c_in, c_out, 1, stride)) if stride != 1 or c_in != c_out
                               else None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + identity)

    return Block


def _randomise_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model


def _seeded(model: nn.Module, seed: int) -> nn.Module:
    return _randomise_batchnorm(init_weights(model, seed), seed).eval()


def resnet_net(seed: int = 0) -> nn.Module:
    side = INPUT_SHAPE[-1] // 4
    return _seeded(nn.Sequential(*_conv_bn(3, 8, 3), nn.ReLU(), _block_class()(8, 8, 1), _block_class()(8, 16, 2),
                                 nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16 * side * side, NUM_CLASSES)), seed)


def depthwise_net(seed: int = 0) -> nn.Module:
    def separable(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
        return [*_conv_bn(c_in, c_in, 3, stride, groups=c_in), nn.ReLU(), *_conv_bn(c_in, c_out, 1), nn.ReLU()]

    side = INPUT_SHAPE[-1] // 4
    return _seeded(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), *separable(8, 16, 1),
                                 *separable(16, 16, 2), nn.AvgPool2d(2), nn.Flatten(),
                                 nn.Linear(16 * side * side, NUM_CLASSES)), seed)


class _LRNFunction(torch.autograd.Function):
    """``local_response_norm`` for the legacy exporter's tracing only: its ``symbolic`` emits one ONNX LRN node."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
        return F.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g: Any, x: Any, size: int, alpha: float, beta: float, k: float) -> Any:
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class LRN(nn.LocalResponseNorm):
    """``torch.nn.LocalResponseNorm`` (so Zennit's layer maps see it) that exports as an ONNX LRN node."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            with warnings.catch_warnings():  # the trace of local_response_norm's empty-input check, not exported
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k)
        return super().forward(x)


#: LRN parameters: AlexNet's size, β and k; α large enough that the normalisation is far from a constant scale on
#: these activations (with AlexNet's α = 1e-4 it would divide by ≈ k^β everywhere, and pass-through and gradient
#: would differ by a constant factor only)
LRN_PARAMS = {"size": 5, "alpha": 1.0, "beta": 0.75, "k": 2.0}


def lrn_net(seed: int = 0) -> nn.Module:
    side = INPUT_SHAPE[-1] // 4
    return _seeded(nn.Sequential(nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), LRN(**LRN_PARAMS), nn.MaxPool2d(2),
                                 nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), LRN(**LRN_PARAMS), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(16 * side * side, NUM_CLASSES)), seed)


class SqueezeExcitation(nn.Module):
    """x ⊙ sigmoid(W₂ relu(W₁ mean(x))). ``pass_gate`` (for Zennit, after export): the same value, but autograd sends
    all of the gradient, hence all of Zennit's relevance, to x and none to the gate, as the explainer's Pass rule."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.relu, self.fc2 = nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1)
        self.sigmoid = nn.Sigmoid()
        self.pass_gate = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return x + (x * gate - x).detach() if self.pass_gate else x * gate


def se_net(seed: int = 0) -> nn.Module:
    side = INPUT_SHAPE[-1] // 4
    return _seeded(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), SqueezeExcitation(16, 4), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(16 * side * side, NUM_CLASSES)), seed)


def pass_gates(model: nn.Module, on: bool = True) -> nn.Module:
    """Switch every squeeze-excitation gate of ``model`` to pass-through (``on``) or back to the plain product."""
    for m in model.modules():
        if isinstance(m, SqueezeExcitation):
            m.pass_gate = on
    return model


NETS: dict[str, Callable[[], nn.Module]] = {"resnet": resnet_net, "depthwise": depthwise_net, "lrn": lrn_net,
                                           "se": se_net}


class Exports:
    """ONNX exports of the named nets into ``directory`` (``graphs.export.export``: dynamic batch, checked against
    torch), each made once; ``model(name)`` is the module the export was made from."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._models: dict[str, nn.Module] = {}
        self._paths: dict[tuple[str, str], Path] = {}

    def model(self, name: str) -> nn.Module:
        if name not in self._models:
            self._models[name] = NETS[name]()
        return self._models[name]

    def __call__(self, name: str, exporter: str) -> Path:
        key = (name, exporter)
        if key not in self._paths:
            path = self.directory / exporter / f"{name}.onnx"
            export(self.model(name), path, exporter=exporter, input_shape=INPUT_SHAPE)
            self._paths[key] = path
        return self._paths[key]
