"""`attire data check`: find unusable images, unknown labels and duplicates before training."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from attire.cli.apps import data_app
from attire.cli.common import console, user_errors
from attire.data.manifest import Manifest
from attire.data.quality import (
    DEFAULT_NEAR_COLOUR,
    DEFAULT_NEAR_DISTANCE,
    REASONS,
    CheckResult,
    check_manifest,
)

HELP = (
    "Decode every image once and report bad files, unknown labels and duplicates.\n\n"
    "Each rejected row is counted under the first reason that applies, in this order: "
    + ", ".join(REASONS)
    + ". Its other problems go to the detail column, so rows in = kept + rejected. "
    "`row` in report.csv is the 0-based manifest row; `source` points at the input file. "
    "Nothing is removed unless --drop is given."
)


@data_app.command("check", help=HELP)
@user_errors
def check(
    manifest: Path = typer.Argument(..., help="The manifest.parquet to check."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for report.csv and summary.json (default: MANIFEST_DIR/check).",
    ),
    drop: bool = typer.Option(
        False, "--drop", help="Also write OUT/manifest.parquet with only the kept rows."
    ),
    min_size: int = typer.Option(
        32, "--min-size", help="Reject images whose shorter side is smaller (px)."
    ),
    max_pixels: int = typer.Option(
        50_000_000, "--max-pixels", help="Reject images whose header claims more pixels, undecoded."
    ),
    near_distance: int = typer.Option(
        DEFAULT_NEAR_DISTANCE,
        "--near-distance",
        help="Near duplicate: at most this many of 64 perceptual-hash bits differ (0 = off).",
    ),
    near_colour: float = typer.Option(
        DEFAULT_NEAR_COLOUR,
        "--near-colour",
        help="...and the 8x8 colour thumbnails differ by at most this much on average (0-255).",
    ),
    workers: int = typer.Option(2, "--workers", "-j", help="Processes decoding images."),
    taxonomy: Path | None = typer.Option(
        None, "--taxonomy", help="Read labels with this taxonomy instead of the embedded one."
    ),
) -> None:
    """Check a manifest; the command's help is HELP, built from the reason order."""
    data = Manifest.read(manifest, taxonomy)
    result = check_manifest(
        data,
        min_size=min_size,
        max_pixels=max_pixels,
        near_distance=near_distance,
        near_colour=near_colour,
        workers=workers,
    )
    written = result.write(out if out is not None else manifest.parent / "check", drop=drop)
    console.print(f"checked {manifest} in {result.elapsed_s:.1f} s", highlight=False)
    console.print(_summary_table(result))
    clusters = result.extra.get("duplicate_clusters", 0)
    if clusters:
        conflicting = result.extra.get("conflicting_clusters", 0)
        console.print(f"{clusters} duplicate clusters, {conflicting} with conflicting labels")
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    if not drop and result.n_kept < result.rows_in:
        console.print("nothing removed: add --drop to write a manifest of the kept rows")


def _summary_table(result: CheckResult) -> Table:
    """Rows in, kept, and each reason that rejected any row, in priority order."""
    table = Table()
    table.add_column("")
    table.add_column("rows", justify="right")
    table.add_column("share", justify="right")
    total = max(result.rows_in, 1)
    table.add_row("rows in", f"{result.rows_in:,}", "")
    table.add_row("[green]kept[/]", f"{result.n_kept:,}", f"{result.n_kept / total:.1%}")
    for reason, n in result.counts.items():
        if n:
            table.add_row(f"  [red]{reason}[/]", f"{n:,}", f"{n / total:.1%}")
    return table
