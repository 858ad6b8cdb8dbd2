"""Subprocess harness: each measurement runs in a fresh interpreter and reports ``BENCH-JSON`` lines on stdout.

A fresh process per measurement keeps one run's allocations (ONNX Runtime's arenas keep each session's peak) out of
the next, gives every peak-memory figure its own baseline, and turns an out-of-memory kill into one missing row.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARK = "BENCH-JSON "  # prefix of the result lines a worker prints on stdout
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def log(message: str) -> None:
    """Progress on stderr (stdout carries the records and the report)."""
    print(message, file=sys.stderr, flush=True)


def emit(record: dict) -> None:
    """Report one result record to the parent process."""
    print(MARK + json.dumps(record), flush=True)


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def memory_kib() -> tuple[int, int]:
    """(current RSS, peak RSS) of this process in KiB (VmRSS/VmHWM; ru_maxrss where /proc is missing)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    except (OSError, KeyError, ValueError):
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak, peak


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0); False where that is impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def timed(fn: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def run_worker(module: str, spec: dict, threads: int | None, timeout: float | None = None) -> list[dict]:
    """Run ``python -m module --worker SPEC`` in a fresh interpreter with ``threads`` BLAS/OpenMP threads (None: the
    libraries' defaults); its records. BLAS and OpenMP fix their thread counts when they load, hence the process.
    The explainer's session cache is off in it (``EXPLAINER_CACHE=0``) unless ``spec['cache_dir']`` names one.

    A failed or timed-out worker is logged and gives no records, so the report goes on without its rows."""
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARS}
    # first builds unless a measurement asks for the session cache (in a folder of its own, never the user's)
    env.update({"EXPLAINER_CACHE_DIR": spec["cache_dir"]} if spec.get("cache_dir") else {"EXPLAINER_CACHE": "0"})
    if threads is not None:
        env.update({var: str(threads) for var in THREAD_VARS})
    cmd = [sys.executable, "-m", module, "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=None, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"  worker timed out: {module} {spec.get('kind')} {spec.get('model')}")
        return []
    records = [json.loads(line[len(MARK):]) for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode:
        log(f"  worker failed (exit {done.returncode}): {module} {json.dumps(spec)[:200]}")
    return records


def worker_main(worker: Callable[[dict], None], argv: list[str] | None = None) -> int:
    """Entry point of a worker module: run ``worker`` on the JSON spec of ``--worker SPEC``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "--worker":
        raise SystemExit(f"usage: python -m {worker.__module__} --worker SPEC_JSON (started by run_worker)")
    worker(json.loads(argv[1]))
    return 0
