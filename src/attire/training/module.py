"""The LightningModule: one optimisation step of the multi-task network, masked metrics."""

from __future__ import annotations

import logging
import math

import lightning as L
import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MultilabelAccuracy

from attire.losses import MultiTaskLoss
from attire.models.multitask import MultiTaskModel
from attire.training.config import OptimConfig

log = logging.getLogger(__name__)


class MultiTaskModule(L.LightningModule):
    """Trains a MultiTaskModel with a MultiTaskLoss; logs per-task losses and accuracies.

    A step whose loss is not finite is skipped (logged, counted) rather than poisoning the
    weights; a batch with no label for some task simply contributes nothing for that task.
    """

    def __init__(
        self,
        model: MultiTaskModel,
        loss: MultiTaskLoss,
        optim: OptimConfig,
        *,
        channels_last: bool = True,
    ):
        super().__init__()
        self.model = model
        self.loss = loss
        self.optim_cfg = optim
        self.channels_last = channels_last
        self.skipped_steps = 0
        tax = model.taxonomy
        self.val_metrics = nn.ModuleDict(
            {t.name: _task_metrics(t.num_classes, t.multilabel) for t in tax.tasks}
        )
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch: dict, batch_idx: int):
        out = self(batch["image"])
        shared = (
            self.model.last_shared_params() if self.loss.weighting.requires_shared_params else None
        )
        res = self.loss(out, batch["targets"], batch.get("soft"), shared_params=shared)
        if not torch.isfinite(res.total):
            self.skipped_steps += 1
            bad = [t for t, v in res.per_task.items() if not math.isfinite(float(v))]
            log.warning(
                "non-finite loss at epoch %d step %d (tasks %s): step skipped (%d so far)",
                self.current_epoch,
                self.global_step,
                bad or "total",
                self.skipped_steps,
            )
            return None
        bs = batch["image"].shape[0]
        self.log("train/loss", res.total, prog_bar=True, batch_size=bs)
        for task, value in res.per_task.items():
            if res.counts.get(task, 0) > 0:
                self.log(f"loss_{task}", value, prog_bar=True, batch_size=bs)
        return res.total

    def on_train_epoch_end(self) -> None:
        self.loss.on_epoch_end()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self(batch["image"])
        res = self.loss(out, batch["targets"], batch.get("soft"))
        if torch.isfinite(res.total):
            self.log("val/loss", res.total, batch_size=batch["image"].shape[0])
        for task, metrics in self.val_metrics.items():
            target = batch["targets"][task]
            logits = out[task]
            if target.ndim == 1:
                keep = target >= 0
                if keep.any():
                    metrics.update(logits[keep], target[keep])
            else:
                keep = (target >= 0).any(dim=1)
                if keep.any():
                    metrics.update(logits[keep], target[keep].long())

    def on_validation_epoch_end(self) -> None:
        accs, baccs = [], []
        for task, metrics in self.val_metrics.items():
            if not any(m.update_count for m in metrics.values()):
                continue
            values = metrics.compute()
            metrics.reset()
            acc, bacc = float(values["acc"]), float(values["bacc"])
            accs.append(acc)
            baccs.append(bacc)
            self.log(f"val/acc_{task}", acc)
            self.log(f"val/bacc_{task}", bacc)
        if accs:
            self.log("val/acc_mean", sum(accs) / len(accs), prog_bar=True)
            self.log("val/bacc_mean", sum(baccs) / len(baccs), prog_bar=True)

    def configure_optimizers(self):
        cfg = self.optim_cfg
        groups = self.model.param_groups(cfg.lr, cfg.backbone_lr_mult)
        extra = [p for p in self.loss.parameters() if p.requires_grad]
        if extra:
            groups.append({"params": extra, "lr": cfg.lr, "weight_decay": 0.0})
        if cfg.name == "sgd":
            opt = torch.optim.SGD(
                groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        else:
            opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = min(total - 1, int(total * cfg.warmup_epochs / epochs))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, _warmup_cosine(total, warmup, cfg.min_lr_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _task_metrics(num_classes: int, multilabel: bool) -> MetricCollection:
    metrics: dict[str, Metric]
    if multilabel:
        metrics = {
            "acc": MultilabelAccuracy(num_classes, average="micro", ignore_index=-1),
            "bacc": MultilabelAccuracy(num_classes, average="macro", ignore_index=-1),
        }
    else:
        metrics = {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "bacc": MulticlassAccuracy(num_classes, average="macro"),
        }
    return MetricCollection(metrics)


def _warmup_cosine(total: int, warmup: int, min_ratio: float):
    """Linear warm-up to the base LR, then cosine decay to min_ratio of it."""

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
