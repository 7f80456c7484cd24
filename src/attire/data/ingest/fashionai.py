"""Ingest FashionAI-style attribute rows: ``image, task, label string`` (header optional).

The label string has one character per class: ``y`` (yes), ``m`` (maybe), ``n`` (no). The hard
label is the ``y`` class; ``<task>__soft`` holds the normalised vector (y weight 1, m weight
`maybe_weight`), so an m-only row still teaches the model. An image may have rows for several
tasks; they are merged into one manifest row.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from attire.data.ingest.common import (
    IngestError,
    IngestResult,
    Merger,
    RowLog,
    csv_records,
    image_id_from_path,
    progress,
    unique_ids,
)
from attire.data.ingest.mapping import FashionAIMapping, FashionAITask
from attire.data.manifest import SOFT, Manifest
from attire.taxonomy import Taxonomy

_ANSWERS = frozenset("ymn")


def default_fashionai_mapping_path() -> Path:
    """The packaged mapping of FashionAI's top attributes onto the default taxonomy."""
    return Path(str(resources.files("attire.data.ingest") / "fashionai.yaml"))


def ingest_fashionai(
    csv: Path,
    mapping: Path | None = None,
    image_root: Path | None = None,
    taxonomy: Taxonomy | None = None,
    maybe_weight: float = 0.5,
) -> IngestResult:
    """Build a manifest from FashionAI rows; `image_root` defaults to the CSV's folder.

    `taxonomy`, when given, replaces the mapping's own; the mapping is checked against it.
    """
    if not 0 < maybe_weight <= 1:
        raise IngestError(f"maybe_weight must be in (0, 1], got {maybe_weight}")
    csv = Path(csv)
    fmap = FashionAIMapping.load(mapping or default_fashionai_mapping_path(), taxonomy)
    taxonomy = fmap.resolved_taxonomy
    root = Path(image_root if image_root is not None else csv.parent).resolve()

    records = list(csv_records(csv))
    if records and not _looks_like_data(records[0][1]):
        records = records[1:]
    log = RowLog(csv.name)
    merger = Merger(log)
    for line, fields in progress(records, f"ingesting {csv.name}"):
        if len(fields) != 3:
            log.reject(line, None, "malformed", f"{len(fields)} fields; expected image,task,label")
            continue
        image, name, answer = (f.strip() for f in fields)
        if not image:
            log.reject(line, None, "no_image", "the image field is empty")
            continue
        spec = fmap.tasks.get(name)
        if spec is None:
            known = ", ".join(fmap.tasks)
            log.reject(line, image, "unknown_task", f"'{name}' is not in the mapping ({known})")
            continue
        labels = _labels(spec, answer.lower(), taxonomy, maybe_weight, name)
        if isinstance(labels, tuple):
            reason, detail = labels
            log.reject(line, image, reason, detail)
            continue
        if labels is None:
            log.warn(line, image, "unmapped_class", _unmapped_detail(spec, answer.lower(), name))
            labels = {}
        merger.add(f"path:{image}", line, image, {"path": image, **labels}, None)

    entries = merger.records()
    ids = unique_ids(
        [None] * len(entries), [image_id_from_path(im, root) for _, im, _, _ in entries]
    )
    columns = ["image_id", "path", "source"]
    for task in taxonomy.tasks:
        columns.append(task.name)
        if any(spec.task == task.name for spec in fmap.tasks.values()):
            columns.append(task.name + SOFT)
    data = [
        {"image_id": image_id, "source": source, **fields}
        for image_id, (_, _, fields, source) in zip(ids, entries, strict=True)
    ]
    df = pd.DataFrame(data, columns=columns).astype(object)
    manifest = Manifest(df.where(df.notna(), None), taxonomy, root)
    return IngestResult(manifest, log.rejected, len(records), merger.merged, log.warnings)


def _looks_like_data(fields: list[str]) -> bool:
    """A header line is told apart by its third field not being a y/m/n string."""
    return (
        len(fields) == 3 and bool(fields[2].strip()) and set(fields[2].strip().lower()) <= _ANSWERS
    )


def _labels(
    spec: FashionAITask, answer: str, taxonomy: Taxonomy, maybe_weight: float, name: str
) -> dict[str, object] | tuple[str, str] | None:
    """{task: hard, task__soft: vector}; (reason, detail) to reject; None if a class is unmapped."""
    positions = spec.positions
    bad = sorted(set(answer) - _ANSWERS)
    if bad:
        return "bad_char", f"{answer!r} has characters {bad}; only y, m and n are allowed"
    if len(answer) != len(positions):
        return "bad_length", f"{answer!r} has {len(answer)} positions, {name} has {len(positions)}"
    if answer.count("y") > 1:
        return "several_y", f"{answer!r} says yes to {answer.count('y')} classes of one task"
    if "y" not in answer and "m" not in answer:
        return "no_y_or_m", f"{answer!r} has no y and no m"
    if any(positions[i] is None for i, ch in enumerate(answer) if ch != "n"):
        return None
    task = taxonomy.task(spec.task)
    soft = [0.0] * task.num_classes
    hard = None
    for i, ch in enumerate(answer):
        cid = positions[i]
        if ch == "y":
            hard = cid
            soft[task.index(cid)] += 1.0
        elif ch == "m":
            soft[task.index(cid)] += maybe_weight
    total = sum(soft)
    return {task.name: hard, task.name + SOFT: [w / total for w in soft]}


def _unmapped_detail(spec: FashionAITask, answer: str, name: str) -> str:
    where = [str(i) for i, ch in enumerate(answer) if ch != "n" and spec.positions[i] is None]
    return (
        f"{answer!r}: position {', '.join(where)} of {name} has no class in task "
        f"'{spec.task}'; label left missing"
    )
