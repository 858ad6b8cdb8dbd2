"""Memory worker: the peak resident memory of one measurement, in this fresh process.

``kind`` 'plain' (a plain session + one forward), 'ours' (``Explainer`` + ``explain``, then the arg-max path) or
'zennit' (Zennit's attribution of the same method on the torch module). Each record carries ``base``, the RSS
after the imports, so that the report can show what the model and the run cost on top of them. 'ours' with
``cache_dir`` (the harness points the session cache there) and ``second`` measures a second build, its relevance
session taken from the cache that a first worker filled ('ours-cached').
"""
from __future__ import annotations

import gc
import time

import numpy as np

from tests.support.zennit_compat import import_zennit
from tools.bench.baselines import bounds, images, plain_session, torch_model, zennit_runner
from tools.bench.harness import emit, memory_kib, reset_peak, worker_main


def _plain(spec: dict, x: np.ndarray, record: dict) -> None:
    start = time.perf_counter()
    sess = plain_session(spec["path"], spec["threads"])
    record["create_cold"] = time.perf_counter() - start
    sess.run(None, {sess.get_inputs()[0].name: x})
    record["peak"] = memory_kib()[1]


def _ours(spec: dict, x: np.ndarray, record: dict) -> None:
    from explainer import Explainer
    from explainer.runtime.providers import resolve_provider
    base = record["base"]
    start = time.perf_counter()
    resolve_provider("auto")  # the CUDA probe an 'auto' Explainer pays once per process
    record["cuda_probe"] = time.perf_counter() - start
    record["cuda_probe_rss"] = memory_kib()[0] - base
    start = time.perf_counter()
    ex = Explainer(spec["path"], spec["method"], provider="cpu", threads=spec["threads"], **bounds(x.shape[1:]))
    record["create_cold"] = time.perf_counter() - start
    record["stages"] = dict(ex.timings)
    record["after_create"], record["peak_create"] = memory_kib()
    ex.explain(x, np.zeros(len(x), np.int64))
    record["rss_after"], record["peak"] = memory_kib()
    ex.explain(x)  # the arg-max path: the relevance graph explains each sample's arg-max class in the same run
    record["peak_argmax"] = memory_kib()[1]


def _zennit(spec: dict, x: np.ndarray, record: dict) -> bool:
    import torch
    model = torch_model(spec["model"], spec["threads"])
    with torch.no_grad():
        classes = int(model(torch.from_numpy(x[:1])).shape[1])
    gc.collect()
    # the random initialisation of the reference module makes weight-sized temporaries that a module loaded from a
    # file would not: measure the peak from here (the weights stay counted, they are resident)
    record["peak_reset"] = reset_peak()
    runner = zennit_runner(model, spec["method"], classes)
    if runner is None:
        return False
    with runner[0]:
        runner[1](x, np.zeros(len(x), np.int64))
    record["peak"] = memory_kib()[1]
    return True


def memory_worker(spec: dict) -> None:
    """Measure ``spec['kind']`` on a batch of ``spec['batch']`` inputs of ``spec['shape']`` and emit one record."""
    kind, b = spec["kind"], spec["batch"]
    # the baseline RSS includes what each side must import: numpy + onnxruntime; + explainer; torch + zennit
    import onnxruntime  # noqa: F401
    if kind == "ours":
        import explainer.api  # noqa: F401
    elif kind == "zennit":
        import_zennit()
    x = images(b, tuple(spec["shape"]), seed=b)
    which = "ours-cached" if kind == "ours" and spec.get("second") else kind
    record = {"kind": "memory", "which": which, "model": spec["model"], "batch": b, "method": spec.get("method")}
    record["base"] = memory_kib()[0]
    if kind == "plain":
        _plain(spec, x, record)
    elif kind == "ours":
        _ours(spec, x, record)
    elif not _zennit(spec, x, record):
        return
    emit(record)


if __name__ == "__main__":
    raise SystemExit(worker_main(memory_worker))
