"""Performance of explainer against its targets, in one run on one machine and one set of weights.

    python tools/bench.py [--models alexnet vgg16] [--batches 1 8] [--methods gradient epsilon-plus-flat ...]
                          [--repeats 3] [--no-zennit] [--threads N] [--quick] [--out FILE]

Measures, per reference model (``graphs.cache``: the ONNX export and the torch module with the same weights):

* explanation time -- ``Explainer.explain(x, target)`` (logits + relevance) against a plain ``onnxruntime``
  forward pass of the original exported file; Zennit's attribution of the same method on the same weights
  (torch CPU) and the speed-up ours / Zennit (target >= 1.7x). Median of ``--repeats`` after one warm-up, the three
  interleaved round by round so that load drift on a shared machine hits all of them alike;
* ``explain(x)`` without targets (the arg-max path: one extra forward pass, and a forward session built on the
  first call);
* session creation -- ``Explainer(path, method)`` against a plain session on the original file (target <= 1.5x),
  split into its stages (load, canonicalise with its probe session, rewrite, relevance session, verify);
* peak resident memory, each measurement in a fresh subprocess: a plain session + forward against
  ``Explainer`` + ``explain`` (target <= 2x), and Zennit's;
* SR map time per 224 x 224 map (median of 3; target 0.5 s);
* region perturbation (L=100) scored by ``Explainer.forward`` against the bare images x repeats x (L+1) forwards
  of the original model (target <= 1.2x).

All runtimes use the same thread count (``--threads``, default: the cores this process may use): ONNX Runtime's
intra-op threads (the explainer's sessions get it through a wrapper around ``make_session``) and
``torch.set_num_threads``. The tables are Markdown; ``--out FILE`` writes them to a file as well.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_METHODS = ("gradient", "epsilon-plus-flat", "epsilon-gamma-box", "epsilon-alpha2-beta1-flat")
IMAGENET_LOW = np.array([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], np.float32)
IMAGENET_HIGH = np.array([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], np.float32)
TARGET_SPEEDUP = 1.7      # ours must be at least this much faster than Zennit
TARGET_CREATION = 1.5     # Explainer(...) / plain session
TARGET_MEMORY = 2.0       # peak RSS, Explainer + explain / plain session + forward
TARGET_SR_S = 0.5         # seconds per 224 x 224 SR map
TARGET_EVAL = 1.2         # region perturbation / bare forwards
MARK = "BENCH-JSON "      # prefix of the result lines a worker prints on stdout
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# ---------------------------------------------------------------------------------------------------- helpers
def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(record: dict) -> None:
    print(MARK + json.dumps(record), flush=True)


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


def images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Deterministic inputs inside the ImageNet-normalised pixel range (as the parity tests use)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal((n, *shape)), IMAGENET_LOW.min(), IMAGENET_HIGH.max()).astype(np.float32)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


from tests.support.zennit_compat import import_zennit  # noqa: E402


def plain_session(path: str, threads: int):
    """A plain onnxruntime CPU session on the exported file, the reference every ratio is taken against."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def zennit_runner(model, method: str, classes: int):
    """(context manager, run(x) -> relevance) for Zennit's version of ``method``; None when it has none here.

    gradient: plain autograd; LRP methods: ``zennit.attribution.Gradient`` with the named composite, seeded with
    output * one-hot (the hooks are registered once, on entering the context, like our session is built once)."""
    import torch
    zennit = import_zennit()
    zc = zennit.composites
    composites = {
        "epsilon-plus": zc.EpsilonPlus, "epsilon-plus-flat": zc.EpsilonPlusFlat,
        "epsilon-alpha2-beta1": zc.EpsilonAlpha2Beta1, "epsilon-alpha2-beta1-flat": zc.EpsilonAlpha2Beta1Flat,
        "epsilon-gamma-box": lambda: zc.EpsilonGammaBox(low=torch.as_tensor(IMAGENET_LOW).reshape(1, -1, 1, 1),
                                                        high=torch.as_tensor(IMAGENET_HIGH).reshape(1, -1, 1, 1)),
    }
    eye = torch.eye(classes)
    if method == "gradient":
        def run_gradient(x: np.ndarray, target: np.ndarray):
            xg = torch.from_numpy(x).requires_grad_(True)
            out = model(xg)
            (grad,) = torch.autograd.grad(out, xg, eye[torch.from_numpy(target)])
            return grad
        return contextlib.nullcontext(), run_gradient
    if method not in composites:
        return None
    attributor = zennit.attribution.Gradient(model, composites[method]())

    def run_lrp(x: np.ndarray, target: np.ndarray):
        onehot = eye[torch.from_numpy(target)]
        _, relevance = attributor(torch.from_numpy(x), lambda out: out * onehot)
        return relevance
    return attributor, run_lrp


class StageTimer:
    """Accumulates the time spent in wrapped functions, by stage name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.rss_after: dict[str, int] = {}  # KiB resident right after the stage's last call

    def wrap(self, owner: Any, attr: str, stage: str | Callable[..., str], **defaults: Any) -> None:
        """Time ``owner.attr`` as ``stage`` (or ``stage(*args)``), passing ``defaults`` as keyword arguments."""
        original = getattr(owner, attr)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for key, value in defaults.items():
                kwargs.setdefault(key, value)
            name = stage(*args) if callable(stage) else stage
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start
                self.rss_after[name] = memory_kib()[0]

        setattr(owner, attr, wrapper)

    def reset(self) -> None:
        self.seconds.clear()
        self.rss_after.clear()


def _session_stage(model: Any, *_: Any) -> str:
    """'forward session' for the canonical forward graph (built by ``build_forward_model``), else 'session'."""
    graph = getattr(getattr(model, "skeleton", None), "graph", None)
    return "forward session" if graph is not None and graph.name == "explainer_forward" else "session"


def instrument(threads: int) -> StageTimer:
    """Give every session the explainer makes ``threads`` intra-op threads and time Explainer's stages."""
    import explainer.api as explainer_mod
    import explainer.frontend.canonicalise as canonicalise_mod
    import explainer.frontend.fold as probe_mod
    stages = StageTimer()
    stages.wrap(explainer_mod, "load_model", "load")
    stages.wrap(explainer_mod, "canonicalise", "canonicalise")
    stages.wrap(canonicalise_mod, "run_probe", "probe")
    stages.wrap(probe_mod, "make_session", "probe session", threads=threads)
    stages.wrap(explainer_mod, "build_relevance_model", "rewrite")
    stages.wrap(explainer_mod, "make_session", _session_stage, threads=threads)
    stages.wrap(explainer_mod.Explainer, "_verify", "verify")
    return stages


def set_torch_threads(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------- workers
def timing_worker(spec: dict) -> None:
    """Timings of one model in this process: plain session creation (``time_plain``), then per method in
    ``methods`` Explainer creation and explanation (ours, plain, Zennit), then SR map and evaluation (with an
    Explainer of ``extras_method`` when no method ran). The main process runs one worker per method so that no
    process holds more than one Explainer (ONNX Runtime's arena keeps each session's peak)."""
    threads, repeats, path, name = spec["threads"], spec["repeats"], spec["path"], spec["model"]
    import onnxruntime as ort  # noqa: F401

    from explainer import Explainer
    stages = instrument(threads)
    torch_model = None
    if spec["zennit"]:
        set_torch_threads(threads)
        from graphs.cache import reference_model
        torch_model = reference_model(name)
        for p in torch_model.parameters():
            p.requires_grad_(False)
        import_zennit()

    # --- plain session creation (first one warms the file cache and ORT's kernel registry)
    plain_times = []
    for i in range(repeats + 1 if spec["time_plain"] else 1):
        sess = None
        gc.collect()
        start = time.perf_counter()
        sess = plain_session(path, threads)
        t = time.perf_counter() - start
        if i:
            plain_times.append(t)
    input_name = sess.get_inputs()[0].name
    shape = tuple(int(d) for d in sess.get_inputs()[0].shape[1:])
    if plain_times:
        emit({"kind": "plain_create", "model": name, "seconds": plain_times})
        log(f"  [{name}] plain session {median(plain_times):.2f} s")

    def forward(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {input_name: x})[0]

    batches = {b: images(b, shape, seed=b) for b in spec["batches"]}
    targets = {b: np.argmax(forward(x), axis=1).astype(np.int64) for b, x in batches.items()}
    classes = int(forward(batches[spec["batches"][0]][:1]).shape[1])
    bounds = {"low": IMAGENET_LOW, "high": IMAGENET_HIGH} if shape[0] == 3 else {}

    ex = None
    for index, method in enumerate(spec["methods"]):
        # --- creation: median of `repeats` fresh Explainers, the last one kept for the explanations
        creations, breakdowns = [], []
        for _ in range(repeats):
            ex = None
            gc.collect()
            stages.reset()
            start = time.perf_counter()
            ex = Explainer(path, method, provider="cpu", **bounds)
            creations.append(time.perf_counter() - start)
            breakdowns.append(dict(stages.seconds))
        # the stages of the creation with the median total, so that they add up to it
        middle = sorted(range(len(creations)), key=creations.__getitem__)[(len(creations) - 1) // 2]
        emit({"kind": "create", "model": name, "method": method, "seconds": creations,
              "stages": breakdowns[middle]})
        log(f"  [{name}] Explainer({method}) {median(creations):.2f} s "
            f"({', '.join(f'{k} {v:.2f}' for k, v in sorted(breakdowns[middle].items()))})")

        runner = zennit_runner(torch_model, method, classes) if torch_model is not None else None
        context = runner[0] if runner else contextlib.nullcontext()
        with context:
            for b, x in batches.items():
                tgt = targets[b]
                explain = functools.partial(ex.explain, x, tgt)
                calls: dict[str, Callable[[], Any]] = {"plain": functools.partial(forward, x), "ours": explain}
                if runner:
                    calls["zennit"] = functools.partial(runner[1], x, tgt)
                for call in calls.values():  # warm-up
                    call()
                times: dict[str, list[float]] = {k: [] for k in calls}
                for _ in range(repeats):
                    for key, call in calls.items():
                        times[key].append(timed(call))
                record = {"kind": "explain", "model": name, "method": method, "batch": b, **times}
                if spec["argmax"] and index == 0:
                    # the arg-max path: explain(x) without targets runs the forward session first (built lazily)
                    first = timed(lambda: ex.explain(x))
                    if b == spec["batches"][0]:
                        record["argmax_first"] = first
                    record["argmax"] = [timed(lambda: ex.explain(x)) for _ in range(repeats)]
                    record["forward"] = [timed(lambda: ex.forward(x)) for _ in range(repeats)]
                emit(record)
                log(f"  [{name}] b{b} {method}: " + ", ".join(f"{k} {1e3 * median(v):.1f} ms"
                                                              for k, v in times.items()))
        runner = None
        if index < len(spec["methods"]) - 1:
            ex = None
            gc.collect()

    if not (spec["sr"] or spec["eval_images"]):
        return
    if ex is None:
        ex = Explainer(path, spec["extras_method"], provider="cpu", **bounds)
    relevance = ex.explain(batches[spec["batches"][0]][:1], targets[spec["batches"][0]][:1]).relevance_map()[0]
    # --- SR map per 224 x 224 map (only for models with such inputs)
    if spec["sr"] and relevance.shape == (224, 224):
        from explainer.sr.sr_map import sr_map
        sr_map(relevance)
        emit({"kind": "sr", "model": name, "seconds": [timed(lambda: sr_map(relevance)) for _ in range(3)]})

    # --- region perturbation scored by Explainer.forward, against the bare forwards of the original
    if spec["eval_images"]:
        from explainer.evaluation.region_perturbation import region_perturbation
        from explainer.evaluation.regions import max_regions
        n, reps, bs = spec["eval_images"], spec["eval_repeats"], spec["eval_batch"]
        steps = min(spec["eval_steps"], max_regions(shape[-2], shape[-1], 9))  # 32x32 inputs hold only 9 regions
        imgs = images(n, shape, seed=100)
        heat = ex.explain(imgs).relevance_map()
        inside = [0.0, 0]

        def scorer(x: np.ndarray) -> np.ndarray:
            start = time.perf_counter()
            out = ex.forward(x)
            inside[0] += time.perf_counter() - start
            inside[1] += len(x)
            return out

        rows = n * reps * (steps + 1)
        block = np.ascontiguousarray(np.resize(imgs, (bs, *shape)))

        def bare() -> None:
            done = 0
            while done < rows:
                take = min(bs, rows - done)
                forward(block[:take])
                done += take

        forward(block)
        ex.forward(block)  # warm both sessions at this batch size
        bare_before = timed(bare)
        start = time.perf_counter()
        result = region_perturbation(scorer, imgs, heat, steps=steps, repeats=reps, low=IMAGENET_LOW,
                                     high=IMAGENET_HIGH, batch_size=bs, progress=False)
        eval_s = time.perf_counter() - start
        bare_after = timed(bare)  # before and after: the load of a shared machine drifts
        emit({"kind": "eval", "model": name, "images": n, "steps": steps, "repeats": reps, "batch": bs,
              "rows": rows, "scored_rows": inside[1], "eval": eval_s, "scorer": inside[0],
              "bare": (bare_before + bare_after) / 2, "bare_each": [bare_before, bare_after],
              "aopc": float(result.aopc)})
        log(f"  [{name}] evaluation {eval_s:.2f} s (scorer {inside[0]:.2f} s) vs bare {bare_before:.2f} s "
            f"before, {bare_after:.2f} s after")


def memory_worker(spec: dict) -> None:
    """Peak RSS of one measurement in this fresh process: 'plain', 'ours' or 'zennit'."""
    threads, path, kind, b = spec["threads"], spec["path"], spec["kind"], spec["batch"]
    import onnxruntime as ort  # noqa: F401
    record = {"kind": "memory", "which": kind, "model": spec["model"], "batch": b, "method": spec.get("method")}
    if kind == "plain":
        sess_shape = spec["shape"]
        x = images(b, tuple(sess_shape), seed=b)
        base, _ = memory_kib()
        start = time.perf_counter()
        sess = plain_session(path, threads)
        record["create_cold"] = time.perf_counter() - start
        sess.run(None, {sess.get_inputs()[0].name: x})
        record["peak"] = memory_kib()[1]
    elif kind == "ours":
        from explainer import Explainer
        from explainer.runtime.providers import resolve_provider
        stages = instrument(threads)
        x = images(b, tuple(spec["shape"]), seed=b)
        base, _ = memory_kib()
        start = time.perf_counter()
        resolve_provider("auto")  # the CUDA probe an 'auto' Explainer pays once per process
        record["cuda_probe"] = time.perf_counter() - start
        record["cuda_probe_rss"] = memory_kib()[0] - base
        start = time.perf_counter()
        bounds = {"low": IMAGENET_LOW, "high": IMAGENET_HIGH} if spec["shape"][0] == 3 else {}
        ex = Explainer(path, spec["method"], provider="cpu", **bounds)
        record["create_cold"] = time.perf_counter() - start
        record["after_create"], record["peak_create"] = memory_kib()
        record["stage_rss"] = dict(stages.rss_after)
        tgt = np.zeros(b, np.int64)
        ex.explain(x, tgt)
        record["peak"] = memory_kib()[1]
        record["rss_after"] = memory_kib()[0]
        ex.explain(x)  # the arg-max path adds the forward session
        record["peak_argmax"] = memory_kib()[1]
    else:
        import torch
        set_torch_threads(threads)
        from graphs.reference_models import build
        x = images(b, tuple(spec["shape"]), seed=b)
        import_zennit()
        base, _ = memory_kib()
        model = build(spec["model"])
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            classes = int(model(torch.from_numpy(x[:1])).shape[1])
        gc.collect()
        # the random initialisation of the reference module makes weight-sized temporaries that a module loaded
        # from a file would not: measure the peak from here (the weights stay counted, they are resident)
        record["peak_reset"] = reset_peak()
        runner = zennit_runner(model, spec["method"], classes)
        if runner is None:
            return
        with runner[0]:
            runner[1](x, np.zeros(b, np.int64))
        record["peak"] = memory_kib()[1]
    record["base"] = base
    emit(record)


def run_worker(spec: dict, threads: int, timeout: float | None = None) -> list[dict]:
    """Run a worker in a fresh interpreter; its result records (errors are logged and give no records)."""
    env = dict(os.environ, **{var: str(threads) for var in _THREAD_VARS})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"  worker timed out: {spec.get('kind')} {spec.get('model')}")
        return []
    records = [json.loads(line[len(MARK):]) for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode:
        log(f"  worker failed (exit {done.returncode}): {json.dumps(spec)[:200]}")
    return records


# ---------------------------------------------------------------------------------------------------- report
def machine_lines(threads: int, zennit: bool) -> list[str]:
    import onnxruntime as ort
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        total = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {total / 2**20:.1f} GiB RAM"
    lines = [
        f"- machine: {platform.machine()} {cpu}, {os.cpu_count()} cores ({usable} usable){mem}, "
        f"load average {os.getloadavg()[0]:.2f} at start",
        f"- python {platform.python_version()}, numpy {np.__version__}, onnxruntime {ort.__version__} "
        f"(available: {', '.join(ort.get_available_providers())}; used: CPUExecutionProvider)",
        f"- threads: {threads} (ONNX Runtime intra-op threads for every session, torch.set_num_threads)",
    ]
    if threads > 1 and os.getloadavg()[0] > usable:
        lines.append(f"- **warning**: load average {os.getloadavg()[0]:.1f} exceeds the {usable} usable cores: "
                     f"{threads}-thread timings wait for cores at every synchronisation (torch, hence Zennit, far "
                     "more than ONNX Runtime); compare with --threads 1")
    if zennit:
        from importlib.metadata import version

        import torch
        lines.append(f"- torch {torch.__version__}, zennit {version('zennit')}")
    return lines


def fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def verdict(value: float | None, target: float, higher_is_better: bool = False) -> str:
    if value is None:
        return "–"
    ok = value >= target if higher_is_better else value <= target
    return f"{value:.2f}× {'✓' if ok else '✗'}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def report(records: list[dict], args: argparse.Namespace, header: list[str]) -> str:
    by = defaultdict(list)
    for r in records:
        by[r["kind"]].append(r)
    out = ["# explainer benchmark", "", f"`{header[0]}`", "", *header[1:], ""]

    # explanation time
    rows, argmax_rows = [], []
    for r in by["explain"]:
        plain, ours, zen = median(r["plain"]), median(r["ours"]), median(r.get("zennit", []))
        rows.append([r["model"], str(r["batch"]), r["method"], fmt(plain, 1e3), fmt(ours, 1e3),
                     fmt(ratio(ours, plain), digits=2), fmt(zen, 1e3), fmt(ratio(zen, plain), digits=2),
                     verdict(ratio(zen, ours), TARGET_SPEEDUP, higher_is_better=True)])
        if "argmax" in r:
            argmax_rows.append([r["model"], str(r["batch"]), r["method"], fmt(ours, 1e3), fmt(median(r["argmax"]), 1e3),
                                fmt(median(r["forward"]), 1e3), fmt(plain, 1e3),
                                fmt(ratio(median(r["forward"]), plain), digits=2), fmt(r.get("argmax_first"), 1e3)])
    out += [f"## Explanation time (median of {args.repeats} after a warm-up, ms)", ""]
    out += table(["model", "batch", "method", "ORT forward", "ours explain", "ours / fwd", "Zennit", "Zennit / fwd",
                  f"speed-up vs Zennit (≥ {TARGET_SPEEDUP})"], rows) + [""]
    if argmax_rows:
        out += ["### explain(x) without targets (arg-max path: forward session first)", ""]
        out += table(["model", "batch", "method", "explain(x, target)", "explain(x)", "Explainer.forward",
                      "ORT forward (original)", "forward / original",
                      "first explain(x) (builds the forward session if none yet)"],
                     argmax_rows) + [""]

    # session creation
    plain_create = {r["model"]: median(r["seconds"]) for r in by["plain_create"]}
    rows = []
    stage_names = ["load", "canonicalise", "probe", "probe session", "verify", "forward session", "rewrite",
                   "session"]
    for r in by["create"]:
        plain, ours = plain_create.get(r["model"]), median(r["seconds"])
        st = r["stages"]
        # top-level stages only (probe is inside canonicalise; the forward session inside verify, when it runs)
        top = ("load", "canonicalise", "rewrite", "session", "verify")
        other = ours - sum(st.get(k, 0.0) for k in top) - (0.0 if "verify" in st else st.get("forward session", 0.0))
        rows.append([r["model"], r["method"], fmt(plain, digits=2), fmt(ours, digits=2),
                     verdict(ratio(ours, plain), TARGET_CREATION)]
                    + [fmt(st.get(k), digits=2) for k in stage_names] + [fmt(other, digits=2),
                                                                        fmt(ratio(st.get("session"), plain), digits=2)])
    out += [f"## Session creation (median of {args.repeats}, s)", "",
            "Stages of `Explainer(path, method)` (of the creation with the median total): canonicalise includes the "
            "probe (which includes its session); 'session' is the relevance session alone; 'forward session' is the "
            "canonical forward graph's session (built inside verify where verify uses it).", ""]
    out += table(["model", "method", "plain ORT session", "Explainer", f"ratio (≤ {TARGET_CREATION})"]
                 + stage_names + ["other", "relevance session / plain"], rows) + [""]

    # memory
    mem = {(r["which"], r["model"], r["batch"], r["method"]): r for r in by["memory"]}
    rows, probe_note = [], None
    for (which, model, b, method), r in mem.items():
        if which != "ours":
            continue
        plain = mem.get(("plain", model, b, None))
        zen = mem.get(("zennit", model, b, method))
        p_peak = plain["peak"] if plain else None
        p_delta = plain["peak"] - plain["base"] if plain else None
        o_delta = r["peak"] - r["base"]
        rows.append([model, str(b), method, fmt(p_peak, 1 / 1024, 0), fmt(r["peak"], 1 / 1024, 0),
                     verdict(ratio(r["peak"], p_peak), TARGET_MEMORY), fmt(p_delta, 1 / 1024, 0),
                     fmt(o_delta, 1 / 1024, 0), fmt(ratio(o_delta, p_delta), digits=2),
                     fmt(r["after_create"] - r["base"], 1 / 1024, 0), fmt(r["peak_argmax"], 1 / 1024, 0),
                     fmt(zen["peak"] if zen else None, 1 / 1024, 0),
                     fmt(zen["peak"] - zen["base"] if zen else None, 1 / 1024, 0)])
        probe_note = probe_note or r
    out += ["## Peak resident memory (MiB, each a fresh process)", "",
            "peak = VmHWM of the process; Δ = peak minus the RSS after imports (plain: numpy + onnxruntime; ours: "
            "+ explainer; Zennit: torch + zennit), i.e. what the model and the run cost. Zennit's peak is taken after "
            "the torch module is built (its random initialisation's temporaries left out; its weights counted).", ""]
    out += table(["model", "batch", "method", "plain peak", "ours peak", f"ratio (≤ {TARGET_MEMORY})", "plain Δ",
                  "ours Δ", "Δ ratio", "ours Δ after Explainer()", "ours peak + explain(x)", "Zennit peak",
                  "Zennit Δ"], rows) + [""]
    stage_order = ["load", "probe session", "probe", "canonicalise", "forward session", "verify", "rewrite", "session"]
    rows = [[r["model"], str(r["batch"]), r["method"]]
            + [fmt(r["stage_rss"][k] - r["base"] if k in r.get("stage_rss", {}) else None, 1 / 1024, 0)
               for k in stage_order]
            + [fmt(r["peak_create"] - r["base"], 1 / 1024, 0), fmt(r["rss_after"] - r["base"], 1 / 1024, 0),
               fmt(r["peak"] - r["base"], 1 / 1024, 0)]
            for (which, *_), r in mem.items() if which == "ours"]
    if rows:
        out += ["Ours, RSS above the post-import baseline right after each stage of `Explainer(...)` (MiB, in the "
                "order they run), then the peak of the creation, the RSS after `explain(x, target)` and the peak:", ""]
        out += table(["model", "batch", "method"] + [f"after {k}" for k in stage_order]
                     + ["creation peak", "after explain", "peak"], rows) + [""]
    if probe_note:
        out += [f"'auto' provider probe (`cuda_works()`): {probe_note['cuda_probe']:.2f} s, "
                f"{probe_note['cuda_probe_rss'] / 1024:+.0f} MiB RSS.", ""]
    cold = [(r["model"], r["batch"], r["method"], r["create_cold"]) for r in by["memory"] if r["which"] == "ours"]
    cold_plain = {(r["model"], r["batch"]): r["create_cold"] for r in by["memory"] if r["which"] == "plain"}
    if cold:
        out += ["Cold creation in the fresh processes (first session of the process, s): "
                + "; ".join(f"{m} b{b} {meth}: Explainer {t:.2f} vs plain {fmt(cold_plain.get((m, b)), digits=2)}"
                            for m, b, meth, t in cold), ""]

    # SR map
    if by["sr"]:
        out += [f"## SR map per 224×224 map (median of 3, s; target {TARGET_SR_S} s)", ""]
        out += table(["model", "median", "min", "max", "ratio to target"],
                     [[r["model"], fmt(median(r["seconds"]), digits=3), fmt(min(r["seconds"]), digits=3),
                       fmt(max(r["seconds"]), digits=3), verdict(median(r["seconds"]) / TARGET_SR_S, 1.0)]
                      for r in by["sr"]]) + [""]

    # evaluation
    rows = [[r["model"], str(r["images"]), str(r["steps"]), str(r["repeats"]), str(r["batch"]),
             f"{r['bare']:.2f} ({r['rows']}; {r['bare_each'][0]:.2f} / {r['bare_each'][1]:.2f})", f"{r['eval']:.2f}",
             f"{r['scorer']:.2f} ({r['scored_rows']})", f"{r['eval'] - r['scorer']:.2f}",
             verdict(r["eval"] / r["bare"], TARGET_EVAL)] for r in by["eval"]]
    if rows:
        out += ["## Region perturbation (s): `region_perturbation` scored by `Explainer.forward` vs bare forwards "
                "of the original model", "",
                "bare = mean of the bare forwards (rows = images × repeats × (L+1)) of the plain session timed just "
                "before / just after the evaluation; 'in scorer' = time inside `Explainer.forward` during it.", ""]
        out += table(["model", "images", "L", "repeats", "batch", "bare forwards (rows; before / after)",
                      "evaluation", "in scorer (rows)", "outside scorer", f"ratio (≤ {TARGET_EVAL})"], rows) + [""]
    out += [f"Load average at end: {os.getloadavg()[0]:.2f}; total wall time {args.elapsed:.0f} s.", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["alexnet", "vgg16"], choices=["small", "alexnet", "vgg16"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--no-zennit", action="store_true", help="skip the Zennit (torch) comparison")
    parser.add_argument("--threads", type=int, default=0, help="threads for every runtime (default: usable cores)")
    parser.add_argument("--quick", action="store_true", help="smoke run: small net + AlexNet, batch 1, repeats 1 "
                        "(memory for the first method only, region perturbation on 1 image)")
    parser.add_argument("--out", help="also write the Markdown report to this file")
    parser.add_argument("--exporter", default="legacy", choices=["legacy", "dynamo"])
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--no-sr", action="store_true", help="skip the SR map timing")
    parser.add_argument("--eval-images", type=int, default=2, help="images for region perturbation (0: skip)")
    parser.add_argument("--eval-steps", type=int, default=100, help="L, regions removed")
    parser.add_argument("--eval-repeats", type=int, default=1, help="region perturbation repeats")
    parser.add_argument("--eval-batch", type=int, default=32, help="scoring batch size")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:  # smoke run: memory for the first method only, region perturbation on one image
        args.models, args.batches, args.repeats, args.eval_images = ["small", "alexnet"], [1], 1, 1
    if not args.threads:
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        (timing_worker if spec["kind"] == "timing" else memory_worker)(spec)
        return 0
    started = time.perf_counter()
    command = "python tools/bench.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    header = [command, *machine_lines(args.threads, not args.no_zennit)]
    log("\n".join(header))
    from graphs.cache import reference_graph
    from graphs.reference_models import INPUT_SHAPES
    records: list[dict] = []
    for name in args.models:
        path = str(reference_graph(name, args.exporter))
        shape = list(INPUT_SHAPES[name][1:])
        log(f"{name}: {path}")
        spec = {"kind": "timing", "model": name, "path": path, "threads": args.threads, "repeats": args.repeats,
                "batches": args.batches, "zennit": not args.no_zennit, "sr": False, "eval_images": 0,
                "eval_steps": args.eval_steps, "eval_repeats": args.eval_repeats, "eval_batch": args.eval_batch,
                "extras_method": args.methods[0] if args.methods else "epsilon-plus-flat"}
        extras = {"sr": not args.no_sr, "eval_images": args.eval_images}
        if args.quick:  # one process for everything: fewer interpreter starts
            records += run_worker({**spec, **extras, "methods": args.methods, "time_plain": True, "argmax": True},
                                  args.threads)
        else:  # one process per method: an out-of-memory kill costs one row, and no process holds two Explainers
            for index, method in enumerate(args.methods):
                records += run_worker({**spec, "methods": [method], "time_plain": index == 0, "argmax": index == 0},
                                      args.threads)
            if extras["sr"] or extras["eval_images"]:
                records += run_worker({**spec, **extras, "methods": [], "time_plain": not args.methods,
                                       "argmax": False}, args.threads)
        if args.no_memory:
            continue
        for b in args.batches:
            base = {"model": name, "path": path, "threads": args.threads, "batch": b, "shape": shape}
            records += run_worker({**base, "kind": "plain"}, args.threads)
            for method in args.methods[:1] if args.quick else args.methods:
                records += run_worker({**base, "kind": "ours", "method": method}, args.threads)
                if not args.no_zennit:
                    records += run_worker({**base, "kind": "zennit", "method": method}, args.threads)
            log(f"  [{name}] memory b{b} done")
    args.elapsed = time.perf_counter() - started
    text = report(records, args, header)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
