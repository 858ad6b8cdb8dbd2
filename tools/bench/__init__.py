"""Benchmarks: ``python -m tools.bench`` (explainer against its targets), ``python -m tools.bench.sr`` (SR map
alone) and ``python -m tools.bench.perturbation`` (region perturbation against its cost floor).

The main benchmark is a harness (:mod:`tools.bench.harness`) that runs workers in fresh processes: timings
(:mod:`tools.bench.explain`) and peak memory (:mod:`tools.bench.memory`), against a plain ONNX Runtime session and
Zennit (:mod:`tools.bench.baselines`), summarised by :mod:`tools.bench.report`. It uses only the library's public
API: ``Explainer(threads=)`` for the thread count and ``Explainer.timings`` for the stages of its creation.
"""
