"""Timing worker: session creation, explanation, SR map and region perturbation of one model in this process.

Started by ``python -m tools.bench`` (one process per method, so that no process holds two explainers: ONNX
Runtime's arena keeps each session's peak). Every session gets the run's thread count: the explainer's through
``Explainer(threads=)``, the plain session through its options, torch through ``torch.set_num_threads``.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from explainer import Explainer
from tools.bench.baselines import HIGH, LOW, bounds, images, plain_session, torch_model, zennit_runner
from tools.bench.harness import emit, log, median, timed, worker_main


def _plain_creation(path: str, threads: int, repeats: int) -> tuple[Any, list[float]]:
    """A plain session and, for ``repeats`` > 0, the creation times of that many after a first (cold) one."""
    times = []
    for i in range(repeats + 1):
        sess = None
        gc.collect()
        start = time.perf_counter()
        sess = plain_session(path, threads)
        if i:
            times.append(time.perf_counter() - start)
    return sess, times


def _creation(path: str, method: str, threads: int, repeats: int, kwargs: dict) -> tuple[Explainer, dict]:
    """Median of ``repeats`` fresh ``Explainer``s (the last one kept) with the stage times of the median one."""
    creations, stages, ex = [], [], None
    for _ in range(repeats):
        ex = None
        gc.collect()
        start = time.perf_counter()
        ex = Explainer(path, method, provider="cpu", threads=threads, **kwargs)
        creations.append(time.perf_counter() - start)
        stages.append(dict(ex.timings))
    middle = sorted(range(len(creations)), key=creations.__getitem__)[(len(creations) - 1) // 2]
    return ex, {"seconds": creations, "stages": stages[middle]}


def _explanations(spec: dict, ex: Explainer, method: str, forward: Callable, batches: dict, targets: dict,
                  runner: tuple | None, argmax: bool) -> None:
    """Ours, the plain forward and Zennit interleaved round by round, so load drift hits all three alike."""
    name, repeats = spec["model"], spec["repeats"]
    with runner[0] if runner else contextlib.nullcontext():
        for b, x in batches.items():
            tgt = targets[b]
            calls: dict[str, Callable[[], Any]] = {"plain": functools.partial(forward, x),
                                                   "ours": functools.partial(ex.explain, x, tgt)}
            if runner:
                calls["zennit"] = functools.partial(runner[1], x, tgt)
            for call in calls.values():  # warm-up
                call()
            times: dict[str, list[float]] = {k: [] for k in calls}
            for _ in range(repeats):
                for key, call in calls.items():
                    times[key].append(timed(call))
            record = {"kind": "explain", "model": name, "method": method, "batch": b, **times}
            if argmax:  # explain(x) without targets runs the forward session first (built on first use)
                argmax_call, forward_call = functools.partial(ex.explain, x), functools.partial(ex.forward, x)
                first = timed(argmax_call)
                if b == spec["batches"][0]:
                    record["argmax_first"] = first
                record["argmax"] = [timed(argmax_call) for _ in range(repeats)]
                record["forward"] = [timed(forward_call) for _ in range(repeats)]
            emit(record)
            log(f"  [{name}] b{b} {method}: " + ", ".join(f"{k} {1e3 * median(v):.1f} ms" for k, v in times.items()))


def _sr(spec: dict, relevance: np.ndarray) -> None:
    from explainer.sr.sr_map import sr_map
    sr_map(relevance)
    emit({"kind": "sr", "model": spec["model"], "seconds": [timed(lambda: sr_map(relevance)) for _ in range(3)]})


def _evaluation(spec: dict, ex: Explainer, forward: Callable, shape: tuple[int, ...]) -> None:
    """Region perturbation scored by ``Explainer.forward`` against the bare forwards of the original model."""
    from explainer.evaluation.region_perturbation import region_perturbation
    from explainer.evaluation.regions import max_regions
    name, n, reps, bs = spec["model"], spec["eval_images"], spec["eval_repeats"], spec["eval_batch"]
    # a 32x32 input holds 16 9x9 regions, most of them partial
    steps = min(spec["eval_steps"], max_regions(shape[-2], shape[-1], 9))
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
    result = region_perturbation(scorer, imgs, heat, steps=steps, repeats=reps, low=LOW, high=HIGH, batch_size=bs,
                                 progress=False)
    eval_s = time.perf_counter() - start
    bare_after = timed(bare)  # before and after: the load of a shared machine drifts
    emit({"kind": "eval", "model": name, "images": n, "steps": steps, "repeats": reps, "batch": bs, "rows": rows,
          "scored_rows": inside[1], "eval": eval_s, "scorer": inside[0], "bare": (bare_before + bare_after) / 2,
          "bare_each": [bare_before, bare_after], "aopc": float(result.aopc)})
    log(f"  [{name}] evaluation {eval_s:.2f} s (scorer {inside[0]:.2f} s) vs bare {bare_before:.2f} s before, "
        f"{bare_after:.2f} s after")


def timing_worker(spec: dict) -> None:
    """Plain session creation (``time_plain``), then per method in ``methods`` Explainer creation and explanation
    (ours, plain, Zennit), then SR map and evaluation (with an Explainer of ``extras_method`` when no method ran)."""
    threads, repeats, path, name = spec["threads"], spec["repeats"], spec["path"], spec["model"]
    model = torch_model(name, threads) if spec["zennit"] else None

    sess, plain_times = _plain_creation(path, threads, repeats if spec["time_plain"] else 0)
    if plain_times:
        emit({"kind": "plain_create", "model": name, "seconds": plain_times})
        log(f"  [{name}] plain session {median(plain_times):.2f} s")
    input_name = sess.get_inputs()[0].name
    shape = tuple(int(d) for d in sess.get_inputs()[0].shape[1:])

    def forward(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {input_name: x})[0]

    batches = {b: images(b, shape, seed=b) for b in spec["batches"]}
    targets = {b: np.argmax(forward(x), axis=1).astype(np.int64) for b, x in batches.items()}
    classes = int(forward(batches[spec["batches"][0]][:1]).shape[1])

    ex = None
    for index, method in enumerate(spec["methods"]):
        ex = None
        gc.collect()
        ex, record = _creation(path, method, threads, repeats, bounds(shape))
        emit({"kind": "create", "model": name, "method": method, **record})
        log(f"  [{name}] Explainer({method}) {median(record['seconds']):.2f} s "
            f"({', '.join(f'{k} {v:.2f}' for k, v in record['stages'].items())})")
        runner = zennit_runner(model, method, classes) if model is not None else None
        _explanations(spec, ex, method, forward, batches, targets, runner, spec["argmax"] and index == 0)

    if not (spec["sr"] or spec["eval_images"]):
        return
    if ex is None:
        ex = Explainer(path, spec["extras_method"], provider="cpu", threads=threads, **bounds(shape))
    first = spec["batches"][0]
    relevance = ex.explain(batches[first][:1], targets[first][:1]).relevance_map()[0]
    if spec["sr"] and relevance.shape == (224, 224):  # the SR target is per 224 x 224 map
        _sr(spec, relevance)
    if spec["eval_images"]:
        _evaluation(spec, ex, forward, shape)


if __name__ == "__main__":
    raise SystemExit(worker_main(timing_worker))
