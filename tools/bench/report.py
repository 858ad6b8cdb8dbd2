"""The benchmark's Markdown report: one table per measurement, each ratio against its target."""
from __future__ import annotations

import contextlib
import os
import platform
from collections import defaultdict
from pathlib import Path

import numpy as np

from tools.bench.harness import median, usable_cores

TARGET_SPEEDUP = 1.7      # ours must be at least this much faster than Zennit
TARGET_CREATION = 1.5     # Explainer(...) / plain session
TARGET_SECOND_BUILD = 1.1  # Explainer(...) with the session cache filled / plain session
TARGET_MEMORY = 2.0       # peak RSS, Explainer + explain / plain session + forward
TARGET_SR_S = 0.5         # seconds per 224 x 224 SR map
TARGET_EVAL = 1.2         # region perturbation / bare forwards
#: ``Explainer.timings`` stages in the order they run (verify runs the relevance graph once)
STAGES = ("load", "canonicalise", "build", "session", "verify")
#: issue 13's goals for explanation time / ORT forward, by method
TARGET_RATIO = {"gradient": 2.0}
TARGET_RATIO_LRP = 2.5


def machine_lines(threads: int, zennit: bool) -> list[str]:
    """The machine, the library versions and the thread count, as Markdown list items."""
    import onnxruntime as ort
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = usable_cores()
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = f", {int(Path('/proc/meminfo').read_text().split()[1]) / 2**20:.1f} GiB RAM"
    lines = [
        f"- machine: {platform.machine()} {cpu}, {os.cpu_count()} cores ({usable} usable){mem}, "
        f"load average {os.getloadavg()[0]:.2f} at start",
        f"- python {platform.python_version()}, numpy {np.__version__}, onnxruntime {ort.__version__} "
        f"(available: {', '.join(ort.get_available_providers())}; used: CPUExecutionProvider)",
        f"- threads: {threads} (ONNX Runtime intra-op threads of the plain session and of the explainer's sessions "
        "via `Explainer(threads=)`, torch.set_num_threads)",
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
    return out + ["| " + " | ".join(row) + " |" for row in rows]


def _explanation(records: list[dict], repeats: int) -> list[str]:
    rows, argmax_rows = [], []
    for r in records:
        plain, ours, zen = median(r["plain"]), median(r["ours"]), median(r.get("zennit", []))
        rows.append([r["model"], str(r["batch"]), r["method"], fmt(plain, 1e3), fmt(ours, 1e3),
                     fmt(ratio(ours, plain), digits=2), fmt(zen, 1e3), fmt(ratio(zen, plain), digits=2),
                     verdict(ratio(zen, ours), TARGET_SPEEDUP, higher_is_better=True)])
        if "argmax" in r:
            forward = median(r["forward"])
            argmax_rows.append([r["model"], str(r["batch"]), r["method"], fmt(ours, 1e3), fmt(median(r["argmax"]), 1e3),
                                fmt(forward, 1e3), fmt(plain, 1e3), fmt(ratio(forward, plain), digits=2),
                                fmt(r.get("argmax_first"), 1e3)])
    out = [f"## Explanation time (median of {repeats} after a warm-up, ms)", ""]
    out += table(["model", "batch", "method", "ORT forward", "ours explain", "ours / fwd", "Zennit", "Zennit / fwd",
                  f"speed-up vs Zennit (≥ {TARGET_SPEEDUP})"], rows) + [""]
    if argmax_rows:
        out += ["### explain(x) without targets (arg-max path: the relevance graph explains the arg-max itself)", ""]
        out += table(["model", "batch", "method", "explain(x, target)", "explain(x)", "Explainer.forward",
                      "ORT forward (original)", "forward / original",
                      "first explain(x)"], argmax_rows) + [""]
    return out


def _creation(records: list[dict], plain_records: list[dict], repeats: int) -> list[str]:
    plain_create = {r["model"]: median(r["seconds"]) for r in plain_records}
    rows = []
    for r in records:
        plain, ours, stages = plain_create.get(r["model"]), median(r["seconds"]), r["stages"]
        other = ours - sum(stages.values())
        rows.append([r["model"], r["method"], fmt(plain, digits=2), fmt(ours, digits=2),
                     verdict(ratio(ours, plain), TARGET_CREATION)]
                    + [fmt(stages.get(k), digits=2) for k in STAGES]
                    + [fmt(other, digits=2), fmt(ratio(stages.get("session"), plain), digits=2)])
    out = [f"## Session creation (median of {repeats}, s)", "",
           "Stages from `Explainer.timings` (of the creation with the median total): 'build' is the relevance graph, "
           "'session' its ONNX Runtime session, 'verify' one run of it on the reference input.",
           ""]
    return out + table(["model", "method", "plain ORT session", "Explainer", f"ratio (≤ {TARGET_CREATION})",
                        *STAGES, "other", "relevance session / plain"], rows) + [""]


def _memory(records: list[dict]) -> list[str]:
    mem = {(r["which"], r["model"], r["batch"], r["method"]): r for r in records}
    ours = [r for (which, *_), r in mem.items() if which == "ours"]
    rows = []
    for r in ours + [r for (which, *_), r in mem.items() if which == "ours-cached"]:
        plain = mem.get(("plain", r["model"], r["batch"], None))
        zen = mem.get(("zennit", r["model"], r["batch"], r["method"]))
        p_peak = plain["peak"] if plain else None
        p_delta = plain["peak"] - plain["base"] if plain else None
        o_delta = r["peak"] - r["base"]
        method = r["method"] + (" (second build)" if r["which"] == "ours-cached" else "")
        rows.append([r["model"], str(r["batch"]), method, fmt(p_peak, 1 / 1024, 0), fmt(r["peak"], 1 / 1024, 0),
                     verdict(ratio(r["peak"], p_peak), TARGET_MEMORY), fmt(p_delta, 1 / 1024, 0),
                     fmt(o_delta, 1 / 1024, 0), fmt(ratio(o_delta, p_delta), digits=2),
                     fmt(r["after_create"] - r["base"], 1 / 1024, 0), fmt(r["peak_create"] - r["base"], 1 / 1024, 0),
                     fmt(r["peak_argmax"], 1 / 1024, 0), fmt(zen["peak"] if zen else None, 1 / 1024, 0),
                     fmt(zen["peak"] - zen["base"] if zen else None, 1 / 1024, 0)])
    out = ["## Peak resident memory (MiB, each a fresh process)", "",
           "Rows marked 'second build' take their relevance session from the session cache that a first build filled; "
           "the others are first builds (cache off). "
           "peak = VmHWM of the process; Δ = peak minus the RSS after imports (plain: numpy + onnxruntime; ours: "
           "+ explainer; Zennit: torch + zennit), i.e. what the model and the run cost. Zennit's peak is taken after "
           "the torch module is built (its random initialisation's temporaries left out; its weights counted).", ""]
    out += table(["model", "batch", "method", "plain peak", "ours peak", f"ratio (≤ {TARGET_MEMORY})", "plain Δ",
                  "ours Δ", "Δ ratio", "ours Δ after Explainer()", "ours Δ creation peak", "ours peak + explain(x)",
                  "Zennit peak", "Zennit Δ"], rows) + [""]
    if ours:
        out += [f"'auto' provider probe (`resolve_provider`): {ours[0]['cuda_probe']:.2f} s, "
                f"{ours[0]['cuda_probe_rss'] / 1024:+.0f} MiB RSS.", ""]
        cold_plain = {(r["model"], r["batch"]): r["create_cold"] for r in records if r["which"] == "plain"}
        out += ["Cold creation in the fresh processes (first session of the process, s): "
                + "; ".join(f"{r['model']} b{r['batch']} {r['method']}: Explainer {r['create_cold']:.2f} vs plain "
                            f"{fmt(cold_plain.get((r['model'], r['batch'])), digits=2)}" for r in ours), ""]
        second = [r for r in records if r["which"] == "ours-cached"]
        if second:
            out += ["Second build, its relevance session from the session cache (s): " + "; ".join(
                f"{r['model']} b{r['batch']} {r['method']}: Explainer {r['create_cold']:.2f} vs plain "
                f"{fmt(cold_plain.get((r['model'], r['batch'])), digits=2)} (stages: "
                + ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items()) + ")" for r in second), ""]
    return out


def _sr(records: list[dict]) -> list[str]:
    out = [f"## SR map per 224×224 map (median of 3, s; target {TARGET_SR_S} s)", ""]
    return out + table(["model", "median", "min", "max", "ratio to target"],
                       [[r["model"], fmt(median(r["seconds"]), digits=3), fmt(min(r["seconds"]), digits=3),
                         fmt(max(r["seconds"]), digits=3), verdict(median(r["seconds"]) / TARGET_SR_S, 1.0)]
                        for r in records]) + [""]


def _evaluation(records: list[dict]) -> list[str]:
    rows = [[r["model"], str(r["images"]), str(r["steps"]), str(r["repeats"]), str(r["batch"]),
             f"{r['bare']:.2f} ({r['rows']}; {r['bare_each'][0]:.2f} / {r['bare_each'][1]:.2f})", f"{r['eval']:.2f}",
             f"{r['scorer']:.2f} ({r['scored_rows']})", f"{r['eval'] - r['scorer']:.2f}",
             verdict(r["eval"] / r["bare"], TARGET_EVAL)] for r in records]
    out = ["## Region perturbation (s): `region_perturbation` scored by `Explainer.forward` vs bare forwards of the "
           "original model", "",
           "bare = mean of the bare forwards (rows = images × repeats × (L+1)) of the plain session timed just before "
           "/ just after the evaluation; 'in scorer' = time inside `Explainer.forward` during it.", ""]
    return out + table(["model", "images", "L", "repeats", "batch", "bare forwards (rows; before / after)",
                        "evaluation", "in scorer (rows)", "outside scorer", f"ratio (≤ {TARGET_EVAL})"], rows) + [""]


def _goals(by: dict[str, list[dict]]) -> list[str]:
    """Issue 13's table: each measured row against its goal, from the records of this run."""
    rows = []
    for r in by["explain"]:
        goal = TARGET_RATIO.get(r["method"], TARGET_RATIO_LRP)
        rows.append([f"{r['method']} / ORT forward ({r['model']}, batch {r['batch']})",
                     verdict(ratio(median(r["ours"]), median(r["plain"])), goal), f"≤ {goal}×"])
    memory = {(m["which"], m["model"], m["batch"], m["method"]): m for m in by["memory"]}
    for (which, model, batch, method), m in memory.items():
        plain = memory.get(("plain", model, batch, None))
        if which == "ours" and plain:
            rows.append([f"peak RSS of explain / plain forward ({model}, batch {batch}, {method})",
                         verdict(ratio(m["peak"], plain["peak"]), TARGET_MEMORY), f"≤ {TARGET_MEMORY}×"])
    for (which, model, batch, method), m in memory.items():
        plain = memory.get(("plain", model, batch, None))
        if which == "ours-cached" and plain:
            rows.append([f"second Explainer() (session cache) / ORT session creation ({model}, {method}, fresh "
                         "processes)", verdict(ratio(m["create_cold"], plain["create_cold"]), TARGET_SECOND_BUILD),
                         f"≤ {TARGET_SECOND_BUILD}×"])
    plain_create = {r["model"]: median(r["seconds"]) for r in by["plain_create"]}
    for r in by["create"]:
        rows.append([f"Explainer() / ORT session creation ({r['model']}, {r['method']})",
                     verdict(ratio(median(r["seconds"]), plain_create.get(r["model"])), TARGET_CREATION),
                     f"≤ {TARGET_CREATION}×"])
    if not rows:
        return []
    return ["## Goals (issue 13), from this run", ""] + table(["measure", "now", "goal"], rows) + [""]


def report(records: list[dict], header: list[str], repeats: int, elapsed: float) -> str:
    """The whole report: ``header`` (the command, then machine lines), then every table that has records."""
    by = defaultdict(list)
    for r in records:
        by[r["kind"]].append(r)
    out = ["# explainer benchmark", "", f"`{header[0]}`", "", *header[1:], ""]
    out += _goals(by)
    out += _explanation(by["explain"], repeats)
    out += _creation(by["create"], by["plain_create"], repeats)
    if by["memory"]:
        out += _memory(by["memory"])
    if by["sr"]:
        out += _sr(by["sr"])
    if by["eval"]:
        out += _evaluation(by["eval"])
    out += [f"Load average at end: {os.getloadavg()[0]:.2f}; total wall time {elapsed:.0f} s.", ""]
    return "\n".join(out)
