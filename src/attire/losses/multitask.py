"""The multi-task training loss: one masked loss per taxonomy task, combined by a weighting.

`build_multitask_loss(taxonomy, cfg, class_counts)` turns the `loss:` section of a training
config into a `MultiTaskLoss`; every name in it (task, loss, weighting, option) is checked and a
wrong one is reported as an AttireError naming the key. Config shape (every key optional):

    loss: ce                          # default task loss: a name, or {name: ..., **options}
    label_smoothing: 0.1              # default for every task loss
    weighting: {name: uncertainty}    # static (default) | uncertainty | dwa | gradnorm, + options
    tasks:
      collar: {weight: 2.0}           # fixed prior on the task's term, under any weighting
      fabric: {loss: {name: ce, class_weights: [...], label_smoothing: 0.0}}
      sleeve_length: {loss: {name: cb-focal, beta: 0.999, gamma: 2.0}}  # needs class counts
      main_pattern: {loss: ce, range: {lambda: 0.1, alpha: 1, beta: 1, margin: 1, k: 2}}

Long-tail losses (attire.losses.long_tail: weighted-ce, cb-ce, cb-focal, ldam, ldam-drw,
logit-adjust, balanced-softmax) are built from each task's training class counts, given as
`class_counts`; `range:` adds lambda * Range loss on the task's embedding (attire.losses.range).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor, nn

from attire.losses.long_tail import ClassCounts
from attire.losses.masked import TASK_LOSSES, LossError, MaskedCrossEntropy, TaskLoss
from attire.losses.range import RangeLoss
from attire.losses.weighting import WEIGHTINGS, StaticWeighting, Weighting
from attire.taxonomy import Task, Taxonomy


@dataclass
class LossOutput:
    """`total` to backpropagate; per-task losses (detached) and labelled-item counts to log.

    `per_task` includes each task's weighted embedding loss; `auxiliary` holds the embedding
    losses alone (unweighted, detached), for the tasks that have one.
    """

    total: Tensor
    per_task: dict[str, Tensor]
    counts: dict[str, int]
    auxiliary: dict[str, Tensor] = field(default_factory=dict)


SHARED_EMBEDDING = "embedding"
"""Model output key of the backbone's pooled features (attire.models.multitask.EMBEDDING)."""


def task_embedding_key(task: str) -> str:
    """Model output key of a task head's embedding (with `task_embeddings=True`)."""
    return f"{task}__emb"


class EmbeddingLoss(nn.Module):
    """An auxiliary loss on an embedding, added as `weight * loss(embedding, target)` to one
    task's loss (e.g. Range loss: total = softmax loss + lambda * L_R).

    `source` picks the embedding: "task" is the task head's own embedding (`{task}__emb`; the
    model must then be called with `task_embeddings=True`), "shared" the backbone's pooled
    features ("embedding"). `loss(embedding [B, D], target)` gets the task's hard targets.
    """

    def __init__(
        self, loss: nn.Module, weight: float, source: Literal["task", "shared"] = "task"
    ) -> None:
        super().__init__()
        if source not in ("task", "shared"):
            raise LossError(f"embedding source must be 'task' or 'shared', got {source!r}")
        if not (isinstance(weight, int | float) and 0 <= weight < math.inf):
            raise LossError(f"embedding loss weight must be a number >= 0, got {weight!r}")
        self.loss = loss
        self.weight = float(weight)
        self.source = source

    def output_key(self, task: str) -> str:
        return task_embedding_key(task) if self.source == "task" else SHARED_EMBEDDING


class MultiTaskLoss(nn.Module):
    """Sum of per-task masked losses under a weighting strategy.

    Tasks without a loss in `task_losses` get `MaskedCrossEntropy` with `label_smoothing`; the
    default weighting is static with weight 1.0 per task. Model outputs may hold extra keys
    (e.g. "embedding") and targets may hold tasks outside the taxonomy (a model trained on a
    taxonomy subset); both are ignored.

    `embedding_losses` adds, per task, an auxiliary loss on an embedding to that task's loss;
    when `needs_task_embeddings` is true the model must be called with `task_embeddings=True`
    (in training and validation). Trainer hooks: `set_epoch(epoch)` at the start of every
    training epoch (LDAM-DRW switches its weights on it), `on_epoch_end()` after it.
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        task_losses: Mapping[str, TaskLoss] | None = None,
        weighting: Weighting | None = None,
        label_smoothing: float = 0.0,
        embedding_losses: Mapping[str, EmbeddingLoss] | None = None,
    ) -> None:
        super().__init__()
        names = taxonomy.task_names
        task_losses = dict(task_losses or {})
        embedding_losses = dict(embedding_losses or {})
        for what, given in (("losses", task_losses), ("embedding losses", embedding_losses)):
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise LossError(
                    f"{what} given for tasks {unknown} that are not in taxonomy {names}"
                )
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
        self.embedding_losses = nn.ModuleDict(embedding_losses)
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
        auxiliary: dict[str, Tensor] = {}
        for name in self.tasks:
            for what, batch in (("model outputs", outputs), ("targets", targets)):
                if name not in batch:
                    raise LossError(f"{what} have no entry for task '{name}'")
            task_soft = soft.get(name) if soft is not None else None
            try:
                losses[name], counts[name] = self.task_losses[name](
                    outputs[name], targets[name], task_soft
                )
                if name in self.embedding_losses:
                    aux = self._embedding_loss(name, outputs, targets[name])
                    losses[name] = losses[name] + self.embedding_losses[name].weight * aux
                    auxiliary[name] = aux.detach()
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
        return LossOutput(total, {k: v.detach() for k, v in losses.items()}, counts, auxiliary)

    @property
    def needs_task_embeddings(self) -> bool:
        """True when some task's embedding loss reads `{task}__emb`: call the model with
        `task_embeddings=True`."""
        return any(e.source == "task" for e in self.embedding_losses.values())

    def set_epoch(self, epoch: int) -> None:
        """Call at the start of each training epoch (0-based); forwarded to every task loss."""
        for loss in self.task_losses.values():
            loss.set_epoch(epoch)

    def on_epoch_end(self) -> None:
        """Call after each training epoch (DWA records its per-task epoch averages here)."""
        self.weighting.on_epoch_end()

    def _embedding_loss(self, name: str, outputs: Mapping[str, Tensor], target: Tensor) -> Tensor:
        aux = self.embedding_losses[name]
        key = aux.output_key(name)
        if key not in outputs:
            hint = " (call the model with task_embeddings=True)" if aux.source == "task" else ""
            raise LossError(f"model outputs have no '{key}' for its embedding loss{hint}")
        return aux.loss(outputs[key], target)


# -- config ------------------------------------------------------------------------------------

_TOP_KEYS = ("loss", "label_smoothing", "weighting", "tasks")
_TASK_KEYS = ("weight", "loss", "range")
_RANGE_KEYS = ("lambda", "alpha", "beta", "margin", "k", "squared", "normalize", "embedding")
_SET_BY_ATTIRE = ("num_classes", "multilabel", "class_counts")
_SET_BY_TASKS = ("tasks", "weights")


def build_multitask_loss(
    taxonomy: Taxonomy,
    cfg: Mapping[str, Any] | None = None,
    class_counts: Mapping[str, ClassCounts] | None = None,
) -> MultiTaskLoss:
    """A MultiTaskLoss from the `loss:` section of a training config (see the module docstring).

    `class_counts[task]` is the training split's count of each class of the task (positives
    per class for a multilabel task), in taxonomy class order; losses with `needs_counts` get
    it, and asking for one of them without counts for its task is a LossError.
    """
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
    embedding_losses: dict[str, EmbeddingLoss] = {}
    for task in taxonomy.tasks:
        where = f"tasks.{task.name}"
        tcfg = _mapping(tasks_cfg.get(task.name) or {}, where)
        _only(tcfg, _TASK_KEYS, where)
        if "weight" in tcfg:
            priors[task.name] = _number(tcfg["weight"], f"{where}.weight")
        spec = default_loss
        if "loss" in tcfg:
            spec = _spec(tcfg["loss"], f"{where}.loss", TASK_LOSSES, "task loss")
        counts = (class_counts or {}).get(task.name)
        losses[task.name] = _task_loss(task, spec, smoothing, counts, f"{where}.loss")
        if tcfg.get("range") is not None:
            embedding_losses[task.name] = _range_loss(task, tcfg["range"], f"{where}.range")
    name, options = _spec(cfg.get("weighting") or "static", "weighting", WEIGHTINGS, "weighting")
    weighting = _construct(
        WEIGHTINGS[name],
        options,
        {"tasks": taxonomy.task_names, "weights": priors},
        _SET_BY_TASKS,
        "weighting",
    )
    return MultiTaskLoss(taxonomy, losses, weighting, smoothing, embedding_losses)


def _task_loss(
    task: Task,
    spec: tuple[str, dict[str, Any]],
    smoothing: float,
    counts: ClassCounts | None,
    where: str,
) -> TaskLoss:
    name, options = spec
    cls = TASK_LOSSES[name]
    if task.type not in cls.supports:
        raise LossError(
            f"loss config: {where}: loss '{name}' does not support {task.type} tasks "
            f"like '{task.name}'"
        )
    given: dict[str, Any] = {"num_classes": task.num_classes, "multilabel": task.multilabel}
    if cls.needs_counts:
        if counts is None:
            raise LossError(
                f"loss config: {where}: loss '{name}' is built from the training class counts, "
                f"and none were given for task '{task.name}' (pass class_counts to "
                "build_multitask_loss)"
            )
        given["class_counts"] = counts
    if _accepts(cls, "label_smoothing") and "label_smoothing" not in options:
        given["label_smoothing"] = smoothing
    return _construct(cls, options, given, _SET_BY_ATTIRE, where)


def _range_loss(task: Task, value: object, where: str) -> EmbeddingLoss:
    """`range: {lambda, alpha, beta, margin, k, squared, normalize, embedding}` ->
    lambda * RangeLoss."""
    rcfg = _mapping(value, where)
    _only(rcfg, _RANGE_KEYS, where)
    if task.multilabel:
        raise LossError(
            f"loss config: {where}: the range loss needs a multiclass task; '{task.name}' is "
            "multilabel"
        )
    if "lambda" not in rcfg:
        raise LossError(f"loss config: {where}: needs 'lambda', the range loss weight (e.g. 0.1)")
    weight = _number(rcfg["lambda"], f"{where}.lambda")
    source = rcfg.get("embedding", "task")
    if source not in ("task", "shared"):
        raise LossError(f"loss config: {where}.embedding: 'task' or 'shared', got {source!r}")
    options = {k: v for k, v in rcfg.items() if k not in ("lambda", "embedding")}
    loss = _construct(RangeLoss, options, {}, (), where)
    try:
        return EmbeddingLoss(loss, weight, source)
    except LossError as e:
        raise LossError(f"loss config: {where}: {e}") from None


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
