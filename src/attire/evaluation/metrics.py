"""How well one task is tagged, from labels and probabilities alone (no model needed).

Inputs follow ``Manifest.encode``: multiclass ``y_true`` is (N,) class indices with -1 =
missing, multilabel ``y_true`` is (N, C) of 1/0/-1 (-1 = unknown entry); ``probs`` is (N, C)
(softmax rows, or per-class sigmoids for multilabel). Missing labels are masked everywhere.

What each number means (metrics.json uses these names):

- ``accuracy``: share of labelled rows whose top class is right (multilabel: share of known
  (row, class) entries whose yes/no answer at p >= 0.5 is right).
- ``balanced_accuracy``: mean per-class recall over the classes present in ``y_true`` (classes
  absent from the test rows cannot be scored and are left out). Multiclass only.
- ``macro_f1``: mean per-class F1 over the classes that occur in the labels or the answers
  (scikit-learn's default label set); a class neither labelled nor answered has no F1.
  Multilabel: answers at p >= 0.5, per class over its known entries.
- ``many_shot`` / ``medium_shot`` / ``few_shot``: mean recall of the classes of each group, the
  groups coming from TRAINING counts (``attire.data.stats.shot_groups``: > many, few..many,
  < few); only classes present in ``y_true`` count. Multilabel: recall at p >= 0.5.
- ``top{k}_accuracy``: the right class is among the k most probable (only for k < classes).
- ``ece``: expected calibration error over 15 equal-width confidence bins, top-label: each
  answer's confidence against whether it is right (multilabel: each known entry's yes/no answer
  with confidence max(p, 1 - p)).
- ``map`` (multilabel): mean over classes of average precision (scikit-learn's step-wise AP over
  known entries); classes without a positive are skipped.
- ``f1_tuned`` (multilabel): mean over classes with a positive of the best F1 reachable with a
  PER-CLASS threshold tuned on these same rows: an optimistic ceiling, not a test score.
- ``fashionai_ap``: the FashionAI challenge's AP of answers ranked by confidence; see
  ``answer_curve`` and ``fashionai_ap``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)
from torchmetrics.functional.classification import binary_calibration_error

from attire.data.stats import SHOT_GROUPS, shot_groups

DEFAULT_TOP_K: tuple[int, ...] = (1, 2, 3)
ECE_BINS = 15
# The long-tail headline of a task (tables in Markdown and benchmarks).
HEADLINE_KEYS = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "many_shot",
    "medium_shot",
    "few_shot",
)
# Scalars averaged over tasks (each only over the tasks that define it).
SUMMARY_KEYS = (
    *HEADLINE_KEYS,
    "ece",
    "fashionai_ap",
    "map",
    "f1_tuned",
)


# -- answers ranked by confidence (FashionAI AP, basic precision, thresholds) -----------------


def answer_decisions(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of every answer the model gives where the truth is known.

    Multiclass (1-D ``y_true``): one answer per labelled row, its top class; confidence = that
    class's probability. Multilabel (2-D): one yes/no answer per known (row, class) entry, "yes"
    when p >= 0.5; confidence = max(p, 1 - p). Thresholds and calibration use these pairs, so a
    service flags exactly the answers whose confidence is below its threshold.
    """
    y_true, probs = _check(y_true, probs)
    if y_true.ndim == 1:
        known = y_true >= 0
        p = probs[known]
        pred = p.argmax(1)
        return p.max(1).astype(np.float64), pred == y_true[known]
    known = y_true >= 0
    p = probs[known].astype(np.float64)
    return np.maximum(p, 1.0 - p), (p >= 0.5) == (y_true[known] == 1)


@dataclass(frozen=True)
class AnswerCurve:
    """Answered count and correct count at every distinct confidence cut-off, highest first.

    At cut-off ``thresholds[j]`` the items with confidence >= it are answered; items tied at a
    confidence are answered together, so each distinct confidence is one cut-off.
    """

    thresholds: np.ndarray
    answered: np.ndarray
    correct: np.ndarray
    total: int

    @property
    def precision(self) -> np.ndarray:
        """Basic precision at each cut-off: accuracy of the answered items."""
        return self.correct / self.answered

    @property
    def coverage(self) -> np.ndarray:
        """Share of all items answered at each cut-off."""
        return self.answered / max(self.total, 1)


def answer_curve(confidence: np.ndarray, correct: np.ndarray) -> AnswerCurve:
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, bool)
    order = np.argsort(-confidence, kind="stable")
    conf, hits = confidence[order], np.cumsum(correct[order])
    # the last position of each run of equal confidences closes one cut-off
    last = np.flatnonzero(np.r_[conf[1:] != conf[:-1], True]) if len(conf) else np.array([], int)
    return AnswerCurve(
        thresholds=conf[last],
        answered=last + 1,
        correct=hits[last].astype(np.int64),
        total=len(conf),
    )


def fashionai_ap(confidence: np.ndarray, correct: np.ndarray) -> float | None:
    """FashionAI attribute challenge AP: mean basic precision over every answered-count cut-off.

    Items are ranked by confidence (top-class probability). For a cut-off t, the items with
    confidence >= t are answered; basic precision BP(t) = right answers / answered items. The AP
    is the mean of BP over the distinct confidences t of the items (each distinct answered count
    once; tied items enter together). With no ties this is mean over k=1..N of accuracy of the
    k most confident items. The challenge's mAP is the mean of this AP over tasks. None when
    there are no items.
    """
    curve = answer_curve(confidence, correct)
    return float(curve.precision.mean()) if curve.total else None


def basic_precision(
    confidence: np.ndarray, correct: np.ndarray, threshold: float
) -> tuple[float | None, float]:
    """(accuracy of the items with confidence >= threshold, share of items answered).

    The precision is None when nothing is answered.
    """
    confidence = np.asarray(confidence, np.float64)
    answered = confidence >= threshold
    if not answered.any():
        return None, 0.0
    return float(np.asarray(correct, bool)[answered].mean()), float(answered.mean())


# -- calibration --------------------------------------------------------------------------------


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS
) -> float | None:
    """Sum over equal-width bins of |accuracy - mean confidence| x share of items in the bin."""
    if len(confidence) == 0:
        return None
    conf = torch.as_tensor(np.asarray(confidence, np.float64))
    hit = torch.as_tensor(np.asarray(correct, np.int64))
    return float(binary_calibration_error(conf, hit, n_bins=n_bins, norm="l1"))


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS
) -> dict[str, list]:
    """Per equal-width bin: item count, mean confidence and accuracy (None for empty bins).

    Bins are [i/n, (i+1)/n); confidence 1.0 goes into the last bin.
    """
    conf = np.asarray(confidence, np.float64)
    hit = np.asarray(correct, np.float64)
    idx = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, conf, minlength=n_bins) / count
        acc = np.bincount(idx, hit, minlength=n_bins) / count
    return {
        "edges": np.linspace(0.0, 1.0, n_bins + 1).round(6).tolist(),
        "count": count.tolist(),
        "confidence": _floats(mean_conf),
        "accuracy": _floats(acc),
    }


# -- long tail ----------------------------------------------------------------------------------


def shot_recall(
    recall: np.ndarray,
    train_counts: Sequence[int] | np.ndarray | None,
    class_ids: Sequence[str],
    *,
    many: int = 100,
    few: int = 20,
) -> tuple[dict[str, float | None], dict[str, int], list[str | None]]:
    """Mean recall per shot group, number of scored classes per group, each class's group.

    ``recall`` holds NaN for classes absent from the test rows; they count in no mean.
    Without training counts every group is None.
    """
    if train_counts is None:
        return dict.fromkeys(SHOT_GROUPS), dict.fromkeys(SHOT_GROUPS, 0), [None] * len(class_ids)
    counts = np.asarray(train_counts, np.int64)
    if counts.shape != (len(class_ids),):
        raise ValueError(f"train_counts has shape {counts.shape}, expected ({len(class_ids)},)")
    groups = shot_groups(dict(zip(class_ids, counts.tolist(), strict=True)), many=many, few=few)
    labels = [groups[c] for c in class_ids]
    means: dict[str, float | None] = {}
    scored: dict[str, int] = {}
    for g in SHOT_GROUPS:
        r = np.array([recall[i] for i, lab in enumerate(labels) if lab == g], np.float64)
        r = r[~np.isnan(r)]
        means[g] = float(r.mean()) if len(r) else None
        scored[g] = len(r)
    return means, scored, labels


# -- per task -----------------------------------------------------------------------------------


def multiclass_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    train_counts: Sequence[int] | np.ndarray | None = None,
    *,
    class_ids: Sequence[str] | None = None,
    top_k: Iterable[int] = DEFAULT_TOP_K,
    many: int = 100,
    few: int = 20,
    n_bins: int = ECE_BINS,
) -> dict[str, Any]:
    """Every metric of one multiclass task over its labelled rows (see the module docstring)."""
    y_true, probs = _check(y_true, probs, multilabel=False)
    n_classes = probs.shape[1]
    ids = list(class_ids) if class_ids is not None else [str(i) for i in range(n_classes)]
    known = y_true >= 0
    y, p = y_true[known], probs[known]
    out: dict[str, Any] = {"type": "multiclass", "n": int(known.sum())}
    if not len(y):
        return out | {"note": "no labelled rows"}
    pred = p.argmax(1)
    labels = np.arange(n_classes)
    with warnings.catch_warnings():
        # classes absent from the test rows are expected in a long tail, not worth a warning
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        prec, rec, f1, support = precision_recall_fscore_support(
            y, pred, labels=labels, zero_division=np.nan
        )
        out["accuracy"] = float(accuracy_score(y, pred))
        out["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
        out["macro_f1"] = float(f1_score(y, pred, average="macro"))
    groups, scored, group_of = shot_recall(rec, train_counts, ids, many=many, few=few)
    out |= {f"{g}_shot": groups[g] for g in SHOT_GROUPS}
    out["shot_classes_scored"] = scored
    for k in sorted(set(top_k)):
        out[f"top{k}_accuracy"] = _top_k_accuracy(y, p, k)
    conf, hit = answer_decisions(y, p)
    out["ece"] = expected_calibration_error(conf, hit, n_bins)
    out["fashionai_ap"] = fashionai_ap(conf, hit)
    out["classes_without_test_rows"] = int((support == 0).sum())
    out["confusion"] = confusion_matrix(y, pred, labels=labels).tolist()
    out["reliability"] = reliability_bins(conf, hit, n_bins)
    out["per_class"] = [
        {
            "id": ids[c],
            "support": int(support[c]),
            "precision": _float(prec[c]),
            "recall": _float(rec[c]),
            "f1": _float(f1[c]),
            "train_count": None if train_counts is None else int(train_counts[c]),
            "shot_group": group_of[c],
        }
        for c in range(n_classes)
    ]
    return out


def multilabel_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    train_counts: Sequence[int] | np.ndarray | None = None,
    *,
    class_ids: Sequence[str] | None = None,
    many: int = 100,
    few: int = 20,
    n_bins: int = ECE_BINS,
) -> dict[str, Any]:
    """Every metric of one multilabel task over its known entries (see the module docstring)."""
    y_true, probs = _check(y_true, probs, multilabel=True)
    n_classes = probs.shape[1]
    ids = list(class_ids) if class_ids is not None else [str(i) for i in range(n_classes)]
    known = y_true >= 0
    out: dict[str, Any] = {
        "type": "multilabel",
        "n": int(known.any(1).sum()),
        "entries": int(known.sum()),
    }
    if not known.any():
        return out | {"note": "no labelled rows"}
    per_class = []
    for c in range(n_classes):
        m = known[:, c]
        y, p = y_true[m, c], probs[m, c].astype(np.float64)
        per_class.append(_binary_class(ids[c], y, p, train_counts, c))
    rec = np.array([np.nan if r["recall"] is None else r["recall"] for r in per_class])
    f1 = [r["f1"] for r in per_class if r["f1"] is not None]
    ap = [r["ap"] for r in per_class if r["ap"] is not None]
    tuned = [r["f1_tuned"] for r in per_class if r["f1_tuned"] is not None]
    conf, hit = answer_decisions(y_true, probs)
    out["accuracy"] = float(hit.mean())
    out["macro_f1"] = float(np.mean(f1)) if f1 else None
    groups, scored, group_of = shot_recall(rec, train_counts, ids, many=many, few=few)
    out |= {f"{g}_shot": groups[g] for g in SHOT_GROUPS}
    out["shot_classes_scored"] = scored
    out["map"] = float(np.mean(ap)) if ap else None
    out["f1_tuned"] = float(np.mean(tuned)) if tuned else None
    out["f1_tuned_thresholds"] = "per class, tuned on the evaluated rows (optimistic)"
    out["ece"] = expected_calibration_error(conf, hit, n_bins)
    out["fashionai_ap"] = fashionai_ap(conf, hit)
    out["classes_without_test_rows"] = sum(1 for r in per_class if r["support"] == 0)
    out["reliability"] = reliability_bins(conf, hit, n_bins)
    for r, g in zip(per_class, group_of, strict=True):
        r["shot_group"] = g
    out["per_class"] = per_class
    return out


def _binary_class(
    cid: str,
    y: np.ndarray,
    p: np.ndarray,
    train_counts: Sequence[int] | np.ndarray | None,
    c: int,
) -> dict[str, Any]:
    """One class of a multilabel task over its known entries: answers at 0.5, AP, tuned F1."""
    pred = (p >= 0.5).astype(np.int64)
    tp, fp = int(((pred == 1) & (y == 1)).sum()), int(((pred == 1) & (y == 0)).sum())
    fn, tn = int(((pred == 0) & (y == 1)).sum()), int(((pred == 0) & (y == 0)).sum())
    row: dict[str, Any] = {"id": cid, "support": int((y == 1).sum()), "negatives": int(tn + fp)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        prec, rec, f1, _ = precision_recall_fscore_support(
            y, pred, labels=[1], average=None, zero_division=np.nan
        )
    row |= {"precision": _float(prec[0]), "recall": _float(rec[0]), "f1": _float(f1[0])}
    row["confusion"] = [[tn, fp], [fn, tp]]
    row["ap"] = row["f1_tuned"] = row["threshold_tuned"] = None
    if row["support"]:
        row["ap"] = float(average_precision_score(y, p))
        pr, rc, th = precision_recall_curve(y, p)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.nan_to_num(2 * pr[:-1] * rc[:-1] / (pr[:-1] + rc[:-1]))
        best = int(np.argmax(f))
        row["f1_tuned"], row["threshold_tuned"] = float(f[best]), float(th[best])
    row["train_count"] = None if train_counts is None else int(train_counts[c])
    return row


def task_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    train_counts: Sequence[int] | np.ndarray | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Multiclass or multilabel metrics, chosen by the shape of ``y_true`` (1-D or 2-D)."""
    if np.asarray(y_true).ndim == 2:
        kwargs.pop("top_k", None)
        return multilabel_metrics(y_true, probs, train_counts, **kwargs)
    return multiclass_metrics(y_true, probs, train_counts, **kwargs)


def average_over_tasks(per_task: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """metric -> {mean, tasks}: the plain mean over the tasks where the metric is defined.

    Keys are ``SUMMARY_KEYS`` plus every ``top{k}_accuracy`` present. FashionAI's mAP is
    ``fashionai_ap``'s mean.
    """
    keys = list(SUMMARY_KEYS)
    for m in per_task.values():
        keys += sorted(k for k in m if k.startswith("top") and k not in keys)
    out = {}
    for key in keys:
        vals = [float(m[key]) for m in per_task.values() if m.get(key) is not None]
        if vals:
            out[key] = {"mean": float(np.mean(vals)), "tasks": len(vals)}
    return out


# -- helpers ------------------------------------------------------------------------------------


def _check(
    y_true: np.ndarray, probs: np.ndarray, *, multilabel: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {probs.shape}")
    if multilabel is None:
        multilabel = y_true.ndim == 2
    want = probs.shape if multilabel else probs.shape[:1]
    if y_true.shape != want:
        raise ValueError(
            f"y_true has shape {y_true.shape}, expected {want} for probs {probs.shape}"
        )
    if not multilabel and len(y_true) and y_true.max() >= probs.shape[1]:
        raise ValueError(f"y_true has class {y_true.max()} but probs has {probs.shape[1]} classes")
    return y_true.astype(np.int64), probs


def _top_k_accuracy(y: np.ndarray, p: np.ndarray, k: int) -> float | None:
    """Share of rows whose class is among the k most probable; None when k >= classes (every
    row would be a hit: a meaningless 1.0 that would lift the average over tasks)."""
    n_classes = p.shape[1]
    if k >= n_classes:
        return None
    if n_classes == 2:  # scikit-learn wants the positive class's score in the binary case
        return float(top_k_accuracy_score(y, p[:, 1], k=k, labels=[0, 1]))
    return float(top_k_accuracy_score(y, p, k=k, labels=np.arange(n_classes)))


def _float(x: float) -> float | None:
    """JSON-safe: NaN (undefined) becomes None."""
    x = float(x)
    return None if math.isnan(x) else x


def _floats(xs: np.ndarray) -> list[float | None]:
    return [_float(x) for x in xs]
