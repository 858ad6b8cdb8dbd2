"""Import Zennit (the reference LRP implementation) without torchvision.

``zennit.torchvision`` imports two torchvision classes only for isinstance checks; installing torchvision would pull
a multi-GB CUDA build of torch, so the test suite and the benchmarks stub those classes when torchvision is absent.
"""
from __future__ import annotations

import sys
import types


def import_zennit():
    """The ``zennit`` package, with ``zennit.attribution``, ``zennit.composites`` and ``zennit.rules`` loaded."""
    import torch
    stubbed = False
    if "torchvision" not in sys.modules and "zennit.torchvision" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except ImportError:
            stub = types.ModuleType("torchvision")
            models = types.ModuleType("torchvision.models")
            resnet = types.ModuleType("torchvision.models.resnet")
            resnet.Bottleneck = type("Bottleneck", (torch.nn.Module,), {})
            resnet.BasicBlock = type("BasicBlock", (torch.nn.Module,), {})
            stub.models, models.resnet = models, resnet
            sys.modules.update({"torchvision": stub, "torchvision.models": models, "torchvision.models.resnet": resnet})
            stubbed = True
    import zennit
    import zennit.attribution
    import zennit.composites
    import zennit.rules
    if stubbed:
        # zennit.torchvision holds the stand-ins now; left in sys.modules, the spec-less stub makes the dynamo
        # exporter log a traceback per torchvision op ("torchvision.__spec__ is None")
        for name in ("torchvision.models.resnet", "torchvision.models", "torchvision"):
            del sys.modules[name]
    return zennit
