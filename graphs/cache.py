"""On-demand, cached ONNX exports of the reference models (AlexNet, VGG-16, the small net).

Exports are slow (tens of seconds for VGG-16) and large (VGG-16: 528 MiB per exporter), so each graph is built
once per (name, exporter, seed, torch version) and reused, from a cache outside the work tree:
``$EXPLAINER_GRAPH_CACHE`` if set, else ``$XDG_CACHE_HOME/explainer/graphs`` (``~/.cache/explainer/graphs`` when
``XDG_CACHE_HOME`` is unset). A build is written to a temporary directory and moved into place, external data first,
so a half-written graph is never reused.

Command line: ``python -m graphs.cache alexnet vgg16 --exporter legacy dynamo`` pre-builds graphs.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import tempfile
import time
from pathlib import Path

import onnx
import torch

from graphs.export import EXPORTERS, ExportResult, export
from graphs.reference_models import INPUT_SHAPES, MODEL_NAMES, build

CACHE_ENV = "EXPLAINER_GRAPH_CACHE"


def cache_dir() -> Path:
    """The directory holding generated graphs: ``$EXPLAINER_GRAPH_CACHE`` if set, else ``explainer/graphs`` in the
    user's cache directory (``$XDG_CACHE_HOME``, default ``~/.cache``)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "explainer" / "graphs"


def cache_key(name: str, exporter: str, seed: int) -> str:
    """File stem identifying one build: model, exporter, weight seed and the torch version that exported it."""
    version = re.sub(r"[^0-9A-Za-z.]+", "_", torch.__version__)
    return f"{name.lower()}-{exporter}-seed{seed}-torch{version}"


def graph_files(path: str | Path) -> list[Path]:
    """The ONNX file plus every external data file it references (what must travel together)."""
    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    locations = {
        entry.value
        for tensor in model.graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return [path, *(path.parent / loc for loc in sorted(locations))]


def graph_size(path: str | Path) -> int:
    """Total bytes of the ONNX file and its external data."""
    return sum(f.stat().st_size for f in graph_files(path))


def _validate(name: str, exporter: str) -> None:
    if name.lower() not in MODEL_NAMES:
        raise ValueError(f"unknown reference model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")


def reference_model(name: str, seed: int = 0) -> torch.nn.Module:
    """The torch module (eval mode) carrying exactly the weights of ``reference_graph(name, ..., seed=seed)``."""
    return build(name, seed)


def build_graph(name: str, exporter: str = "legacy", *, seed: int = 0) -> ExportResult:
    """Export ``name`` afresh into the cache (replacing any cached copy) and return the export report."""
    _validate(name, exporter)
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{cache_key(name, exporter, seed)}.onnx"
    with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as tmp:
        staged = Path(tmp) / target.name
        result = export(
            reference_model(name, seed), staged, exporter=exporter, input_shape=INPUT_SHAPES[name.lower()]
        )
        onnx_file, *data_files = graph_files(staged)
        for data in data_files:
            os.replace(data, directory / data.name)
        os.replace(onnx_file, target)
    return dataclasses.replace(result, path=target)


def reference_graph(name: str, exporter: str = "legacy", *, seed: int = 0) -> Path:
    """Path of the ONNX export of reference model ``name`` by ``exporter``, building it only if not cached."""
    _validate(name, exporter)
    target = cache_dir() / f"{cache_key(name, exporter, seed)}.onnx"
    if target.exists():  # written last, after its external data, so its presence means a complete build
        return target
    return build_graph(name, exporter, seed=seed).path


def main(argv: list[str] | None = None) -> int:
    """Pre-build reference graphs; print build time, size and the torch-vs-ONNX Runtime difference of each."""
    parser = argparse.ArgumentParser(prog="python -m graphs.cache", description=main.__doc__)
    parser.add_argument("names", nargs="+", choices=MODEL_NAMES)
    parser.add_argument("--exporter", nargs="+", choices=EXPORTERS, default=["legacy"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    for name in args.names:
        for exporter in args.exporter:
            cached = cache_dir() / f"{cache_key(name, exporter, args.seed)}.onnx"
            if cached.exists() and not args.force:
                print(f"{name:8s} {exporter:7s} cached {graph_size(cached) / 2**20:8.1f} MiB  {cached}")
                continue
            start = time.perf_counter()
            result = build_graph(name, exporter, seed=args.seed)
            elapsed = time.perf_counter() - start
            print(
                f"{name:8s} {exporter:7s} opset {result.opset}  export {result.seconds:6.1f} s  "
                f"total {elapsed:6.1f} s  "
                f"{graph_size(result.path) / 2**20:8.1f} MiB  max|diff| {result.max_abs_diff:.2e} "
                f"(max|logit| {result.max_abs_logit:.2f})  {result.path}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
