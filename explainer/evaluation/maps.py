"""Region perturbation of models whose output is a map [N, K, H, W] (segmentation logits, a saliency or heat map).

Such a model gives no single class logit to score, so the explained quantity is fixed per image at the unperturbed
input x0: an indicator I over the output map (:mod:`explainer.seeds`): channel ``channel`` over a box ``region``, a
``mask`` or the whole map, or (no channel) each chosen pixel's arg-max channel at x0, the predicted label map, as
``Explainer.explain`` chooses by default. The score of any input x, perturbed or not, is the sum of the chosen
logits f(x) = Σ I ⊙ logits(x), with I kept from x0 (the pixels do not switch to whatever class wins on x). Heatmaps
explain that same sum at x0: ``explain(x0, seed=I ⊙ logits(x0))`` for a logit seed, the indicator I itself for a
one-hot seed (gradient-like methods), as ``explain(x0, target=channel, region=..., mask=...)`` does. MoRF, LeRF and
random orders, AOPC, its intervals and the audit's gate then run on f exactly as for a class logit. A class-switch
rate does not apply to a sum over pixels: it is recorded as null."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from explainer import seeds

CLASS_SWITCH = "not computed: the score of an output map is a sum over pixels, not one class that could switch"


@dataclass(frozen=True)
class MapTarget:
    """What is scored on an output map of per-sample shape ``shape`` (K, H, W): channel ``channel`` (None: each
    pixel's arg-max channel at x0) over the box ``region`` (x0, y0, x1, y1, half-open output-map pixels), the boolean
    [H, W] ``mask`` (``mask_name`` names it in the report) or, neither, the whole map. Plain data (it travels to
    Ray's actors)."""

    shape: tuple[int, int, int]
    channel: int | None = None
    region: tuple[int, int, int, int] | None = None
    mask: np.ndarray | None = None
    mask_name: str = "the mask"

    @classmethod
    def prepare(cls, output_shape: Any, channel: Any = None, region: Any = None, mask: Any = None,
                mask_name: str = "the mask") -> MapTarget:
        """The checked choice (an InputError naming a bad channel, box or mask, or an output that is not a map)."""
        shape = seeds.map_shape(output_shape)
        chosen = seeds.pixels(shape, region, mask)
        if channel is not None:
            seeds.region_seed(shape, channel, region, mask)
            channel = int(channel)
        return cls(shape, channel, None if region is None else tuple(int(v) for v in region),
                   None if mask is None else chosen, mask_name)

    def indicators(self, logits: np.ndarray) -> np.ndarray:
        """I of each sample from its unperturbed ``logits`` [N, K·H·W]: [N, K·H·W] float32 of 0 and 1."""
        scores = np.asarray(logits, np.float32)
        return seeds.dense_seed(self.shape, scores, self.channel, self.region, self.mask,
                                seed="one-hot").reshape(len(scores), -1)

    @property
    def target(self) -> int:
        """The rows' target: the channel, or -1 for each pixel's arg-max."""
        return -1 if self.channel is None else self.channel

    def describe(self) -> str:
        """What is summed, in words (``explainer.seeds.describe``)."""
        return seeds.describe(self.shape, self.channel, self.region, self.mask, mask_name=self.mask_name)

    def fingerprint(self) -> dict[str, Any]:
        """The choice as plain data for the rows journal's header (the mask by its SHA-256): a resumed run must
        score the same values."""
        mask = None if self.mask is None else hashlib.sha256(np.packbits(self.mask).tobytes()).hexdigest()
        return {"output_map": list(self.shape), "channel": self.channel,
                "output_region": None if self.region is None else list(self.region), "output_mask_sha256": mask}

    def settings(self) -> dict[str, Any]:
        """The report's settings: the score, what it sums and the class switch's absence."""
        return {**self.fingerprint(), "explained": self.describe(),
                "score": "sum of the chosen logits, f(x) = Σ I ⊙ logits(x), the indicator I fixed at the unperturbed "
                         "image: " + self.describe(),
                "class_switch": CLASS_SWITCH}
