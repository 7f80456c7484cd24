"""What every ingest form shares: the result, the rejection log, table reading and image ids.

Ingest never drops a row silently: a row it cannot form goes to the rejection table with a reason,
and rows of one image are merged (or rejected when they disagree), so that
``rows_in == kept + merged + rejected`` always holds.
"""

from __future__ import annotations

import csv
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import track

from attire.data.manifest import Manifest
from attire.errors import AttireError

REJECT_COLUMNS = ("source", "row", "image", "reason", "detail")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MANIFEST_NAME, TAXONOMY_NAME = "manifest.parquet", "taxonomy.yaml"
REJECTED_NAME, WARNINGS_NAME = "rejected.csv", "warnings.csv"
_progress_console = Console(stderr=True)


class IngestError(AttireError):
    """An input that cannot be ingested at all (missing file, no header, unknown column)."""


def _empty_log() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype="Int64" if c == "row" else object) for c in REJECT_COLUMNS}
    )


@dataclass
class IngestResult:
    """A manifest plus what was left out of it and why.

    ``rejected`` holds rows that are not in the manifest; ``warnings`` holds rows that are, but lost
    a label on the way (e.g. a FashionAI class the mapping has no class for). Both have the columns
    ``source,row,image,reason,detail``.
    """

    manifest: Manifest
    rejected: pd.DataFrame
    rows_in: int
    merged: int = 0
    warnings: pd.DataFrame = field(default_factory=_empty_log)

    @property
    def kept(self) -> int:
        return len(self.manifest)

    def rejected_by_reason(self) -> dict[str, int]:
        return dict(Counter(self.rejected["reason"]).most_common())

    def write(self, out_dir: str | Path) -> Path:
        """Write manifest.parquet, taxonomy.yaml, rejected.csv, warnings.csv; return the first."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = self.manifest.write(out / MANIFEST_NAME)
        self.manifest.taxonomy.save(out / TAXONOMY_NAME)
        self.rejected.to_csv(out / REJECTED_NAME, index=False)
        self.warnings.to_csv(out / WARNINGS_NAME, index=False)
        return path


class RowLog:
    """Collects rejected rows and warnings of one input file as they are found."""

    def __init__(self, source: str):
        self.source = source
        self._rejected: list[dict] = []
        self._warnings: list[dict] = []

    def reject(self, row: int | None, image: str | None, reason: str, detail: str = "") -> None:
        self._rejected.append(self._entry(row, image, reason, detail))

    def warn(self, row: int | None, image: str | None, reason: str, detail: str = "") -> None:
        self._warnings.append(self._entry(row, image, reason, detail))

    def _entry(self, row: int | None, image: str | None, reason: str, detail: str) -> dict:
        return {
            "source": self.source,
            "row": row,
            "image": image,
            "reason": reason,
            "detail": detail,
        }

    @property
    def rejected(self) -> pd.DataFrame:
        return _frame(self._rejected)

    @property
    def warnings(self) -> pd.DataFrame:
        return _frame(self._warnings)


def _frame(entries: list[dict]) -> pd.DataFrame:
    if not entries:
        return _empty_log()
    df = pd.DataFrame(entries, columns=list(REJECT_COLUMNS))
    df["row"] = df["row"].astype("Int64")
    return df


def progress(rows: Sequence, description: str) -> Iterator:
    """Iterate with a progress bar on a terminal (silent when output is captured)."""
    return iter(track(rows, description=description, transient=True, console=_progress_console))


# -- reading tables ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TableRows:
    """A label table read as text: ``rows`` are (line number, {column: text or None})."""

    path: Path
    columns: list[str]
    rows: list[tuple[int, dict[str, str | None]]]
    malformed: list[tuple[int, str]]


def csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of every non-empty CSV record; multi-line cells keep count."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            start = 1
            try:
                for record in reader:
                    line, start = start, reader.line_num + 1
                    if record:
                        yield line, record
            except csv.Error as e:
                raise IngestError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    except FileNotFoundError:
        raise IngestError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise IngestError(f"{path}: not UTF-8 text ({e.reason}); save it as UTF-8") from None


def read_table(path: str | Path) -> TableRows:
    """Read a CSV/TSV (line numbers, header = line 1) or Parquet table (1-based row numbers)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return _read_parquet(path)
    if suffix not in (".csv", ".tsv", ".txt"):
        raise IngestError(f"{path}: expected a .csv, .tsv or .parquet table")
    records = csv_records(path)
    first = next(records, None)
    if first is None:
        raise IngestError(f"{path}: empty file, expected a header line")
    header = [c.strip() for c in first[1]]
    _check_header(path, header)
    rows, malformed = [], []
    for line, record in records:
        if len(record) != len(header):
            malformed.append((line, f"{len(record)} fields, the header has {len(header)}"))
            continue
        rows.append((line, {h: c.strip() for h, c in zip(header, record, strict=True)}))
    return TableRows(path, header, rows, malformed)


def _read_parquet(path: Path) -> TableRows:
    if not path.exists():
        raise IngestError(f"{path}: file not found")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises many types for a non-Parquet file
        raise IngestError(f"{path}: not a readable Parquet table ({e})") from None
    header = [str(c) for c in df.columns]
    _check_header(path, header)
    records = df.to_dict("records")
    rows = [
        (i + 1, {h: cell_text(v) for h, v in zip(header, rec.values(), strict=True)})
        for i, rec in enumerate(records)
    ]
    return TableRows(path, header, rows, [])


def _check_header(path: Path, header: list[str]) -> None:
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise IngestError(f"{path}: duplicate column names {dup} in the header")
    if not any(header):
        raise IngestError(f"{path}: the header line has no column names")


def cell_text(value: object) -> str | None:
    """A cell as stripped text; None for a null. Whole floats lose their '.0' (1.0 -> '1')."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        if float(value).is_integer():
            return str(int(value))
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value).strip()


# -- ids, slugs and merging -------------------------------------------------------------------


def slug(text: str) -> str:
    """A lower-case ascii id ('T-Shirt' -> 't-shirt', 'Long sleeve' -> 'long_sleeve'); may be ''."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    s = re.sub(r"[^a-z0-9_\-]+", "_", ascii_text.lower())
    return re.sub(r"_+", "_", s).strip("_-")


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def image_id_from_path(path: str, root: Path) -> str:
    """The image's path without extension, relative to the image root when it lies inside it."""
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.relative_to(root)
        except ValueError:
            p = Path(*p.parts[1:])
    posix = PurePosixPath(p.as_posix())
    parts = [x for x in posix.parts if x not in (".", "")]
    stem = PurePosixPath(*parts) if parts else PurePosixPath(posix.name or "image")
    return str(stem.with_suffix("")) if stem.suffix else str(stem)


def unique_ids(ids: list[str | None], fallback: list[str]) -> list[str]:
    """Given ids where present, else the fallback; a taken one gets '~2', '~3'... in row order."""
    taken = {i for i in ids if i}
    out = []
    for given, derived in zip(ids, fallback, strict=True):
        if given:
            out.append(given)
            continue
        candidate, n = derived, 1
        while candidate in taken:
            n += 1
            candidate = f"{derived}~{n}"
        taken.add(candidate)
        out.append(candidate)
    return out


@dataclass
class _Entry:
    image: str
    fields: dict[str, object]
    lines: list[str]
    id: str | None


class Merger:
    """Joins rows that describe one image; a row that contradicts an earlier one is rejected."""

    def __init__(self, log: RowLog):
        self.log = log
        self.merged = 0
        self._entries: dict[str, _Entry] = {}

    def add(
        self, key: str, line: int | None, image: str, fields: dict[str, object], id: str | None
    ) -> None:
        where = f"{self.log.source}:{line}" if line is not None else image
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Entry(image, dict(fields), [where], id)
            return
        for name, value in fields.items():
            old = entry.fields.get(name)
            if _present(value) and _present(old) and not _same(old, value):
                self.log.reject(
                    line,
                    image,
                    "conflict",
                    f"'{name}' is {_show(value)} here but {_show(old)} at {entry.lines[0]}",
                )
                return
        for name, value in fields.items():
            if _present(value):
                entry.fields[name] = value
        entry.lines.append(where)
        self.merged += 1

    def records(self) -> list[tuple[str | None, str, dict[str, object], str]]:
        """(given id, image, fields, source) per image, in order of first appearance."""
        return [(e.id, e.image, e.fields, "; ".join(e.lines)) for e in self._entries.values()]


def _present(v: object) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _same(a: object, b: object) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        if a and isinstance(a[0], float):
            return len(a) == len(b) and bool(np.allclose(a, b))
        return sorted(map(str, a)) == sorted(map(str, b))
    return a == b


def _show(v: object) -> str:
    if isinstance(v, list) and v and isinstance(v[0], float):
        return "[" + ", ".join(f"{x:.2f}" for x in v) + "]"
    return repr(v)
