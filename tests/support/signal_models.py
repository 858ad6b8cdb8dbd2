"""Small seeded non-image models and their ONNX exports: a Conv1d signal classifier, an MLP on tabular features,
a scalar regressor, a multi-label sigmoid head (the Sigmoid between two reshapes) and a two-output MLP.

Every model takes float32 input with a dynamic batch axis; weights come from a seeded generator (no training).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

#: per-sample input shapes
SIGNAL_SHAPE = (2, 32)
FEATURES = 8


class SignalNet(nn.Module):
    """Conv1d-ReLU-MaxPool-Conv1d-ReLU-flatten-dense: a 1-D signal classifier [N, 2, 32] -> [N, 3]."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(2, 4, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
                                      nn.Conv1d(4, 6, 3), nn.ReLU())
        self.head = nn.Linear(6 * 14, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


class TabularNet(nn.Module):
    """A dense-ReLU-dense MLP on ``FEATURES`` features with ``outputs`` outputs; ``squeeze`` returns [N] for one
    output (a regressor); ``sigmoid`` puts a multi-label Sigmoid between two reshapes ([N, 2, outputs/2] and back)."""

    def __init__(self, outputs: int = 4, *, squeeze: bool = False, sigmoid: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(FEATURES, 16), nn.ReLU(), nn.Linear(16, outputs))
        self.squeeze, self.sigmoid, self.outputs = squeeze, sigmoid, outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.sigmoid:
            y = torch.flatten(torch.sigmoid(y.reshape(-1, 2, self.outputs // 2)), 1)
        return y.squeeze(1) if self.squeeze else y


class TwoHeads(nn.Module):
    """An MLP with two outputs: class scores [N, 3] and an embedding [N, 5]."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(FEATURES, 12), nn.ReLU())
        self.scores, self.embedding = nn.Linear(12, 3), nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.scores(h), self.embedding(h)


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with weights and biases drawn from N(0, 0.5²) by a generator seeded with ``seed``, in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.eval()


def export(model: nn.Module, sample_shape: tuple[int, ...], path: Path, *, dynamo: bool = False,
           output_names: tuple[str, ...] = ("scores",)) -> Path:
    """``model`` exported to ``path`` with input 'x' and a dynamic batch axis (legacy exporter unless ``dynamo``)."""
    x = torch.randn(2, *sample_shape, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["x"], output_names=list(output_names),
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},), verbose=False,
                              external_data=False)
        else:
            axes = {name: {0: "batch"} for name in ("x", *output_names)}
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                              output_names=list(output_names), dynamic_axes=axes)
    return path


#: name -> (module maker, per-sample input shape, output names) of every model above
MODELS = {
    "signal": (SignalNet, SIGNAL_SHAPE, ("scores",)),
    "tabular": (TabularNet, (FEATURES,), ("scores",)),
    "regressor": (lambda: TabularNet(1, squeeze=True), (FEATURES,), ("value",)),
    "multilabel": (lambda: TabularNet(6, sigmoid=True), (FEATURES,), ("labels",)),
    "two_heads": (TwoHeads, (FEATURES,), ("scores", "embedding")),
}


def seeded_model(name: str, seed: int = 0, *, biases: bool = True) -> nn.Module:
    """The seeded module ``name`` of ``MODELS`` (``biases`` False: every bias zero, so that LRP-0 conserves)."""
    model = seeded(MODELS[name][0](), seed)
    if not biases:
        with torch.no_grad():
            for key, p in model.named_parameters():
                if key.endswith("bias"):
                    p.zero_()
    return model


def exported(name: str, folder: Path, *, dynamo: bool = False, biases: bool = True) -> Path:
    """``MODELS[name]`` seeded and exported into ``folder`` (the file is reused when it exists)."""
    path = folder / f"{name}{'_dynamo' if dynamo else ''}{'' if biases else '_nobias'}.onnx"
    if not path.exists():
        _, shape, outputs = MODELS[name]
        export(seeded_model(name, biases=biases), shape, path, dynamo=dynamo, output_names=outputs)
    return path


def int_input_model(path: Path) -> Path:
    """A model whose only input is int64 token ids [N, 4] (cast to float, then one dense layer to 3 scores)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    graph = helper.make_graph(
        [helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT), helper.make_node("MatMul", ["f", "w"], ["y"])],
        "ids", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path
