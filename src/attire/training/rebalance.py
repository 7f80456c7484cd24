"""Classifier rebalancing after training: the backbone is kept, only each task head's last linear
layer (`TaskHead.fc`) or its prediction-time logits change (docs/LONG_TAIL.md).

- cRT (Kang et al. 2020, "Decoupling Representation and Classifier"): re-train ``fc`` on the
  frozen ``{task}__emb`` embeddings of the training images (`attire.sampling.embedding`), either
  with class-balanced weights (``crt``) or on embeddings re-balanced by an imbalanced-learn
  resampler (``smote``, ``adasyn``, ``borderline-smote``, ``nearmiss``, ``tomek``, ``enn``,
  ``cluster-centroids``). Full-batch multinomial logistic regression in torch (`retrain_fc`):
  CE plus weight decay, L-BFGS, starting from the trained layer (the problem is convex, so the
  start only saves steps).
- tau-normalisation (Kang et al. 2020): each class's weight row w_j becomes w_j / ||w_j||^tau.
  attire's heads have a bias, which is divided with its row, so a class's whole logit is scaled
  and tau = 0 is exactly the trained head (Kang et al.'s classifier uses w_j . x alone).
- post-hoc logit adjustment (Menon et al. 2021): logits - tau * log prior at prediction time.
  The weights are not touched; tau and the training class counts go into attire.json
  (``extra.logit_adjustment``) and `Predictor` applies `attire.losses.adjust_logits`.

tau (both methods) is chosen on the validation images by balanced accuracy over `TAU_GRID`
(ties go to the value closest to 1), or is 1 when there is no validation split. Every step
appends a record to ``extra.post_training`` of the new checkpoint: method, settings, and per
task what was done or why it was skipped, the class counts before and after resampling, and the
validation balanced accuracy before and after. Thresholds fitted for a changed head are dropped.
Multiclass tasks only: a multilabel row has no single class to resample or to adjust for.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from attire.data.cache import ImageCache
from attire.data.dataset import MultiTaskDataset
from attire.data.manifest import Manifest
from attire.data.transforms import AugmentPolicy, build_transforms
from attire.errors import AttireError
from attire.evaluation.evaluate import read_for_checkpoint, split_rows
from attire.inference.predictor import resolve_device
from attire.losses import adjust_logits
from attire.models.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from attire.models.multitask import MultiTaskModel
from attire.sampling.embedding import (
    RESAMPLERS,
    TaskEmbeddings,
    extract_embeddings,
    resample_embeddings,
)
from attire.taxonomy import Taxonomy
from attire.training.recipes import POST_METHODS, PostTrainingStep

log = logging.getLogger(__name__)

RETRAIN_DEFAULTS: dict[str, Any] = {"epochs": 100, "weight_decay": 1e-3}
TAU_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(21))  # 0.0 ... 2.0
DEFAULT_TAU = 1.0
ADJUSTMENT = "logit_adjustment"  # attire.json extra key read by the predictor
PRE_ADJUSTED_LOSSES = ("logit-adjust", "balanced-softmax")


class RebalanceError(AttireError):
    """A rebalancing request that names a wrong method or task, or has nothing to work on."""


@dataclass
class Embeddings:
    """Per-task embeddings of the training images and, when there is one, the validation split."""

    train: dict[str, TaskEmbeddings]
    val: dict[str, TaskEmbeddings] | None = None


# -- the operations --------------------------------------------------------------------------


def retrain_fc(
    fc: nn.Linear,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = RETRAIN_DEFAULTS["epochs"],
    weight_decay: float = RETRAIN_DEFAULTS["weight_decay"],
    class_weights: torch.Tensor | None = None,
) -> float:
    """Fit `fc` in place to (x, y): multinomial logistic regression, full batch, L-BFGS for at
    most `epochs` passes, mean (class-weighted) CE + weight_decay / 2 * ||W||^2; returns the
    final objective. Deterministic.

    It runs on standardised embeddings (each dimension to mean 0, std 1), which makes the
    problem well conditioned whatever the backbone's feature scale, and folds the scaling back
    into the layer: W = W_s / std, b = b_s - W @ mean. The trained layer is the starting point.
    """
    device = fc.weight.device
    xs = torch.as_tensor(np.asarray(x, np.float32), device=device)
    ys = torch.as_tensor(np.asarray(y, np.int64), device=device)
    weight = None if class_weights is None else class_weights.to(device, torch.float32)
    mean = xs.mean(0)
    std = xs.std(0, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant dimensions stay as-is
    z = (xs - mean) / std
    with torch.no_grad():
        w = (fc.weight * std).clone().requires_grad_(True)
        b = (fc.bias + fc.weight @ mean).clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=epochs, history_size=20, line_search_fn="strong_wolfe"
    )

    def objective() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(z @ w.T + b, ys, weight=weight) + 0.5 * weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(objective)  # type: ignore[arg-type]
        final = float(objective().detach())
    with torch.no_grad():
        fc.weight.copy_(w / std)
        fc.bias.copy_(b - (w / std) @ mean)
    return final


def balanced_class_weights(y: np.ndarray, num_classes: int) -> torch.Tensor:
    """CE weights n / (C_present * n_c) for present classes: each class weighs the same in
    total, what class-balanced sampling gives in expectation."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    present = counts > 0
    w = np.ones(num_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return torch.as_tensor(w, dtype=torch.float32)


@torch.no_grad()
def tau_normalise(fc: nn.Linear, tau: float) -> None:
    """w_j <- w_j / ||w_j||^tau (and b_j with it), in place: tau 0 changes nothing, tau 1 gives
    every class a unit-norm weight row."""
    scale = fc.weight.norm(dim=1).clamp_min(torch.finfo(fc.weight.dtype).tiny).pow(-tau)
    fc.weight.mul_(scale[:, None])
    if fc.bias is not None:
        fc.bias.mul_(scale)


def balanced_accuracy(logits: np.ndarray | torch.Tensor, y: np.ndarray) -> float:
    """Mean recall over the classes present in `y` of argmax predictions."""
    pred = np.asarray(torch.as_tensor(logits).argmax(1))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(y, pred))


def pick_tau(
    score: Callable[[float], float], grid: tuple[float, ...] = TAU_GRID
) -> tuple[float, dict[float, float]]:
    """The grid value with the best score (ties: closest to 1), and every score."""
    scores = {tau: score(tau) for tau in grid}
    best = max(scores.values())
    tau = min((t for t, s in scores.items() if s == best), key=lambda t: abs(t - DEFAULT_TAU))
    return tau, scores


# -- steps on a model ------------------------------------------------------------------------


def step_tasks(step: PostTrainingStep, taxonomy: Taxonomy) -> tuple[list[str], dict[str, str]]:
    """The tasks a step works on, and the tasks it leaves out with the reason."""
    if step.tasks is None:
        chosen = [t.name for t in taxonomy.tasks if not t.multilabel]
        skipped = {
            t.name: "multilabel: a row has no single class" for t in taxonomy.tasks if t.multilabel
        }
        return chosen, skipped
    for name in step.tasks:
        if name not in taxonomy.task_names:
            raise RebalanceError(
                f"{step.method}: no task {name!r} in the checkpoint "
                f"(tasks: {', '.join(taxonomy.task_names)})"
            )
        if taxonomy.task(name).multilabel:
            raise RebalanceError(
                f"{step.method}: task {name!r} is multilabel; {step.method} needs a multiclass "
                "task (a row with one class)"
            )
    return list(dict.fromkeys(step.tasks)), {}


def apply_step(
    model: MultiTaskModel,
    meta: CheckpointMeta,
    step: PostTrainingStep,
    data: Embeddings,
    *,
    seed: int = 0,
    source: str = "training",
) -> dict[str, Any]:
    """Run one step on `model` (its heads' fc layers) and `meta` (logit adjustment, thresholds,
    the record appended to ``extra.post_training``); returns the record."""
    if step.method not in POST_METHODS:
        raise RebalanceError(f"unknown method {step.method!r} (choose from {POST_METHODS})")
    tasks, skipped = step_tasks(step, model.taxonomy)
    settings = _settings(step, seed)
    per_task: dict[str, dict[str, Any]] = {
        t: {"status": "skipped", "reason": r} for t, r in skipped.items()
    }
    for task in tasks:
        per_task[task] = _apply_to_task(model, meta, step.method, task, data, settings)
        if per_task[task]["status"] == "changed" and task in meta.thresholds:
            del meta.thresholds[task]
            per_task[task]["notes"].append("its confidence threshold was dropped (refit it)")
        status = per_task[task]["status"]
        log.info("%s on '%s': %s", step.method, task, per_task[task].get("reason", status))
    record = {"method": step.method, "source": source, "settings": settings, "tasks": per_task}
    meta.extra.setdefault("post_training", []).append(record)
    return record


def _settings(step: PostTrainingStep, seed: int) -> dict[str, Any]:
    """The step's options with the defaults filled in, as recorded in the checkpoint."""
    if step.method in ("tau-norm", "logit-adjust"):
        return {"tau": step.tau}
    out: dict[str, Any] = {}
    for key, default in RETRAIN_DEFAULTS.items():
        value = getattr(step, key)
        out[key] = default if value is None else value
    if step.method in RESAMPLERS:
        out["k_neighbors"] = step.k_neighbors
        out["seed"] = step.seed if step.seed is not None else seed
    return out


def _apply_to_task(
    model: MultiTaskModel,
    meta: CheckpointMeta,
    method: str,
    task: str,
    data: Embeddings,
    settings: dict[str, Any],
) -> dict[str, Any]:
    n_classes = model.taxonomy.task(task).num_classes
    train = data.train.get(task)
    if train is None or len(train.y) == 0:
        return {"status": "skipped", "reason": "no labelled training image"}
    counts = train.counts(n_classes)
    if (counts > 0).sum() < 2:
        return {"status": "skipped", "reason": "fewer than 2 classes labelled in training"}
    fc = model.heads[task].fc
    val = data.val.get(task) if data.val is not None else None
    if val is not None and len(val.y) == 0:
        val = None
    out: dict[str, Any] = {"status": "changed", "notes": [], "train_counts": counts.tolist()}
    if val is not None:
        out["val_balanced_accuracy_before"] = _val_score(fc, meta, task, val)
    if method == "logit-adjust":
        trained_with = _training_loss(meta, task)
        if trained_with in PRE_ADJUSTED_LOSSES:
            return {
                "status": "skipped",
                "reason": f"trained with '{trained_with}': its logits are already adjusted",
            }
        tau = _choose_tau(settings["tau"], val, lambda t: _adjusted_score(fc, counts, t, val), out)
        adjustments = meta.extra.setdefault(ADJUSTMENT, {})
        if task in adjustments:
            out["notes"].append(f"replaces the earlier adjustment (tau {adjustments[task]['tau']})")
        if tau == 0:
            adjustments.pop(task, None)
            return out | {"status": "unchanged", "reason": "tau 0: no adjustment"}
        adjustments[task] = {"tau": tau, "class_counts": counts.tolist()}
    elif method == "tau-norm":
        tau = _choose_tau(
            settings["tau"], val, lambda t: _tau_norm_score(fc, meta, task, t, val), out
        )
        if tau == 0:
            return out | {"status": "unchanged", "reason": "tau 0: the head as trained"}
        tau_normalise(fc, tau)
    else:
        x, y, class_weights = train.x, train.y, None
        if method == "crt":
            class_weights = balanced_class_weights(y, n_classes)
        else:
            res = resample_embeddings(
                x, y, method, k_neighbors=settings["k_neighbors"], seed=settings["seed"], task=task
            )
            out["notes"] += res.notes
            out["resampled_counts"] = np.bincount(res.y, minlength=n_classes).tolist()
            if len(res.y) == len(y) and np.array_equal(res.y, y) and np.array_equal(res.x, x):
                return out | {"status": "unchanged", "reason": f"{method} changed no embedding"}
            x, y = res.x, res.y
        out["train_loss"] = retrain_fc(
            fc,
            x,
            y,
            epochs=settings["epochs"],
            weight_decay=settings["weight_decay"],
            class_weights=class_weights,
        )
    if val is not None:
        out["val_balanced_accuracy_after"] = _val_score(fc, meta, task, val)
    return out


def _choose_tau(
    given: float | None,
    val: TaskEmbeddings | None,
    score: Callable[[float], float],
    out: dict[str, Any],
) -> float:
    if given is not None:
        out["tau"], out["tau_source"] = given, "given"
    elif val is None:
        out["tau"], out["tau_source"] = DEFAULT_TAU, "default (no validation images)"
    else:
        tau, scores = pick_tau(score)
        out["tau"], out["tau_source"] = tau, "best validation balanced accuracy"
        out["tau_scores"] = {str(t): s for t, s in scores.items()}
    return out["tau"]


@torch.no_grad()
def _logits(fc: nn.Linear, x: np.ndarray) -> torch.Tensor:
    return fc(torch.as_tensor(x, device=fc.weight.device)).float().cpu()


def _val_score(fc: nn.Linear, meta: CheckpointMeta, task: str, val: TaskEmbeddings) -> float:
    """Balanced accuracy of the head as the predictor will run it (with any logit adjustment)."""
    logits = _logits(fc, val.x)
    adjust = meta.extra.get(ADJUSTMENT, {}).get(task)
    if adjust is not None:
        logits = adjust_logits(logits, adjust["class_counts"], adjust["tau"])
    return balanced_accuracy(logits, val.y)


def _adjusted_score(fc: nn.Linear, counts: np.ndarray, tau: float, val: TaskEmbeddings) -> float:
    return balanced_accuracy(adjust_logits(_logits(fc, val.x), counts, tau), val.y)


def _tau_norm_score(
    fc: nn.Linear, meta: CheckpointMeta, task: str, tau: float, val: TaskEmbeddings
) -> float:
    trial = nn.Linear(fc.in_features, fc.out_features, bias=fc.bias is not None).to(
        fc.weight.device
    )
    trial.load_state_dict(fc.state_dict())
    tau_normalise(trial, tau)
    return _val_score(trial, meta, task, val)


def _training_loss(meta: CheckpointMeta, task: str) -> str | None:
    """The loss the task was trained with, from the plan `fit` records (None: not recorded)."""
    plan = meta.extra.get("training_plan")
    if not isinstance(plan, dict):
        return None
    loss = plan.get("loss") or {}
    spec = ((loss.get("tasks") or {}).get(task) or {}).get("loss", loss.get("loss", "ce"))
    return spec if isinstance(spec, str) else (spec or {}).get("name")


def post_train(
    model: MultiTaskModel,
    meta: CheckpointMeta,
    steps: list[PostTrainingStep],
    train: MultiTaskDataset,
    val: MultiTaskDataset | None = None,
    *,
    seed: int = 0,
    batch_size: int = 64,
    workers: int = 0,
    source: str = "training",
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Run `steps` in order on `model` and `meta`; `train`/`val` must use eval transforms.

    Embeddings are extracted once for every task any step works on: a step changes only a
    head's last layer, whose input they are.
    """
    tasks = sorted({t for s in steps for t in step_tasks(s, model.taxonomy)[0]})
    if not tasks:
        return [apply_step(model, meta, s, Embeddings({}), seed=seed, source=source) for s in steps]

    def embed(ds: MultiTaskDataset) -> dict[str, TaskEmbeddings]:
        return extract_embeddings(
            model, ds, tasks=tasks, batch_size=batch_size, workers=workers, progress=progress
        )

    data = Embeddings(embed(train), embed(val) if val is not None else None)
    return [apply_step(model, meta, s, data, seed=seed, source=source) for s in steps]


# -- on a checkpoint folder ------------------------------------------------------------------


def eval_dataset(
    taxonomy: Taxonomy, meta: CheckpointMeta, manifest: Manifest, split: str, **cache: Any
) -> MultiTaskDataset:
    """A split of a manifest (read with the checkpoint's taxonomy), prepared as the checkpoint
    says and without augmentation. `cache`: ImageCache.for_manifest options (cache_dir...)."""
    part = split_rows(manifest, split)
    pre = meta.preprocessing
    tf = build_transforms(
        AugmentPolicy(eval_crop=pre.eval_crop),
        taxonomy,
        pre.input_size,
        pre.mean,
        pre.std,
        train=False,
    )
    images = ImageCache.for_manifest(part, pre.cache_size, mode=pre.resize_mode, **cache)  # type: ignore[arg-type]
    return MultiTaskDataset(part, images, tf)


def rebalance_checkpoint(
    ckpt_dir: str | Path,
    manifest_path: str | Path,
    step: PostTrainingStep,
    out: str | Path,
    *,
    split: str = "train",
    val_split: str | None = "val",
    batch_size: int = 64,
    workers: int = 0,
    device: str = "cpu",
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Apply one step to a checkpoint folder and write the result as a new folder `out`
    (the source is never modified). `val_split` None, or absent from the manifest: no tau
    search and no validation scores. Returns (out, the step's record)."""
    ((path, record),) = rebalance_variants(
        ckpt_dir,
        manifest_path,
        {out: step},
        split=split,
        val_split=val_split,
        batch_size=batch_size,
        workers=workers,
        device=device,
        cache_dir=cache_dir,
        progress=progress,
    ).items()
    return path, record


def rebalance_variants(
    ckpt_dir: str | Path,
    manifest_path: str | Path,
    variants: Mapping[str | Path, PostTrainingStep],
    *,
    split: str = "train",
    val_split: str | None = "val",
    batch_size: int = 64,
    workers: int = 0,
    device: str = "cpu",
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
) -> dict[Path, dict[str, Any]]:
    """Several alternative steps on one checkpoint, each applied to the trained model alone and
    written to its own folder (out -> step); returns out -> the step's record.

    The result of each is what `rebalance_checkpoint` gives for that step, but the embeddings
    are extracted once for all of them (a step changes only a head's last layer, whose input
    they are), which is most of the cost when comparing methods.
    """
    ckpt_dir = Path(ckpt_dir)
    outs = {Path(out): step for out, step in variants.items()}
    for out in outs:
        if out.resolve() == ckpt_dir.resolve():
            raise RebalanceError(f"--out {out} is the source checkpoint; write to a new folder")
    model, meta = load_checkpoint(ckpt_dir)
    model.to(resolve_device(device))
    tasks = sorted({t for s in outs.values() for t in step_tasks(s, model.taxonomy)[0]})
    data = Embeddings({})
    if tasks:
        manifest, _, _ = read_for_checkpoint(manifest_path, model.taxonomy)
        cache = {
            "cache_dir": cache_dir,
            "workers": max(1, workers),
            "progress": progress is not False,
        }

        def embed(name: str) -> dict[str, TaskEmbeddings]:
            ds = eval_dataset(model.taxonomy, meta, manifest, name, **cache)
            return extract_embeddings(
                model, ds, tasks=tasks, batch_size=batch_size, workers=workers, progress=progress
            )

        train, val = embed(split), None
        if val_split is not None and _has_rows(manifest, val_split):
            val = embed(val_split)
        elif val_split is not None:
            log.info("no '%s' rows: tau is not searched and nothing is scored", val_split)
        data = Embeddings(train, val)
    records = {}
    for out, step in outs.items():
        variant, variant_meta = copy.deepcopy(model), copy.deepcopy(meta)
        record = apply_step(
            variant, variant_meta, step, data, seed=step.seed or 0, source=str(ckpt_dir)
        )
        records[save_checkpoint(out, variant.cpu(), variant_meta)] = record
    return records


def _has_rows(manifest: Manifest, split: str) -> bool:
    return "split" in manifest.df.columns and bool((manifest.df["split"] == split).any())
