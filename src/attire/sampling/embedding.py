"""Resampling in embedding space: each task head's input embeddings of the training images,
over-sampled with synthetic points or under-sampled by guided removal (imbalanced-learn).

Classifier re-training (cRT, `attire.training.rebalance`) keeps the backbone and re-fits only a
head's last linear layer (`TaskHead.fc`), so the embeddings to resample are that layer's input:
the model's ``{task}__emb`` output. For a head without hidden layers that is exactly the pooled
backbone embedding (the model's ``"embedding"``, dropout being off in eval mode), which is
extracted once and shared by those tasks; a head with hidden layers contributes its own
``{task}__emb`` (after its hidden layers, BatchNorm in eval mode), because re-training the last
layer on the pooled embedding would skip the head's body. Images are prepared without
augmentation (the dataset must use eval transforms), so the embeddings are those the model sees
at prediction time.

Over-samplers (SMOTE, ADASYN, Borderline-SMOTE) raise every class to the largest class's count,
one class at a time so each gets as many neighbours as it has (k is lowered to count - 1 for a
small class; a class with one embedding cannot be interpolated and is left as is). Guided
under-samplers follow imbalanced-learn's default targets: NearMiss-1 and cluster centroids cut
every class to the smallest class's count (skipped when that is below `MIN_UNDERSAMPLED`, which
would leave almost nothing to learn from; NearMiss's neighbours are lowered to that count if
needed); Tomek links and edited nearest neighbours remove
boundary or noisy points of every class but the smallest, without balancing. Every adjustment
and skip is returned as a note (and logged).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from imblearn.over_sampling import ADASYN, SMOTE, BorderlineSMOTE
from imblearn.under_sampling import (
    ClusterCentroids,
    EditedNearestNeighbours,
    NearMiss,
    TomekLinks,
)
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from sklearn.cluster import KMeans
from torch import nn

from attire.data.dataset import MultiTaskDataset, make_loader
from attire.errors import AttireError
from attire.models.multitask import EMBEDDING, MultiTaskModel

log = logging.getLogger(__name__)

OVERSAMPLERS: tuple[str, ...] = ("smote", "adasyn", "borderline-smote")
UNDERSAMPLERS: tuple[str, ...] = ("nearmiss", "tomek", "enn", "cluster-centroids")
RESAMPLERS: tuple[str, ...] = OVERSAMPLERS + UNDERSAMPLERS
DEFAULT_NEIGHBOURS = {"smote": 5, "adasyn": 5, "borderline-smote": 5, "nearmiss": 3, "enn": 3}
BORDERLINE_M = 10  # Borderline-SMOTE's neighbours for finding the boundary (imbalanced-learn's)
MIN_UNDERSAMPLED = 3  # NearMiss / cluster centroids refuse to cut every class below this


class EmbeddingError(AttireError):
    """A resampling request that cannot be carried out on these embeddings."""


@dataclass
class TaskEmbeddings:
    """One task's labelled training rows: the head's last-layer input and the class index."""

    x: np.ndarray  # [n, D] float32
    y: np.ndarray  # [n] int64

    def counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.y, minlength=num_classes)


@dataclass
class Resampled:
    """Embeddings after resampling, with what was adjusted or skipped on the way."""

    x: np.ndarray
    y: np.ndarray
    notes: list[str] = field(default_factory=list)


def head_input_is_shared(model: MultiTaskModel, task: str) -> bool:
    """Whether the task head's last layer reads the pooled backbone embedding unchanged in eval
    mode (its body holds no layer but dropout)."""
    return all(isinstance(m, nn.Dropout) for m in model.heads[task].body)


@torch.inference_mode()
def extract_embeddings(
    model: MultiTaskModel,
    dataset: MultiTaskDataset,
    *,
    tasks: list[str] | None = None,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool | None = None,
) -> dict[str, TaskEmbeddings]:
    """Each multiclass task's ``{task}__emb`` over the dataset's rows labelled for it.

    `dataset` must use eval transforms. The model runs in eval mode on its own device and is
    put back in the mode it was in. `progress` (default: more than 256 images) shows a bar.
    """
    taxonomy = model.taxonomy
    names = tasks if tasks is not None else taxonomy.task_names
    multilabel = [t for t in names if taxonomy.task(t).multilabel]
    if multilabel:
        raise EmbeddingError(f"tasks {multilabel} are multilabel: a row has no single class")
    shared = [t for t in names if head_input_is_shared(model, t)]
    own = [t for t in names if t not in shared]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    feats: dict[str, list[np.ndarray]] = {k: [] for k in ([EMBEDDING] if shared else []) + own}
    targets: dict[str, list[np.ndarray]] = {t: [] for t in names}
    bar = Progress(
        TextColumn("embedding images"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        disable=not (len(dataset) > 256 if progress is None else progress),
    )
    try:
        with bar:
            job = bar.add_task("embed", total=len(dataset))
            for batch in make_loader(dataset, batch_size, workers=workers):
                out = model(batch["image"].to(device), task_embeddings=bool(own))
                if shared:
                    feats[EMBEDDING].append(out[EMBEDDING].float().cpu().numpy())
                for t in own:
                    feats[t].append(out[f"{t}__emb"].float().cpu().numpy())
                for t in names:
                    targets[t].append(batch["targets"][t].numpy())
                bar.advance(job, len(batch["image"]))
    finally:
        model.train(was_training)
    arrays = {k: np.concatenate(v) for k, v in feats.items()}
    result = {}
    for t in names:
        y = np.concatenate(targets[t]).astype(np.int64)
        keep = y >= 0
        x = arrays[EMBEDDING if t in shared else t]
        result[t] = TaskEmbeddings(np.ascontiguousarray(x[keep], np.float32), y[keep])
    return result


def resample_embeddings(
    x: np.ndarray,
    y: np.ndarray,
    method: str,
    *,
    k_neighbors: int | None = None,
    seed: int = 0,
    task: str = "task",
) -> Resampled:
    """Over- or under-sample one task's embeddings with an imbalanced-learn method
    (`RESAMPLERS`); see the module docstring for the targets and small-class rules."""
    if method not in RESAMPLERS:
        raise EmbeddingError(f"unknown resampler {method!r} (choose from {', '.join(RESAMPLERS)})")
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    if x.ndim != 2 or len(x) != len(y):
        raise EmbeddingError(f"task '{task}': embeddings {x.shape} do not match labels {y.shape}")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        note = f"task '{task}': only {len(classes)} class labelled, nothing to rebalance"
        return Resampled(x, y, _logged([note]))
    k = k_neighbors if k_neighbors is not None else DEFAULT_NEIGHBOURS.get(method)
    if method in OVERSAMPLERS:
        assert k is not None
        return _oversample(
            x, y, dict(zip(classes.tolist(), counts.tolist(), strict=True)), method, k, seed, task
        )
    return _undersample(x, y, int(counts.min()), method, k, seed, task)


def _oversample(
    x: np.ndarray,
    y: np.ndarray,
    counts: dict[int, int],
    method: str,
    k: int,
    seed: int,
    task: str,
) -> Resampled:
    target = max(counts.values())
    new_x, new_y, notes = [x], [y], []
    for c, n in sorted(counts.items()):
        if n >= target:
            continue
        if n < 2:
            notes.append(f"task '{task}' class {c}: 1 embedding, no neighbour to interpolate with")
            continue
        k_c = min(k, n - 1)
        if k_c < k:
            notes.append(
                f"task '{task}' class {c}: {n} embeddings, neighbours lowered {k} -> {k_c}"
            )
        picker = _oversampler(method, {c: target}, k_c, seed, len(y))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                xr, yr = picker.fit_resample(x, y)
        except (ValueError, RuntimeError) as e:
            notes.append(f"task '{task}' class {c}: {method} skipped: {e}")
            continue
        if len(yr) == len(y):
            notes.append(f"task '{task}' class {c}: {method} found no embedding to start from")
            continue
        new_x.append(np.asarray(xr[len(y) :], np.float32))
        new_y.append(np.asarray(yr[len(y) :], np.int64))
    return Resampled(np.concatenate(new_x), np.concatenate(new_y), _logged(notes))


def _oversampler(method: str, strategy: dict[int, int], k: int, seed: int, n_total: int):
    if method == "smote":
        return SMOTE(sampling_strategy=strategy, k_neighbors=k, random_state=seed)
    if method == "adasyn":
        return ADASYN(sampling_strategy=strategy, n_neighbors=k, random_state=seed)
    return BorderlineSMOTE(
        sampling_strategy=strategy,
        k_neighbors=k,
        m_neighbors=min(BORDERLINE_M, n_total - 1),
        random_state=seed,
    )


def _undersample(
    x: np.ndarray, y: np.ndarray, smallest: int, method: str, k: int | None, seed: int, task: str
) -> Resampled:
    notes = []
    if method in ("nearmiss", "cluster-centroids") and smallest < MIN_UNDERSAMPLED:
        notes.append(
            f"task '{task}': {method} skipped: the smallest class has {smallest} embedding(s), "
            "and every class would be cut to that"
        )
        return Resampled(x, y, _logged(notes))
    if method == "nearmiss":
        assert k is not None
        k_used = min(k, smallest)
        if k_used < k:
            notes.append(
                f"task '{task}': smallest class has {smallest}, neighbours {k} -> {k_used}"
            )
        picker = NearMiss(version=1, n_neighbors=k_used)
    elif method == "enn":
        assert k is not None
        k_used = min(k, len(y) - 1)
        if k_used < k:
            notes.append(f"task '{task}': {len(y)} embeddings, neighbours {k} -> {k_used}")
        picker = EditedNearestNeighbours(n_neighbors=k_used)
    elif method == "tomek":
        picker = TomekLinks()
    else:
        picker = ClusterCentroids(estimator=KMeans(n_init=3, random_state=seed), random_state=seed)
    try:
        xr, yr = picker.fit_resample(x, y)
    except (ValueError, RuntimeError) as e:
        notes.append(f"task '{task}': {method} skipped: {e}")
        return Resampled(x, y, _logged(notes))
    return Resampled(np.asarray(xr, np.float32), np.asarray(yr, np.int64), _logged(notes))


def _logged(notes: list[str]) -> list[str]:
    for note in notes:
        log.info("%s", note)
    return notes
