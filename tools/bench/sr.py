"""Time one 224 x 224 SR map (single thread and default threads) against the 0.5 s target.

    python -m tools.bench.sr [--runs 7] [--size 224] [--fidelity]

Each thread setting runs in its own subprocess, because BLAS/OpenMP thread counts are fixed when NumPy loads.
Two inputs are timed: a single-channel relevance map (H x W) and the paper's RGB relevance image (H x W x 3).
Wall-clock medians are reported with the median process CPU time: on a shared machine the wall clock includes time
the process waited for a core, the CPU time does not.

``--fidelity`` also scores saliency at every pixel (``queries="pixels"``, the reference) on a textured map and on a
compact blob with isolated spikes, single thread, and reports how the default (grid queries) and Tsai and Chang's
per-scale patch sizes (7/5/3/3) agree with it: Pearson r and the IoU of the top 10 % pixels.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from tools.bench.harness import emit, run_worker

TARGET_S = 0.5


def _relevance(size: int, seed: int = 0) -> np.ndarray:
    """A deterministic LRP-like relevance tensor (3 x size x size): smooth signed structure times sparse spikes."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    smooth = gaussian_filter(rng.standard_normal((3, size, size)), sigma=(0, 4, 4))
    return smooth * rng.random((3, size, size)) ** 3


def sr_worker(spec: dict) -> None:
    """Time sr_map on both input kinds in this process and emit one record per kind."""
    from explainer.sr.sr_map import paper_relevance_image, sr_map

    relevance = _relevance(spec["size"])
    inputs = {"1-channel HxW": relevance.sum(axis=0), "paper RGB HxWx3": paper_relevance_image(relevance)}
    for name, data in inputs.items():
        sr_map(data)  # warm-up: first call pays for imports and page faults
        times, cpu_times = [], []
        for _ in range(spec["runs"]):
            start, cpu_start = time.perf_counter(), time.process_time()
            sr_map(data)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        emit({"input": name, "median": statistics.median(times), "min": min(times), "max": max(times),
              "cpu": statistics.median(cpu_times)})


def fidelity_maps(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """|R|-like test maps: a smooth random texture (no single object) and a Gaussian blob (sigma 8) with 60 isolated
    spikes of the blob's peak and N(0, 0.05) noise, as in the fidelity review."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    texture = np.abs(gaussian_filter(rng.standard_normal((size, size)), 2.0))
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - size * 0.35, xx - size * 0.55)
    blob = np.exp(-(radius**2) / (2 * 8.0**2)) + rng.normal(0.0, 0.05, (size, size))
    blob.flat[rng.choice(np.flatnonzero(radius > 50), 60, replace=False)] = 1.0
    return {"texture": texture, "blob + spikes": np.abs(blob)}


def fidelity_worker(spec: dict) -> None:
    """Every-pixel reference against the grid default and per-scale patch sizes; one record per map and variant."""
    from explainer.sr.sr_map import sr_map

    variants = {"grid (default)": {}, "pixels, patches 7/5/3/3": {"queries": "pixels", "patch_size": (7, 5, 3, 3)}}
    for name, data in fidelity_maps(spec["size"]).items():
        start, cpu_start = time.perf_counter(), time.process_time()
        reference = sr_map(data, queries="pixels")
        emit({"map": name, "variant": "pixels (reference)", "seconds": time.perf_counter() - start,
              "cpu": time.process_time() - cpu_start, "r": 1.0, "iou": 1.0})
        top = reference >= np.quantile(reference, 0.9)
        for variant, params in variants.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            out = sr_map(data, **params)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            mine = out >= np.quantile(out, 0.9)
            emit({"map": name, "variant": variant, "seconds": seconds, "cpu": cpu,
                  "r": float(np.corrcoef(out.ravel(), reference.ravel())[0, 1]),
                  "iou": float((mine & top).sum() / (mine | top).sum())})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.sr", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per setting (median reported)")
    parser.add_argument("--size", type=int, default=224, help="side of the square relevance map")
    parser.add_argument("--fidelity", action="store_true",
                        help="also compare the grid default with every-pixel scoring (about 30 s more)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        (fidelity_worker if spec.get("fidelity") else sr_worker)(spec)
        return 0
    print(f"SR map, {args.size}x{args.size}, median of {args.runs} runs, target {TARGET_S} s (single thread)")
    print(f"  load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for label, threads in (("1 thread", 1), (f"default threads ({os.cpu_count()} cores)", None)):
        for row in run_worker("tools.bench.sr", {"runs": args.runs, "size": args.size}, threads):
            print(f"  {label:<26} {row['input']:<16} median {row['median']:.3f} s "
                  f"(min {row['min']:.3f}, max {row['max']:.3f}; CPU {row['cpu']:.3f} s)  "
                  f"ratio to target {row['median'] / TARGET_S:.2f}")
    if args.fidelity:
        print("  against every-pixel scoring (1 thread): Pearson r, IoU of the top 10 % pixels, wall (CPU) seconds")
        for row in run_worker("tools.bench.sr", {"size": args.size, "fidelity": True}, 1):
            print(f"  {row['map']:<14} {row['variant']:<26} r {row['r']:.3f}  IoU {row['iou']:.2f}  "
                  f"{row['seconds']:.2f} s ({row['cpu']:.2f} s)")
    print(f"  load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
