"""How per-task losses become one training loss: static, uncertainty, DWA and GradNorm weighting.

Every strategy is an nn.Module with one call, `forward(losses, present) -> total`, where
`present[t]` says whether the batch had any label for task t. Partial labels are the norm in
attire (LibMTL, the reference MTL library, assumes every task is labelled in every batch), so an
absent task is left out of every statistic and every weight update: its weight cannot move
because of a batch that had nothing to say about it. Its loss (exactly 0 from `TaskLoss`) is added
times zero only to keep its head in the autograd graph, which DDP wants.

Per-task `weights` (config `tasks.<name>.weight`) are fixed priors multiplying each task's term on
top of any strategy, so an adaptive strategy can still be told that one task matters more.

Trainer hooks:
- `on_epoch_end()` after each training epoch (DWA records its epoch averages; others ignore it).
- When `requires_shared_params` is true (GradNorm), call `update(losses, present, shared_params)`
  in the training step instead of `forward`, before the main backward; `MultiTaskLoss` does this
  when it is given `shared_params`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import ClassVar, TypeVar

import torch
from torch import Tensor, nn

from attire.losses.masked import LossError


class Weighting(nn.Module, ABC):
    """Base strategy: total = sum over tasks of prior_t * term_t(loss_t), absent tasks skipped."""

    requires_shared_params: ClassVar[bool] = False
    priors: Tensor

    def __init__(self, tasks: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.tasks = list(tasks)
        if not self.tasks:
            raise LossError("a loss weighting needs at least one task")
        dup = sorted({t for t in self.tasks if self.tasks.count(t) > 1})
        if dup:
            raise LossError(f"duplicate task names in loss weighting: {dup}")
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(self.tasks))
        if unknown:
            raise LossError(f"loss weights for unknown tasks {unknown} (tasks: {self.tasks})")
        for task, w in weights.items():
            ok = isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w)
            if not ok or w < 0:
                raise LossError(f"loss weight of task '{task}' must be a number >= 0, got {w!r}")
        self.register_buffer(
            "priors", torch.tensor([float(weights.get(t, 1.0)) for t in self.tasks])
        )

    @abstractmethod
    def term(self, i: int, loss: Tensor) -> Tensor:
        """Task i's contribution to the total, before its prior (called only when present)."""

    @abstractmethod
    def multipliers(self) -> Tensor:
        """The current factor on each task's loss, [T] in `self.tasks` order, before priors."""

    def task_weights(self) -> dict[str, float]:
        """Effective weight of each task's loss right now (prior x strategy), for logging."""
        return dict(
            zip(self.tasks, (self.priors * self.multipliers().detach()).tolist(), strict=True)
        )

    def forward(self, losses: Mapping[str, Tensor], present: Mapping[str, bool]) -> Tensor:
        self._check(losses, present)
        terms = [
            self.priors[i] * self.term(i, losses[t]) if present[t] else losses[t] * 0.0
            for i, t in enumerate(self.tasks)
        ]
        return torch.stack(terms).sum()

    def on_epoch_end(self) -> None:
        """Called by the trainer after each training epoch; only epoch-based strategies use it."""

    def _check(self, losses: Mapping[str, Tensor], present: Mapping[str, bool]) -> None:
        want = set(self.tasks)
        for what, got in (("losses", set(losses)), ("present", set(present))):
            if got != want:
                raise LossError(
                    f"loss weighting: {what} must name exactly the tasks {self.tasks}; "
                    f"missing {sorted(want - got)}, unexpected {sorted(got - want)}"
                )

    def _present_mask(self, present: Mapping[str, bool]) -> Tensor:
        return torch.tensor([bool(present[t]) for t in self.tasks], device=self.priors.device)


# -- registry ----------------------------------------------------------------------------------

WEIGHTINGS: dict[str, type[Weighting]] = {}
"""Weighting name (as written in a training config) -> class; filled by `register_weighting`."""

_W = TypeVar("_W", bound=type[Weighting])


def register_weighting(name: str) -> Callable[[_W], _W]:
    """Class decorator making a Weighting selectable as `weighting: {name: NAME}` in a config."""

    def register(cls: _W) -> _W:
        known = WEIGHTINGS.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"weighting name {name!r} is already taken by {known.__name__}")
        WEIGHTINGS[name] = cls
        return cls

    return register


# -- strategies --------------------------------------------------------------------------------


@register_weighting("static")
class StaticWeighting(Weighting):
    """Fixed weights: total = sum_t w_t * L_t (w_t = 1.0 unless configured)."""

    def term(self, i: int, loss: Tensor) -> Tensor:
        return loss

    def multipliers(self) -> Tensor:
        return torch.ones_like(self.priors)


@register_weighting("uncertainty")
class UncertaintyWeighting(Weighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    Learns s_t = log sigma_t^2 per task and uses the paper's classification form (its eq. 10
    term for a softmax likelihood with temperature sigma^2): L = sum_t exp(-s_t) * L_t + s_t / 2.
    We use it rather than the regression form exp(-s)/2 * L + s/2 that LibMTL applies to every
    task because all attire tasks are classification, and because with s_t = 0 at the start the
    total equals the static sum, so switching strategy does not rescale the first steps.

    s_t are parameters (one scalar Parameter per task, so an optimizer skips an absent task
    whose gradient stays None, momentum included); train them with weight decay 0.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        weights: Mapping[str, float] | None = None,
        init_log_var: float = 0.0,
    ) -> None:
        super().__init__(tasks, weights)
        self.log_vars = nn.ParameterDict(
            {t: nn.Parameter(torch.tensor(float(init_log_var))) for t in self.tasks}
        )

    def term(self, i: int, loss: Tensor) -> Tensor:
        s = self.log_vars[self.tasks[i]]
        return torch.exp(-s) * loss + 0.5 * s

    def multipliers(self) -> Tensor:
        return torch.exp(-torch.stack([self.log_vars[t] for t in self.tasks]))


@register_weighting("dwa")
class DynamicWeightAverage(Weighting):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, eq. 7).

    lambda_t = T * softmax_t(r_t / temperature), r_t = Lbar_t(e-1) / Lbar_t(e-2), the ratio of
    the task's average training loss over its last two epochs, recorded at `on_epoch_end()`.
    Weights change only at epoch ends. With partial labels an epoch in which a task had no
    labelled batch does not count for that task, and a task without two recorded epochs gets the
    mean ratio of the tasks that have one, or r_t = 1 if none has (the paper's start-up rule:
    lambda = 1 until there is history).
    """

    lambdas: Tensor
    history: Tensor
    epoch_sum: Tensor
    epoch_count: Tensor

    def __init__(
        self,
        tasks: Sequence[str],
        weights: Mapping[str, float] | None = None,
        temperature: float = 2.0,
    ) -> None:
        super().__init__(tasks, weights)
        if not temperature > 0:
            raise LossError(f"dwa temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        n = len(self.tasks)
        self.register_buffer("lambdas", torch.ones(n))
        # history[1]: the task's latest epoch average, history[0]: the one before (NaN = none).
        self.register_buffer("history", torch.full((2, n), float("nan")))
        self.register_buffer("epoch_sum", torch.zeros(n))
        self.register_buffer("epoch_count", torch.zeros(n))

    def term(self, i: int, loss: Tensor) -> Tensor:
        return self.lambdas[i] * loss

    def multipliers(self) -> Tensor:
        return self.lambdas

    def forward(self, losses: Mapping[str, Tensor], present: Mapping[str, bool]) -> Tensor:
        total = super().forward(losses, present)
        if self.training:
            with torch.no_grad():
                mask = self._present_mask(present)
                values = torch.stack([losses[t].detach().float() for t in self.tasks])
                values = values.to(self.epoch_sum.device)
                self.epoch_sum += torch.where(mask, values, torch.zeros_like(values))
                self.epoch_count += mask
        return total

    def on_epoch_end(self) -> None:
        seen = self.epoch_count > 0
        average = self.epoch_sum / self.epoch_count.clamp(min=1)
        older = torch.where(seen, self.history[1], self.history[0])
        latest = torch.where(seen, average, self.history[1])
        ratio = latest / older
        # NaN: fewer than two epochs with labels; inf: a zero average. Without evidence a task
        # takes the mean ratio of the others (so an average weight), or 1 when none has one.
        known = torch.isfinite(ratio)
        fallback = ratio[known].mean() if bool(known.any()) else ratio.new_tensor(1.0)
        ratio = torch.where(known, ratio, fallback)
        # Assigned, not written in place: a graph still holding the old lambdas stays valid.
        # in place: DDP broadcasts buffers into the tensors it registered, not into new ones
        self.history.copy_(torch.stack([older, latest]))
        self.lambdas.copy_(len(self.tasks) * torch.softmax(ratio / self.temperature, dim=0))
        self.epoch_sum.zero_()
        self.epoch_count.zero_()


@register_weighting("gradnorm")
class GradNorm(Weighting):
    """GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018).

    Loss weights w_t (sum T) are moved so each task's gradient norm on the last shared layer,
    G_t = w_t * ||dL_t/dW||, approaches mean(G) * r_t^alpha, where r_t is the task's inverse
    training rate (L_t / L_t(0), relative to the mean over tasks): a task that trains slower
    gets a larger weight. As in the paper, the target is a constant, so the weight gradient of
    L_grad = sum_t |G_t - target_t| is sign(G_t - target_t) * ||dL_t/dW||.

    Trainer API, in the training step, before the main backward:

        total = gradnorm.update(losses, present, shared_params)   # e.g. backbone's last block
        total.backward()

    `update` returns the weighted total with the weights as they were (the paper's step), then
    takes one Adam step on the weights of the tasks present in the batch (Adam because gradient
    norms differ by orders of magnitude across backbones; each step moves a weight by about
    `lr`), and rescales those weights to keep their sum, so all weights still sum to T and an
    absent task's weight, Adam moments and L_t(0) stay as they were. L_t(0) is the task's loss
    the first time it is present. Fewer than two present tasks: nothing to balance, no step.
    Priors multiply the total after balancing (they are not part of G_t, or GradNorm would
    undo them). `forward` alone (e.g. validation) applies the weights without updating them.
    The weights are buffers, not parameters: the main optimizer must not step them.
    """

    loss_weights: Tensor
    initial_losses: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    steps: Tensor
    requires_shared_params = True

    def __init__(
        self,
        tasks: Sequence[str],
        weights: Mapping[str, float] | None = None,
        alpha: float = 1.5,
        lr: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        min_weight: float = 1e-3,
    ) -> None:
        super().__init__(tasks, weights)
        if alpha < 0:
            raise LossError(f"gradnorm alpha must be >= 0, got {alpha}")
        if not lr > 0:
            raise LossError(f"gradnorm lr must be > 0, got {lr}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise LossError(f"gradnorm betas must be two numbers in [0, 1), got {betas}")
        if not 0 < min_weight < 1:
            raise LossError(f"gradnorm min_weight must be in (0, 1), got {min_weight}")
        self.alpha, self.lr, self.min_weight = float(alpha), float(lr), float(min_weight)
        self.betas = (float(betas[0]), float(betas[1]))
        n = len(self.tasks)
        self.register_buffer("loss_weights", torch.ones(n))
        self.register_buffer("initial_losses", torch.full((n,), float("nan")))
        self.register_buffer("exp_avg", torch.zeros(n))
        self.register_buffer("exp_avg_sq", torch.zeros(n))
        self.register_buffer("steps", torch.zeros(n))

    def term(self, i: int, loss: Tensor) -> Tensor:
        # a copy: the weights are updated in place before this step's backward
        return self.loss_weights[i].clone() * loss

    def multipliers(self) -> Tensor:
        return self.loss_weights

    def update(
        self,
        losses: Mapping[str, Tensor],
        present: Mapping[str, bool],
        shared_params: Iterable[Tensor],
    ) -> Tensor:
        """The weighted total (current weights), then one GradNorm step on present tasks."""
        total = self(losses, present)
        params = [p for p in shared_params if p.requires_grad]
        if not params:
            raise LossError("gradnorm needs the shared layer's parameters (requiring grad)")
        idx = [i for i, t in enumerate(self.tasks) if present[t]]
        if len(idx) < 2:
            return total
        norms = torch.stack([_grad_norm(losses[self.tasks[i]], params) for i in idx])
        current = torch.stack([losses[self.tasks[i]].detach().float() for i in idx])
        with torch.no_grad():
            at = torch.tensor(idx, device=self.loss_weights.device)
            norms, current = norms.to(at.device), current.to(at.device)
            initial = torch.where(
                torch.isnan(self.initial_losses[at]), current, self.initial_losses[at]
            )
            self.initial_losses[at] = initial
            w = self.loss_weights[at]
            g = w * norms
            rate = current / initial.clamp_min(1e-12)
            rate = rate / rate.mean().clamp_min(1e-12)
            grad = torch.sign(g - g.mean() * rate**self.alpha) * norms
            new = self._adam_step(at, w, grad).clamp_min(self.min_weight)
            new = new * (w.sum() / new.sum())
            weights = self.loss_weights.clone()
            weights[at] = new
            self.loss_weights.copy_(weights)
        return total

    def _adam_step(self, at: Tensor, w: Tensor, grad: Tensor) -> Tensor:
        """Adam on the selected weights only, so absent tasks keep their moments."""
        b1, b2 = self.betas
        steps = self.steps[at] + 1
        m = b1 * self.exp_avg[at] + (1 - b1) * grad
        v = b2 * self.exp_avg_sq[at] + (1 - b2) * grad * grad
        self.steps[at], self.exp_avg[at], self.exp_avg_sq[at] = steps, m, v
        m_hat = m / (1 - torch.pow(b1, steps))
        v_hat = v / (1 - torch.pow(b2, steps))
        return w - self.lr * m_hat / (v_hat.sqrt() + 1e-8)


def _grad_norm(loss: Tensor, params: list[Tensor]) -> Tensor:
    """||d loss / d params||_2 over all params together; 0 when loss does not reach them."""
    if not loss.requires_grad:
        return torch.zeros((), device=loss.device)
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    norms = [torch.linalg.vector_norm(g.float()) for g in grads if g is not None]
    if not norms:
        return torch.zeros((), device=loss.device)
    return torch.linalg.vector_norm(torch.stack(norms))
