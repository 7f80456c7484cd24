"""Run a checkpoint over one split of a manifest and score every task.

Images are prepared exactly as the checkpoint says (``Predictor``); labels are read with the
checkpoint's own taxonomy, so class indices always match the heads. Long-tail groups come from
the manifest's training split. A label the checkpoint does not know, or an image that cannot be
read, is reported with its reason and left out; the rest is scored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from attire.data.manifest import TRUE, Manifest, ManifestError
from attire.data.stats import StatsError, task_stats
from attire.errors import AttireError
from attire.evaluation.metrics import (
    DEFAULT_TOP_K,
    ECE_BINS,
    HEADLINE_KEYS,
    answer_decisions,
    average_over_tasks,
    basic_precision,
    task_metrics,
)
from attire.evaluation.thresholds import ThresholdResult, check_target, fit_thresholds
from attire.inference.predictor import Predictor
from attire.taxonomy import Taxonomy

MAX_LISTED = 50  # label problems / skipped images listed one by one in metrics.json


class EvalError(AttireError):
    """A split that does not exist or has nothing that can be scored."""


@dataclass
class Scored:
    """One split run through the model: per task labels and probabilities, row by row."""

    image_ids: list[str]
    y_true: dict[str, np.ndarray]
    probs: dict[str, np.ndarray]
    rows_in_split: int
    unlabelled: int
    skipped: list[dict[str, str]]


@dataclass
class EvalResult:
    """Per-task metric dicts, their averages over tasks, and the raw arrays they came from."""

    taxonomy: Taxonomy
    metrics: dict[str, dict[str, Any]]
    averages: dict[str, dict[str, Any]]
    y_true: dict[str, np.ndarray]
    probs: dict[str, np.ndarray]
    train_counts: dict[str, np.ndarray] | None = None
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    image_ids: list[str] = field(default_factory=list)
    checkpoint: str = ""
    manifest: str = ""
    split: str = ""
    rows_in_split: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    label_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "manifest": self.manifest,
            "split": self.split,
            "rows_in_split": self.rows_in_split,
            "rows_scored": len(self.image_ids),
            "skipped_images": len(self.skipped),
            "skipped": self.skipped[:MAX_LISTED],
            "label_problems": len(self.label_problems),
            "label_problem_examples": self.label_problems[:MAX_LISTED],
            "notes": self.notes,
            "settings": self.settings,
            "averages": self.averages,
            "thresholds": self.thresholds,
            "tasks": {
                t: {"classes": self.taxonomy.task(t).class_ids} | m for t, m in self.metrics.items()
            },
        }

    def to_json(self) -> str:
        """metrics.json: strict JSON (undefined values are null)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def markdown(self, keys: Sequence[str] = HEADLINE_KEYS) -> str:
        """The per-task table and the mean over tasks, in percent, for docs and benchmarks."""

        def cell(v: object) -> str:
            return "-" if v is None else f"{100 * float(v):.1f}"

        lines = ["| task | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for task, m in self.metrics.items():
            lines.append(f"| {task} | " + " | ".join(cell(m.get(k)) for k in keys) + " |")
        means = [cell(self.averages.get(k, {}).get("mean")) for k in keys]
        lines.append("| **mean** | " + " | ".join(means) + " |")
        return "\n".join(lines)


def evaluate_arrays(
    taxonomy: Taxonomy,
    y_true: Mapping[str, np.ndarray],
    probs: Mapping[str, np.ndarray],
    train_counts: Mapping[str, np.ndarray] | None = None,
    *,
    thresholds: Mapping[str, float] | None = None,
    threshold_fits: Mapping[str, ThresholdResult] | None = None,
    threshold_source: str = "checkpoint",
    top_k: Iterable[int] = DEFAULT_TOP_K,
    many: int = 100,
    few: int = 20,
    **context: Any,
) -> EvalResult:
    """Score labels against probabilities, task by task in taxonomy order (no model needed).

    ``thresholds`` (task -> confidence) are applied to these rows: their basic precision and
    coverage here is how they will behave in production. ``context`` fills EvalResult's
    descriptive fields (checkpoint, split, skipped, notes, ...).
    """
    top_k = tuple(top_k)
    per_task: dict[str, dict[str, Any]] = {}
    for task in taxonomy.tasks:
        if task.name not in y_true:
            continue
        counts = None if train_counts is None else train_counts.get(task.name)
        per_task[task.name] = task_metrics(
            y_true[task.name],
            probs[task.name],
            counts,
            class_ids=task.class_ids,
            top_k=top_k,
            many=many,
            few=few,
        )
    applied = {}
    fits = threshold_fits or {}
    for task, thr in (thresholds or {}).items():
        if task not in per_task:
            continue
        conf, hit = answer_decisions(y_true[task], probs[task])
        precision, coverage = basic_precision(conf, hit, thr)
        applied[task] = {
            "threshold": float(thr),
            "source": threshold_source,
            "precision": precision,
            "coverage": coverage,
            "answered": int((conf >= thr).sum()),
            "total": len(conf),
        }
        if task in fits:
            applied[task]["fit"] = fits[task].to_dict()
    context = dict(context)
    settings = {"many": many, "few": few, "top_k": list(top_k), "ece_bins": ECE_BINS}
    settings |= context.pop("settings", {})
    return EvalResult(
        taxonomy=taxonomy,
        metrics=per_task,
        averages=average_over_tasks(per_task),
        y_true=dict(y_true),
        probs=dict(probs),
        train_counts=None if train_counts is None else dict(train_counts),
        thresholds=applied,
        settings=settings,
        **context,
    )


def evaluate_checkpoint(
    ckpt_dir: str | Path,
    manifest_path: str | Path,
    *,
    split: str = "test",
    batch_size: int = 64,
    train_counts_from: str | None = "train",
    thresholds_split: str | None = None,
    target_precision: float = 0.95,
    clean_labels: bool = False,
    device: str = "cpu",
    workers: int = 0,
    top_k: Iterable[int] = DEFAULT_TOP_K,
    many: int = 100,
    few: int = 20,
    progress: bool | None = None,
    tta: bool = False,
) -> EvalResult:
    """Score every labelled row of ``split`` with the checkpoint (``tta``: averaged with the
    mirror image, `Predictor`).

    ``train_counts_from``: the split whose class counts define the shot groups (None: no
    groups). ``thresholds_split``: fit per-task thresholds reaching ``target_precision`` on that
    split and apply them to ``split`` (the fits are in ``EvalResult.thresholds[task]["fit"]``);
    without it the checkpoint's own thresholds, if any, are applied. ``clean_labels``: score
    against ``<task>__true`` where a manifest has it (generated data with injected noise).
    """
    if thresholds_split is not None:
        check_target(target_precision)
    predictor = Predictor(ckpt_dir, device=device, tta=tta)
    taxonomy = predictor.taxonomy
    manifest, problems, notes = read_for_checkpoint(manifest_path, taxonomy, clean_labels)
    counts = None
    if train_counts_from is not None:
        counts = training_counts(manifest, train_counts_from, many=many, few=few)
        if counts is None:
            notes.append(f"no '{train_counts_from}' rows: shot groups (many/medium/few) not scored")

    def run(name: str) -> Scored:
        return score_split(
            predictor, manifest, name, batch_size=batch_size, workers=workers, progress=progress
        )

    scored = run(split)
    fits: dict[str, ThresholdResult] | None = None
    if thresholds_split is not None:
        if thresholds_split == split:
            notes.append(f"thresholds fitted on the evaluated split '{split}' (optimistic)")
            held = scored
        else:
            held = run(thresholds_split)
        fits = fit_thresholds(held.probs, held.y_true, target_precision)
        thresholds = {t: r.threshold for t, r in fits.items()}
        source = f"fitted on {thresholds_split} for precision {target_precision:g}"
    else:
        thresholds, source = dict(predictor.meta.thresholds), "checkpoint"
    if scored.unlabelled:
        notes.append(f"{scored.unlabelled} rows of '{split}' carry no label and were not scored")
    return evaluate_arrays(
        taxonomy,
        scored.y_true,
        scored.probs,
        counts,
        thresholds=thresholds,
        threshold_fits=fits,
        threshold_source=source,
        top_k=top_k,
        many=many,
        few=few,
        checkpoint=str(ckpt_dir),
        manifest=str(manifest_path),
        split=split,
        image_ids=scored.image_ids,
        rows_in_split=scored.rows_in_split,
        skipped=scored.skipped,
        label_problems=problems,
        notes=notes,
        settings={
            "train_counts_from": train_counts_from,
            "thresholds_split": thresholds_split,
            "target_precision": target_precision if thresholds_split is not None else None,
            "clean_labels": clean_labels,
            "tta": tta,
        },
    )


def read_for_checkpoint(
    manifest_path: str | Path, taxonomy: Taxonomy, clean_labels: bool = False
) -> tuple[Manifest, list[str], list[str]]:
    """The manifest's rows read with the checkpoint's taxonomy, bad label cells emptied.

    Returns (manifest, one line per label the taxonomy does not know, notes). With
    ``clean_labels`` a task's ``<task>__true`` value replaces its label where present.
    """
    source = Manifest.read(manifest_path)
    df = source.df.copy()
    notes = []
    ignored = [t for t in source.taxonomy.task_names if t not in taxonomy.task_names]
    if ignored:
        notes.append(f"manifest tasks {ignored} are not in the checkpoint and were not scored")
    absent = [t for t in taxonomy.task_names if t not in df.columns]
    if absent:
        notes.append(f"checkpoint tasks {absent} have no column in the manifest")
    if clean_labels:
        for task in taxonomy.task_names:
            if task + TRUE in df.columns:
                df[task] = [
                    c if _present(c) else v for v, c in zip(df[task], df[task + TRUE], strict=True)
                ]
    manifest = Manifest(df, taxonomy, source.root)
    problems = manifest.label_problems()
    for p in problems:
        base, _, suffix = p.column.partition("__")
        # an unknown id in `<task>__unknown` would leave the entry's meaning unclear: drop the cell
        manifest.df.at[p.row, base if suffix == "unknown" else p.column] = None
    return manifest, [f"{p} (left out)" for p in problems], notes


def training_counts(
    manifest: Manifest, split: str, *, many: int = 100, few: int = 20
) -> dict[str, np.ndarray] | None:
    """task -> per-class counts (multilabel: positives) over ``split``; None without such rows."""
    if "split" not in manifest.df.columns or not (manifest.df["split"] == split).any():
        return None
    try:
        stats = task_stats(manifest, many=many, few=few, split=split)
    except StatsError:
        return None
    return {
        s.task: np.array([s.counts[c] for c in manifest.taxonomy.task(s.task).class_ids])
        for s in stats
    }


def has_split(manifest_path: str | Path, split: str) -> bool:
    """Whether a manifest has rows of a split (reads only its split column)."""
    try:
        if "split" not in pq.read_schema(manifest_path).names:
            return False
        column = pq.read_table(manifest_path, columns=["split"]).column("split")
    except (OSError, pa.ArrowInvalid):
        return False  # evaluate_checkpoint reports the unreadable manifest itself
    return bool(pc.any(pc.equal(column, split)).as_py())


def split_rows(manifest: Manifest, split: str) -> Manifest:
    """The rows of one split; an error names the splits the manifest has."""
    if "split" not in manifest.df.columns:
        raise ManifestError(
            "manifest has no 'split' column: run `attire data split` first so that the model "
            "is scored on rows it was not trained on"
        )
    rows = manifest.split(split)
    if not len(rows):
        found = sorted(str(v) for v in manifest.df["split"].dropna().unique())
        raise EvalError(f"manifest has no '{split}' rows (splits found: {found})")
    return rows


def score_split(
    predictor: Predictor,
    manifest: Manifest,
    split: str,
    *,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool | None = None,
) -> Scored:
    """Run ``predictor`` over the labelled rows of a split; unreadable images are skipped."""
    rows = split_rows(manifest, split)
    tasks = [t.name for t in predictor.taxonomy.tasks]
    encoded = {t: rows.encode(t) for t in tasks}
    labelled = np.zeros(len(rows), bool)
    for y in encoded.values():
        labelled |= (y >= 0) if y.ndim == 1 else (y >= 0).any(1)
    keep = np.flatnonzero(labelled)
    paths = [str(p) for p in rows.image_paths()]
    preds, failed = predictor.predict_paths(
        [paths[i] for i in keep], batch_size=batch_size, workers=workers, progress=progress
    )
    by_path = {p.image: p.probs for p in preds}
    reasons = dict(failed)
    ids = rows.df["image_id"].astype(str).tolist()
    ok = [i for i in keep if paths[i] in by_path]
    skipped = [
        {"image_id": ids[i], "path": paths[i], "reason": reasons.get(paths[i], "not scored")}
        for i in keep
        if paths[i] not in by_path
    ]
    if not ok:
        first = f" (first: {skipped[0]['path']}: {skipped[0]['reason']})" if skipped else ""
        raise EvalError(f"nothing to score in split '{split}': no labelled row was read{first}")
    n_classes = {t.name: t.num_classes for t in predictor.taxonomy.tasks}
    return Scored(
        image_ids=[ids[i] for i in ok],
        y_true={t: encoded[t][ok] for t in tasks},
        probs={
            t: np.stack([by_path[paths[i]][t] for i in ok]).reshape(len(ok), n_classes[t])
            for t in tasks
        },
        rows_in_split=len(rows),
        unlabelled=int(len(rows) - len(keep)),
        skipped=skipped,
    )


def _present(v: object) -> bool:
    if v is None:
        return False
    return not (isinstance(v, float) and np.isnan(v))
