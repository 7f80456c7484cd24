"""Datasets over an image cache, and the DataLoader every stage uses.

Targets are encoded once at construction (``Manifest.encode``/``soft_targets``), so an item is a
memmap row, a transform and a few tensor slices. The target contract:

- multiclass task: int64 scalar class index, -1 = not labelled
- multilabel task: float32 [C] of 1/0/-1, -1 = unknown entry (masked by the loss)
- soft: float32 [C] for every task, all NaN when the image has no soft label

Every item has every task, so ``default_collate`` stacks a batch into ``{"image": [B,3,H,W],
"targets": {task: [B] or [B,C]}, "soft": {task: [B,C]}, "index": [B]}``. Rows whose image failed
to decode are dropped at construction and logged with path and reason, never mid-epoch.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from attire.data.cache import ImageCache, ImageCacheError
from attire.data.manifest import Manifest

log = logging.getLogger(__name__)

Transform = Callable[[Tensor], Tensor]

collate = default_collate  # nested dicts of equal-shaped tensors stack as they are


def _usable_rows(cache: ImageCache, cache_rows: np.ndarray, what: str) -> np.ndarray:
    """Positions in ``cache_rows`` whose image decoded; each other one is logged with its reason."""
    ok = cache.ok[cache_rows]
    if len(ok) and not ok.any():
        first = int(cache_rows[0])
        raise ImageCacheError(
            f"{what}: none of the {len(ok)} images could be decoded (first: {cache.paths[first]}: "
            f"{cache.errors.get(first, 'unknown error')}); check the image paths and folder"
        )
    for pos in np.flatnonzero(~ok):
        row = int(cache_rows[pos])
        log.warning(
            "%s: skipping row %d (%s): image could not be decoded: %s",
            what,
            pos,
            cache.paths[row],
            cache.errors.get(row, "unknown error"),
        )
    if not ok.all():
        log.warning("%s: %d of %d images excluded (undecodable)", what, (~ok).sum(), len(ok))
    return np.flatnonzero(ok)


def _cache_rows(cache: ImageCache, ids: list[str]) -> np.ndarray:
    """The cache row of each image id, so one cache of a whole manifest serves all its splits."""
    if cache.ids == ids:
        return np.arange(len(ids))
    where = {image_id: row for row, image_id in enumerate(cache.ids)}
    missing = [i for i in ids if i not in where]
    if missing:
        raise ImageCacheError(
            f"{cache.path}: {len(missing)} image_ids of the manifest are not in this cache "
            f"(e.g. {missing[:3]}); build it with ImageCache.for_manifest on this manifest"
        )
    return np.array([where[i] for i in ids], np.int64)


def _chw(cache: ImageCache, row: int) -> Tensor:
    """Row of the memmap as a uint8 [3, S, S] tensor (copied: the memmap is read-only)."""
    return torch.from_numpy(np.array(cache.array[row])).permute(2, 0, 1)


class MultiTaskDataset(Dataset):
    """A manifest's images from a cache, transformed, with every task's targets.

    The cache may hold more images than the manifest (build one for the whole manifest, then
    make a dataset per split); rows are matched by ``image_id``. ``index`` in an item is the
    manifest row (equal to the item number unless rows were excluded), so per-image outputs
    can be joined back to the manifest.
    """

    def __init__(
        self,
        manifest: Manifest,
        cache: ImageCache,
        transform: Transform,
        tasks: Sequence[str] | None = None,
    ):
        self.cache_rows = _cache_rows(cache, [str(i) for i in manifest.df["image_id"]])
        self.manifest = manifest
        self.cache = cache
        self.transform = transform
        self.tasks = list(tasks) if tasks is not None else manifest.taxonomy.task_names
        tax = manifest.taxonomy
        self.targets: dict[str, np.ndarray] = {}
        self.soft: dict[str, np.ndarray] = {}
        for name in self.tasks:
            task = tax.task(name)
            enc = manifest.encode(name)
            self.targets[name] = enc.astype(np.float32) if task.multilabel else enc
            soft = manifest.soft_targets(name)
            self.soft[name] = (
                soft
                if soft is not None
                else np.full((len(manifest), task.num_classes), np.nan, np.float32)
            )
        self.rows = _usable_rows(
            cache, self.cache_rows, f"dataset of {len(manifest)} manifest rows"
        )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = int(self.rows[i])
        return {
            "image": self.transform(_chw(self.cache, int(self.cache_rows[row]))),
            "targets": {t: torch.tensor(a[row]) for t, a in self.targets.items()},
            "soft": {t: torch.tensor(a[row]) for t, a in self.soft.items()},
            "index": row,
        }


class PathsDataset(Dataset):
    """Images to predict: a cache built from a list of paths, no targets.

    Undecodable images are excluded (and logged); ``failed`` lists them for the report.
    """

    def __init__(self, cache: ImageCache, transform: Transform):
        self.cache = cache
        self.transform = transform
        self.rows = _usable_rows(
            cache, np.arange(len(cache)), f"prediction set of {len(cache)} images"
        )

    @property
    def failed(self) -> list[tuple[str, str]]:
        """(path, reason) of each image that could not be decoded."""
        return [
            (self.cache.paths[r], self.cache.errors.get(r, "")) for r in sorted(self.cache.errors)
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = int(self.rows[i])
        return {"image": self.transform(_chw(self.cache, row)), "index": row}


def seed_worker(worker_id: int) -> None:
    """Seed numpy and random in each worker from torch's per-worker seed (set by the generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    sampler: Sampler | None = None,
    workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A reproducible DataLoader: seeded order and augmentation, workers kept across epochs."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=seed_worker,
        persistent_workers=workers > 0,
    )
