"""Production thresholds: per task, the confidence above which answers meet a target precision.

A service answers on its own when an answer's confidence reaches its task's threshold and sends
the rest to an expert. The threshold is fitted on validation data as the smallest confidence
cut-off whose basic precision (accuracy of the answered items) reaches the target, i.e. the one
that answers the most items; see ``attire.evaluation.metrics.answer_curve``. Answers are those
of ``answer_decisions``: top class for multiclass tasks, each class's yes/no for multilabel ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from attire.errors import AttireError
from attire.evaluation.metrics import answer_curve, answer_decisions
from attire.models.checkpoint import META, read_meta

# Above every probability, even after the threshold is rounded to a float16/bfloat16 score's
# dtype (NumPy compares a float32 score with a Python float in float32): a task whose target is
# out of reach answers nothing on its own.
UNREACHABLE = 1.01


class ThresholdError(AttireError):
    """A target precision that is not a share, or thresholds that do not fit a checkpoint."""


@dataclass(frozen=True)
class ThresholdResult:
    """One task's fitted threshold and what it does on the data it was fitted on."""

    task: str
    target: float
    threshold: float
    precision: float | None
    coverage: float
    answered: int
    total: int
    reachable: bool

    def to_dict(self) -> dict:
        return asdict(self)


def check_target(target: float) -> float:
    if not 0.0 < target <= 1.0:
        raise ThresholdError(f"target precision must be in (0, 1], got {target}")
    return float(target)


def fit_threshold(
    confidence: np.ndarray, correct: np.ndarray, target: float = 0.95, *, task: str = ""
) -> ThresholdResult:
    """The smallest cut-off among the items' confidences whose basic precision >= target.

    Unreachable (no cut-off reaches the target, or no items): threshold ``UNREACHABLE`` (1.01,
    above any probability), coverage 0, ``reachable=False``.
    """
    target = check_target(target)
    curve = answer_curve(confidence, correct)
    ok = np.flatnonzero(curve.precision >= target - 1e-12)
    if not len(ok):
        return ThresholdResult(task, target, UNREACHABLE, None, 0.0, 0, curve.total, False)
    j = int(ok[-1])  # cut-offs run from high to low confidence: the last one answers the most
    return ThresholdResult(
        task=task,
        target=target,
        threshold=float(curve.thresholds[j]),
        precision=float(curve.precision[j]),
        coverage=float(curve.coverage[j]),
        answered=int(curve.answered[j]),
        total=curve.total,
        reachable=True,
    )


def fit_thresholds(
    probs: Mapping[str, np.ndarray], y_true: Mapping[str, np.ndarray], target: float = 0.95
) -> dict[str, ThresholdResult]:
    """task -> fitted threshold, for every task in ``y_true`` (encoded as ``Manifest.encode``:
    1-D multiclass with -1 missing, 2-D multilabel with -1 unknown)."""
    out = {}
    for task, y in y_true.items():
        conf, hit = answer_decisions(y, probs[task])
        out[task] = fit_threshold(conf, hit, target, task=task)
    return out


def save_thresholds(
    ckpt_dir: str | Path, results: Mapping[str, ThresholdResult], *, fitted_on: str = ""
) -> Path:
    """Write the thresholds into the checkpoint's attire.json, replacing the file atomically.

    ``thresholds`` gets task -> threshold (what a service reads); ``extra.thresholds`` keeps how
    each was fitted (target, precision, coverage, reachable, ``fitted_on``) so an unreachable
    target stays visible. Tasks not in ``results`` keep their previous threshold.
    """
    ckpt_dir = Path(ckpt_dir)
    _, taxonomy = read_meta(ckpt_dir)  # a real checkpoint folder, or a clear error
    unknown = sorted(set(results) - set(taxonomy.task_names))
    if unknown:
        raise ThresholdError(
            f"{ckpt_dir}: no tasks {unknown} in the checkpoint (tasks: {taxonomy.task_names})"
        )
    path = ckpt_dir / META
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw.setdefault("thresholds", {})
    details = raw.setdefault("extra", {}).setdefault("thresholds", {})
    for task, r in results.items():
        raw["thresholds"][task] = r.threshold
        details[task] = r.to_dict() | {"fitted_on": fitted_on}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(raw, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path
