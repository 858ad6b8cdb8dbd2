"""Salient Relevance (SR) maps (Li et al. 2017): context-aware saliency run on a relevance map (``sr_map.py``), with the
sRGB to CIE Lab conversion it needs (``lab.py``)."""
