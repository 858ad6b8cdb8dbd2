"""explainer: ONNX-native layer-wise relevance propagation, SR maps and region-perturbation scores."""
from __future__ import annotations

from . import render
from .audit import AuditOutcome, audit_decision, write_audit_report
from .composites import METHODS, Composite, Layer, first, kind, make_composite, name_matches
from .errors import ExplainerError, InputError, ModelError, UnsupportedOpError
from .evaluation import evaluate
from .explainer import Explainer, Explanation
from .images import list_images, load_image
from .labels import load_labels, top_k
from .preprocess import InputSpec, Preprocessing, input_bounds, load_batch, preprocessing, resize_center_crop
from .region_perturbation import PerturbationResult, abpc, compare_heatmaps, region_perturbation
from .render import grid, heatmap, overlay, sr_image
from .rules import (AlphaBeta, DeconvNet, Epsilon, Flat, Gamma, Gradient, GuidedBackprop, LinearRule, LRP0, Norm,
                    Pass, Rule, WSquare, ZBox, ZPlus, make_rule)
from .sr_map import paper_relevance_image, sr_map

__version__ = "0.1.0"

__all__ = [
    "Explainer", "Explanation", "METHODS", "Composite", "Layer", "first", "kind", "name_matches", "make_composite",
    "Rule", "LinearRule", "Epsilon", "LRP0", "ZPlus", "AlphaBeta", "Gamma", "ZBox", "Flat", "WSquare", "Gradient",
    "Pass", "Norm", "DeconvNet", "GuidedBackprop", "make_rule",
    "ExplainerError", "ModelError", "UnsupportedOpError", "InputError",
    "sr_map", "paper_relevance_image", "render", "heatmap", "overlay", "sr_image", "grid",
    "load_image", "list_images", "Preprocessing", "preprocessing", "resize_center_crop", "input_bounds", "InputSpec",
    "load_batch", "load_labels", "top_k",
    "region_perturbation", "compare_heatmaps", "abpc", "PerturbationResult", "evaluate",
    "audit_decision", "AuditOutcome", "write_audit_report",
]
