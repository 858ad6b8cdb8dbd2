"""Pictures out: heatmaps, overlays and grids (``heatmaps.py``), and region-perturbation curves (``curves.py``)."""
