"""Training samplers for long-tailed, partially labelled multi-task data (see docs/SAMPLING.md).

Every sampler draws dataset positions from a per-row probability vector computed from the
encoded targets (task -> ``Manifest.encode`` array, -1 = missing). The draw of an epoch is a pure
function of (seed, epoch): Lightning calls ``set_epoch`` on the loader's sampler before each epoch,
so a resumed run redraws exactly the epochs it had not finished. Under DDP each rank takes an
interleaved slice of the same draw (like ``DistributedSampler``), so ranks never need to talk;
the rank and world size are read from ``torch.distributed`` when iterated, not when built,
because Lightning initialises the process group only inside ``Trainer.fit``.

Class rebalancing is "class first, then row": a class c of the task is picked with probability
proportional to ``n_c ** power`` (power 1 = instance sampling, 0.5 = square-root, 0 =
class-balanced) and then one of its rows uniformly. That is exact for multiclass tasks and, for
multilabel tasks, the probability a row is drawn is the sum over its present classes (Wu et al.
2020's class-aware re-sampling); labelled rows with no present class form one extra "none" class.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypeAlias

import numpy as np
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.utils.data import Sampler

from attire.data.dataset import MultiTaskDataset
from attire.data.manifest import Manifest
from attire.errors import AttireError

Targets: TypeAlias = Mapping[str, np.ndarray]
SamplerName = Literal["instance", "class-balanced", "sqrt", "progressive", "multitask-balanced"]
SAMPLER_NAMES: tuple[str, ...] = SamplerName.__args__  # type: ignore[attr-defined]
SQRT_POWER = 0.5
MULTITASK_POWER = 0.5
_SINGLE_TASK = ("class-balanced", "sqrt", "progressive")
_OPTIONS: dict[str, frozenset[str]] = {
    "instance": frozenset(),
    "class-balanced": frozenset({"missing_share"}),
    "sqrt": frozenset({"power", "missing_share"}),
    "progressive": frozenset({"power", "epochs", "missing_share"}),
    "multitask-balanced": frozenset({"power", "tasks"}),
}


class SamplerError(AttireError):
    """Sampler options or targets that cannot give a sampling distribution."""


# -- targets -----------------------------------------------------------------------------------


def targets_from_manifest(
    manifest: Manifest, tasks: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Encoded targets of every row of a manifest (positions = manifest rows)."""
    names = tasks if tasks is not None else manifest.taxonomy.task_names
    return {t: manifest.encode(t) for t in names}


def targets_from_dataset(dataset: MultiTaskDataset) -> dict[str, np.ndarray]:
    """Encoded targets in dataset positions: undecodable images excluded, as the loader sees them.

    The dataset keeps multilabel targets as float32 1/0/-1; they come back as int64.
    """
    return {
        task: np.rint(values[dataset.rows]).astype(np.int64)
        for task, values in dataset.targets.items()
    }


def _as_targets(data: Manifest | MultiTaskDataset | Targets) -> dict[str, np.ndarray]:
    if isinstance(data, Manifest):
        raw = targets_from_manifest(data)
    elif isinstance(data, MultiTaskDataset):
        raw = targets_from_dataset(data)
    else:
        raw = dict(data)
    if not raw:
        raise SamplerError("no targets given: a sampler needs at least one task")
    out = {task: _check_target(task, y) for task, y in raw.items()}
    lengths = {task: len(y) for task, y in out.items()}
    if len(set(lengths.values())) > 1:
        raise SamplerError(f"targets of different lengths per task: {lengths}")
    if not next(iter(lengths.values())):
        raise SamplerError("targets have no rows: nothing to sample")
    return out


def _check_target(task: str, y: object) -> np.ndarray:
    """An int64 (N,) multiclass or (N, C) multilabel array of valid codes, or a SamplerError."""
    arr = np.asarray(y)
    if arr.ndim not in (1, 2) or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise SamplerError(
            f"task '{task}': targets must be a numeric (N,) or (N, C) array, got "
            f"{arr.dtype} of shape {arr.shape}"
        )
    if np.issubdtype(arr.dtype, np.floating) and not np.all(arr == np.rint(arr)):
        raise SamplerError(f"task '{task}': targets must be whole numbers (class codes)")
    arr = arr.astype(np.int64)
    bad = arr < -1 if arr.ndim == 1 else (arr < -1) | (arr > 1)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        allowed = "a class index or -1" if arr.ndim == 1 else "1, 0 or -1"
        raise SamplerError(f"task '{task}', row {row}: target must be {allowed}")
    return arr


# -- per-row probabilities ---------------------------------------------------------------------


def _memberships(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows x classes) membership and the labelled-row mask; multilabel gets a "none" column."""
    if y.ndim == 1:
        labelled = y >= 0
        size = int(y.max()) + 1 if labelled.any() else 0
        member = np.zeros((len(y), size), bool)
        member[np.flatnonzero(labelled), y[labelled]] = True
        return member, labelled
    labelled = (y >= 0).any(axis=1)
    positive = y == 1
    none = labelled & ~positive.any(axis=1)
    return np.column_stack([positive, none]), labelled


def class_power_weights(
    y: np.ndarray, power: float = 0.0, *, missing_share: float = 0.0, task: str = "task"
) -> np.ndarray:
    """Per-row draw probabilities (sum 1) giving class c a share proportional to ``n_c**power``.

    Rows missing the label get ``missing_share`` of the mass in total, spread evenly (0: never
    drawn), because a row without this task's label cannot help balance it but may still carry
    other tasks' labels.
    """
    _check_power(power)
    if not 0.0 <= missing_share < 1.0:
        raise SamplerError(f"missing_share must be in [0, 1), got {missing_share}")
    y = _check_target(task, y)
    member, labelled = _memberships(y)
    counts = member.sum(axis=0).astype(np.float64)
    if not counts.any():
        raise SamplerError(f"task '{task}': no row is labelled, so its classes cannot be balanced")
    present = counts > 0
    class_mass = np.zeros_like(counts)
    class_mass[present] = counts[present] ** power
    class_mass /= class_mass.sum()
    per_row = np.zeros_like(counts)
    per_row[present] = class_mass[present] / counts[present]
    p = member @ per_row
    missing = ~labelled
    if missing_share > 0 and missing.any():
        p = (1.0 - missing_share) * p
        p[missing] = missing_share / missing.sum()
    return p / p.sum()


def multitask_weights(targets: Targets, power: float = MULTITASK_POWER) -> np.ndarray:
    """Per-row probabilities of the multi-task balanced sampler (docs/SAMPLING.md).

    An equal mixture over tasks of each task's ``class_power_weights``: pick a task uniformly,
    then a class with probability proportional to ``n_c**power``, then one of its rows. So every
    task gets the same total mass, a row gains from each task it is labelled for and nothing from
    the others, and tasks without any label are left out. Rows labelled for no task get the
    smallest weight of a labelled row, so they are still seen now and then.
    """
    _check_power(power)
    checked = _as_targets(targets)
    n = len(next(iter(checked.values())))
    per_task = [class_power_weights(y, power, task=t) for t, y in checked.items() if (y >= 0).any()]
    if not per_task:
        return np.full(n, 1.0 / n)
    p = np.mean(per_task, axis=0)
    unlabelled = p == 0
    if unlabelled.any():
        p[unlabelled] = p[~unlabelled].min()
    return p / p.sum()


def class_frequencies(probabilities: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Expected share of each class among draws labelled for the task.

    Multiclass: shares sum to 1. Multilabel: how often each class is present per labelled draw.
    Classes with no row are 0 (multiclass is sized by the largest class index seen).
    """
    y = _check_target("task", y)
    p = np.asarray(probabilities, np.float64)
    member, labelled = _memberships(y)
    if y.ndim == 2:
        member = member[:, :-1]
    mass = p[labelled].sum()
    if mass == 0:
        return np.zeros(member.shape[1])
    return (p @ member) / mass


def _check_power(power: float) -> None:
    if not (math.isfinite(power) and 0.0 <= power <= 1.0):
        raise SamplerError(
            f"power must be in [0, 1] (0 = class-balanced, 1 = instance), got {power}"
        )


# -- samplers ----------------------------------------------------------------------------------


class RowSampler(Sampler[int], ABC):
    """Draws ``num_samples`` dataset positions per epoch from per-row probabilities.

    ``rank``/``num_replicas``: this process's shard of the draw; both None = read from
    ``torch.distributed`` when iterated (single process when it is not initialised). Each rank
    yields ``ceil(num_samples / num_replicas)`` positions; the shards are disjoint slices of one
    draw of that many times ``num_replicas`` positions.
    """

    def __init__(
        self,
        num_rows: int,
        *,
        num_samples: int | None = None,
        seed: int = 0,
        rank: int | None = None,
        num_replicas: int | None = None,
    ) -> None:
        if num_rows < 1:
            raise SamplerError("a sampler needs at least one row")
        self.num_rows = num_rows
        self.num_samples = num_rows if num_samples is None else int(num_samples)
        if self.num_samples < 1:
            raise SamplerError(f"num_samples must be at least 1, got {num_samples}")
        if (rank is None) != (num_replicas is None):
            raise SamplerError("give both rank and num_replicas, or neither (auto-detect)")
        if num_replicas is not None and not 0 <= rank < num_replicas:  # type: ignore[operator]
            raise SamplerError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.seed = int(seed)
        self.epoch = 0
        self._rank, self._num_replicas = rank, num_replicas

    @abstractmethod
    def probabilities(self) -> np.ndarray:
        """Probability of each row per draw in the current epoch (sums to 1)."""

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draw the next iteration yields (Lightning calls this)."""
        if epoch < 0:
            raise SamplerError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def world(self) -> tuple[int, int]:
        """(rank, num_replicas): as given, else from torch.distributed, else (0, 1)."""
        if self._num_replicas is not None:
            return self._rank or 0, self._num_replicas
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def epoch_draw(self) -> np.ndarray:
        """Every rank's positions for the current epoch; rank r takes ``[r::num_replicas]``."""
        _, replicas = self.world()
        total = math.ceil(self.num_samples / replicas) * replicas
        rng = np.random.default_rng([self.seed % 2**64, self.epoch])
        return self._draw(rng, total)

    def _draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.choice(self.num_rows, size=size, replace=True, p=self.probabilities())

    def __iter__(self) -> Iterator[int]:
        rank, replicas = self.world()
        return iter(self.epoch_draw()[rank::replicas].tolist())

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.world()[1])


class InstanceSampler(RowSampler):
    """Every row equally likely: a seeded shuffle without replacement (permutations back to back
    when ``num_samples`` exceeds the row count)."""

    def probabilities(self) -> np.ndarray:
        return np.full(self.num_rows, 1.0 / self.num_rows)

    def _draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        rounds = math.ceil(size / self.num_rows)
        return np.concatenate([rng.permutation(self.num_rows) for _ in range(rounds)])[:size]


class ClassPowerSampler(RowSampler):
    """Rebalances one task: class c drawn with probability proportional to ``n_c ** power``.

    power 0 = class-balanced, 0.5 = square-root sampling. With replacement.
    """

    def __init__(
        self,
        y: np.ndarray,
        power: float = 0.0,
        *,
        missing_share: float = 0.0,
        task: str = "task",
        **kw: Any,
    ) -> None:
        self.task, self.power, self.missing_share = task, power, missing_share
        self._p = class_power_weights(y, power, missing_share=missing_share, task=task)
        super().__init__(len(self._p), **kw)

    def probabilities(self) -> np.ndarray:
        return self._p


class ProgressiveSampler(RowSampler):
    """Kang et al. 2020 progressively balanced sampling over ``epochs`` epochs.

    p(e) = (1 - a) * instance + a * class-balanced, a = e / (epochs - 1): epoch 0 draws like
    instance sampling, the last epoch (and any after it) is fully rebalanced. ``power`` is the
    end point's (0 = class-balanced). With replacement.
    """

    def __init__(
        self,
        y: np.ndarray,
        epochs: int,
        *,
        power: float = 0.0,
        missing_share: float = 0.0,
        task: str = "task",
        **kw: Any,
    ) -> None:
        if epochs < 2:
            raise SamplerError(f"progressive sampling needs epochs >= 2, got {epochs}")
        self.task, self.epochs, self.power = task, int(epochs), power
        self._balanced = class_power_weights(y, power, missing_share=missing_share, task=task)
        super().__init__(len(self._balanced), **kw)

    def progress(self) -> float:
        """How far the current epoch is from instance (0) to class-balanced (1)."""
        return min(self.epoch / (self.epochs - 1), 1.0)

    def probabilities(self) -> np.ndarray:
        a = self.progress()
        return (1.0 - a) / self.num_rows + a * self._balanced


class MultiTaskBalancedSampler(RowSampler):
    """Weights each image by the rarity of its labels on every task it is labelled for
    (``multitask_weights``). With replacement."""

    def __init__(self, targets: Targets, power: float = MULTITASK_POWER, **kw: Any) -> None:
        self.power = power
        self._p = multitask_weights(targets, power)
        super().__init__(len(self._p), **kw)

    def probabilities(self) -> np.ndarray:
        return self._p


# -- construction ------------------------------------------------------------------------------


def build_sampler(
    name: str,
    manifest_or_targets: Manifest | MultiTaskDataset | Targets,
    *,
    task: str | None = None,
    seed: int = 0,
    num_samples: int | None = None,
    power: float | None = None,
    epochs: int | None = None,
    missing_share: float | None = None,
    tasks: list[str] | None = None,
    rank: int | None = None,
    num_replicas: int | None = None,
) -> RowSampler:
    """A sampler by name (``SAMPLER_NAMES``) over a manifest's rows, a dataset's positions, or
    encoded targets (task -> array).

    ``power``: sqrt (default 0.5), progressive (its end point, default 0), multitask-balanced
    (default 0.5). ``epochs``: progressive only, required. ``missing_share``: single-task
    samplers, the share of draws for rows missing the task's label (default 0). ``tasks``:
    multitask-balanced, the tasks to balance (default all; fewer tasks, each balanced more
    strongly). ``rank``/``num_replicas``: default from torch.distributed. An option the sampler
    does not use is an error, never silently ignored.
    """
    if name not in SAMPLER_NAMES:
        raise SamplerError(f"unknown sampler {name!r} (choose from {', '.join(SAMPLER_NAMES)})")
    targets = _as_targets(manifest_or_targets)
    single_task = name in _SINGLE_TASK
    given = {"power": power, "epochs": epochs, "missing_share": missing_share, "tasks": tasks}
    allowed = _OPTIONS[name]
    extra = sorted(k for k, v in given.items() if v is not None and k not in allowed)
    if extra:
        raise SamplerError(f"sampler '{name}' takes no option {extra} (it takes {sorted(allowed)})")
    if single_task and task is None:
        raise SamplerError(f"sampler '{name}' balances one task: set `task` ({sorted(targets)})")
    if not single_task and task is not None:
        raise SamplerError(f"sampler '{name}' uses no `task` (got {task!r}); leave it out")
    common: dict[str, Any] = {
        "seed": seed,
        "num_samples": num_samples,
        "rank": rank,
        "num_replicas": num_replicas,
    }
    if name == "instance":
        return InstanceSampler(len(next(iter(targets.values()))), **common)
    if name == "multitask-balanced":
        if tasks is not None:
            unknown = sorted(set(tasks) - set(targets))
            if unknown or not tasks:
                raise SamplerError(
                    f"sampler `tasks` must name some of {sorted(targets)}; got {tasks}"
                )
            targets = {t: targets[t] for t in tasks}
        return MultiTaskBalancedSampler(
            targets, MULTITASK_POWER if power is None else power, **common
        )
    assert task is not None
    if task not in targets:
        raise SamplerError(f"sampler task {task!r} is not among the targets' {sorted(targets)}")
    share = missing_share or 0.0
    if name == "progressive":
        if epochs is None:
            raise SamplerError("sampler 'progressive' needs `epochs` (the run's epoch count)")
        return ProgressiveSampler(
            targets[task],
            epochs,
            power=power or 0.0,
            missing_share=share,
            task=task,
            **common,
        )
    q = 0.0 if name == "class-balanced" else SQRT_POWER if power is None else power
    return ClassPowerSampler(targets[task], q, missing_share=share, task=task, **common)


class SamplerConfig(BaseModel):
    """The ``sampler:`` section of a training YAML; options a sampler does not use are refused."""

    model_config = ConfigDict(extra="forbid")
    name: SamplerName = "instance"
    task: str | None = Field(default=None, description="the task to balance (single-task samplers)")
    tasks: list[str] | None = Field(
        default=None, description="multitask-balanced: the tasks to balance (default: all)"
    )
    power: float | None = Field(
        default=None, ge=0, le=1, description="class mass ~ n_c**power; default per sampler"
    )
    epochs: int | None = Field(
        default=None, ge=2, description="progressive: epochs to full balance (default: the run's)"
    )
    missing_share: float | None = Field(
        default=None, ge=0, lt=1, description="share of draws for rows missing the task's label"
    )
    num_samples: int | None = Field(default=None, ge=1, description="per epoch; default: rows")
    seed: int | None = Field(default=None, description="default: the run's seed")

    @model_validator(mode="after")
    def _fits_name(self) -> SamplerConfig:
        single = self.name in _SINGLE_TASK
        if single and self.task is None:
            raise ValueError(f"sampler '{self.name}' needs `task`")
        if not single and self.task is not None:
            raise ValueError(f"sampler '{self.name}' takes no `task`")
        allowed = _OPTIONS[self.name]
        for option in ("power", "epochs", "missing_share", "tasks"):
            if getattr(self, option) is not None and option not in allowed:
                raise ValueError(f"sampler '{self.name}' takes no `{option}`")
        return self

    @property
    def is_default(self) -> bool:
        """Plain instance sampling with nothing set: training then keeps its own seeded
        permutation per epoch (`attire.training.sampling.EpochSampler`), as before samplers
        existed, instead of drawing through a `RowSampler`."""
        return self == SamplerConfig()

    def build(
        self,
        data: Manifest | MultiTaskDataset | Targets,
        *,
        run_seed: int = 0,
        run_epochs: int | None = None,
        rank: int | None = None,
        num_replicas: int | None = None,
    ) -> RowSampler:
        """The configured sampler; the run's seed (and, for progressive, its epoch count) fill
        what the config leaves out."""
        epochs = self.epochs
        if self.name == "progressive" and epochs is None:
            epochs = run_epochs
        return build_sampler(
            self.name,
            data,
            task=self.task,
            seed=run_seed if self.seed is None else self.seed,
            num_samples=self.num_samples,
            power=self.power,
            epochs=epochs,
            missing_share=self.missing_share,
            tasks=self.tasks,
            rank=rank,
            num_replicas=num_replicas,
        )
