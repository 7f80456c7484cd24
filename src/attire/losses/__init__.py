"""Multi-task training losses: masked per-task losses, weighting strategies, the combined loss.

Long-tail losses plug in by subclassing `TaskLoss` (write `elementwise` only; masking, soft
targets, smoothing and class weights are inherited) and registering with `register_task_loss`;
new weightings subclass `Weighting` and register with `register_weighting`. Both then become
selectable by name in a training config through `build_multitask_loss`. Long-tail losses live in
`long_tail` (built from training class counts), the Range embedding loss in `range`.
"""

from attire.losses.long_tail import (
    BalancedSoftmaxLoss,
    ClassBalancedCrossEntropy,
    ClassBalancedFocal,
    FocalLoss,
    LDAMDRWLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    WeightedCrossEntropy,
    adjust_logits,
    class_balanced_weights,
    inverse_frequency_weights,
    ldam_margins,
    log_prior,
)
from attire.losses.masked import (
    TASK_LOSSES,
    LossError,
    MaskedCrossEntropy,
    TaskLoss,
    register_task_loss,
)
from attire.losses.multitask import (
    EmbeddingLoss,
    LossOutput,
    MultiTaskLoss,
    build_multitask_loss,
)
from attire.losses.range import RangeLoss
from attire.losses.weighting import (
    WEIGHTINGS,
    DynamicWeightAverage,
    GradNorm,
    StaticWeighting,
    UncertaintyWeighting,
    Weighting,
    register_weighting,
)

__all__ = [
    "TASK_LOSSES",
    "WEIGHTINGS",
    "BalancedSoftmaxLoss",
    "ClassBalancedCrossEntropy",
    "ClassBalancedFocal",
    "DynamicWeightAverage",
    "EmbeddingLoss",
    "FocalLoss",
    "GradNorm",
    "LDAMDRWLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "LossError",
    "LossOutput",
    "MaskedCrossEntropy",
    "MultiTaskLoss",
    "RangeLoss",
    "StaticWeighting",
    "TaskLoss",
    "UncertaintyWeighting",
    "WeightedCrossEntropy",
    "Weighting",
    "adjust_logits",
    "build_multitask_loss",
    "class_balanced_weights",
    "inverse_frequency_weights",
    "ldam_margins",
    "log_prior",
    "register_task_loss",
    "register_weighting",
]
