"""Cost-sensitive losses for long-tailed tasks: re-weighting, focal, LDAM(-DRW), logit adjustment.

Every loss here is a `TaskLoss`, so masking of missing labels, soft targets and label smoothing
come from the base; most are built from the training set's class counts (`needs_counts = True`),
which `build_multitask_loss` passes in. Counts are clipped at 1 before use: a class never seen in
training is treated as seen once (the rarest possible class: largest weight, largest margin,
smallest prior) instead of producing inf or NaN. For a multilabel task the count of a class is
its number of positive labels.

Class weights follow the `TaskLoss` convention (they scale items, the mean is over labelled items,
not over summed weights) and are normalised to sum to C, so their mean is 1 and switching from
`ce` to a re-weighted loss keeps the loss scale. For a multilabel task the weight of class c
scales both the positive and the negative entries of column c.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from attire.losses.masked import LossError, MaskedCrossEntropy, TaskLoss, register_task_loss

ClassCounts = Tensor | np.ndarray | Sequence[float]
"""Training-set count of each class of one task, in taxonomy class order."""


def clipped_counts(class_counts: ClassCounts, num_classes: int | None = None) -> Tensor:
    """Counts as a float64 tensor clipped at 1, checked to be C finite numbers >= 0."""
    counts = torch.as_tensor(np.asarray(class_counts, dtype=np.float64))
    if counts.dim() != 1 or (num_classes is not None and counts.shape[0] != num_classes):
        want = f"{num_classes} values (one per class)" if num_classes is not None else "a 1-D array"
        raise LossError(f"class_counts needs {want}, got shape {tuple(counts.shape)}")
    if not torch.isfinite(counts).all() or (counts < 0).any():
        raise LossError(f"class_counts must be finite and >= 0, got {counts.tolist()}")
    return counts.clamp_min(1.0)


def inverse_frequency_weights(class_counts: ClassCounts, power: float = 1.0) -> Tensor:
    """w_c proportional to 1 / n_c^power (1: inverse, 0.5: square-root inverse), sum C."""
    if not power >= 0:
        raise LossError(f"power must be >= 0 (1: inverse, 0.5: sqrt inverse), got {power}")
    counts = clipped_counts(class_counts)
    return _sum_to_c(counts.pow(-float(power)))


def class_balanced_weights(class_counts: ClassCounts, beta: float = 0.9999) -> Tensor:
    """Cui et al. 2019: w_c proportional to 1 / E_c with the effective number
    E_c = (1 - beta^n_c) / (1 - beta), normalised to sum to C. beta = 0 gives equal weights and
    beta -> 1 approaches inverse frequency."""
    if not 0.0 <= beta < 1.0:
        raise LossError(f"beta must be in [0, 1), got {beta}")
    counts = clipped_counts(class_counts)
    if beta == 0.0:
        return _sum_to_c(torch.ones_like(counts))
    # 1 - beta^n as -expm1(n log beta): exact for beta close to 1, where 1 - beta^n is tiny.
    effective = -torch.expm1(counts * np.log(beta)) / (1.0 - beta)
    return _sum_to_c(1.0 / effective)


def ldam_margins(class_counts: ClassCounts, max_m: float = 0.5) -> Tensor:
    """Cao et al. 2019: m_c proportional to n_c^(-1/4), scaled so the rarest class gets max_m."""
    if not max_m > 0:
        raise LossError(f"max_m must be > 0, got {max_m}")
    m = clipped_counts(class_counts).pow(-0.25)
    return (m * (max_m / m.max())).float()


def log_prior(class_counts: ClassCounts) -> Tensor:
    """log pi_c, pi the training label distribution (counts clipped at 1), float32."""
    counts = clipped_counts(class_counts)
    return (counts / counts.sum()).log().float()


def adjust_logits(logits: Tensor, class_counts: ClassCounts, tau: float = 1.0) -> Tensor:
    """Post-hoc logit adjustment (Menon et al. 2021): logits - tau * log pi.

    For a multiclass model trained with a plain (not logit-adjusted) loss: subtracting the log
    prior removes the training set's bias toward frequent classes, so argmax predicts rare
    classes more often. Do not apply it to a model trained with `logit-adjust` or
    `balanced-softmax`, whose raw logits are already adjusted.
    """
    prior = log_prior(clipped_counts(class_counts, logits.shape[-1]))
    return logits - float(tau) * prior.to(device=logits.device, dtype=logits.dtype)


def _sum_to_c(weights: Tensor) -> Tensor:
    return (weights * (weights.numel() / weights.sum())).float()


# -- re-weighted cross-entropy -----------------------------------------------------------------


@register_task_loss("weighted-ce")
class WeightedCrossEntropy(MaskedCrossEntropy):
    """Cross-entropy (sigmoid BCE for multilabel) with inverse-frequency class weights:
    `power: 1` weights by 1/n_c, `power: 0.5` by 1/sqrt(n_c); weights sum to C."""

    needs_counts = True

    def __init__(
        self,
        num_classes: int,
        *,
        class_counts: ClassCounts,
        power: float = 1.0,
        multilabel: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        weights = inverse_frequency_weights(clipped_counts(class_counts, num_classes), power)
        super().__init__(
            num_classes,
            multilabel=multilabel,
            class_weights=weights,
            label_smoothing=label_smoothing,
        )


@register_task_loss("cb-ce")
class ClassBalancedCrossEntropy(MaskedCrossEntropy):
    """Class-balanced cross-entropy (Cui et al. 2019): CE weighted by 1 / effective number."""

    needs_counts = True

    def __init__(
        self,
        num_classes: int,
        *,
        class_counts: ClassCounts,
        beta: float = 0.9999,
        multilabel: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        weights = class_balanced_weights(clipped_counts(class_counts, num_classes), beta)
        super().__init__(
            num_classes,
            multilabel=multilabel,
            class_weights=weights,
            label_smoothing=label_smoothing,
        )


# -- focal -------------------------------------------------------------------------------------


def _modulator(one_minus_p: Tensor, gamma: float) -> Tensor:
    """(1 - p)^gamma without a NaN gradient at p = 1 when gamma < 1 (clamped away from 0)."""
    return one_minus_p.clamp_min(torch.finfo(one_minus_p.dtype).tiny).pow(gamma)


@register_task_loss("focal")
class FocalLoss(TaskLoss):
    """Focal loss (Lin et al. 2017): CE scaled by (1 - p_t)^gamma, so easy examples count less.

    Multiclass: softmax focal, -sum_c q_c (1 - p_c)^gamma log p_c. Multilabel: sigmoid focal
    per entry, BCE * (1 - p_t)^gamma with p_t = p q + (1 - p)(1 - q) (as torchvision's
    `sigmoid_focal_loss`); `alpha` there weights positive entries by alpha and negative ones by
    1 - alpha (the paper's alpha-balanced form). For multiclass use `class_weights` instead.
    gamma = 0 is plain cross-entropy.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        gamma: float = 2.0,
        alpha: float | None = None,
        multilabel: bool = False,
        class_weights: Tensor | Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            num_classes,
            multilabel=multilabel,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
        )
        if not gamma >= 0:
            raise LossError(f"gamma must be >= 0, got {gamma}")
        if alpha is not None:
            if not multilabel:
                raise LossError(
                    "alpha balances positive and negative entries of a multilabel task; "
                    "for a multiclass task use class_weights"
                )
            if not 0.0 <= alpha <= 1.0:
                raise LossError(f"alpha must be in [0, 1], got {alpha}")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)

    def elementwise(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.multilabel:
            p = torch.sigmoid(logits)
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            p_t = p * target + (1 - p) * (1 - target)
            loss = bce * _modulator(1 - p_t, self.gamma)
            if self.alpha is not None:
                loss = (self.alpha * target + (1 - self.alpha) * (1 - target)) * loss
            return loss
        logp = F.log_softmax(logits, dim=1)
        return -target * _modulator(-torch.expm1(logp), self.gamma) * logp


@register_task_loss("cb-focal")
class ClassBalancedFocal(FocalLoss):
    """Class-balanced focal loss (Cui et al. 2019): focal weighted by 1 / effective number.
    Multiclass tasks use the softmax focal loss; the paper's CB-focal is sigmoid-based, which is
    what a multilabel task gets."""

    needs_counts = True

    def __init__(
        self,
        num_classes: int,
        *,
        class_counts: ClassCounts,
        beta: float = 0.9999,
        gamma: float = 2.0,
        alpha: float | None = None,
        multilabel: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        weights = class_balanced_weights(clipped_counts(class_counts, num_classes), beta)
        super().__init__(
            num_classes,
            gamma=gamma,
            alpha=alpha,
            multilabel=multilabel,
            class_weights=weights,
            label_smoothing=label_smoothing,
        )


# -- LDAM --------------------------------------------------------------------------------------


@register_task_loss("ldam")
class LDAMLoss(TaskLoss):
    """Label-distribution-aware margin loss (Cao et al. 2019), multiclass only.

    CE of s * (z - m_y e_y): the true class's logit is lowered by its margin m_y (from
    `ldam_margins`), so rare classes must win by more. `s` scales logits; the paper's s = 30
    assumes a cosine (normalised) classifier whose logits lie in [-1, 1]. With attire's plain
    linear heads, logits are unbounded and s = 30 makes the softmax very sharp: consider s = 1
    with a correspondingly larger max_m.

    A soft or smoothed target q gets the expected hard-label loss, sum_c q_c * LDAM(z, c), each
    class term with its own margin; for a one-hot q this is exactly the paper's loss.
    """

    supports = frozenset({"multiclass"})
    needs_counts = True
    margins: Tensor

    def __init__(
        self,
        num_classes: int,
        *,
        class_counts: ClassCounts,
        max_m: float = 0.5,
        s: float = 30.0,
        multilabel: bool = False,
        class_weights: Tensor | Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            num_classes,
            multilabel=multilabel,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
        )
        if not s > 0:
            raise LossError(f"s (logit scale) must be > 0, got {s}")
        self.s = float(s)
        self.register_buffer(
            "margins", ldam_margins(clipped_counts(class_counts, num_classes), max_m)
        )

    def elementwise(self, logits: Tensor, target: Tensor) -> Tensor:
        scaled = self.s * logits
        shift = self.s * self.margins
        # Row c of the middle axis: the logits as seen by a sample of class c (its margin taken
        # off class c only), so [n, c] is the hard-label LDAM loss of item n if it were class c.
        as_class = scaled[:, None, :] - torch.diag(shift)
        per_class = torch.logsumexp(as_class, dim=2) - (scaled - shift)
        return target * per_class


@register_task_loss("ldam-drw")
class LDAMDRWLoss(LDAMLoss):
    """LDAM with deferred re-weighting (Cao et al. 2019): unweighted LDAM until epoch
    `drw_epoch` (0-based), class-balanced weights (beta) from then on, so features are learned
    on the natural distribution first. Needs `MultiTaskLoss.set_epoch(epoch)` at the start of
    every training epoch; the paper switches at 80% of training (epoch 160 of 200)."""

    drw_weights: Tensor

    def __init__(
        self,
        num_classes: int,
        *,
        class_counts: ClassCounts,
        drw_epoch: int,
        beta: float = 0.9999,
        max_m: float = 0.5,
        s: float = 30.0,
        multilabel: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        counts = clipped_counts(class_counts, num_classes)
        super().__init__(
            num_classes,
            class_counts=counts,
            max_m=max_m,
            s=s,
            multilabel=multilabel,
            label_smoothing=label_smoothing,
        )
        if isinstance(drw_epoch, bool) or not isinstance(drw_epoch, int) or drw_epoch < 0:
            raise LossError(f"drw_epoch must be an epoch number >= 0, got {drw_epoch!r}")
        self.drw_epoch = drw_epoch
        self.epoch = 0
        self.register_buffer("drw_weights", class_balanced_weights(counts, beta))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def reweighting(self) -> bool:
        """Whether the class-balanced weights are on (epoch >= drw_epoch)."""
        return self.epoch >= self.drw_epoch

    def elementwise(self, logits: Tensor, target: Tensor) -> Tensor:
        loss = super().elementwise(logits, target)
        return loss * self.drw_weights if self.reweighting else loss


# -- logit adjustment --------------------------------------------------------------------------


@register_task_loss("logit-adjust")
class LogitAdjustedLoss(TaskLoss):
    """Logit-adjusted softmax CE (Menon et al. 2021), multiclass only: CE of z + tau * log pi.

    Training against prior-shifted logits makes the raw logits z themselves balanced, so
    inference uses z unchanged (no `adjust_logits`).
    """

    supports = frozenset({"multiclass"})
    needs_counts = True
    offsets: Tensor

    def __init__(
        self,
        num_classes: int,
        *,
        class_counts: ClassCounts,
        tau: float = 1.0,
        multilabel: bool = False,
        class_weights: Tensor | Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            num_classes,
            multilabel=multilabel,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
        )
        if not np.isfinite(tau):
            raise LossError(f"tau must be a finite number, got {tau}")
        self.tau = float(tau)
        prior = log_prior(clipped_counts(class_counts, num_classes))
        self.register_buffer("offsets", self.tau * prior)

    def elementwise(self, logits: Tensor, target: Tensor) -> Tensor:
        return -target * F.log_softmax(logits + self.offsets, dim=1)


@register_task_loss("balanced-softmax")
class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax (Ren et al. 2020): p_c proportional to n_c exp(z_c). Adding log n_c to
    the logits equals adding log pi_c (softmax ignores a constant), so this is `logit-adjust`
    with tau = 1, under the name the literature uses."""

    def __init__(
        self,
        num_classes: int,
        *,
        class_counts: ClassCounts,
        multilabel: bool = False,
        class_weights: Tensor | Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(
            num_classes,
            class_counts=class_counts,
            tau=1.0,
            multilabel=multilabel,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
        )
