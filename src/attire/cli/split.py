"""`attire data split`: leak-free train/val/test, grouped and stratified over several tasks."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from attire.cli.apps import data_app
from attire.cli.common import console, user_errors
from attire.data.manifest import SPLITS, Manifest
from attire.data.split import (
    DEFAULT_GROUP_COLUMNS,
    SplitError,
    SplitSummary,
    check_fractions,
    split_manifest,
    split_report,
)

DRIFT_WARNING = 0.05  # achieved share this far from the asked one is worth a warning


def parse_fractions(text: str) -> list[float]:
    """'0.8,0.1,0.1' -> [0.8, 0.1, 0.1] (checked: three, >= 0, summing to 1)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise SplitError(f"--fractions '{text}' is not three numbers like 0.8,0.1,0.1") from None
    return check_fractions(values).tolist()


def _list(text: str | None) -> list[str] | None:
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


@data_app.command("split")
@user_errors
def split(
    manifest: Path = typer.Argument(..., help="The manifest (.parquet) to split."),
    out: Path = typer.Option(..., "--out", help="Where to write the manifest with its split."),
    fractions: str = typer.Option("0.8,0.1,0.1", help="train,val,test shares of the rows."),
    tasks: str | None = typer.Option(
        None, help="Comma-separated tasks to stratify on (default: all tasks)."
    ),
    seed: int = typer.Option(0, help="Same seed and input, same split."),
    group_columns: str = typer.Option(
        ",".join(DEFAULT_GROUP_COLUMNS),
        help="Columns whose shared values keep rows in one split (joined transitively).",
    ),
    taxonomy: Path | None = typer.Option(
        None, help="Taxonomy YAML, when the manifest carries none (or to override it)."
    ),
) -> None:
    """Assign every row to train, val or test without splitting a group.

    Groups come from the group columns (e.g. sender_id in `group`, near-duplicate clusters in
    `dup_cluster`); a group larger than a split's share stays whole, so fractions can drift.
    """
    fr = parse_fractions(fractions)
    task_list = _list(tasks)
    groups = _list(group_columns) or []
    m = Manifest.read(manifest, taxonomy)
    with console.status("splitting"):
        result = split_manifest(m, fractions=fr, tasks=task_list, seed=seed, group_columns=groups)
    result.write(out)
    report = split_report(result, tasks=task_list, group_columns=groups)
    asked = dict(zip(SPLITS, fr, strict=True))
    console.print(summary_table(report, asked))
    console.print(gap_table(report))
    achieved = {s.split: s.share for s in report}
    for name, want in asked.items():
        got = achieved.get(name, 0.0)
        if want > 0 and abs(got - want) > DRIFT_WARNING:
            console.print(
                f"[yellow]warning:[/] {name} holds {100 * got:.1f}% of the rows, asked "
                f"{100 * want:.1f}%: some groups are too large to place exactly"
            )
    console.print(f"written: {out}")


def summary_table(report: list[SplitSummary], asked: dict[str, float]) -> Table:
    table = Table(title="attire data split")
    for name in ("split", "rows", "share", "asked", "groups", "groups also elsewhere"):
        table.add_column(name, justify="left" if name == "split" else "right")
    for s in report:
        table.add_row(
            s.split,
            str(s.rows),
            f"{100 * s.share:.1f}%",
            f"{100 * asked.get(s.split, 0.0):.1f}%",
            str(s.groups),
            str(s.shared_groups),
            style="red" if s.shared_groups else None,
        )
    return table


def gap_table(report: list[SplitSummary]) -> Table:
    """Per task and split: the largest difference between a class's share there and overall."""
    table = Table(title="largest class-share gap vs the whole manifest (percentage points)")
    table.add_column("task")
    for s in report:
        table.add_column(s.split, justify="right")
    tasks = list(report[0].gaps) if report else []
    for task in tasks:
        cells = [s.gaps[task] for s in report]
        table.add_row(task, *("n/a" if g is None else f"{g:.1f}" for g in cells))
    return table
