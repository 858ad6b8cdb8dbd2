"""Time one 224 x 224 SR map (single thread and default threads) against the 0.5 s target.

    python -m tools.bench.sr [--runs 7] [--size 224]

Each thread setting runs in its own subprocess, because BLAS/OpenMP thread counts are fixed when NumPy loads.
Two inputs are timed: a single-channel relevance map (H x W) and the paper's RGB relevance image (H x W x 3).
Wall-clock medians are reported with the median process CPU time: on a shared machine the wall clock includes time
the process waited for a core, the CPU time does not.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.sr", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per setting (median reported)")
    parser.add_argument("--size", type=int, default=224, help="side of the square relevance map")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        sr_worker(json.loads(args.worker))
        return 0
    print(f"SR map, {args.size}x{args.size}, median of {args.runs} runs, target {TARGET_S} s (single thread)")
    print(f"  load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for label, threads in (("1 thread", 1), (f"default threads ({os.cpu_count()} cores)", None)):
        for row in run_worker("tools.bench.sr", {"runs": args.runs, "size": args.size}, threads):
            print(f"  {label:<26} {row['input']:<16} median {row['median']:.3f} s "
                  f"(min {row['min']:.3f}, max {row['max']:.3f}; CPU {row['cpu']:.3f} s)  "
                  f"ratio to target {row['median'] / TARGET_S:.2f}")
    print(f"  load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
