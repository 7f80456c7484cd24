"""Random over- and under-sampling of a manifest's training rows to a class ratio on one task.

This rewrites the manifest itself, for tools that read rows as they are (a baseline, an export);
training inside attire can rebalance without copying rows through ``attire.sampling.samplers``.
imbalanced-learn's RandomOverSampler / RandomUnderSampler choose the rows; the ratio is
``largest class / smallest class`` among the task's labelled training rows, and after resampling
it is at most ``target_ratio``. Rows outside the training split, and rows without the task's
label, are never touched. A duplicated row keeps every column (its ``group`` above all, so a later
split keeps it beside its original) and gets a new unique ``image_id``: ``<id>#dup<k>``.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from imblearn.over_sampling import RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler

from attire.data.manifest import Manifest
from attire.errors import AttireError

log = logging.getLogger(__name__)
DUP = "#dup"


class ResampleError(AttireError):
    """A resampling request that cannot be carried out on this manifest."""


def oversample(
    manifest: Manifest,
    task: str,
    *,
    target_ratio: float = 1.0,
    seed: int = 0,
    split: str = "train",
) -> Manifest:
    """Duplicate random rows of small classes until each has >= ceil(max_count / target_ratio).

    Duplicates are appended after the original rows.
    """
    positions, y = _candidates(manifest, task, target_ratio, split)
    counts = _counts(y)
    if len(counts) < 2:
        log.info("oversample '%s': fewer than 2 classes in the rows to resample; unchanged", task)
        return manifest.with_df(manifest.df)
    floor = math.ceil(max(counts.values()) / target_ratio)
    strategy = {c: max(n, floor) for c, n in counts.items()}
    picker = RandomOverSampler(sampling_strategy=strategy, random_state=seed)
    picker.fit_resample(positions.reshape(-1, 1), y)
    copies = positions[picker.sample_indices_[len(y) :]]
    df = manifest.df.copy()
    if "group" not in df.columns:
        df["group"] = None
    # A row without a group is its own group: name it after the row so its copies join it.
    copied = np.unique(copies)
    lone = copied[df["group"].iloc[copied].isna().to_numpy()]
    df.loc[lone, "group"] = df.loc[lone, "image_id"].astype(str)
    dups = df.iloc[copies].copy()
    dups["image_id"] = _duplicate_ids(df["image_id"].astype(str).tolist(), dups["image_id"])
    log.info(
        "oversample '%s': %d duplicate rows added, class counts %s -> %s",
        task,
        len(dups),
        _named(manifest, task, counts),
        _named(manifest, task, strategy),
    )
    return manifest.with_df(pd.concat([df, dups], ignore_index=True))


def undersample(
    manifest: Manifest,
    task: str,
    *,
    target_ratio: float = 1.0,
    seed: int = 0,
    split: str = "train",
) -> Manifest:
    """Drop random rows of large classes down to floor(min_count * target_ratio) each.

    Rows missing the task's label and rows of other splits are kept; the order is kept.
    """
    positions, y = _candidates(manifest, task, target_ratio, split)
    counts = _counts(y)
    if len(counts) < 2:
        log.info("undersample '%s': fewer than 2 classes in the rows to resample; unchanged", task)
        return manifest.with_df(manifest.df)
    ceiling = math.floor(min(counts.values()) * target_ratio)
    strategy = {c: min(n, ceiling) for c, n in counts.items()}
    picker = RandomUnderSampler(sampling_strategy=strategy, random_state=seed)
    picker.fit_resample(positions.reshape(-1, 1), y)
    keep = np.ones(len(manifest), bool)
    keep[positions] = False
    keep[positions[picker.sample_indices_]] = True
    log.info(
        "undersample '%s': %d rows dropped, class counts %s -> %s",
        task,
        len(manifest) - int(keep.sum()),
        _named(manifest, task, counts),
        _named(manifest, task, strategy),
    )
    return manifest.with_df(manifest.df[keep])


def _candidates(
    manifest: Manifest, task: str, target_ratio: float, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Positions and class indices of the rows resampling may touch: labelled, in the split."""
    if not (math.isfinite(target_ratio) and target_ratio >= 1.0):
        raise ResampleError(
            f"target_ratio is largest / smallest class count and must be >= 1, got {target_ratio}"
        )
    if manifest.taxonomy.task(task).multilabel:
        raise ResampleError(
            f"task '{task}' is multilabel: a row has no single class to over- or under-sample; "
            "use the 'multitask-balanced' sampler instead"
        )
    y = manifest.encode(task)
    rows = y >= 0
    if "split" in manifest.df.columns:
        rows &= (manifest.df["split"] == split).to_numpy(bool)
    if not rows.any():
        where = f"split '{split}'" if "split" in manifest.df.columns else "the manifest"
        raise ResampleError(f"task '{task}': no row of {where} is labelled; nothing to resample")
    positions = np.flatnonzero(rows)
    return positions, y[positions]


def _counts(y: np.ndarray) -> dict[int, int]:
    classes, counts = np.unique(y, return_counts=True)
    return {int(c): int(n) for c, n in zip(classes, counts, strict=True)}


def _named(manifest: Manifest, task: str, counts: dict[int, int]) -> dict[str, int]:
    ids = manifest.taxonomy.task(task).class_ids
    return {ids[c]: n for c, n in counts.items()}


def _duplicate_ids(existing: list[str], originals: pd.Series) -> list[str]:
    """``<id>#dup<k>``, the smallest k not taken, so resampling twice never clashes."""
    taken = set(existing)
    next_k: dict[str, int] = {}
    out = []
    for image_id in originals.astype(str):
        k = next_k.get(image_id, 1)
        while f"{image_id}{DUP}{k}" in taken:
            k += 1
        new = f"{image_id}{DUP}{k}"
        taken.add(new)
        next_k[image_id] = k + 1
        out.append(new)
    return out
