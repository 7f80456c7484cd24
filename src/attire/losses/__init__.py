"""Multi-task training losses: masked per-task losses, weighting strategies, the combined loss.

Long-tail losses plug in by subclassing `TaskLoss` (write `elementwise` only; masking, soft
targets, smoothing and class weights are inherited) and registering with `register_task_loss`;
new weightings subclass `Weighting` and register with `register_weighting`. Both then become
selectable by name in a training config through `build_multitask_loss`.
"""

from attire.losses.masked import (
    TASK_LOSSES,
    LossError,
    MaskedCrossEntropy,
    TaskLoss,
    register_task_loss,
)
from attire.losses.multitask import LossOutput, MultiTaskLoss, build_multitask_loss
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
    "DynamicWeightAverage",
    "GradNorm",
    "LossError",
    "LossOutput",
    "MaskedCrossEntropy",
    "MultiTaskLoss",
    "StaticWeighting",
    "TaskLoss",
    "UncertaintyWeighting",
    "Weighting",
    "build_multitask_loss",
    "register_task_loss",
    "register_weighting",
]
