"""What Conv and Dense share: every LRP rule on a linear layer is "forward with modified parameters, divide, one
transposed product, multiply" (``relevance/linear_rule.py``); each layer says how to apply itself and its transpose.

Linear layers have no sign rule beyond "unknown" (weights of either sign), and zB bounds stop at them."""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import numpy as np

from explainer.frontend.ir import CNode
from explainer.lrp.rules import Epsilon, LinearRule, Norm, Rule
from explainer.ops.base import Bounds, Op
from explainer.relevance.context import EmitContext, unsupported_rule
from explainer.relevance.linear_rule import apply_linear_rule


class LinearLayer(Op):
    """A linear layer with weight ``W`` and bias ``B`` in ``node.params``."""

    @abstractmethod
    def apply(self, ctx: EmitContext, node: CNode, x: str, w: str, b: str | None, out: str | None = None) -> str:
        """The layer's product of ``x`` with the (possibly modified) weight ``w`` and bias ``b``."""

    @abstractmethod
    def transpose(self, ctx: EmitContext, node: CNode, g: str, w_key: str, w: np.ndarray,
                  scale: float = 1.0) -> str:
        """The transposed product scale·Wᵀ g for the (possibly modified) weight ``w`` stored under ``w_key``."""

    def forward(self, ctx: EmitContext, node: CNode) -> None:
        w = ctx.weight(node, "W", node.params["W"])
        b = ctx.weight(node, "B", node.params["B"])
        self.apply(ctx, node, node.inputs[0], w, b, out=node.output)

    def backward(self, ctx: EmitContext, node: CNode, rule: Rule, r: str) -> list[str | None]:
        if isinstance(rule, Norm):
            rule = Epsilon(rule.stabiliser)
        if not isinstance(rule, LinearRule):
            raise unsupported_rule(node, rule)
        return [apply_linear_rule(ctx, self, node, rule, r)]

    def output_nonnegative(self, node: CNode, inputs_nonnegative: Sequence[bool]) -> bool:
        return False

    def propagate_bounds(self, node: CNode, low: np.ndarray, high: np.ndarray) -> Bounds | None:
        return None
