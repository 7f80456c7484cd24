"""`attire train CONFIG.yaml`: multi-task training from a validated config."""

from __future__ import annotations

from pathlib import Path

import typer

from attire.cli.apps import app
from attire.cli.common import console, user_errors


@app.command()
@user_errors
def train(
    config: Path = typer.Argument(..., help="training config (YAML); see configs/"),
    out: Path | None = typer.Option(None, "--out", help="run folder (overrides out_dir)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run's last checkpoint"),
    override: list[str] = typer.Option(
        [], "--set", help="override a config field, e.g. --set epochs=3 --set optim.lr=0.01"
    ),
) -> None:
    """Train one network on all tasks of a manifest; export a self-describing checkpoint.

    The run folder gets checkpoints/last.ckpt (kept current, for --resume), logs/ (CSV),
    tensorboard/, metrics.json and model/ (what `attire predict` needs). Multi-GPU: see
    docs/TRAINING.md (torchrun, or devices/strategy in the config).
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from attire.training.config import TrainConfig
    from attire.training.fit import fit

    overrides = list(override) + ([f"out_dir={out}"] if out else [])
    cfg = TrainConfig.load(config, overrides)
    result = fit(cfg, resume=resume)
    if rank_zero_only.rank != 0:  # under DDP every rank runs this; one report is enough
        return
    shown = {k: round(v, 4) for k, v in result.metrics.items() if k.startswith("val/")}
    console.print(f"[green]checkpoint:[/] {result.export_dir}")
    if shown:
        console.print(shown)
    if result.skipped_steps:
        console.print(f"[yellow]{result.skipped_steps} steps skipped for a non-finite loss[/]")
    if result.unlabelled_batches:
        console.print(f"[yellow]{result.unlabelled_batches} batches had no labels (not stepped)[/]")
