"""Width-scaled surrogates (Hydro) with muP's corrections for Adam, and ranking fidelity.

A surrogate of a feed-forward net has hidden width ``n' = max(1, round(n / S))``. Hydro
takes the target model itself as muP's base shape, so at S = 1 the parametrization is
exactly the standard one and the tuned hyperparameters apply to the full model unchanged.
With the width multiplier ``m = n' / n`` (what ``mup.set_base_shapes(surrogate,
base=target)`` computes), muP for Adam (Yang et al., Tensor Programs V, Table 3, as the
``mup`` package implements it) changes, per layer:

* input layer (784 → n'): nothing — its fan-in does not scale;
* hidden layers (n' → n'): Adam's learning rate × 1/m and weight decay × m (``MuAdam``
  scales the coupled L2 term with it); the bias's initial values × √m;
* readout (n' → classes, ``MuReadout``): initial weight and bias × √m, and its input
  multiplied by 1/m in the forward pass.

Ranking fidelity is Kendall's τ (``scipy.stats.kendalltau``) between the surrogate's and
the full model's validation values of the same configurations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def surrogate_width(width: int, scaling: int) -> int:
    """The hidden width of the surrogate: ``width / scaling``, rounded, at least 1."""
    return max(1, round(width / scaling))


@dataclass(frozen=True)
class LayerRule:
    """muP multipliers of one linear layer, relative to the target (base) model."""

    weight_init: float = 1.0
    bias_init: float = 1.0
    weight_lr: float = 1.0
    weight_decay: float = 1.0
    input_mult: float = 1.0


@dataclass(frozen=True)
class Surrogate:
    """The width-scaled surrogate of a feed-forward net of ``layer_count`` hidden layers."""

    full_width: int
    width: int
    layer_count: int

    @classmethod
    def of(cls, width: int, layer_count: int, scaling: int) -> Surrogate:
        return cls(width, surrogate_width(width, scaling), layer_count)

    @property
    def width_mult(self) -> float:
        return self.width / self.full_width

    def rules(self) -> list[LayerRule]:
        """One rule per linear layer: input, hidden..., readout."""
        m = self.width_mult
        if m == 1:
            return [LayerRule() for _ in range(self.layer_count + 1)]
        hidden = LayerRule(bias_init=math.sqrt(m), weight_lr=1 / m, weight_decay=m)
        readout = LayerRule(weight_init=math.sqrt(m), bias_init=math.sqrt(m), input_mult=1 / m)
        return [LayerRule(), *[hidden] * (self.layer_count - 1), readout]

    def to_dict(self) -> dict[str, Any]:
        return {"full_width": self.full_width, "width": self.width,
                "width_mult": round(self.width_mult, 6)}


def ranking_fidelity(surrogate: Sequence[float], full: Sequence[float],
                     direction: str = "maximize") -> dict[str, Any]:
    """Kendall's τ between two sets of values of the same configurations.

    Also whether both pick the same best configuration (top-1). τ is None with a reason when
    fewer than two configurations were measured both ways or one side is constant.
    """
    from scipy.stats import kendalltau

    pairs = [(s, f) for s, f in zip(surrogate, full, strict=True)
             if s is not None and f is not None and math.isfinite(s) and math.isfinite(f)]
    out: dict[str, Any] = {"configs": len(pairs), "kendall_tau": None, "p_value": None,
                           "top1_agrees": None, "note": ""}
    if not pairs:
        out["note"] = "no configuration was measured both ways"
        return out
    pick = max if direction == "maximize" else min
    xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
    out["top1_agrees"] = xs.index(pick(xs)) == ys.index(pick(ys))
    if len(pairs) < 2:
        out["note"] = "τ needs two or more configurations measured both ways (search.retrain)"
        return out
    result = kendalltau(xs, ys)
    tau, p = float(result.statistic), float(result.pvalue)
    if math.isnan(tau):
        out["note"] = "τ is undefined: one ranking has all values equal"
        return out
    out["kendall_tau"], out["p_value"] = tau, (p if math.isfinite(p) else None)
    return out
