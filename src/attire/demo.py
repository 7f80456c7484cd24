"""`make demo`: attire's main job end to end on the generated catalogue, no downloads.

generate -> check -> long-tail stats -> leak-free split -> train a quick multi-task model ->
tag a few test images. Every stage writes what a person would look at into the output folder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from attire.data.quality import check_manifest
from attire.data.split import split_manifest, split_report
from attire.data.stats import write_stats_report
from attire.data.synth.generate import generate_catalogue
from attire.inference.predictor import Predictor
from attire.training.config import TrainConfig
from attire.training.fit import fit

console = Console()


def _step(title: str) -> float:
    console.rule(f"[bold]{title}")
    return time.perf_counter()


def run_demo(
    out: Path, *, n: int = 2400, size: int = 64, epochs: int = 4, backbone: str = "resnet18"
) -> Path:
    """Run every stage into `out`; returns the exported checkpoint folder."""
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

    t = _step(f"5. Train one {backbone} on all 13 tasks ({epochs} epochs, CPU)")
    cfg = TrainConfig.from_dict(
        {
            "data": {"manifest": str(split_path), "image_size": size, "workers": 2},
            "model": {"backbone": backbone, "head": {"hidden": [128], "dropout": 0.1}},
            "optim": {"lr": 2e-3, "warmup_epochs": 0.5},
            "epochs": epochs,
            "batch_size": 32,
            "out_dir": str(out / "run"),
        }
    )
    res = fit(cfg)
    console.print(
        f"val mean accuracy {res.metrics.get('val/acc_mean', float('nan')):.3f}, "
        f"balanced {res.metrics.get('val/bacc_mean', float('nan')):.3f} "
        f"({time.perf_counter() - t:.0f} s); checkpoint: {res.export_dir}"
    )

    _step("6. Tag three test images with the exported checkpoint")
    predictor = Predictor(res.export_dir)
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
    console.rule("[bold green]done")
    console.print(f"everything is under {out.resolve()}; start with {page}")
    return res.export_dir


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
