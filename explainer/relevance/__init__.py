"""Back end: a canonical graph and a composite in, one ONNX graph out that returns the logits and the relevance of any
target class (assembly in ``graph.py``, analyses in ``analysis.py``, the linear-rule formula in ``linear_rule.py``; each
op's own part lives in ``explainer.ops``)."""
