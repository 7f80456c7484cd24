"""Fast learnability proxy for the synthetic catalogue: a short training, per-task val accuracy.

The acceptance benchmark (bench/train_synth.py: 10,000 balanced images at 64 px, ResNet-18,
8 epochs) takes 20-30 minutes on 2 cores; this proxy draws a small balanced catalogue, trains the
same model for a few epochs with attire's trainer and prints every task's validation accuracy
per epoch next to its chance level, so a drawing change can be judged in a few minutes. A task
that stays near chance here is not drawn learnably at that size.

    .venv/bin/python bench/synth_learnability.py --out /tmp/synth-learn
    .venv/bin/python bench/synth_learnability.py --out /tmp/synth-learn --n-train 3000 --epochs 4

The catalogue is drawn afresh on every run (the point is to measure the current drawing);
`--keep-data` reuses the one already in `--out`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from attire.data.manifest import Manifest
from attire.training.config import TrainConfig
from attire.training.fit import fit
from synth_splits import catalogue, combined


def _catalogue(out: Path, n: int, seed: int, size: int, workers: int, keep: bool) -> Manifest:
    if not keep:  # the point is to measure the current drawing
        shutil.rmtree(out, ignore_errors=True)
    return catalogue(out, n, seed=seed, balanced=True, size=size, workers=workers)


def chance(val: Manifest) -> dict[str, float]:
    """Accuracy of always answering the most frequent class (per entry for multilabel tasks)."""
    out = {}
    for task in val.taxonomy.tasks:
        values = val.df[task.name].dropna()
        if task.multilabel:
            rate = np.mean([len(v) for v in values]) / task.num_classes
            out[task.name] = float(1 - rate)
        else:
            out[task.name] = float(values.value_counts(normalize=True).max())
    return out


def per_epoch(run: Path) -> pd.DataFrame:
    """Validation accuracies per epoch (rows) and task (columns) from the CSV log."""
    logs = sorted((run / "logs").glob("version_*/metrics.csv"))
    df = pd.read_csv(logs[-1])
    cols = [c for c in df.columns if c.startswith("val/acc_")]
    val = df.dropna(subset=["val/acc_mean"])[["epoch", *cols]].groupby("epoch").last()
    return val.rename(columns=lambda c: c.removeprefix("val/acc_"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/synth-learn"))
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--n-val", type=int, default=600)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep-data", action="store_true", help="reuse the catalogue in --out")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    if not args.keep_data:
        shutil.rmtree(out / "cache", ignore_errors=True)
    train = _catalogue(out / "train", args.n_train, 11, args.size, args.workers, args.keep_data)
    val = _catalogue(out / "val", args.n_val, 12, args.size, args.workers, args.keep_data)
    manifest = combined({"train": train, "val": val}, out, "manifest.proxy.parquet")
    gen_s = time.perf_counter() - t0

    run = out / "run"
    shutil.rmtree(run, ignore_errors=True)
    cfg = TrainConfig.from_dict(
        {
            "data": {
                "manifest": str(manifest),
                "image_size": args.size,
                "workers": args.workers,
                "cache_dir": str(out / "cache"),
            },
            "model": {"backbone": args.backbone},
            "optim": {"lr": args.lr, "warmup_epochs": 0.5},
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "out_dir": str(run),
        }
    )
    t1 = time.perf_counter()
    fit(cfg)
    train_s = time.perf_counter() - t1

    acc = per_epoch(run)
    base = chance(val)
    tasks = list(val.taxonomy.task_names)
    epochs = list(acc.index)
    head = "| task | K | chance | " + " | ".join(f"ep {int(e) + 1}" for e in epochs) + " |"
    lines = [head, "| --- " * (3 + len(epochs)) + "|"]
    for t in tasks:
        k = val.taxonomy.task(t).num_classes
        cells = " | ".join(f"{acc.loc[e, t]:.3f}" for e in epochs)
        lines.append(f"| {t} | {k} | {base[t]:.3f} | {cells} |")
    mean_cells = " | ".join(f"{acc.loc[e, 'mean']:.3f}" for e in epochs)
    lines.append(f"| **mean** | | {np.mean(list(base.values())):.3f} | {mean_cells} |")
    table = "\n".join(lines)
    print(table)
    print(f"\ndraw {gen_s:.0f} s, train {train_s:.0f} s ({args.n_train} train / {args.n_val} val, "
          f"{args.size} px, {args.backbone}, {args.epochs} epochs)")  # fmt: skip
    results = {
        "args": vars(args) | {"out": str(out)},
        "generate_s": gen_s,
        "train_s": train_s,
        "chance": base,
        "val_acc_per_epoch": acc.to_dict(orient="index"),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "table.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
