"""Reference CNNs, their ONNX exports and small committed graphs used as test fixtures and examples.

- :mod:`graphs.reference_models`: AlexNet / VGG-16 in torchvision's layout and a small VGG-style net.
- :mod:`graphs.export`: ONNX export with the legacy (TorchScript) or dynamo exporter, checked by ONNX Runtime.
- :mod:`graphs.cache`: on-demand, cached builds of those exports.
- :mod:`graphs.tf2onnx_style`: a hand-built graph shaped like a tf2onnx-converted Keras model.
"""
