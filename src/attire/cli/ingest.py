"""`attire data ingest {table,folder,fashionai}` and `attire data init`: labelled photos in."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from attire.cli.apps import data_app
from attire.cli.common import console, user_errors
from attire.data.ingest import (
    IngestResult,
    ingest_fashionai,
    ingest_folder,
    ingest_table,
    write_proposal,
)
from attire.data.ingest.common import REJECTED_NAME, WARNINGS_NAME
from attire.taxonomy import load_taxonomy

ingest_app = typer.Typer(
    help="Bring labelled photos in as a manifest: from a label table, a folder tree or FashionAI "
    "rows. Writes DIR/manifest.parquet, taxonomy.yaml, rejected.csv and warnings.csv.",
    no_args_is_help=True,
)
data_app.add_typer(ingest_app, name="ingest")

OUT = typer.Option(..., "--out", "-o", help="Folder for manifest.parquet and its reports.")
IMAGE_ROOT = typer.Option(
    None, "--image-root", help="Folder image paths are relative to (default: the table's folder)."
)


@ingest_app.command("table")
@user_errors
def table(
    labels: Path = typer.Argument(..., help="CSV/TSV/Parquet table: an image column + labels."),
    mapping: Path = typer.Option(..., "--mapping", "-m", help="Mapping YAML (see docs/INGEST.md)."),
    image_root: Path | None = IMAGE_ROOT,
    out: Path = OUT,
) -> None:
    """Ingest a label table through a mapping file (`attire data init` proposes one)."""
    _finish(ingest_table(labels, mapping, image_root), out, str(labels))


@ingest_app.command("folder")
@user_errors
def folder(
    root: Path = typer.Argument(..., help="Folder tree ROOT/<class>/<image>."),
    task: str = typer.Option("label", "--task", help="Name of the task the folders label."),
    taxonomy: Path | None = typer.Option(
        None,
        "--taxonomy",
        help="Resolve folder names through this taxonomy (default: build one from them).",
    ),
    out: Path = OUT,
) -> None:
    """Ingest an image-folder tree: each first-level folder is a class of one task."""
    tax = load_taxonomy(taxonomy) if taxonomy is not None else None
    _finish(ingest_folder(root, task, tax), out, str(root))


@ingest_app.command("fashionai")
@user_errors
def fashionai(
    csv: Path = typer.Argument(..., help="FashionAI rows: image,task,label string (y/m/n)."),
    mapping: Path | None = typer.Option(
        None, "--mapping", "-m", help="FashionAI mapping YAML (default: the packaged one)."
    ),
    image_root: Path | None = IMAGE_ROOT,
    taxonomy: Path | None = typer.Option(
        None, "--taxonomy", help="Taxonomy to map onto (default: the mapping's own)."
    ),
    maybe_weight: float = typer.Option(
        0.5, "--maybe-weight", help="Weight of an 'm' (maybe) answer in the soft label, in (0, 1]."
    ),
    out: Path = OUT,
) -> None:
    """Ingest FashionAI attribute rows; 'm' answers become soft labels."""
    tax = load_taxonomy(taxonomy) if taxonomy is not None else None
    result = ingest_fashionai(csv, mapping, image_root, tax, maybe_weight)
    _finish(result, out, str(csv))


@data_app.command("init")
@user_errors
def init(
    table: Path = typer.Argument(..., help="A labelled CSV/TSV/Parquet table."),
    out: Path = typer.Option(Path("."), "--out", "-o", help="Where to write the two files."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
) -> None:
    """Propose taxonomy.yaml + mapping.yaml for a label table, to edit before ingesting."""
    proposal = write_proposal(table, out, force)
    taxonomy, mapping = proposal.taxonomy, proposal.mapping
    console.print(f"[bold]Proposed from[/] {table}", highlight=False)
    summary = Table()
    for col in ("task", "type", "classes", "from columns"):
        summary.add_column(col)
    for t in taxonomy.tasks:
        cols = mapping.tasks[t.name].source_columns()
        shown = ", ".join(cols[:4]) + (f" (+{len(cols) - 4})" if len(cols) > 4 else "")
        summary.add_row(t.name, t.type, str(t.num_classes), shown)
    console.print(summary)
    for role in ("image", "id", "group", "split"):
        value = getattr(mapping, role)
        if value is not None:
            console.print(f"{role} column: [bold]{value}[/]")
    for col, why in proposal.ignored.items():
        console.print(f"not used: {col} ({why})", highlight=False)
    console.print(f"missing values: {', '.join(repr(m) for m in taxonomy.missing)}")
    console.print(
        f"wrote {proposal.taxonomy_path} and {proposal.mapping_path}; edit them, then run\n"
        f"  attire data ingest table {table} --mapping {proposal.mapping_path} --out DIR",
        highlight=False,
    )


def _finish(result: IngestResult, out: Path, what: str) -> None:
    """Write the result and print what came in, what was kept and what was left out."""
    manifest_path = result.write(out)
    console.print(f"[bold]Ingested[/] {what}", highlight=False)
    counts = Table(show_header=False)
    counts.add_column(justify="left")
    counts.add_column(justify="right")
    counts.add_row("rows in", f"{result.rows_in:,}")
    counts.add_row("images kept", f"{result.kept:,}")
    if result.merged:
        counts.add_row("rows merged into an image", f"{result.merged:,}")
    counts.add_row("rows rejected", f"{len(result.rejected):,}")
    for reason, n in result.rejected_by_reason().items():
        counts.add_row(f"  {reason}", f"{n:,}")
    if len(result.warnings):
        counts.add_row("labels dropped (warnings)", f"{len(result.warnings):,}")
    console.print(counts)

    manifest = result.manifest
    shares = Table(title="Labelled share per task", title_justify="left", title_style="bold")
    for col in ("task", "type", "labelled", "share"):
        shares.add_column(col, justify="left" if col in ("task", "type") else "right")
    for t in manifest.taxonomy.tasks:
        n = int(manifest.labelled(t.name).sum())
        share = n / len(manifest) if len(manifest) else 0.0
        shares.add_row(t.name, t.type, f"{n:,}", f"{share:.1%}")
    console.print(shares)
    console.print(f"wrote {manifest_path}", highlight=False)
    if len(result.rejected):
        console.print(f"rejected rows and reasons: {out / REJECTED_NAME}", highlight=False)
    if len(result.warnings):
        console.print(f"dropped labels and reasons: {out / WARNINGS_NAME}", highlight=False)
