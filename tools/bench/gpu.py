"""The CUDA check: the same explanations on the CUDA and the CPU provider, and their speed, in one run.

    python -m tools.bench.gpu [--models digits vgg16 vit-s16] [--methods gradient epsilon-plus-flat attn-lrp]
                              [--batch 4] [--repeats 10]

For each model (``digits``: the shipped digits CNN; ``digits-vit``: the shipped digits ViT; ``vgg16``/``vit-s16``:
the seeded reference networks of ``graphs.cache``, exported here) and method: relevance on CUDA against the CPU
provider on the same inputs (per-sample cosine ≥ 0.9999 required, max relative difference shown), and the median
time of a plain ONNX Runtime forward of the original model on each provider next to ``Explainer.explain`` (which
runs with I/O binding on CUDA). Exit 1 when a cosine misses the bound or CUDA does not work, 0 otherwise; the table
is Markdown for the README. ``tools/gpu_check.sh`` runs this on a GPU machine in one command.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from explainer import Explainer
from explainer.runtime.providers import cuda_works
from tools.bench.baselines import bounds, images

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {"digits": ROOT / "graphs" / "digits_cnn.onnx", "digits-vit": ROOT / "graphs" / "digits_vit.onnx"}
COSINE = 0.9999


def model_path(name: str) -> Path:
    if name in SHIPPED:
        return SHIPPED[name]
    from graphs.cache import reference_graph
    return reference_graph(name)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def plain_forward(path: Path, provider: str) -> Callable[[np.ndarray], object]:
    import onnxruntime as ort
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), providers=providers)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-300)


def check(name: str, methods: list[str], batch: int, repeats: int) -> tuple[list[str], bool]:
    path = model_path(name)
    cpu = Explainer(path, "gradient", provider="cpu")
    gpu = Explainer(path, "gradient", provider="cuda")
    x = images(batch, tuple(cpu.input_shape))
    if cpu.input_shape[0] == 1:
        x = np.clip(x, 0.0, 1.0)
    target = np.arange(batch) % cpu.num_classes
    sessions = {p: plain_forward(path, p) for p in ("cpu", "cuda")}
    forward = {p: median_ms(lambda f=f: f(x), repeats) for p, f in sessions.items()}
    rows, ok = [], True
    kwargs = bounds(tuple(cpu.input_shape))
    for method in methods:
        on_cpu, on_gpu = cpu.with_method(method, **kwargs), gpu.with_method(method, **kwargs)
        a, b = on_cpu.explain(x, target).relevance, on_gpu.explain(x, target).relevance
        cos = float(cosines(a, b).min())
        rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))
        times = {p: median_ms(lambda e=e: e.explain(x, target), repeats)
                 for p, e in (("cpu", on_cpu), ("cuda", on_gpu))}
        ok &= cos >= COSINE
        rows.append(f"| {name} | {batch} | {method} | {cos:.6f} {'✓' if cos >= COSINE else '✗'} | {rel:.1e} | "
                    f"{forward['cpu']:.1f} | {times['cpu']:.1f} | {forward['cuda']:.2f} | {times['cuda']:.2f} | "
                    f"{times['cuda'] / forward['cuda']:.2f} | {times['cpu'] / times['cuda']:.1f}× |")
    return rows, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits", "digits-vit", "vgg16", "vit-s16"])
    parser.add_argument("--methods", nargs="+", default=["gradient", "epsilon-plus-flat", "attn-lrp"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    if not cuda_works():
        import onnxruntime as ort
        print(f"CUDA does not work here: onnxruntime {ort.__version__} offers {ort.get_available_providers()}; "
              "the CUDA provider needs the onnxruntime-gpu package and a GPU", file=sys.stderr)
        return 1
    print(f"| model | batch | method | cosine CUDA vs CPU (≥ {COSINE}) | max rel. diff | CPU forward ms | "
          "CPU explain ms | CUDA forward ms | CUDA explain ms | CUDA explain / forward | CUDA speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    for name in args.models:
        rows, good = check(name, args.methods, args.batch, args.repeats)
        ok &= good
        for row in rows:
            print(row, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
