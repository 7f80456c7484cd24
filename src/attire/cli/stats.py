"""`attire data stats`: the long tail of every task, as a table, charts and an HTML page."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from attire.cli.apps import data_app
from attire.cli.common import console, user_errors
from attire.data.manifest import Manifest
from attire.data.stats import TaskStats, format_ratio, render_stats_report, task_stats


@data_app.command("stats")
@user_errors
def stats(
    manifest: Path = typer.Argument(..., help="The manifest (.parquet) to describe."),
    out: Path = typer.Option(..., "--out", help="Folder for index.html, stats.json and charts."),
    many: int = typer.Option(100, help="Classes with more training images than this: many-shot."),
    few: int = typer.Option(20, help="Classes with fewer training images than this: few-shot."),
    all_rows: bool = typer.Option(
        False, "--all-rows", help="Count every row even when the manifest has a split column."
    ),
    taxonomy: Path | None = typer.Option(
        None, help="Taxonomy YAML, when the manifest carries none (or to override it)."
    ),
) -> None:
    """Class counts, imbalance, missing labels and many/medium/few-shot groups per task.

    When the manifest has a split column, counts come from the train split (what a model
    learns from) unless --all-rows is given.
    """
    m = Manifest.read(manifest, taxonomy)
    split = None if all_rows else "train"
    result = task_stats(m, many=many, few=few, split=split)
    index = render_stats_report(result, out, rows=len(m), show_progress=True)
    console.print(stats_table(result, len(m)))
    console.print(f"page: {index}")


def stats_table(result: list[TaskStats], rows: int) -> Table:
    """One line per task: how much is labelled and how long its tail is."""
    counted = ""
    if result and result[0].split:
        counted = f", counted on {result[0].scope} ({result[0].rows} rows)"
    many, few = (result[0].many, result[0].few) if result else (100, 20)
    table = Table(
        title=f"attire data stats: {rows} rows{counted}",
        caption=f"classes per shot group: many > {many}, medium {few}-{many}, few < {few} images",
    )
    for name in ("task", "labelled", "missing", "classes", "empty", "max:min"):
        table.add_column(name, justify="left" if name == "task" else "right")
    table.add_column("many", justify="right", style="blue")
    table.add_column("medium", justify="right", style="yellow")
    table.add_column("few", justify="right", style="red")
    for s in result:
        table.add_row(
            s.task,
            str(s.labelled),
            f"{100 * s.missing_share:.1f}%",
            str(len(s.counts)),
            str(s.zero_classes),
            format_ratio(s.imbalance_ratio),
            str(s.group_sizes["many"]),
            str(s.group_sizes["medium"]),
            str(s.group_sizes["few"]),
        )
    return table
