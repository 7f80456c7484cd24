"""`attire data download`: fetch a shop's catalogue images from a table of URLs."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import typer
from rich.table import Table

from attire.cli.apps import data_app
from attire.cli.common import console, user_errors
from attire.data.download import DEFAULT_TYPES, DownloadError, DownloadResult, download_images

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?)?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def parse_size(text: str) -> int:
    """Bytes from '20000000', '20MB', '500kB' or '1.5MiB' (decimal units unless 'i')."""
    m = _SIZE.match(text)
    if m is None:
        raise DownloadError(f"--max-bytes '{text}' is not a size (e.g. 20000000, 20MB, 500kB)")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


@data_app.command("download")
@user_errors
def download(
    urls: Path = typer.Argument(..., help="CSV or Parquet table with one image URL per row."),
    out: Path = typer.Option(..., "--out", help="Folder for the images and the reports."),
    url_column: str = typer.Option("url", help="Column holding the image URL."),
    id_column: str | None = typer.Option(
        None, help="Column naming each file (its stem); default: a hash of the URL."
    ),
    workers: int = typer.Option(8, help="Parallel downloads."),
    retries: int = typer.Option(3, help="Extra attempts after timeouts, 5xx and 429."),
    timeout: float = typer.Option(20.0, help="Seconds to connect, and to wait for each read."),
    max_bytes: str = typer.Option("20MB", help="Largest file accepted (bytes, or 20MB, 500kB)."),
    allow_type: list[str] = typer.Option(
        list(DEFAULT_TYPES), "--allow-type", help="Accepted Content-Type (repeat for several)."
    ),
) -> None:
    """Download product images; rerun to fetch only what is missing.

    Writes download_report.csv (every row, with status and reason) and downloaded.csv (the input
    rows of the images on disk, with a path column) into --out.
    """
    result = download_images(
        urls,
        out,
        url_column=url_column,
        id_column=id_column,
        workers=workers,
        retries=retries,
        timeout=timeout,
        max_bytes=parse_size(max_bytes),
        allowed_types=allow_type,
    )
    console.print(summary_table(result))
    console.print(f"report: {result.report_path}\nfor ingest: {result.downloaded_path}")


def summary_table(result: DownloadResult) -> Table:
    """Counts per status, then per failure reason, so the totals can be checked at a glance."""
    table = Table(title=f"attire data download: {result.total} rows")
    table.add_column("status")
    table.add_column("rows", justify="right")
    table.add_column("reasons")
    for status, n, style in (
        ("ok", result.ok, "green"),
        ("skipped (already present)", result.skipped, "cyan"),
        ("failed", result.failed, "red"),
        ("invalid row", result.invalid, "yellow"),
    ):
        key = status.split()[0]
        counts = Counter(result.report.loc[result.report["status"] == key, "reason"])
        shown = counts.items() if key in ("failed", "invalid") else ()
        why = ", ".join(f"{reason} {k}" for reason, k in sorted(shown))
        table.add_row(f"[{style}]{status}[/]", str(n), why)
    return table
