"""`attire predict CHECKPOINT IMAGES...`: per-task top-k with probabilities."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Literal

import typer

from attire.cli.apps import app
from attire.cli.common import console, user_errors


@app.command()
@user_errors
def predict(
    checkpoint: Path = typer.Argument(..., help="checkpoint folder written by `attire train`"),
    images: list[Path] = typer.Argument(..., help="image files"),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1),
    fmt: Literal["json", "csv"] = typer.Option("json", "--format"),
    batch_size: int = typer.Option(32, "--batch-size"),
    out: Path | None = typer.Option(None, "--out", help="write here instead of stdout"),
) -> None:
    """Tag images: for every task the top-k classes and their probabilities."""
    from attire.inference.predictor import Predictor

    predictor = Predictor(checkpoint)
    preds, failed = predictor.predict_paths(images, batch_size=batch_size)
    for path, reason in failed:
        console.print(f"[yellow]skipped[/] {path}: {reason}")
    stream = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
    try:
        if fmt == "json":
            rows = [{"image": p.image, "tasks": predictor.top_k(p, top_k)} for p in preds]
            json.dump(rows, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
        else:
            writer = csv.writer(stream)
            writer.writerow(["image", "task", "rank", "class", "prob"])
            for p in preds:
                for task, ranked in predictor.top_k(p, top_k).items():
                    for rank, r in enumerate(ranked, 1):
                        writer.writerow([p.image, task, rank, r["class"], r["prob"]])
    finally:
        if out:
            stream.close()
