"""Evaluation metrics against brute-force loops and scikit-learn, on random predictions with
missing labels and classes absent from the test rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
)

from attire.evaluation.metrics import (
    answer_curve,
    answer_decisions,
    average_over_tasks,
    basic_precision,
    expected_calibration_error,
    fashionai_ap,
    multiclass_metrics,
    multilabel_metrics,
    reliability_bins,
    task_metrics,
)

C = 7
ABSENT = (5, 6)  # never a true class in the test rows
TRAIN_COUNTS = [500, 150, 100, 20, 19, 3, 0]  # many, many, medium, medium, few, few, few


def _multiclass(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(5, n, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    logits = rng.normal(size=(n, C))
    logits[np.arange(n), y] += rng.uniform(0, 3, n)  # better than chance, far from perfect
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y[rng.random(n) < 0.2] = -1  # missing labels
    return y, probs


def _pairs(y: np.ndarray, probs: np.ndarray) -> list[tuple[int, int, list[float]]]:
    """(true, predicted, probs) of labelled rows, as plain Python."""
    return [
        (int(t), int(np.argmax(p)), p.tolist()) for t, p in zip(y, probs, strict=True) if t >= 0
    ]


def _brute_multiclass(y: np.ndarray, probs: np.ndarray) -> dict:
    rows = _pairs(y, probs)
    present = sorted({t for t, _, _ in rows})
    recall = {
        c: sum(t == p == c for t, p, _ in rows) / sum(t == c for t, _, _ in rows) for c in present
    }
    f1 = {}
    for c in sorted({t for t, _, _ in rows} | {p for _, p, _ in rows}):
        tp = sum(t == c and p == c for t, p, _ in rows)
        fp = sum(t != c and p == c for t, p, _ in rows)
        fn = sum(t == c and p != c for t, p, _ in rows)
        f1[c] = 2 * tp / (2 * tp + fp + fn)
    conf = [[0] * C for _ in range(C)]
    for t, p, _ in rows:
        conf[t][p] += 1
    top = {
        k: sum(t in sorted(range(C), key=lambda j, q=q: -q[j])[:k] for t, _, q in rows) / len(rows)
        for k in (1, 2, 3)
    }
    return {
        "accuracy": sum(t == p for t, p, _ in rows) / len(rows),
        "balanced_accuracy": sum(recall.values()) / len(recall),
        "macro_f1": sum(f1.values()) / len(f1),
        "recall": recall,
        "confusion": conf,
        "top": top,
    }


def _brute_ece(conf: list[float], hit: list[bool], bins: int = 15) -> float:
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(conf) if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        if idx:
            acc = sum(hit[i] for i in idx) / len(idx)
            mean_conf = sum(conf[i] for i in idx) / len(idx)
            total += len(idx) / len(conf) * abs(acc - mean_conf)
    return total


def _brute_fashionai_ap(conf: list[float], hit: list[bool]) -> float:
    """Mean over each distinct confidence t of the accuracy of items with confidence >= t."""
    bps = []
    for t in sorted(set(conf), reverse=True):
        answered = [h for c, h in zip(conf, hit, strict=True) if c >= t]
        bps.append(sum(answered) / len(answered))
    return sum(bps) / len(bps)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_metrics_match_brute_force_and_sklearn(seed):
    y, probs = _multiclass(seed)
    m = multiclass_metrics(y, probs, TRAIN_COUNTS)
    brute = _brute_multiclass(y, probs)
    known = y >= 0
    yk, pred = y[known], probs[known].argmax(1)
    assert m["n"] == known.sum()
    assert m["accuracy"] == pytest.approx(brute["accuracy"])
    assert m["accuracy"] == pytest.approx(accuracy_score(yk, pred))
    assert m["balanced_accuracy"] == pytest.approx(brute["balanced_accuracy"])
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yk, pred))
    assert m["macro_f1"] == pytest.approx(brute["macro_f1"])
    assert m["macro_f1"] == pytest.approx(f1_score(yk, pred, average="macro"))
    assert m["confusion"] == brute["confusion"]
    assert m["confusion"] == confusion_matrix(yk, pred, labels=range(C)).tolist()
    for k in (1, 2, 3):
        assert m[f"top{k}_accuracy"] == pytest.approx(brute["top"][k])
    assert m["top1_accuracy"] == pytest.approx(m["accuracy"])
    # per class: recall where the class has test rows, None (not 0) where it has none
    for c, row in enumerate(m["per_class"]):
        assert row["support"] == int((yk == c).sum())
        if c in ABSENT:
            assert row["recall"] is None and row["support"] == 0
        else:
            assert row["recall"] == pytest.approx(brute["recall"][c])
    assert m["classes_without_test_rows"] == len(ABSENT)
    # shot groups from TRAINING counts; absent classes (5, 6) count in no group
    r = brute["recall"]
    assert m["many_shot"] == pytest.approx((r[0] + r[1]) / 2)
    assert m["medium_shot"] == pytest.approx((r[2] + r[3]) / 2)
    assert m["few_shot"] == pytest.approx(r[4])
    assert m["shot_classes_scored"] == {"many": 2, "medium": 2, "few": 1}
    assert [row["shot_group"] for row in m["per_class"]] == [
        "many", "many", "medium", "medium", "few", "few", "few"
    ]  # fmt: skip
    # calibration and FashionAI AP over the top-class answers
    conf = [max(p) for _, _, p in _pairs(y, probs)]
    hit = [t == p for t, p, _ in _pairs(y, probs)]
    assert m["ece"] == pytest.approx(_brute_ece(conf, hit), abs=1e-9)
    assert m["fashionai_ap"] == pytest.approx(_brute_fashionai_ap(conf, hit))


def test_rows_with_missing_labels_change_nothing():
    y, probs = _multiclass(3, n=120)
    extra_probs = np.random.default_rng(9).dirichlet(np.ones(C), 40)
    padded = multiclass_metrics(np.r_[y, np.full(40, -1)], np.r_[probs, extra_probs], TRAIN_COUNTS)
    plain = multiclass_metrics(y, probs, TRAIN_COUNTS)
    assert padded == plain


def test_balanced_accuracy_by_hand_skips_classes_absent_from_the_test_rows():
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    m = multiclass_metrics(y, probs, [10, 10, 10])
    # recall: class 0 = 1/2, class 1 = 1/2 (one row answered class 2); class 2 has no rows
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    # F1 over classes labelled or answered: class 0 = 2/3, class 1 = 1/2, class 2 = 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["top3_accuracy"] is None  # k = classes: every row a hit, meaningless
    assert m["top2_accuracy"] == pytest.approx(1.0)
    assert m["few_shot"] == pytest.approx(0.5) and m["many_shot"] is None


def test_binary_task_top_k():
    y = np.array([0, 1, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55]])
    m = multiclass_metrics(y, probs)
    assert m["top1_accuracy"] == pytest.approx(3 / 5) == m["accuracy"]
    assert m["top2_accuracy"] is None
    assert m["many_shot"] is None and m["per_class"][0]["shot_group"] is None  # no train counts


def _multilabel(seed: int, n: int = 250, c: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < [0.4, 0.2, 0.1, 0.05, 0.0]).astype(np.int64)  # last: no positive
    probs = 1 / (1 + np.exp(-(rng.normal(size=(n, c)) + 1.5 * (2 * y - 1))))
    y[rng.random((n, c)) < 0.15] = -1  # unknown entries
    y[:10] = -1  # rows without any label
    return y, probs


def _brute_ap(y: list[int], p: list[float]) -> float:
    ranked = sorted(zip(p, y, strict=True), key=lambda t: -t[0])
    hits, precisions = 0, []
    for i, (_, label) in enumerate(ranked, 1):
        if label == 1:
            hits += 1
            precisions.append(hits / i)
    return sum(precisions) / len(precisions)


def _brute_f1(y: list[int], pred: list[int]) -> float | None:
    tp = sum(a == b == 1 for a, b in zip(y, pred, strict=True))
    fp = sum(a == 0 and b == 1 for a, b in zip(y, pred, strict=True))
    fn = sum(a == 1 and b == 0 for a, b in zip(y, pred, strict=True))
    return None if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


@pytest.mark.parametrize("seed", [0, 1])
def test_multilabel_metrics_match_brute_force_and_sklearn(seed):
    y, probs = _multilabel(seed)
    m = multilabel_metrics(y, probs, [300, 80, 10, 5, 0])
    aps, sk_aps, f1s, tuned, hits, confs = [], [], [], [], [], []
    for c in range(y.shape[1]):
        known = y[:, c] >= 0
        yc, pc = y[known, c].tolist(), probs[known, c].tolist()
        pred = [int(p >= 0.5) for p in pc]
        row = m["per_class"][c]
        assert row["support"] == sum(yc)
        f1 = _brute_f1(yc, pred)
        assert row["f1"] == (pytest.approx(f1) if f1 is not None else None)
        if f1 is not None:
            f1s.append(f1)
        hits += [a == b for a, b in zip(yc, pred, strict=True)]
        confs += [max(p, 1 - p) for p in pc]
        if sum(yc):
            aps.append(_brute_ap(yc, pc))
            sk_aps.append(average_precision_score(yc, pc))
            best = max(_brute_f1(yc, [int(p >= t) for p in pc]) or 0.0 for t in set(pc))
            tuned.append(best)
            assert row["ap"] == pytest.approx(aps[-1])
            assert row["f1_tuned"] == pytest.approx(best)
        else:
            assert row["ap"] is None and row["f1_tuned"] is None
    assert m["map"] == pytest.approx(np.mean(aps)) and m["map"] == pytest.approx(np.mean(sk_aps))
    assert m["per_class"][4]["ap"] is None  # no positive: skipped by mAP
    assert m["macro_f1"] == pytest.approx(np.mean(f1s))
    assert m["f1_tuned"] == pytest.approx(np.mean(tuned))
    assert m["accuracy"] == pytest.approx(np.mean(hits))
    assert m["entries"] == len(hits) and m["n"] == int((y >= 0).any(1).sum())
    assert m["ece"] == pytest.approx(_brute_ece(confs, hits), abs=1e-9)
    assert m["fashionai_ap"] == pytest.approx(_brute_fashionai_ap(confs, hits))
    recalls = [r["recall"] for r in m["per_class"]]
    assert m["many_shot"] == pytest.approx(recalls[0])
    assert m["medium_shot"] == pytest.approx(recalls[1])
    assert m["few_shot"] == pytest.approx(np.mean(recalls[2:4]))  # class 4 has no positive


def test_fashionai_ap_and_basic_precision_by_hand():
    conf = np.array([0.9, 0.8, 0.8, 0.6, 0.3])
    hit = np.array([True, False, True, True, False])
    # cut-offs 0.9, 0.8 (two tied items enter together), 0.6, 0.3
    assert fashionai_ap(conf, hit) == pytest.approx((1 + 2 / 3 + 3 / 4 + 3 / 5) / 4)
    curve = answer_curve(conf, hit)
    assert curve.thresholds.tolist() == [0.9, 0.8, 0.6, 0.3]
    assert curve.answered.tolist() == [1, 3, 4, 5]
    assert curve.coverage.tolist() == pytest.approx([0.2, 0.6, 0.8, 1.0])
    assert basic_precision(conf, hit, 0.8) == (pytest.approx(2 / 3), pytest.approx(0.6))
    assert basic_precision(conf, hit, 0.0) == (pytest.approx(0.6), 1.0)
    assert basic_precision(conf, hit, 0.95) == (None, 0.0)
    assert fashionai_ap(np.array([]), np.array([], bool)) is None


def test_answer_decisions_multiclass_and_multilabel():
    conf, hit = answer_decisions(
        np.array([1, -1, 0]), np.array([[0.3, 0.7], [0.5, 0.5], [0.4, 0.6]])
    )
    assert conf.tolist() == pytest.approx([0.7, 0.6]) and hit.tolist() == [True, False]
    y = np.array([[1, 0], [-1, 1]])
    conf, hit = answer_decisions(y, np.array([[0.2, 0.1], [0.9, 0.5]]))
    assert conf.tolist() == pytest.approx([0.8, 0.9, 0.5])  # max(p, 1 - p), unknown skipped
    assert hit.tolist() == [False, True, True]


def test_reliability_bins_add_up_to_the_ece():
    y, probs = _multiclass(5)
    conf, hit = answer_decisions(y, probs)
    bins = reliability_bins(conf, hit)
    assert sum(bins["count"]) == len(conf) and len(bins["count"]) == 15
    ece = sum(
        n / len(conf) * abs(a - c)
        for n, a, c in zip(bins["count"], bins["accuracy"], bins["confidence"], strict=True)
        if n
    )
    assert expected_calibration_error(conf, hit) == pytest.approx(ece)
    empty = [i for i, n in enumerate(bins["count"]) if n == 0]
    assert all(bins["accuracy"][i] is None for i in empty)


def test_a_perfectly_calibrated_constant_has_no_calibration_error():
    conf = np.full(10, 0.7)
    hit = np.array([True] * 7 + [False] * 3)
    assert expected_calibration_error(conf, hit) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(np.full(4, 0.9), np.zeros(4, bool)) == pytest.approx(0.9)


def test_tasks_without_labels_and_averages_over_defined_tasks():
    y, probs = _multiclass(0, n=50)
    yl, pl = _multilabel(0, n=50)
    per_task = {
        "a": task_metrics(y, probs, TRAIN_COUNTS),
        "b": task_metrics(yl, pl, None),
        "c": task_metrics(np.full(5, -1), probs[:5]),
    }
    assert per_task["c"] == {"type": "multiclass", "n": 0, "note": "no labelled rows"}
    avg = average_over_tasks(per_task)
    assert avg["accuracy"]["tasks"] == 2
    assert avg["accuracy"]["mean"] == pytest.approx(
        (per_task["a"]["accuracy"] + per_task["b"]["accuracy"]) / 2
    )
    assert avg["balanced_accuracy"] == {"mean": per_task["a"]["balanced_accuracy"], "tasks": 1}
    assert avg["map"]["tasks"] == 1 and "many_shot" in avg


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="expected"):
        multiclass_metrics(np.array([0, 1]), np.ones((3, 2)) / 2)
    with pytest.raises(ValueError, match="classes"):
        multiclass_metrics(np.array([0, 4]), np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match="train_counts"):
        multiclass_metrics(np.array([0, 1]), np.ones((2, 3)) / 3, [1, 2])
