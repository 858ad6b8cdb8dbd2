"""Front end: an exported ONNX model in, a canonical graph out (input and layout discovery, constant and shape folding,
per-op conversion through ``explainer.ops``, exact simplification, and the ``explainer check`` report)."""
