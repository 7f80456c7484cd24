"""`attire rebalance CHECKPOINT --data MANIFEST --method M --out NEW`: classifier rebalancing of a
trained checkpoint (cRT on resampled embeddings, tau-normalisation, post-hoc logit adjustment)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError
from rich import box
from rich.table import Table

from attire.cli.apps import app
from attire.cli.common import console, user_errors
from attire.training.recipes import POST_METHODS


@app.command()
@user_errors
def rebalance(
    checkpoint: Path = typer.Argument(..., help="checkpoint folder written by `attire train`"),
    data: Path = typer.Option(..., "--data", help="manifest (.parquet) with the training split"),
    method: str = typer.Option(..., "--method", help=" | ".join(POST_METHODS)),
    out: Path = typer.Option(..., "--out", help="the new checkpoint folder (not CHECKPOINT)"),
    tasks: str | None = typer.Option(
        None, "--tasks", help="comma-separated tasks \\[default: every multiclass task]"
    ),
    split: str = typer.Option("train", "--split", help="split whose embeddings are used"),
    val_split: str | None = typer.Option(
        "val", "--val-split", help="split to pick tau on and to score before/after ('' for none)"
    ),
    tau: float | None = typer.Option(
        None, "--tau", min=0.0, help="tau-norm / logit-adjust \\[default: best on --val-split]"
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="cRT epochs [default: 30]"),
    k_neighbors: int | None = typer.Option(
        None, "--k-neighbors", min=1, help="resampler neighbours [default: imbalanced-learn's]"
    ),
    seed: int | None = typer.Option(None, "--seed", help="cRT and resampling [default: 0]"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="images per forward pass"),
    workers: int = typer.Option(0, "--workers", min=0, help="image decoding processes"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="decoded-image cache"),
) -> None:
    """Rebalance a trained model's task heads and write a new checkpoint; the backbone is kept.

    smote, adasyn, borderline-smote (synthetic embeddings) and nearmiss, tomek, enn,
    cluster-centroids (guided removal) resample each task's head-input embeddings of the
    --split images, then re-train the head's last linear layer (cRT); crt re-trains it with
    class-balanced weights and no resampling. tau-norm rescales its class weights; logit-adjust
    stores tau and the class prior for the predictor. See docs/LONG_TAIL.md.
    """
    from attire.training.rebalance import RebalanceError, rebalance_checkpoint
    from attire.training.recipes import PostTrainingStep

    if method not in POST_METHODS:
        raise RebalanceError(f"--method {method!r}: choose one of {', '.join(POST_METHODS)}")
    options = {"tau": tau, "epochs": epochs, "k_neighbors": k_neighbors, "seed": seed}
    given = {k: v for k, v in options.items() if v is not None}
    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    try:
        step = PostTrainingStep(method=method, tasks=names, **given)  # type: ignore[arg-type]
    except ValidationError as e:
        reason = e.errors()[0]["msg"].removeprefix("Value error, ")
        raise RebalanceError(f"--method {method}: {reason}") from None
    written, record = rebalance_checkpoint(
        checkpoint,
        data,
        step,
        out,
        split=split,
        val_split=val_split or None,
        batch_size=batch_size,
        workers=workers,
        device=device,
        cache_dir=cache_dir,
    )
    table = Table(box=box.SIMPLE, title=f"{method} on {checkpoint}")
    for column in ("task", "status", "train counts", "after resampling", "tau", "val bacc"):
        table.add_column(column)
    for task, r in record["tasks"].items():
        before = r.get("val_balanced_accuracy_before")
        after = r.get("val_balanced_accuracy_after", before)
        bacc = "-" if before is None else f"{before:.3f} -> {after:.3f}"
        table.add_row(
            task,
            r["status"] if "reason" not in r else f"{r['status']}: {r['reason']}",
            _counts(r.get("train_counts")),
            _counts(r.get("resampled_counts")),
            "-" if r.get("tau") is None else f"{r['tau']:g}",
            bacc,
        )
    console.print(table)
    for task, r in record["tasks"].items():
        for note in r.get("notes", []):
            console.print(f"[yellow]{task}:[/] {note}", highlight=False)
    console.print(f"[green]checkpoint:[/] {written}")


def _counts(values: list[int] | None) -> str:
    return "-" if values is None else " ".join(str(v) for v in values)
