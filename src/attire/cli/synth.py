"""`attire synth`: the built-in synthetic catalogue (the demo's data, test fixtures, benchmarks)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from attire.cli.apps import app
from attire.cli.common import console, user_errors
from attire.data.synth import generate_catalogue, write_previews


@app.command("synth")
@user_errors
def synth(
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Folder for images/, manifest.parquet and "
        "taxonomy.yaml (or the contact sheets with --preview).",
    ),
    n: int = typer.Option(1000, "--n", help="Number of images."),
    size: int = typer.Option(128, "--size", help="Side of the square images, in pixels."),
    imbalance: float = typer.Option(
        1.0, "--imbalance", help="Head/tail ratio R of every task's long tail (1 = balanced)."
    ),
    missing: float = typer.Option(0.0, "--missing", help="Share of labels left out, per task."),
    noise: float = typer.Option(
        0.0, "--noise", help="Share of labels replaced by a wrong class (clean in <task>__true)."
    ),
    seed: int = typer.Option(0, "--seed", help="Same seed, same bytes."),
    workers: int = typer.Option(1, "--workers", help="Processes drawing in parallel."),
    balanced: bool = typer.Option(
        False, "--balanced", help="Uniform classes per task within the correlation rules."
    ),
    image_format: str = typer.Option("jpg", "--format", help="jpg (quality 90) or png."),
    preview: bool = typer.Option(
        False, "--preview", help="Write one contact sheet per task instead (a row per class)."
    ),
) -> None:
    """Draw a synthetic catalogue of women's tops whose 13 attributes are known."""
    if preview:
        paths = write_previews(out, size=size, seed=seed)
        console.print(f"wrote {len(paths)} contact sheets to {out}", highlight=False)
        return
    manifest = generate_catalogue(
        out,
        n,
        size=size,
        imbalance=imbalance,
        missing=missing,
        noise=noise,
        seed=seed,
        workers=workers,
        balanced=balanced,
        image_format=image_format,
    )
    table = Table(title=f"Synthetic catalogue: {len(manifest):,} images", title_justify="left")
    for col in ("task", "labelled", "most common", "rarest"):
        table.add_column(col)
    for t in manifest.taxonomy.tasks:
        column = manifest.df[t.name]
        present = column.dropna()
        flat = present.explode().dropna() if t.multilabel else present
        counts = flat.value_counts()
        head = f"{counts.index[0]} ({counts.iloc[0]})" if len(counts) else "-"
        tail = f"{counts.index[-1]} ({counts.iloc[-1]})" if len(counts) else "-"
        table.add_row(t.name, f"{len(present):,}", head, tail)
    console.print(table)
    console.print(f"wrote {out / 'manifest.parquet'}", highlight=False)
