"""The LightningModule: one optimisation step of the multi-task network, masked metrics."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MultilabelAccuracy

from attire.losses import MultiTaskLoss
from attire.models.multitask import MultiTaskModel
from attire.training.config import OptimConfig
from attire.training.sampling import mix_seed

log = logging.getLogger(__name__)

GROUP_NAMES = ("backbone", "heads")  # MultiTaskModel.param_groups order; shown by the LR monitor


class MultiTaskModule(L.LightningModule):
    """Trains a MultiTaskModel with a MultiTaskLoss; logs per-task losses and accuracies.

    Robustness rules, each decided jointly by all DDP ranks:
    - a batch with no label for any task is not stepped (weight decay and optimizer momentum
      would still move the weights), counted in `unlabelled_batches`;
    - a step whose loss is not finite is skipped, logged and counted in `skipped_steps`, and
      every buffer the forward pass touched (BatchNorm statistics, GradNorm/DWA state) is put
      back, so a NaN image leaves no trace;
    - a batch with no label for some tasks simply contributes nothing for those tasks.

    Lightning forbids returning None from `training_step` under DDP, so a skipped batch returns
    a zero loss over all parameters instead: backward and DDP's gradient all-reduce run as
    usual, and `on_before_optimizer_step` then drops the (zero) gradients unless another
    micro-batch of the accumulation window was real, so the optimizer leaves the weights and
    its own state untouched.

    Randomness inside a step (dropout, drop-path) is seeded from (seed, epoch, batch, rank), so a
    run resumed from a mid-epoch checkpoint repeats exactly what the uninterrupted run did.
    """

    def __init__(
        self,
        model: MultiTaskModel,
        loss: MultiTaskLoss,
        optim: OptimConfig,
        *,
        channels_last: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.model = model
        self.loss = loss
        self.optim_cfg = optim
        self.channels_last = channels_last
        self.seed = seed
        self.skipped_steps = 0
        self.unlabelled_batches = 0
        self._window_has_real_batch = False  # any non-skipped batch since the last step
        tax = model.taxonomy
        self.val_metrics = nn.ModuleDict(
            {t.name: _task_metrics(t.num_classes, t.multilabel) for t in tax.tasks}
        )
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x, task_embeddings=self.loss.needs_task_embeddings)

    # -- training -------------------------------------------------------------------------------

    def on_train_start(self) -> None:
        # also here: a run resumed mid-epoch does not get on_train_epoch_start for that epoch
        self.loss.set_epoch(self.current_epoch)

    def on_train_epoch_start(self) -> None:
        self.loss.set_epoch(self.current_epoch)  # LDAM-DRW switches its class weights on it

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        torch.manual_seed(mix_seed(self.seed, self.current_epoch, batch_idx, self.global_rank))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        if self._any_rank(not _has_labels(batch), every=True):
            self.unlabelled_batches += 1
            log.warning(
                "epoch %d batch %d has no label for any task: not stepped (%d such batches)",
                self.current_epoch,
                batch_idx,
                self.unlabelled_batches,
            )
            return self._no_step()
        before = {name: b.detach().clone() for name, b in self.named_buffers()}
        out = self(batch["image"])
        shared = (
            self.model.last_shared_params() if self.loss.weighting.requires_shared_params else None
        )
        res = self.loss(out, batch["targets"], batch.get("soft"), shared_params=shared)
        local_bad = not bool(torch.isfinite(res.total))
        if self._any_rank(local_bad):
            with torch.no_grad():
                for name, value in before.items():
                    self.get_buffer(name).copy_(value)
            self.skipped_steps += 1
            bad = [t for t, v in res.per_task.items() if not math.isfinite(float(v))]
            where = ", ".join(bad) or ("the weighted total" if local_bad else "on another rank")
            log.warning(
                "non-finite loss at epoch %d batch %d (tasks: %s): step skipped, buffers "
                "restored (%d skipped so far)",
                self.current_epoch,
                batch_idx,
                where,
                self.skipped_steps,
            )
            return self._no_step()
        self._window_has_real_batch = True
        bs = batch["image"].shape[0]
        self.log("train/loss", res.total, prog_bar=True, batch_size=bs)
        # Per-task values only on the steps the loggers write (and the bar then shows): each
        # `self.log` costs ~0.6 ms of Lightning bookkeeping, 17 ms a step for the 26 values of
        # 13 tasks, the suspected cap of GPU runs at 14 steps/s. The test is the one Lightning's
        # LR monitor uses (a private attribute: checked against Lightning 2.6 by the tests).
        if self.trainer._logger_connector.should_update_logs:
            for task, value in res.per_task.items():
                if res.counts.get(task, 0) > 0:
                    self.log(f"train/loss_{task}", value, prog_bar=True, batch_size=bs)
            for task, w in self.loss.weighting.task_weights().items():
                self.log(f"weight/{task}", w, batch_size=bs)
        return res.total

    def _no_step(self) -> torch.Tensor:
        """A zero loss reaching every trainable parameter (with zero gradient)."""
        return torch.stack([p.sum() for p in self.parameters() if p.requires_grad]).sum() * 0.0

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if not self._window_has_real_batch:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None  # torch optimizers skip such parameters entirely
        self._window_has_real_batch = False

    def _any_rank(self, flag: bool, *, every: bool = False) -> bool:
        """`flag` on any rank (or, with `every`, on all ranks); plain `flag` on one device."""
        return bool(self.trainer.strategy.reduce_boolean_decision(flag, all=every))

    def on_train_epoch_end(self) -> None:
        self.loss.on_epoch_end()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["attire"] = {
            "skipped_steps": self.skipped_steps,
            "unlabelled_batches": self.unlabelled_batches,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("attire", {})
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.unlabelled_batches = int(state.get("unlabelled_batches", 0))

    # -- validation -----------------------------------------------------------------------------

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self(batch["image"])
        res = self.loss(out, batch["targets"], batch.get("soft"))
        if torch.isfinite(res.total):
            self.log("val/loss", res.total, batch_size=batch["image"].shape[0], sync_dist=True)
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
        # Which tasks had labels on any rank: compute() gathers across ranks, so every rank
        # must call it for the same tasks.
        seen = torch.tensor(
            [float(any(m.update_count for m in ms.values())) for ms in self.val_metrics.values()],
            device=self.device,
        )
        seen = self.trainer.strategy.reduce(seen, reduce_op="sum")
        accs, baccs = [], []
        for (task, metrics), n in zip(self.val_metrics.items(), seen.tolist(), strict=True):
            if n == 0:
                continue
            values = metrics.compute()
            metrics.reset()
            acc, bacc = float(values["acc"]), float(values["bacc"])
            accs.append(acc)
            baccs.append(bacc)
            self.log(f"val/acc_{task}", acc, sync_dist=True)
            self.log(f"val/bacc_{task}", bacc, sync_dist=True)
        if accs:
            self.log("val/acc_mean", sum(accs) / len(accs), prog_bar=True, sync_dist=True)
            self.log("val/bacc_mean", sum(baccs) / len(baccs), prog_bar=True, sync_dist=True)

    # -- optimisation ---------------------------------------------------------------------------

    def configure_optimizers(self):
        cfg = self.optim_cfg
        groups = self.model.param_groups(cfg.lr, cfg.backbone_lr_mult)
        for group, name in zip(groups, GROUP_NAMES, strict=True):
            group["name"] = name
        extra = [p for p in self.loss.parameters() if p.requires_grad]
        if extra:
            groups.append({"params": extra, "lr": cfg.lr, "weight_decay": 0.0, "name": "loss"})
        if cfg.name == "sgd":
            opt = torch.optim.SGD(
                groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        else:
            opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = min(total - 1, round(total * cfg.warmup_epochs / epochs))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, warmup_cosine(total, warmup, cfg.min_lr_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _has_labels(batch: dict) -> bool:
    """Whether any item has a hard label (or a known multilabel entry) or a soft label."""
    hard = any(bool((t >= 0).any()) for t in batch["targets"].values())
    return hard or any(bool((~torch.isnan(s)).any()) for s in batch.get("soft", {}).values())


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


def warmup_cosine(total: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    """LR factor per optimizer step: linear warm-up to 1 over `warmup` steps, then cosine decay
    reaching `min_ratio` exactly at the last step (`total` - 1)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - 1 - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
