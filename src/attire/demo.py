"""`make demo`: attire's main job end to end on the generated catalogue, no downloads.

generate -> check -> long-tail stats -> leak-free split -> train, score and cost a quick
multi-task model (`attire compare` with one experiment) -> tag a few test images -> the
comparison report. Every stage writes what a person would look at into the output folder.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from attire.data.quality import check_manifest
from attire.data.split import split_manifest, split_report
from attire.data.stats import write_stats_report
from attire.data.synth.generate import generate_catalogue
from attire.errors import AttireError
from attire.evaluation.compare import COLUMNS, Comparison, compare_experiments, table_rows
from attire.evaluation.compare import write_reports as write_compare_reports
from attire.inference.predictor import Predictor

console = Console()


def _step(title: str) -> float:
    console.rule(f"[bold]{title}")
    return time.perf_counter()


def demo_experiments(manifest: Path, *, size: int, epochs: int, backbone: str) -> dict[str, Any]:
    """The demo's experiments file: one quick model on the demo's own split (``manifest`` is
    relative to the file's folder)."""
    return {
        "title": f"attire demo: a quick {backbone} at {size} px",
        "base": {
            "data": {"manifest": str(manifest)},
            "seed": 0,
            "image_size": size,
            "budget": {"epochs": epochs},
            "train": {
                "data": {"workers": 2},
                "model": {"head": {"hidden": [128], "dropout": 0.1}},
                "optim": {"lr": 2e-3, "warmup_epochs": 0.5},
                "batch_size": 32,
            },
        },
        "experiments": [{"name": f"{backbone}-{size}px", "backbone": backbone}],
        "profile": {"batch_sizes": [1, 8, 32], "max_seconds": 3.0},
    }


def compare_quick_model(
    manifest: Path, out: Path, *, size: int, epochs: int, backbone: str
) -> tuple[Comparison, dict[str, Path]]:
    """Train, score and cost the quick model through `attire compare`, so the demo ends with the
    same report a real comparison gives. The experiments file is written to ``out`` (rerun it
    with ``attire compare OUT/experiments.yaml --out OUT/compare``); returns the comparison and
    its report paths."""
    spec = out / "experiments.yaml"
    relative = Path(os.path.relpath(manifest.resolve(), out.resolve()))  # the folder can move
    raw = demo_experiments(relative, size=size, epochs=epochs, backbone=backbone)
    spec.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    comparison = compare_experiments(spec, out / "compare", console=console)
    [run] = comparison.runs
    if run.status != "done":
        raise AttireError(
            f"the demo's model failed: {run.error} "
            f"(traceback: {comparison.out / run.run_dir / 'error.txt'})"
        )
    return comparison, write_compare_reports(comparison)


def run_demo(
    out: Path, *, n: int = 2400, size: int = 64, epochs: int = 4, backbone: str = "resnet18"
) -> Path:
    """Run every stage into `out`; returns the comparison's report.html."""
    out.mkdir(parents=True, exist_ok=True)

    t = _step(f"1. Generate {n} product photos ({size} px, long tail R=20, 10% labels missing)")
    manifest = generate_catalogue(
        out / "data", n, size=size, imbalance=20.0, missing=0.1, seed=0, workers=2
    )
    console.print(f"{len(manifest)} images -> {out / 'data'} ({time.perf_counter() - t:.1f} s)")

    t = _step("2. Quality check")
    result = check_manifest(manifest, workers=2, progress=False)
    result.write(out / "check", drop=True)
    console.print(result.summary())
    manifest = result.kept_manifest()

    t = _step("3. Long-tail statistics")
    page = write_stats_report(manifest, out / "stats", show_progress=False)
    console.print(f"summary page: {page}")

    t = _step("4. Leak-free multi-task stratified split")
    manifest = split_manifest(manifest, seed=0)
    split_path = manifest.write(out / "data" / "manifest.split.parquet")
    table = Table("split", "rows", "share", "max class-share gap (points)")
    for s in split_report(manifest):
        gaps = [g for g in s.gaps.values() if g is not None]
        table.add_row(s.split, str(s.rows), f"{s.share:.1%}", f"{max(gaps, default=0.0):.1f}")
    console.print(table)

    epochs_text = f"{epochs} epoch{'s' if epochs != 1 else ''}"
    t = _step(f"5. Train, score and cost one {backbone} on all 13 tasks ({epochs_text}, CPU)")
    comparison, reports = compare_quick_model(
        split_path, out, size=size, epochs=epochs, backbone=backbone
    )
    [run] = comparison.runs
    assert run.train is not None and run.eval is not None  # a finished run has both
    run_dir = comparison.out / run.run_dir
    export = run_dir / run.train["export"]
    console.print(
        f"test mean accuracy {run.score('accuracy'):.3f}, "
        f"balanced {run.score('balanced_accuracy'):.3f} ({time.perf_counter() - t:.0f} s); "
        f"checkpoint: {export}",
        soft_wrap=True,
    )

    _step("6. Tag three test images with the exported checkpoint")
    predictor = Predictor(export)
    test = manifest.split("test")
    paths = [test.image_path(i) for i in range(min(3, len(test)))]
    preds, _ = predictor.predict_paths(paths)
    for p, i in zip(preds, range(len(paths)), strict=True):
        table = Table("task", "predicted", "prob", "label", title=Path(p.image).name)
        top = predictor.top_k(p, 1)
        for task in predictor.taxonomy.tasks:
            best = top[task.name][0]
            truth = test.task_labels(i)[task.name]
            shown = "(not labelled)" if truth is None else truth
            if isinstance(truth, tuple):
                shown = ", ".join(truth) or "(none)"
            table.add_row(task.name, best["class"], f"{best['prob']:.2f}", shown)
        console.print(table)

    _step("7. The comparison report: accuracy on the test split and what the model costs")
    table = Table("", *(r.name for r in comparison.runs), title=comparison.title)
    rows = [row[1:] for row in table_rows(comparison)]
    for column, *cells in zip(COLUMNS[1:], *rows, strict=True):
        table.add_row(column, *cells)
    console.print(table)
    console.rule("[bold green]done")
    console.print(f"everything is under {out.resolve()}", soft_wrap=True)
    console.print(f"data summary page: {page}", soft_wrap=True)
    if run.eval.get("page"):
        console.print(f"eval page: {run_dir / run.eval['page']}", soft_wrap=True)
    console.print(f"comparison report: {reports['html']}", soft_wrap=True)
    return reports["html"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("demo-out"))
    ap.add_argument("--n", type=int, default=2400)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--backbone", default="resnet18")
    args = ap.parse_args()
    run_demo(args.out, n=args.n, epochs=args.epochs, backbone=args.backbone)


if __name__ == "__main__":
    main()
