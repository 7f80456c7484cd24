"""Running a comparison: the data prepared once, then each experiment trained, scored and costed.

Finished work is reused: each stage stores a fingerprint (training: the resolved training config
plus the manifest file's sha256; evaluation and profiling: the training fingerprint plus their own
settings) in ``runs/<name>/run.json``, and a stage whose fingerprint matches is skipped. A rerun
therefore only runs what changed. One experiment that fails is recorded with its traceback and
the others go on.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.console import Console

from attire.data.manifest import Manifest
from attire.data.split import split_manifest
from attire.data.synth import generate_catalogue
from attire.evaluation.compare.pareto import pareto_front
from attire.evaluation.compare.spec import (
    CompareError,
    Experiment,
    ExperimentsFile,
    ProfileSettings,
)
from attire.evaluation.evaluate import evaluate_checkpoint
from attire.evaluation.profile import FLOPS_NOTE, describe_device, profile_checkpoint
from attire.evaluation.report import write_report
from attire.inference.predictor import resolve_device
from attire.models.checkpoint import read_meta
from attire.training.config import TrainConfig
from attire.training.fit import fit
from attire.training.recipes import recipe_settings

RUN_RECORD, PROFILE_FILE = "run.json", "profile.json"


# -- data --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedData:
    """The split manifest every experiment trains and is scored on."""

    manifest: Path
    sha256: str
    description: str


def prepare_data(spec: ExperimentsFile, out: Path, console: Console) -> PreparedData:
    """Generate (synth) and/or split the data once; reused while its source is unchanged."""
    data, splits = spec.base.data, spec.base.splits
    folder = out / "data"
    record_path = folder / "prepared.json"
    if data.synth is not None:
        size = data.synth.size or max(spec.image_size(e) for e in spec.experiments)
        synth = data.synth.model_copy(update={"size": size})
        source: dict[str, Any] = {"synth": synth.model_dump(mode="json")}
        described = (
            f"generated catalogue: {synth.n} images at {size} px, "
            f"imbalance {synth.imbalance:g}, {synth.missing:.0%} labels missing"
        )
    else:
        assert data.manifest is not None
        if not data.manifest.is_file():
            raise CompareError(
                f"{spec.source}: field 'base.data.manifest': {data.manifest} not found"
            )
        synth = None
        source = {"manifest": str(data.manifest), "sha256": _file_sha256(data.manifest)}
        described = f"manifest {data.manifest}"
    source["split"] = {"seed": spec.base.seed, "fractions": list(splits.fractions)}
    if data.taxonomy is not None:
        source["taxonomy_sha256"] = _file_sha256(data.taxonomy)
    prepared = read_json(record_path)
    target = Path(prepared.get("manifest", ""))
    fresh = prepared.get("source") == source and target.is_file()
    if fresh and _file_sha256(target) == prepared.get("sha256"):
        return PreparedData(target, prepared["sha256"], prepared["description"])
    if synth is not None:
        shutil.rmtree(folder, ignore_errors=True)
        console.rule(f"data: drawing {synth.n} images at {size} px")
        manifest = generate_catalogue(
            folder / "synth",
            synth.n,
            size=size,
            imbalance=synth.imbalance,
            missing=synth.missing,
            noise=synth.noise,
            balanced=synth.balanced,
            seed=synth.seed,
            workers=synth.workers,
        )
    else:
        manifest = Manifest.read(data.manifest, data.taxonomy)
    if "split" in manifest.df.columns and synth is None:
        target = data.manifest
        described += " (its own split column)"
    else:
        manifest = split_manifest(manifest, fractions=splits.fractions, seed=spec.base.seed)
        target = manifest.write(folder / "manifest.split.parquet")
        described += (
            f", split {'/'.join(f'{f:g}' for f in splits.fractions)} (seed {spec.base.seed})"
        )
    _check_splits(Manifest.read(target, data.taxonomy), spec, target)
    digest = _file_sha256(target)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(
        record_path,
        {"source": source, "manifest": str(target), "sha256": digest, "description": described},
    )
    return PreparedData(target, digest, described)


def _check_splits(manifest: Manifest, spec: ExperimentsFile, path: Path) -> None:
    counts = manifest.df["split"].value_counts()
    wanted = [("train", spec.base.splits.train), ("test", spec.base.splits.test)]
    wanted += [("val", spec.base.splits.val)] if spec.base.splits.val else []
    for role, name in wanted:
        if not counts.get(name, 0):
            raise CompareError(
                f"{path}: no '{name}' rows for field 'base.splits.{role}' "
                f"(splits found: {sorted(counts.index)})"
            )


# -- one experiment ----------------------------------------------------------------------------


@dataclass
class RunOutcome:
    """One experiment's place in the comparison: what was run now and every number it has."""

    name: str
    backbone: str
    pretrained: str | None
    image_size: int
    status: Literal["done", "failed", "not run"]
    stages_run: list[str] = field(default_factory=list)
    train: dict[str, Any] | None = None
    eval: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    error: str | None = None
    run_dir: str = ""

    def score(self, key: str) -> float | None:
        """Mean over tasks of an eval metric (accuracy, balanced_accuracy, macro_f1, few_shot)."""
        return _number((self.eval or {}).get("averages", {}).get(key))

    def cost(self, key: str) -> float | None:
        """``gflops`` (forward, per image) or ``latency`` (batch-1 median, ms)."""
        p = self.profile or {}
        return _number(p.get("gflops" if key == "gflops" else "latency_b1_p50_ms"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backbone": self.backbone,
            "pretrained": self.pretrained,
            "image_size": self.image_size,
            "status": self.status,
            "stages_run": self.stages_run,
            "train": self.train,
            "eval": self.eval,
            "profile": self.profile,
            "error": self.error,
            "run_dir": self.run_dir,
        }


@dataclass(frozen=True)
class _Keys:
    train: str
    eval: str
    profile: str


def _keys(
    spec: ExperimentsFile, cfg: TrainConfig, data: PreparedData, profile_device: str
) -> _Keys:
    resolved = cfg.model_dump(mode="json")
    resolved.pop("out_dir")
    for k in ("manifest", "taxonomy", "cache_dir"):
        resolved["data"].pop(k)
    taxonomy = cfg.data.taxonomy
    payload = {
        "config": resolved,
        "manifest_sha256": data.sha256,
        "taxonomy_sha256": _file_sha256(taxonomy) if taxonomy else None,
    }
    settings = recipe_settings(cfg.recipe, cfg.recipes, cfg.epochs)
    if settings:  # only then: runs without recipes keep their fingerprints
        payload["recipes"] = settings
    train = digest(payload)
    evaluation = digest(
        {
            "train": train,
            "split": spec.base.splits.test,
            "train_counts_from": spec.base.splits.train,
            "settings": spec.eval.model_dump(mode="json", exclude={"device"}),
        }
    )
    profiling = digest(
        {
            "train": train,
            "settings": spec.profile.model_dump(mode="json"),
            "device": profile_device,
        }
    )
    return _Keys(train, evaluation, profiling)


def _run(
    spec: ExperimentsFile,
    exp: Experiment,
    cfg: TrainConfig,
    keys: _Keys,
    data: PreparedData,
    out: Path,
    *,
    execute: bool,
    console: Console,
    title: str,
) -> RunOutcome:
    """Bring one experiment up to date (``execute``), or only report what it already has."""
    run_dir = out / "runs" / exp.name
    outcome = RunOutcome(
        name=exp.name,
        backbone=cfg.model.backbone,
        pretrained=cfg.model.pretrained,
        image_size=cfg.data.image_size,
        status="not run",
        run_dir=run_dir.relative_to(out).as_posix(),
    )
    record = read_json(run_dir / RUN_RECORD)
    export = cfg.out_dir / "model"
    train_ok = (
        record.get("train_key") == keys.train
        and record.get("train") is not None
        and (export / "weights.safetensors").is_file()
    )
    eval_ok = train_ok and record.get("eval_key") == keys.eval and record.get("eval") is not None
    profile_ok = train_ok and record.get("profile_key") == keys.profile and record.get("profile")
    if not execute:
        if train_ok and eval_ok and profile_ok:
            _fill(outcome, record)
        return outcome
    try:
        if not train_ok:
            shutil.rmtree(run_dir, ignore_errors=True)  # a stale run: start clean
            run_dir.mkdir(parents=True)
            record = {"name": exp.name, "train_key": keys.train, "train": None}
            console.rule(f"{title}: training {cfg.model.backbone} at {cfg.data.image_size} px")
            record["train"] = _train(cfg)
            outcome.stages_run.append("train")
            write_json(run_dir / RUN_RECORD, record)
        if not eval_ok:
            console.rule(f"{title}: scoring the '{spec.base.splits.test}' split")
            record["eval"], record["eval_key"] = _evaluate(spec, export, data, run_dir), keys.eval
            outcome.stages_run.append("eval")
            write_json(run_dir / RUN_RECORD, record)
        if not profile_ok:
            console.rule(f"{title}: measuring cost")
            record["profile"] = _profile(spec, export, exp.name, run_dir, console)
            record["profile_key"] = keys.profile
            outcome.stages_run.append("profile")
            write_json(run_dir / RUN_RECORD, record)
    except Exception as e:  # one broken experiment must not sink the others
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        outcome.status, outcome.error = "failed", f"{type(e).__name__}: {e}"
        console.print(f"[red]{exp.name} failed:[/] {e}", highlight=False, soft_wrap=True)
        return outcome
    _fill(outcome, record)
    return outcome


def _fill(outcome: RunOutcome, record: dict[str, Any]) -> None:
    """A finished run: its record's numbers go into the outcome."""
    outcome.status = "done"
    outcome.train, outcome.eval, outcome.profile = (
        record["train"],
        record["eval"],
        record["profile"],
    )


def _train(cfg: TrainConfig) -> dict[str, Any]:
    start = time.perf_counter()
    result = fit(cfg)
    seconds = time.perf_counter() - start
    meta, _ = read_meta(result.export_dir)
    # The export is what gets scored and profiled; Lightning's resume state is 2-3x its size.
    shutil.rmtree(cfg.out_dir / "checkpoints", ignore_errors=True)
    return {
        "seconds": seconds,
        "epochs_run": meta.extra.get("epochs_run"),
        "global_steps": meta.extra.get("global_steps"),
        "skipped_steps": result.skipped_steps,
        "val": {k: v for k, v in result.metrics.items() if k.startswith("val/") and "mean" in k},
        "export": result.export_dir.relative_to(cfg.out_dir.parent).as_posix(),
    }


def _evaluate(
    spec: ExperimentsFile, export: Path, data: PreparedData, run_dir: Path
) -> dict[str, Any]:
    settings = spec.eval
    result = evaluate_checkpoint(
        export,
        data.manifest,
        split=spec.base.splits.test,
        batch_size=settings.batch_size,
        train_counts_from=spec.base.splits.train,
        device=settings.device,
        many=settings.many,
        few=settings.few,
        progress=True,
    )
    out = run_dir / "eval"
    if settings.pages:
        page: Path | None = write_report(result, out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(result.to_json(), encoding="utf-8")
        page = None
    return {
        "averages": {k: v["mean"] for k, v in result.averages.items()},
        "rows_scored": len(result.image_ids),
        "skipped_images": len(result.skipped),
        "notes": result.notes,
        "metrics": "eval/metrics.json",
        "page": page.relative_to(run_dir).as_posix() if page else None,
    }


def _profile(
    spec: ExperimentsFile, export: Path, name: str, run_dir: Path, console: Console
) -> dict[str, Any]:
    s = spec.profile
    with console.status(f"{name}: profiling") as status:
        result = profile_checkpoint(
            export,
            name=name,
            device=s.device,
            batch_sizes=s.batch_sizes,
            warmup=s.warmup,
            iters=s.iters,
            max_seconds=s.max_seconds,
            threads=s.threads,
            progress=lambda phase: status.update(f"{name}: {phase}"),
        )
    record = result.to_dict()
    write_json(run_dir / PROFILE_FILE, record)
    return record


# -- the comparison ----------------------------------------------------------------------------


@dataclass
class Comparison:
    """Every experiment's outcome plus what they share; ``to_dict`` is results.json."""

    spec: ExperimentsFile
    out: Path
    data: PreparedData
    runs: list[RunOutcome]

    @property
    def title(self) -> str:
        return self.spec.title or f"attire compare: {self.spec.source.stem}"

    @property
    def score_key(self) -> str:
        return self.spec.report.score

    def fronts(self) -> dict[str, list[bool]]:
        """Per cost (gflops, latency): which runs are on the Pareto front of score vs cost."""
        scores = [r.score(self.score_key) for r in self.runs]
        return {
            c: pareto_front([r.cost(c) for r in self.runs], scores) for c in ("gflops", "latency")
        }

    def devices(self) -> list[str]:
        found = {f"{r.profile['device']}; {r.profile['precision']}" for r in self.runs if r.profile}
        return sorted(found)

    def to_dict(self) -> dict[str, Any]:
        fronts = self.fronts()
        return {
            "title": self.title,
            "experiments_file": str(self.spec.source),
            "data": {
                "manifest": str(self.data.manifest),
                "sha256": self.data.sha256,
                "description": self.data.description,
            },
            "budget": self.spec.base.budget.model_dump(),
            "seed": self.spec.base.seed,
            "splits": self.spec.base.splits.model_dump(mode="json"),
            "score": self.score_key,
            "devices": self.devices(),
            "flops_note": FLOPS_NOTE,
            "runs": [
                r.to_dict() | {"pareto": {c: f[i] for c, f in fronts.items()}}
                for i, r in enumerate(self.runs)
            ],
        }


def compare_experiments(
    experiments_file: str | Path,
    out_dir: str | Path | None = None,
    *,
    only: Sequence[str] | None = None,
    console: Console | None = None,
) -> Comparison:
    """Train, score and profile every experiment (or ``only`` these) that is not up to date.

    Experiments left out by ``only`` still appear when their finished runs are up to date.
    Every config is validated before any work starts. ``out_dir`` defaults to
    runs/compare-<file stem>.
    """
    console = console or Console(stderr=True)
    spec = ExperimentsFile.load(experiments_file)
    out = Path(out_dir) if out_dir is not None else Path("runs") / f"compare-{spec.source.stem}"
    out = out.resolve()
    names = [e.name for e in spec.experiments]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise CompareError(f"--only {', '.join(unknown)}: no such experiment (file has {names})")
    placeholder = out / "data" / "manifest.parquet"
    for exp in spec.experiments:  # fail on a typo before an hour of training, not after
        spec.train_config(exp, placeholder, out)
    data = prepare_data(spec, out, console)
    profile_device = _profile_device(spec.profile)
    selected = [e for e in spec.experiments if not only or e.name in only]
    runs = []
    for exp in spec.experiments:
        cfg = spec.train_config(exp, data.manifest, out)
        keys = _keys(spec, cfg, data, profile_device)
        execute = exp in selected
        title = f"[{selected.index(exp) + 1}/{len(selected)}] {exp.name}" if execute else exp.name
        outcome = _run(
            spec,
            exp,
            cfg,
            keys,
            data,
            out,
            execute=execute,
            console=console,
            title=title,
        )
        if execute and not outcome.stages_run and outcome.status == "done":
            console.print(f"{title}: up to date, reused", highlight=False)
        runs.append(outcome)
    return Comparison(spec, out, data, runs)


def _profile_device(settings: ProfileSettings) -> str:
    """The device the profiles run on, as they will describe it (threads included): a profile
    measured elsewhere is not reused."""
    before = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        return describe_device(resolve_device(settings.device))
    finally:
        torch.set_num_threads(before)


# -- helpers ----------------------------------------------------------------------------------


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_json(path: Path, value: Any) -> None:
    """Atomic: an interrupted write leaves the previous record, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=_jsonable), encoding="utf-8")
    tmp.replace(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
