"""Per-task losses that skip missing labels: the base every attire classification loss extends.

Partial labels are the norm in attire (an image labelled for collar may have no fit label), so the
masking lives in one place, `TaskLoss.forward`: it keeps the labelled rows (entries, for a
multilabel task), prefers a soft target over the hard one, applies label smoothing and per-class
weights, and averages over the labelled items. A subclass writes only `elementwise`, the loss of
each (item, class) pair, so long-tail losses (focal, LDAM, class-balanced, logit-adjusted) inherit
correct masking instead of re-implementing it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attire.errors import AttireError


class LossError(AttireError):
    """A loss configuration, or a batch that does not fit its loss (shape, class index)."""


class TaskLoss(nn.Module, ABC):
    """Masked loss of one task; `forward(logits, target, soft) -> (mean loss, n_labelled)`.

    Targets follow the batch contract: multiclass `target` is a LongTensor [B] of class indices
    with -1 = missing; multilabel `target` is [B, C] with 1 = present, 0 = absent, -1 = unknown.
    `soft` is an optional [B, C] float tensor with NaN where there is no soft label; a soft
    label wins over the hard one, even where the hard one is -1. Multiclass soft labels are whole
    rows (a distribution over classes); multilabel soft labels are per entry (a probability).

    The loss is the mean over labelled items (rows for multiclass, entries for multilabel), and a
    batch without labels gives exactly 0 with zero gradient. Per-class weights multiply each
    item's class terms but do not renormalise the mean (unlike `F.cross_entropy(weight=...)`,
    which divides by the summed weights): class-balanced losses set weight scale themselves.
    """

    supports: ClassVar[frozenset[str]] = frozenset({"multiclass", "multilabel"})
    needs_counts: ClassVar[bool] = False
    """True for losses built from the training set's class counts (long-tail losses): they take
    a `class_counts` argument, which `build_multitask_loss` fills in from its own argument."""
    class_weights: Tensor | None

    def __init__(
        self,
        num_classes: int,
        *,
        multilabel: bool = False,
        class_weights: Tensor | Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        kind = "multilabel" if multilabel else "multiclass"
        if kind not in self.supports:
            raise LossError(f"{type(self).__name__} does not support {kind} tasks")
        if num_classes < 1:
            raise LossError(f"num_classes must be at least 1, got {num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise LossError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.num_classes = num_classes
        self.multilabel = multilabel
        self.label_smoothing = float(label_smoothing)
        weights = None
        if class_weights is not None:
            weights = torch.as_tensor(class_weights, dtype=torch.float32).detach().clone()
            if weights.shape != (num_classes,):
                raise LossError(
                    f"class_weights needs {num_classes} values (one per class), "
                    f"got shape {tuple(weights.shape)}"
                )
            if not torch.isfinite(weights).all() or (weights < 0).any():
                raise LossError(f"class_weights must be finite and >= 0, got {weights.tolist()}")
        self.register_buffer("class_weights", weights)

    @abstractmethod
    def elementwise(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of each (item, class) pair, shape [N, C], for labelled rows only.

        `logits` [N, C] are float32. `target` [N, C] is already smoothed: a distribution over
        classes per row (multiclass) or a probability per entry (multilabel; entries that are
        masked hold 0 and their loss is discarded). The base class applies class weights, drops
        masked entries and averages; a multiclass row's loss is the sum over its classes.
        """

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of each training epoch (0-based) through
        `MultiTaskLoss.set_epoch`; only schedule-dependent losses (LDAM-DRW) act on it."""

    def forward(
        self, logits: Tensor, target: Tensor, soft: Tensor | None = None
    ) -> tuple[Tensor, int]:
        self._check_shapes(logits, target, soft)
        if self.multilabel:
            rows, q, entries = self._multilabel_targets(target, soft)
        else:
            rows, q = self._multiclass_targets(target, soft)
            entries = None
        # Boolean indexing, not multiplying by a mask: unlabelled rows never enter the loss, so
        # whatever their logits hold, their gradient is exactly zero.
        elem = self.elementwise(logits[rows].float(), q[rows])
        if self.class_weights is not None:
            elem = elem * self.class_weights
        if entries is None:
            kept, n = elem, elem.shape[0]
        else:
            mask = entries[rows]
            kept = elem[mask]
            n = kept.shape[0]
        return kept.sum() / max(n, 1), n

    # -- targets --------------------------------------------------------------------------------

    def _multiclass_targets(self, target: Tensor, soft: Tensor | None) -> tuple[Tensor, Tensor]:
        """Rows to keep and their target distribution (soft row if given, else one-hot)."""
        c = self.num_classes
        out_of_range = ((target < -1) | (target >= c)).any()
        if soft is None:
            has_soft = torch.zeros_like(target, dtype=torch.bool)
            partial = torch.zeros((), dtype=torch.bool, device=target.device)
        else:
            nan = torch.isnan(soft)
            has_soft = ~nan.any(dim=1)
            partial = (nan.any(dim=1) & ~nan.all(dim=1)).any()
        bad_index, bad_soft = torch.stack([out_of_range, partial]).tolist()
        if bad_index:
            wrong = target[(target < -1) | (target >= c)].unique()[:10].tolist()
            raise LossError(f"class index outside -1..{c - 1} in targets: {wrong}")
        if bad_soft:
            raise LossError("soft targets have rows that are partly NaN (use all-NaN or none)")
        q = F.one_hot(target.clamp(min=0), c).float()
        if soft is not None:
            q = torch.where(has_soft[:, None], soft.float(), q)
        if self.label_smoothing:
            q = q * (1.0 - self.label_smoothing) + self.label_smoothing / c
        return (target >= 0) | has_soft, q

    def _multilabel_targets(
        self, target: Tensor, soft: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Rows with any labelled entry, per-entry targets, and which entries are labelled."""
        bad = (target != -1) & (target != 0) & (target != 1)
        if bool(bad.any()):
            wrong = target[bad].unique()[:10].tolist()
            raise LossError(f"multilabel targets must be 1, 0 or -1, got {wrong}")
        hard = target.float()
        entries = hard >= 0
        if soft is not None:
            has_soft = ~torch.isnan(soft)
            hard = torch.where(has_soft, soft.float(), hard)
            entries = entries | has_soft
        q = torch.where(entries, hard, torch.zeros_like(hard))
        if self.label_smoothing:
            q = q * (1.0 - self.label_smoothing) + self.label_smoothing / 2.0
        return entries.any(dim=1), q, entries

    def _check_shapes(self, logits: Tensor, target: Tensor, soft: Tensor | None) -> None:
        c = self.num_classes
        if logits.dim() != 2 or logits.shape[1] != c:
            raise LossError(f"logits must be [batch, {c}], got {tuple(logits.shape)}")
        b = logits.shape[0]
        want = (b, c) if self.multilabel else (b,)
        if tuple(target.shape) != want:
            raise LossError(f"targets must have shape {list(want)}, got {list(target.shape)}")
        if not self.multilabel and target.is_floating_point():
            raise LossError(f"multiclass targets must be integer class indices, not {target.dtype}")
        if soft is not None and tuple(soft.shape) != (b, c):
            raise LossError(f"soft targets must have shape {[b, c]}, got {list(soft.shape)}")


# -- registry ----------------------------------------------------------------------------------

TASK_LOSSES: dict[str, type[TaskLoss]] = {}
"""Loss name (as written in a training config) -> class; filled by `register_task_loss`."""

_L = TypeVar("_L", bound=type[TaskLoss])


def register_task_loss(name: str) -> Callable[[_L], _L]:
    """Class decorator making a TaskLoss selectable as `loss: NAME` in a training config."""

    def register(cls: _L) -> _L:
        known = TASK_LOSSES.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"task loss name {name!r} is already taken by {known.__name__}")
        TASK_LOSSES[name] = cls
        return cls

    return register


@register_task_loss("ce")
class MaskedCrossEntropy(TaskLoss):
    """Cross-entropy: softmax CE for a multiclass task, sigmoid BCE per entry for multilabel."""

    def elementwise(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return -target * F.log_softmax(logits, dim=1)
