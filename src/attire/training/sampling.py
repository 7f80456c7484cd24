"""Data order and augmentation as pure functions of (seed, epoch): resumable and DDP-aware.

A killed run resumed from a mid-epoch checkpoint must see exactly the batches the uninterrupted
run would have seen. Lightning 2.6 restores its batch counters on resume but restarts a plain
DataLoader from the top (it replays the epoch's first batches instead of the remaining ones);
it only fast-forwards loaders that implement ``state_dict``/``load_state_dict``. So:

- `EpochSampler` draws the permutation of epoch e from (seed, e) alone and can start an epoch
  part-way. It shards the order over DDP ranks itself (padding like DistributedSampler so every
  rank runs the same number of steps), which is why the trainer runs with
  ``use_distributed_sampler=False``.
- With a rebalancing `RowSampler` (``TrainConfig.sampler``), the order of epoch e is that
  sampler's draw for e instead (``epoch_draw()``, with replacement, already padded for the
  ranks); everything else (sharding, resume) is the same.
- Each item comes with its own seed drawn from (seed, epoch, index); `SeededItems` applies the
  augmentation under that seed, so an image's crop/flip/jitter in an epoch does not depend on
  worker count, world size, or what ran before a restart. A row sampler's draw repeats rows, so
  there the seed belongs to the *position* in the epoch's order: two draws of one row in an
  epoch get different augmentations.
- `ResumableLoader` records how many batches of which epoch it has handed out, and skips them
  after ``load_state_dict``. It starts its worker pipeline lazily, at the first batch, because
  Lightning creates the iterator before it calls ``set_epoch`` on the sampler.
- `LoaderPosition` carries that position through the checkpoint. Lightning would do it for a
  stateful loader, but it applies the saved state only when it first builds the train loader,
  and `configure_optimizers` reading ``trainer.estimated_stepping_batches`` (for the LR
  schedule) builds it before the checkpoint is restored, so the state is silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from attire.data.dataset import collate, seed_worker
from attire.sampling.samplers import RowSampler


def mix_seed(*parts: int) -> int:
    """A well-spread 63-bit seed from several integers (seed, epoch, index, rank...)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def _shard() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields (index, item seed) for this rank's share of epoch `epoch`.

    ``shuffle``: a fresh permutation per epoch from (seed, epoch), else dataset order.
    ``pad``: repeat items so the order divides evenly over ranks (training: every rank must
    step the same number of times); without it (validation) ranks get unequal shares and
    nothing is seen twice.
    ``rows``: take each epoch's order from this row sampler's ``epoch_draw()`` instead (training
    with a rebalancing sampler; its own rank/world decide the sharding). Item seeds then follow
    the position in the draw, because a row can be drawn several times.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        pad: bool = True,
        rows: RowSampler | None = None,
    ):
        if rows is not None and rows.num_rows != size:
            raise ValueError(f"row sampler draws from {rows.num_rows} rows, the dataset has {size}")
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.pad = pad
        self.rows = rows
        self.epoch = 0
        self.start = 0  # items of this epoch to skip on the next iteration (resume)
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch."""
        self.epoch = epoch
        if self.rows is not None:
            self.rows.set_epoch(epoch)  # the progressive sampler's mix depends on it

    def resume_at(self, epoch: int, items: int) -> None:
        """Skip the first `items` of this rank's share when epoch `epoch` is iterated next."""
        self._resume = (epoch, items)

    def begin_epoch(self) -> int:
        """Resolve where the coming iteration starts (the resume point if it is this epoch)."""
        if self._resume is not None and self._resume[0] == self.epoch:
            self.start = self._resume[1]
        else:
            self.start = 0
        self._resume = None
        return self.start

    def _order(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=g) if self.shuffle else torch.arange(self.size)
        seeds = torch.randint(0, 2**62, (self.size,), generator=g)
        return order, seeds

    def _drawn(self) -> tuple[list[int], list[int]]:
        """This rank's share of the row sampler's draw and one seed per position of the draw."""
        assert self.rows is not None
        rank, world = self.rows.world()
        self.rows.set_epoch(self.epoch)
        order = self.rows.epoch_draw()
        g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        seeds = torch.randint(0, 2**62, (len(order),), generator=g)
        return order[rank::world].tolist(), seeds[rank::world].tolist()

    def __len__(self) -> int:
        if self.rows is not None:
            return len(self.rows)
        rank, world = _shard()
        if self.pad:
            return -(-self.size // world)
        return len(range(rank, self.size, world))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start, self.start = self.start, 0
        if self.rows is not None:
            indices, seeds = self._drawn()
            yield from zip(indices[start:], seeds[start:], strict=True)
            return
        rank, world = _shard()
        order, seeds = self._order()
        if self.pad and self.size % world:
            extra = world - self.size % world
            order = torch.cat([order, order.repeat(-(-extra // self.size))[:extra]])
        mine = order[rank::world].tolist()
        for index in mine[start:]:
            yield index, int(seeds[index])


class SeededItems(Dataset):
    """``dataset[index]`` drawn with torch's CPU generator seeded by the item's own seed.

    The generator's state is saved and restored around the item, so nothing else's randomness
    shifts with the number of items loaded.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self.dataset[index]


class ResumableLoader(DataLoader):
    """A DataLoader over an `EpochSampler` whose position Lightning saves in checkpoints."""

    sampler: EpochSampler

    def __init__(self, dataset: Dataset, sampler: EpochSampler, **kwargs: Any):
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._position = (0, 0)  # (epoch, batches handed out in it)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        epoch = self.sampler.epoch
        done = self.sampler.begin_epoch() // self.batch_size  # type: ignore[operator]
        self._position = (epoch, done)
        for batch in super().__iter__():
            done += 1
            self._position = (epoch, done)
            yield batch

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self._position
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.resume_at(state["epoch"], state["batches"] * self.batch_size)  # type: ignore[operator]


class LoaderPosition(L.Callback):
    """Saves the train loader's position with each checkpoint; on resume, hands it back to the
    loader before the first batch is drawn."""

    KEY = "attire_train_loader"

    def __init__(self) -> None:
        self._pending: dict[str, int] | None = None

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        loader = trainer.train_dataloader
        if isinstance(loader, ResumableLoader):
            checkpoint[self.KEY] = loader.state_dict()

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._pending = checkpoint.get(self.KEY)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        if self._pending is not None and isinstance(loader, ResumableLoader):
            loader.load_state_dict(self._pending)
        self._pending = None


def _loader_kwargs(batch_size: int, workers: int, seed: int) -> dict[str, Any]:
    return {
        "batch_size": batch_size,
        "num_workers": workers,
        "collate_fn": collate,
        "pin_memory": torch.cuda.is_available(),
        "worker_init_fn": seed_worker,
        "generator": torch.Generator().manual_seed(seed),
        "persistent_workers": workers > 0,
    }


def train_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    seed: int,
    workers: int,
    rows: RowSampler | None = None,
) -> ResumableLoader:
    """Shuffled per (seed, epoch) (or drawn by `rows`), sharded over ranks, seeded per item,
    resumable mid-epoch."""
    sampler = EpochSampler(len(dataset), seed=seed, shuffle=True, pad=True, rows=rows)  # type: ignore[arg-type]
    return ResumableLoader(
        SeededItems(dataset), sampler, **_loader_kwargs(batch_size, workers, seed)
    )


def eval_loader(dataset: Dataset, batch_size: int, *, seed: int, workers: int) -> DataLoader:
    """In order, each rank a disjoint share, nothing repeated."""
    sampler = EpochSampler(len(dataset), seed=seed, shuffle=False, pad=False)  # type: ignore[arg-type]
    return DataLoader(
        SeededItems(dataset), sampler=sampler, **_loader_kwargs(batch_size, workers, seed)
    )
