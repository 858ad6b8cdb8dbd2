"""The LRP vocabulary as pure data, no ONNX: rules say how to modify a layer's weights and inputs (``rules.py``),
composites say which layer gets which rule (``composites.py``)."""
