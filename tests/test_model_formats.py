"""Models as exporters write them: opsets 9 to the newest, external data, big graphs saved with external data,
dynamic batch and dynamic spatial dims; and the graphs we emit follow the model's opset (at least 17)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

from explainer import METHODS, Explainer
from explainer import onnx_io as model_io
from tests.support.emitted import check_emitted_graphs, newest_runnable_opset, with_opset
from tests.support.random_graphs import avg_pool2d, conv2d


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


class _PoolNet:
    """Conv -> Relu -> AveragePool -> Flatten -> MatMul at a given opset, with dilations on the pool from opset 19
    (where AveragePool gained them), and its float64 NumPy forward."""

    def __init__(self, opset: int) -> None:
        rng = np.random.default_rng(opset)
        self.opset = opset
        self.w = (rng.standard_normal((4, 3, 3, 3)) * 0.4).astype(np.float32)
        self.b = (rng.standard_normal(4) * 0.1).astype(np.float32)
        self.pool = dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1],
                         dilations=[2, 2] if opset >= 19 else [1, 1])
        spatial = avg_pool2d(np.zeros((1, 4, 12, 12)), self.pool["kernel_shape"], self.pool["strides"],
                             self.pool["pads"], self.pool["dilations"]).shape[2:]
        self.dense = (rng.standard_normal((4 * int(np.prod(spatial)), 5)) * 0.3).astype(np.float32)

    def onnx(self) -> onnx.ModelProto:
        pool = dict(self.pool) if self.opset >= 19 else {k: v for k, v in self.pool.items() if k != "dilations"}
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node("Relu", ["c"], ["r"]),
                 helper.make_node("AveragePool", ["r"], ["p"], **pool),
                 helper.make_node("Flatten", ["p"], ["f"]),
                 helper.make_node("MatMul", ["f", "dense"], ["scores"])]
        inits = [numpy_helper.from_array(v, k) for k, v in (("w", self.w), ("b", self.b), ("dense", self.dense))]
        graph = helper.make_graph(nodes, "pool_net", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                  ["N", 3, 12, 12])],
                                  [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 5])], inits)
        model = with_opset(helper.make_model(graph), self.opset)
        onnx.checker.check_model(model, full_check=True)
        return model

    def forward64(self, x: np.ndarray) -> np.ndarray:
        c = np.maximum(conv2d(x, self.w, self.b, [1, 1], [1, 1, 1, 1], [1, 1], 1), 0.0)
        p = avg_pool2d(c, self.pool["kernel_shape"], self.pool["strides"], self.pool["pads"], self.pool["dilations"])
        return p.reshape(len(x), -1) @ self.dense.astype(np.float64)


@pytest.mark.parametrize("opset", range(17, newest_runnable_opset() + 1))
def test_graphs_follow_the_models_opset(opset):
    """From opset 17 to the newest ONNX Runtime runs (opset 19 with a dilated AveragePool, which opset 17 cannot
    express): the emitted graphs are valid at the model's opset, the gradient is the float64 reference's
    derivative (central finite differences, h = 1e-5), and every method explains."""
    net = _PoolNet(opset)
    ex = Explainer(net.onnx(), "gradient", provider="cpu", low=-3.0, high=3.0)
    x = np.random.default_rng(opset).uniform(-3.0, 3.0, (1, 3, 12, 12)).astype(np.float32)
    np.testing.assert_allclose(ex.forward(x), net.forward64(x), rtol=1e-4, atol=1e-5)
    grad = ex.explain(x, 2).relevance.astype(np.float64)
    rng, h = np.random.default_rng(1), 1e-5
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        fd = (net.forward64(x + h * v)[0, 2] - net.forward64(x - h * v)[0, 2]) / (2 * h)
        analytic = float((grad * v).sum())
        assert abs(analytic - fd) <= 1e-3 * abs(fd) + 1e-4 * float(np.abs(grad * v).sum()) + 1e-7, (analytic, fd)
    for method in METHODS:
        other = ex.with_method(method)
        check_emitted_graphs(other)
        assert other.relevance_model.skeleton.opset_import[0].version == opset
        assert np.all(np.isfinite(other.explain(x).relevance)), method
