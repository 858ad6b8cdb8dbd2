"""The runtime: the only part of explainer that imports ONNX Runtime (providers, sessions, I/O binding)."""
