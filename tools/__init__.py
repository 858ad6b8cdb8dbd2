"""Benchmarks, model builders and maintenance scripts (importable as ``tools.*`` from the repo root)."""
