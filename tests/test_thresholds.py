"""Production thresholds: fitted by hand-checkable rules, unreachable targets, saved into a
checkpoint's attire.json atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attire.evaluation.thresholds import (
    UNREACHABLE,
    ThresholdError,
    fit_threshold,
    fit_thresholds,
    save_thresholds,
)
from attire.models.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    Preprocessing,
    read_meta,
    save_checkpoint,
)
from attire.models.multitask import ModelConfig, MultiTaskModel
from attire.taxonomy import Taxonomy

# confidences high to low; precision of the answered items at each cut-off:
# 0.95: 1/1, 0.9: 2/2, 0.8: 3/3, 0.7: 3/4, 0.6: 4/5, 0.5: 4/6
CONF = np.array([0.6, 0.95, 0.5, 0.8, 0.7, 0.9])
HIT = np.array([True, True, False, True, False, True])


@pytest.mark.parametrize(
    ("target", "threshold", "answered", "precision"),
    [
        (0.8, 0.6, 5, 0.8),  # precision dips below 0.8 at 0.7 but recovers: max coverage wins
        (0.75, 0.6, 5, 0.8),
        (0.9, 0.8, 3, 1.0),
        (1.0, 0.8, 3, 1.0),
        (0.6, 0.5, 6, 4 / 6),  # everything answered
    ],
)
def test_smallest_threshold_that_reaches_the_target(target, threshold, answered, precision):
    r = fit_threshold(CONF, HIT, target, task="t")
    assert r.reachable and r.task == "t" and r.target == target
    assert r.threshold == pytest.approx(threshold)
    assert r.answered == answered and r.total == 6
    assert r.coverage == pytest.approx(answered / 6)
    assert r.precision == pytest.approx(precision)
    # the rule a service applies reproduces the fitted precision and coverage
    answered_mask = r.threshold <= CONF
    assert HIT[answered_mask].mean() == pytest.approx(r.precision)


def test_unreachable_target_answers_nothing():
    r = fit_threshold(np.array([0.99, 0.7]), np.array([False, True]), 0.95)
    assert not r.reachable
    assert r.threshold == UNREACHABLE and r.threshold > 1.0
    assert r.coverage == 0.0 and r.answered == 0 and r.precision is None and r.total == 2
    for dtype in (np.float16, np.float32, np.float64):  # a certain answer is still reviewed
        assert not (np.ones(1, dtype) >= r.threshold).any()
    empty = fit_threshold(np.array([]), np.array([], bool), 0.9)
    assert not empty.reachable and empty.total == 0


def test_ties_are_answered_together():
    # 0.8 is shared by a right and a wrong answer: the cut-off at 0.8 has precision 2/3
    conf, hit = np.array([0.9, 0.8, 0.8]), np.array([True, True, False])
    assert fit_threshold(conf, hit, 0.7).threshold == pytest.approx(0.9)
    assert fit_threshold(conf, hit, 0.6).threshold == pytest.approx(0.8)


@pytest.mark.parametrize("target", [0.0, -0.1, 1.2])
def test_target_must_be_a_share(target):
    with pytest.raises(ThresholdError, match="target precision"):
        fit_threshold(CONF, HIT, target)


def test_fit_thresholds_per_task_multiclass_and_multilabel():
    # multiclass: top-class probabilities 0.9 (right), 0.8 (right), 0.6 (wrong); one row missing
    probs = {
        "colour": np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]),
        # multilabel: yes/no answers with confidence max(p, 1 - p)
        "tags": np.array([[0.95, 0.3], [0.45, 0.2], [0.5, 0.9], [0.1, 0.1]]),
    }
    y_true = {
        "colour": np.array([0, 1, 1, -1]),
        "tags": np.array([[1, 0], [1, -1], [0, 1], [-1, -1]]),
    }
    fits = fit_thresholds(probs, y_true, target=0.99)
    assert set(fits) == {"colour", "tags"}
    assert fits["colour"].threshold == pytest.approx(0.8) and fits["colour"].total == 3
    # tags answers (conf, right): (0.95, y) (0.7, y) (0.55, n) (0.5, n) (0.9, y)
    assert fits["tags"].threshold == pytest.approx(0.7)
    assert fits["tags"].answered == 3 and fits["tags"].total == 5


@pytest.fixture()
def checkpoint(tmp_path):
    tax = Taxonomy.from_dict(
        {
            "name": "toy",
            "tasks": [
                {"name": "colour", "classes": [{"id": "red"}, {"id": "blue"}]},
                {"name": "tags", "type": "multilabel", "classes": [{"id": "a"}, {"id": "b"}]},
            ],
        }
    )
    cfg = ModelConfig(backbone="drn_c_tiny")
    meta = CheckpointMeta(
        model=cfg.model_dump(),
        preprocessing=Preprocessing(input_size=32, cache_size=32, mean=(0.5,) * 3, std=(0.5,) * 3),
        metrics={"val/acc": 0.5},
        thresholds={"tags": 0.75},
    )
    return save_checkpoint(tmp_path / "model", MultiTaskModel(tax, cfg), meta)


def test_save_thresholds_into_the_checkpoint(checkpoint):
    reached = fit_threshold(CONF, HIT, 0.9, task="colour")
    path = save_thresholds(checkpoint, {"colour": reached}, fitted_on="val")
    meta, _ = read_meta(checkpoint)
    assert meta.thresholds == {"colour": pytest.approx(0.8), "tags": 0.75}  # tags kept
    assert meta.metrics == {"val/acc": 0.5}  # the rest of attire.json is untouched
    detail = meta.extra["thresholds"]["colour"]
    assert detail["fitted_on"] == "val" and detail["reachable"] and detail["target"] == 0.9
    assert sorted(p.name for p in checkpoint.iterdir()) == sorted(
        ["attire.json", "taxonomy.yaml", "weights.safetensors"]
    )  # no temporary file left behind
    # an unreachable target is recorded as such, with a threshold no answer can reach
    missed = fit_threshold(np.array([0.9]), np.array([False]), 0.95, task="tags")
    save_thresholds(checkpoint, {"tags": missed}, fitted_on="val")
    raw = json.loads(path.read_text())
    assert raw["thresholds"]["tags"] == UNREACHABLE
    assert raw["extra"]["thresholds"]["tags"]["reachable"] is False
    assert raw["extra"]["thresholds"]["tags"]["coverage"] == 0.0


def test_save_thresholds_rejects_unknown_tasks_and_non_checkpoints(checkpoint, tmp_path):
    r = fit_threshold(CONF, HIT, 0.9, task="fabric")
    with pytest.raises(ThresholdError, match=r"no tasks \['fabric'\]"):
        save_thresholds(checkpoint, {"fabric": r})
    with pytest.raises(CheckpointError, match="not an attire checkpoint"):
        save_thresholds(tmp_path, {"colour": r})
