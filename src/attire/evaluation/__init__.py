"""Judging models: what they cost to run (and, later, how well they tag)."""

from attire.evaluation.profile import (
    FLOPS_NOTE,
    ProfileResult,
    Timing,
    count_flops,
    describe_device,
    malloc_name,
    markdown_table,
    profile_backbone,
    profile_checkpoint,
    profile_model,
    profile_target,
    rich_table,
)

__all__ = [
    "FLOPS_NOTE",
    "ProfileResult",
    "Timing",
    "count_flops",
    "describe_device",
    "malloc_name",
    "markdown_table",
    "profile_backbone",
    "profile_checkpoint",
    "profile_model",
    "profile_target",
    "rich_table",
]

# How well a checkpoint tags: metrics, production thresholds, the eval page (`attire eval`).
from attire.evaluation.evaluate import EvalResult, evaluate_arrays, evaluate_checkpoint
from attire.evaluation.metrics import (
    answer_curve,
    average_over_tasks,
    basic_precision,
    expected_calibration_error,
    fashionai_ap,
    multiclass_metrics,
    multilabel_metrics,
    task_metrics,
)
from attire.evaluation.report import write_report
from attire.evaluation.thresholds import (
    ThresholdResult,
    fit_threshold,
    fit_thresholds,
    save_thresholds,
)

__all__ += [
    "EvalResult",
    "ThresholdResult",
    "answer_curve",
    "average_over_tasks",
    "basic_precision",
    "evaluate_arrays",
    "evaluate_checkpoint",
    "expected_calibration_error",
    "fashionai_ap",
    "fit_threshold",
    "fit_thresholds",
    "multiclass_metrics",
    "multilabel_metrics",
    "save_thresholds",
    "task_metrics",
    "write_report",
]
