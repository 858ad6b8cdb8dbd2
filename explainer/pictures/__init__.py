"""Pictures out: heatmaps, overlays and grids (``heatmaps.py``), region-perturbation curves (``curves.py``), feature
bar charts and signal plots (``signals.py``), token relevance as coloured text, HTML and PNG (``tokens.py``), volume
slice montages (``volumes.py``) and the region or mask a dense output was explained over (``regions.py``)."""
