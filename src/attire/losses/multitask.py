"""The multi-task training loss: one masked loss per taxonomy task, combined by a weighting.

`build_multitask_loss(taxonomy, cfg)` turns the `loss:` section of a training config into a
`MultiTaskLoss`; every name in it (task, loss, weighting, option) is checked and a wrong one is
reported as an AttireError naming the key. Config shape (every key optional):

    loss: ce                          # default task loss: a name, or {name: ..., **options}
    label_smoothing: 0.1              # default for every task loss
    weighting: {name: uncertainty}    # static (default) | uncertainty | dwa | gradnorm, + options
    tasks:
      collar: {weight: 2.0}           # fixed prior on the task's term, under any weighting
      fabric: {loss: {name: ce, class_weights: [...], label_smoothing: 0.0}}
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from attire.losses.masked import TASK_LOSSES, LossError, MaskedCrossEntropy, TaskLoss
from attire.losses.weighting import WEIGHTINGS, StaticWeighting, Weighting
from attire.taxonomy import Task, Taxonomy


@dataclass
class LossOutput:
    """`total` to backpropagate; per-task losses (detached) and labelled-item counts to log."""

    total: Tensor
    per_task: dict[str, Tensor]
    counts: dict[str, int]


class MultiTaskLoss(nn.Module):
    """Sum of per-task masked losses under a weighting strategy.

    Tasks without a loss in `task_losses` get `MaskedCrossEntropy` with `label_smoothing`; the
    default weighting is static with weight 1.0 per task. Model outputs may hold extra keys
    (e.g. "embedding") and targets may hold tasks outside the taxonomy (a model trained on a
    taxonomy subset); both are ignored.
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        task_losses: Mapping[str, TaskLoss] | None = None,
        weighting: Weighting | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        names = taxonomy.task_names
        task_losses = dict(task_losses or {})
        unknown = sorted(set(task_losses) - set(names))
        if unknown:
            raise LossError(f"losses given for tasks {unknown} that are not in taxonomy {names}")
        losses: dict[str, TaskLoss] = {}
        for task in taxonomy.tasks:
            loss = task_losses.get(task.name)
            if loss is None:
                loss = MaskedCrossEntropy(
                    task.num_classes, multilabel=task.multilabel, label_smoothing=label_smoothing
                )
            elif loss.num_classes != task.num_classes or loss.multilabel != task.multilabel:
                raise LossError(
                    f"task '{task.name}': its loss is built for {_kind(loss.multilabel)} with "
                    f"{loss.num_classes} classes, the taxonomy says {task.type} with "
                    f"{task.num_classes}"
                )
            losses[task.name] = loss
        self.task_losses = nn.ModuleDict(losses)
        self.weighting = weighting if weighting is not None else StaticWeighting(names)
        if sorted(self.weighting.tasks) != sorted(names):
            raise LossError(
                f"the weighting covers tasks {self.weighting.tasks}, the taxonomy has {names}"
            )
        self.tasks = names

    def forward(
        self,
        outputs: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        soft: Mapping[str, Tensor] | None = None,
        shared_params: Iterable[Tensor] | None = None,
    ) -> LossOutput:
        """Loss of a batch. Pass `shared_params` (the last shared layer's parameters) in
        training steps: GradNorm needs them and raises without them; other weightings ignore
        them, so a trainer can always pass them."""
        losses: dict[str, Tensor] = {}
        counts: dict[str, int] = {}
        for name in self.tasks:
            for what, batch in (("model outputs", outputs), ("targets", targets)):
                if name not in batch:
                    raise LossError(f"{what} have no entry for task '{name}'")
            task_soft = soft.get(name) if soft is not None else None
            try:
                losses[name], counts[name] = self.task_losses[name](
                    outputs[name], targets[name], task_soft
                )
            except LossError as e:
                raise LossError(f"task '{name}': {e}") from None
        present = {name: n > 0 for name, n in counts.items()}
        if self.training and self.weighting.requires_shared_params:
            if shared_params is None:
                raise LossError(
                    f"weighting {type(self.weighting).__name__} needs shared_params "
                    "(the last shared layer's parameters) in training steps"
                )
            total = self.weighting.update(losses, present, shared_params)  # type: ignore[attr-defined]
        else:
            total = self.weighting(losses, present)
        return LossOutput(total, {k: v.detach() for k, v in losses.items()}, counts)

    def on_epoch_end(self) -> None:
        """Call after each training epoch (DWA records its per-task epoch averages here)."""
        self.weighting.on_epoch_end()


# -- config ------------------------------------------------------------------------------------

_TOP_KEYS = ("loss", "label_smoothing", "weighting", "tasks")
_TASK_KEYS = ("weight", "loss")
_SET_BY_TAXONOMY = ("num_classes", "multilabel")
_SET_BY_TASKS = ("tasks", "weights")


def build_multitask_loss(taxonomy: Taxonomy, cfg: Mapping[str, Any] | None = None) -> MultiTaskLoss:
    """A MultiTaskLoss from the `loss:` section of a training config (see the module docstring)."""
    cfg = _mapping(cfg if cfg is not None else {}, "loss config")
    _only(cfg, _TOP_KEYS, "loss config")
    smoothing = _number(cfg.get("label_smoothing", 0.0), "label_smoothing")
    default_loss = _spec(cfg.get("loss", "ce"), "loss", TASK_LOSSES, "task loss")
    tasks_cfg = _mapping(cfg.get("tasks") or {}, "tasks")
    unknown = sorted(set(tasks_cfg) - set(taxonomy.task_names))
    if unknown:
        raise LossError(
            f"loss config: tasks.{unknown[0]}: no such task in taxonomy '{taxonomy.name}' "
            f"(tasks: {', '.join(taxonomy.task_names)})"
        )
    priors: dict[str, float] = {}
    losses: dict[str, TaskLoss] = {}
    for task in taxonomy.tasks:
        where = f"tasks.{task.name}"
        tcfg = _mapping(tasks_cfg.get(task.name) or {}, where)
        _only(tcfg, _TASK_KEYS, where)
        if "weight" in tcfg:
            priors[task.name] = _number(tcfg["weight"], f"{where}.weight")
        spec = default_loss
        if "loss" in tcfg:
            spec = _spec(tcfg["loss"], f"{where}.loss", TASK_LOSSES, "task loss")
        losses[task.name] = _task_loss(task, spec, smoothing, f"{where}.loss")
    name, options = _spec(cfg.get("weighting") or "static", "weighting", WEIGHTINGS, "weighting")
    weighting = _construct(
        WEIGHTINGS[name],
        options,
        {"tasks": taxonomy.task_names, "weights": priors},
        _SET_BY_TASKS,
        "weighting",
    )
    return MultiTaskLoss(taxonomy, losses, weighting, smoothing)


def _task_loss(
    task: Task, spec: tuple[str, dict[str, Any]], smoothing: float, where: str
) -> TaskLoss:
    name, options = spec
    cls = TASK_LOSSES[name]
    if task.type not in cls.supports:
        raise LossError(
            f"loss config: {where}: loss '{name}' does not support {task.type} tasks "
            f"like '{task.name}'"
        )
    given = {"num_classes": task.num_classes, "multilabel": task.multilabel}
    if _accepts(cls, "label_smoothing") and "label_smoothing" not in options:
        given["label_smoothing"] = smoothing
    return _construct(cls, options, given, _SET_BY_TAXONOMY, where)


def _construct(
    cls: type, options: dict[str, Any], given: dict[str, Any], reserved: tuple[str, ...], where: str
) -> Any:
    """cls(**given, **options), with wrong option names and values reported at `where`."""
    for key in options:
        if key in reserved:
            raise LossError(f"loss config: {where}: '{key}' is set by attire, not by the config")
        if not _accepts(cls, key):
            allowed = sorted(set(_options(cls)) - set(reserved))
            raise LossError(
                f"loss config: {where}: unknown option '{key}' for {cls.__name__} "
                f"(options: {', '.join(allowed) or 'none'})"
            )
    try:
        return cls(**given, **options)
    except LossError as e:
        raise LossError(f"loss config: {where}: {e}") from None
    except (TypeError, ValueError) as e:
        raise LossError(f"loss config: {where}: bad option value: {e}") from None


def _spec(
    value: object, where: str, registry: Mapping[str, type], kind: str
) -> tuple[str, dict[str, Any]]:
    """`name` or `{name: ..., **options}` -> (name, options), the name checked in `registry`."""
    if isinstance(value, str):
        name, options = value, {}
    else:
        options = dict(_mapping(value, where))
        if "name" not in options:
            raise LossError(f"loss config: {where}: needs a 'name' ({', '.join(sorted(registry))})")
        name = options.pop("name")
    if name not in registry:
        raise LossError(
            f"loss config: {where}: unknown {kind} {name!r} (known: {', '.join(sorted(registry))})"
        )
    return name, options


def _options(cls: type) -> list[str]:
    params = inspect.signature(cls).parameters.values()
    return [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _accepts(cls: type, key: str) -> bool:
    params = inspect.signature(cls).parameters.values()
    return key in _options(cls) or any(p.kind is p.VAR_KEYWORD for p in params)


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise LossError(f"loss config: {where}: expected a mapping, got {value!r}")
    return value


def _only(cfg: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in cfg:
        if key not in allowed:
            raise LossError(
                f"loss config: {where}: unknown key '{key}' (allowed: {', '.join(allowed)})"
            )


def _number(value: object, where: str) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise LossError(f"loss config: {where}: expected a number, got {value!r}")
    return float(value)


def _kind(multilabel: bool) -> str:
    return "multilabel" if multilabel else "multiclass"
