"""The Pareto front of score against cost: the experiments worth choosing between."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pareto_front(costs: Sequence[float | None], scores: Sequence[float | None]) -> list[bool]:
    """Which points no other point dominates (cost as low or lower and score as high or higher,
    one of them strictly). Points without a cost or a score are never on the front; equal
    points do not dominate each other."""
    valid = [
        (c, s, i)
        for i, (c, s) in enumerate(zip(costs, scores, strict=True))
        if c is not None and s is not None and math.isfinite(c) and math.isfinite(s)
    ]
    front = [False] * len(costs)
    best_cheaper = -math.inf  # best score among points strictly cheaper than the current cost
    valid.sort()
    i = 0
    while i < len(valid):
        j = i
        while j < len(valid) and valid[j][0] == valid[i][0]:
            j += 1
        group = valid[i:j]
        top = max(s for _, s, _ in group)
        for _, s, k in group:
            front[k] = s == top and s > best_cheaper
        best_cheaper = max(best_cheaper, top)
        i = j
    return front
