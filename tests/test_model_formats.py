"""Models as exporters write them: opsets 9 to the newest, external data, big graphs saved with external data,
dynamic batch and dynamic spatial dims."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn

from explainer import Explainer
from explainer import onnx_io as model_io


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, stride=2), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 5), nn.Softmax(dim=1)).eval()


def _autograd(net: nn.Module, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    logits_net = nn.Sequential(*list(net)[:-1])
    xt = torch.from_numpy(x).requires_grad_(True)
    logits_net(xt).gather(1, torch.from_numpy(target)[:, None]).sum().backward()
    return xt.grad.numpy()


def newest_runnable_opset() -> int:
    """The newest opset both the installed onnx and onnxruntime support (onnx often runs ahead of the runtime)."""
    from onnx import TensorProto, helper
    for version in range(onnx.defs.onnx_opset_version(), 17, -1):
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", version)])
        model.ir_version = 8
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return version
        except Exception:
            continue
    return 17


@pytest.mark.parametrize("opset", [9, 11, 13, 15, 17, newest_runnable_opset()])
def test_every_opset(tmp_path, opset):
    net = _net()
    path = tmp_path / f"net{opset}.onnx"
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    if opset > 17:
        onnx_program = torch.onnx.export(net, (torch.from_numpy(x),), dynamo=True, opset_version=opset,
                                         dynamic_shapes={"input": {0: torch.export.Dim("batch")}},
                                         input_names=["input"])
        onnx_program.save(str(path))
    else:
        torch.onnx.export(net, torch.from_numpy(x), str(path), opset_version=opset, dynamo=False,
                          input_names=["input"], dynamic_axes={"input": {0: "N"}})
    assert onnx.load(str(path), load_external_data=False).opset_import[0].version == opset
    ex = Explainer(str(path), "gradient")
    target = np.array([0, 2, 4])
    np.testing.assert_allclose(ex.explain(x, target).relevance, _autograd(net, x, target), rtol=1e-4, atol=1e-6)
    for method in ("epsilon-plus-flat", "epsilon-alpha2-beta1", "sr-paper"):
        assert np.all(np.isfinite(ex.with_method(method).explain(x).relevance))


def test_external_data_is_read_from_the_model_folder(tmp_path):
    net = _net()
    path = tmp_path / "ext.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 16, 16), str(path), opset_version=13, dynamo=False,
                      input_names=["input"], dynamic_axes={"input": {0: "N"}})
    model = onnx.load(str(path))
    onnx.save_model(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (tmp_path / "weights.bin").exists()
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(Explainer(str(path), "gradient").explain(x, 1).relevance,
                               _autograd(net, x, np.array([1, 1])), rtol=1e-4, atol=1e-6)


def test_large_relevance_graphs_are_saved_with_external_data(tmp_path, monkeypatch):
    """Past protobuf's 2 GB limit the saved graph keeps its weights in <name>.data (threshold lowered here)."""
    net = _net()
    path = tmp_path / "m.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 16, 16), str(path), opset_version=13, dynamo=False,
                      input_names=["input"], dynamic_axes={"input": {0: "N"}})
    ex = Explainer(str(path), "epsilon-plus-flat")
    monkeypatch.setattr(model_io, "EXTERNAL_DATA_THRESHOLD", 1000)
    out = tmp_path / "out" / "rel.onnx"
    ex.save(out)
    assert (tmp_path / "out" / "rel.onnx.data").stat().st_size > 1000
    skeleton = onnx.load(str(out), load_external_data=False)
    big = [t for t in skeleton.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert big and all(int(np.prod(t.dims)) * 4 >= 1024 for t in big)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    rel = sess.run(["relevance"], {"input": x, "target": np.array([3, 4])})[0]
    np.testing.assert_allclose(rel, ex.explain(x, [3, 4]).relevance, rtol=1e-5, atol=1e-7)


def test_dynamic_spatial_dims(tmp_path):
    net = _net()
    path = tmp_path / "dyn.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 16, 16), str(path), opset_version=13, dynamo=False,
                      input_names=["input"], dynamic_axes={"input": {0: "N", 2: "H", 3: "W"}})
    for size in ((16, 16), (20, 24)):
        ex = Explainer(str(path), "gradient", input_shape=(3, *size))
        x = np.random.default_rng(3).standard_normal((2, 3, *size)).astype(np.float32)
        np.testing.assert_allclose(ex.explain(x, 0).relevance, _autograd(net, x, np.array([0, 0])), rtol=1e-4,
                                   atol=1e-6)
