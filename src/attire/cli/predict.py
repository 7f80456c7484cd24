"""`attire predict CHECKPOINT IMAGES...`: per-task top-k with probabilities, as JSON or CSV."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Literal

import typer

from attire.cli.apps import app
from attire.cli.common import console, user_errors
from attire.errors import AttireError

CSV_COLUMNS = ["image", "task", "rank", "class", "name", "prob", "present"]


class NothingToPredictError(AttireError):
    """None of the given images could be read."""


@app.command()
@user_errors
def predict(
    checkpoint: Path = typer.Argument(..., help="checkpoint folder written by `attire train`"),
    images: list[Path] = typer.Argument(..., help="image files"),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="classes shown per task"),
    fmt: Literal["json", "csv"] = typer.Option("json", "--format"),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    out: Path | None = typer.Option(None, "--out", help="write here instead of stdout"),
    tta: bool = typer.Option(
        False, "--tta", help="average each image's scores with its mirror image's (2x the cost)"
    ),
) -> None:
    """Tag images: for every task the top-k classes and their probabilities.

    JSON: a list of {image, tasks: {task: [{class, name, prob, present?}]}}; CSV: one row per
    (image, task, rank). `present` is given for multilabel tasks (probability >= 0.5).
    Files that cannot be read are reported on stderr and skipped.
    """
    from attire.inference.predictor import Predictor

    predictor = Predictor(checkpoint, device=device, tta=tta)
    preds, failed = predictor.predict_paths(images, batch_size=batch_size)
    for path, reason in failed:
        console.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)
    if not preds:
        raise NothingToPredictError(f"none of the {len(images)} images could be read")
    stream = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
    try:
        if fmt == "json":
            rows = [{"image": p.image, "tasks": predictor.top_k(p, top_k)} for p in preds]
            json.dump(rows, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
        else:
            writer = csv.writer(stream)
            writer.writerow(CSV_COLUMNS)
            for p in preds:
                for task, ranked in predictor.top_k(p, top_k).items():
                    for rank, r in enumerate(ranked, 1):
                        present = r.get("present", "")
                        writer.writerow(
                            [p.image, task, rank, r["class"], r["name"], r["prob"], present]
                        )
    finally:
        if out:
            stream.close()
    if failed:
        console.print(
            f"{len(preds)} images tagged, {len(failed)} skipped", style="yellow", highlight=False
        )
