"""Ingest a label table (CSV/Parquet: an image column, one column per attribute) via a mapping.

Label values are mapped (the mapping's ``values``) and resolved (`Task.resolve`: id, name, alias,
Chinese name, any case) but not validated: a value that names no class is stored as written, so
`attire data check` can point at its row and the user decides. Only rows that cannot be formed at
all are rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import pandas as pd

from attire.data.ingest.common import (
    IngestResult,
    Merger,
    RowLog,
    image_id_from_path,
    progress,
    read_table,
    unique_ids,
)
from attire.data.ingest.mapping import IngestMapping, TaskMapping, resolve_or_raw
from attire.data.manifest import UNKNOWN, Manifest
from attire.taxonomy import Task, Taxonomy

Cells = dict[str, str | None]
Converter = Callable[[Cells], dict[str, object]]
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


def ingest_table(
    table: Path, mapping: Path | IngestMapping, image_root: Path | None = None
) -> IngestResult:
    """Build a manifest from a label table; image paths resolve against `image_root`.

    `image_root` defaults to the table's folder. Rows of one image (same id, or same path when
    there is no id column) are merged; a row that contradicts an earlier one is rejected.
    """
    table = Path(table)
    if isinstance(mapping, IngestMapping):
        mapping.check()  # a mapping built in Python has not been checked against its taxonomy
    else:
        mapping = IngestMapping.load(mapping)
    taxonomy = mapping.resolved_taxonomy
    rows = read_table(table)
    mapping.check_columns(rows.columns, table)
    root = Path(image_root if image_root is not None else table.parent).resolve()

    log = RowLog(table.name)
    for line, detail in rows.malformed:
        log.reject(line, None, "malformed", detail)
    converters = [_converter(taxonomy, name, tm) for name, tm in mapping.tasks.items()]
    merger = Merger(log)
    for line, cells in progress(rows.rows, f"ingesting {table.name}"):
        image = cells[mapping.image]
        if not image:
            log.reject(line, None, "no_image", f"column '{mapping.image}' is empty")
            continue
        fields: dict[str, object] = {"path": image}
        if mapping.group is not None:
            fields["group"] = cells[mapping.group] or None
        if mapping.split is not None:
            fields["split"] = _split(cells[mapping.split])
        for convert in converters:
            fields.update(convert(cells))
        given_id = cells[mapping.id] if mapping.id is not None else None
        key = f"id:{given_id}" if given_id else f"path:{image}"
        merger.add(key, line, image, fields, given_id or None)

    manifest = _manifest(merger.records(), taxonomy, root, mapping)
    rows_in = len(rows.rows) + len(rows.malformed)
    return IngestResult(manifest, log.rejected, rows_in, merger.merged, log.warnings)


def _manifest(
    records: list[tuple[str | None, str, dict[str, object], str]],
    taxonomy: Taxonomy,
    root: Path,
    mapping: IngestMapping,
) -> Manifest:
    ids = unique_ids(
        [given for given, *_ in records],
        [image_id_from_path(image, root) for _, image, _, _ in records],
    )
    meta = ["image_id", "path"]
    meta += [c for c, on in (("group", mapping.group), ("split", mapping.split)) if on is not None]
    columns = [*meta, "source"]
    for task in taxonomy.tasks:
        columns.append(task.name)
        tm = mapping.tasks.get(task.name)
        if tm is not None and tm.columns is not None:
            columns.append(task.name + UNKNOWN)
    data = [
        {"image_id": image_id, "source": source, **fields}
        for image_id, (_, _, fields, source) in zip(ids, records, strict=True)
    ]
    df = pd.DataFrame(data, columns=columns).astype(object)
    return Manifest(df.where(df.notna(), None), taxonomy, root)


def _split(raw: str | None) -> str | None:
    if not raw:
        return None
    return SPLIT_ALIASES.get(raw.lower(), raw)


def _converter(taxonomy: Taxonomy, name: str, tm: TaskMapping) -> Converter:
    task = taxonomy.task(name)
    if tm.columns is not None:
        return _yes_no_group(taxonomy, task, tm)
    lookup = _value_lookup(taxonomy, task, tm)
    column = tm.column

    def one_column(cells: Cells) -> dict[str, object]:
        raw = cells[column]
        if tm.separator is not None and not taxonomy.is_missing(name, raw):
            values = [lookup(part.strip()) for part in raw.split(tm.separator)]
            return {name: list(dict.fromkeys(v for v in values if v is not None))}
        value = lookup(raw)
        if task.multilabel and value is not None:
            return {name: [value]}
        return {name: value}

    return one_column


def _value_lookup(
    taxonomy: Taxonomy, task: Task, tm: TaskMapping
) -> Callable[[str | None], str | None]:
    """raw -> class id (mapping `values` first, then Task.resolve), the raw text, or None (missing).

    A `values` entry wins over the taxonomy's missing tokens, so a mapping can turn e.g. "Other"
    into a class or "n/a" into missing.
    """
    values = {_norm(k): v for k, v in tm.values.items()}

    @cache  # a column has few distinct values; resolving each once keeps big tables fast
    def lookup(raw: str | None) -> str | None:
        if raw is not None and _norm(raw) in values:
            mapped = values[_norm(raw)]
            return None if mapped is None else resolve_or_raw(task, mapped)
        if taxonomy.is_missing(task.name, raw):
            return None
        return resolve_or_raw(task, raw)

    return lookup


def _yes_no_group(taxonomy: Taxonomy, task: Task, tm: TaskMapping) -> Converter:
    """A multilabel task from yes/no columns; empty members go to `<task>__unknown`.

    All members empty -> the task is missing. A member that is neither yes, no nor missing is
    stored as 'column=value' in the label list, for `attire data check` to report.
    """
    members = [(col, resolve_or_raw(task, cls)) for col, cls in (tm.columns or {}).items()]
    yes, no = {_norm(v) for v in tm.yes}, {_norm(v) for v in tm.no}
    name = task.name

    @cache
    def answer(raw: str | None) -> str:
        if taxonomy.is_missing(name, raw):
            return "unknown"
        return "yes" if _norm(raw) in yes else "no" if _norm(raw) in no else "other"

    def group(cells: Cells) -> dict[str, object]:
        present, unknown = [], []
        for col, cid in members:
            raw = cells[col]
            kind = answer(raw)
            if kind == "unknown":
                unknown.append(cid)
            elif kind == "yes":
                present.append(cid)
            elif kind == "other":
                present.append(f"{col}={raw}")
        if len(unknown) == len(members):
            return {name: None, name + UNKNOWN: None}
        return {name: present, name + UNKNOWN: unknown}

    return group


def _norm(value: str) -> str:
    return value.strip().lower()
