"""Pixels in: reading image files, the model input's layout and size (``spec.py``), preprocessing presets, and class
labels."""
