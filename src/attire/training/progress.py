"""The training progress bar: total loss, each task's loss and the validation means, short names."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

_PREFIXES = ("train/loss_", "train/", "val/")


class TaskProgressBar(RichProgressBar):
    """Rich bar whose metrics read `loss 1.93 collar 0.41 ... acc_mean 0.62`: with 13 tasks the
    logged names (`train/loss_collar`) would fill the line with prefixes."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return {_short(k): v for k, v in items.items()}


def _short(name: str) -> str:
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name
