"""`attire compare EXPERIMENTS.yaml`: experiments under one budget, in one table and one plot."""

from __future__ import annotations

from pathlib import Path

import typer

from attire.cli.apps import app
from attire.cli.common import console, user_errors
from attire.evaluation.compare import compare_experiments, write_reports


@app.command("compare")
@user_errors
def compare_command(
    experiments: Path = typer.Argument(..., help="experiments file (configs/experiments/*.yaml)"),
    out: Path | None = typer.Option(
        None, "--out", help="output folder \\[default: runs/compare-<file name>]"
    ),
    only: list[str] | None = typer.Option(
        None, "--only", help="run only this experiment (repeat, or comma-separated)"
    ),
) -> None:
    """Train every experiment under the same budget, split and seed, score it on the test split
    and measure its cost; write OUT/report.html (table, accuracy-vs-cost plot with the Pareto
    front), OUT/report.md and OUT/results.json.

    Finished runs are reused: a stage reruns only when its fingerprint (resolved config and
    manifest hash) changed, so a rerun only runs what changed.
    """
    names = [n.strip() for item in only or [] for n in item.split(",") if n.strip()]
    comparison = compare_experiments(experiments, out, only=names or None, console=console)
    paths = write_reports(comparison)
    failed = [r for r in comparison.runs if r.status == "failed"]
    for r in failed:
        console.print(f"[red]failed:[/] {r.name}: {r.error}", highlight=False, soft_wrap=True)
    done = sum(r.status == "done" for r in comparison.runs)
    console.print(
        f"{done} of {len(comparison.runs)} experiments in the report\n"
        f"report: {paths['html']}\nmarkdown: {paths['markdown']}",
        highlight=False,
    )
    if failed:
        raise typer.Exit(1)
