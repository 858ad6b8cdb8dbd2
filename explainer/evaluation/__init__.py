"""Faithfulness of explanations: region orders (``regions.py``), perturbations, the region-perturbation protocol and
AOPC/ABPC (``region_perturbation.py``), paired bootstrap intervals (``statistics.py``), comparing methods
(``compare.py``), heatmap complexity, reports and CI audits. Definitions and JSON fields: docs/aopc.md."""
