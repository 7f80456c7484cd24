"""`attire data init`: propose a taxonomy and a mapping from a labelled table, for a human to edit.

The proposal is deliberately plain so that it ingests without edits: the image column is the one
whose values end in image extensions; a unique id-like column becomes the id; a column with many
repeated values (or an id/sender/user-like name) becomes the group; yes/no columns sharing a
prefix ``xxx_*`` become one multilabel task ``xxx``; a lone yes/no column a binary task (no/yes);
any other column with few values a multiclass task with classes by frequency. Missing tokens are
never classes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from attire.data.ingest.common import (
    TAXONOMY_NAME,
    IngestError,
    is_image_name,
    read_table,
    slug,
)
from attire.data.ingest.mapping import DEFAULT_NO, DEFAULT_YES, IngestMapping, TaskMapping
from attire.data.ingest.table import SPLIT_ALIASES
from attire.data.manifest import META_COLUMNS
from attire.taxonomy import Taxonomy
from attire.taxonomy import norm_value as _key  # how Task.resolve compares values

MAPPING_NAME = "mapping.yaml"
MAX_CLASSES = 50
# (yes, no) spellings of a binary column, tried in order; 1/2 follows the Clothing Attribute
# Dataset's convention (2 = yes).
YES_NO_PAIRS = (("yes", "no"), ("y", "n"), ("true", "false"), ("t", "f"), ("1", "0"), ("2", "1"))
EXTRA_MISSING = ("?", "n/a", "unknown", "null")
_GROUP_WORDS = frozenset(
    {"id", "group", "sender", "user", "author", "owner", "uploader", "seller", "shop", "store"}
    | {"brand", "product", "sku", "session"}
)
_ID_WORDS = frozenset({"id", "key", "sku", "uid", "uuid"})
_SPLIT_NAMES = frozenset({"split", "fold", "subset", "set", "partition"})
_GENERIC_STEMS = frozenset({"labels", "label", "annotations", "data", "metadata", "train", "all"})


@dataclass
class _Column:
    name: str
    values: Counter  # non-missing value (as `Task.resolve` compares it) -> count

    spelling: dict[str, str]  # first spelling seen
    n_rows: int
    n_missing: int

    @property
    def distinct(self) -> int:
        return len(self.values)

    def yes_no(self) -> tuple[str, str] | None:
        keys = set(self.values)
        return next((p for p in YES_NO_PAIRS if keys and keys <= set(p)), None)


@dataclass
class Proposal:
    """A proposed taxonomy and mapping, the columns left out (column -> why), and where they were
    written (by `write_proposal`)."""

    taxonomy: Taxonomy
    mapping: IngestMapping
    ignored: dict[str, str]
    taxonomy_path: Path | None = None
    mapping_path: Path | None = None


def propose_mapping(table: Path) -> tuple[Taxonomy, IngestMapping]:
    """A taxonomy and a mapping (pointing to ``taxonomy.yaml`` beside it) for a label table."""
    proposal = _propose(Path(table))
    return proposal.taxonomy, proposal.mapping


def _propose(table: Path) -> Proposal:
    rows = read_table(table)
    if not rows.rows:
        raise IngestError(f"{table}: no data rows to propose a mapping from")
    default_missing = Taxonomy.model_fields["missing"].default
    missing_keys = {_key(m) for m in (*default_missing, *EXTRA_MISSING)}
    found_missing: Counter = Counter()
    columns = []
    for name in rows.columns:
        col = _Column(name, Counter(), {}, len(rows.rows), 0)
        raw_counts = Counter(cells[name] for _, cells in rows.rows)  # in order of first sight
        for raw, n in raw_counts.items():
            if raw is None or _key(raw) in missing_keys:
                col.n_missing += n
                if raw:
                    found_missing[raw] += n
                continue
            k = _key(raw)
            col.values[k] += n
            col.spelling.setdefault(k, raw)
        columns.append(col)

    image = _image_column(table, columns)
    rest = [c for c in columns if c.name != image.name]
    split = next((c for c in rest if _is_split(c)), None)
    rest = [c for c in rest if c is not split]
    yes_no = {c.name: c.yes_no() for c in rest if c.yes_no() is not None}
    id_col = next((c for c in rest if c.name not in yes_no and _is_id(c)), None)
    rest = [c for c in rest if c is not id_col]
    group = _group_column([c for c in rest if c.name not in yes_no])

    builder = _Builder()
    groups = _prefix_groups(columns, yes_no)
    done: set[str] = set()
    ignored: dict[str, str] = {}
    for col in rest:
        if col.name in done or col is group:
            continue
        members = groups.get(col.name)
        if members is not None:
            builder.multilabel(members)
            done.update(c.name for c in members)
        elif col.name in yes_no:
            builder.binary(col, yes_no[col.name])
        elif col.distinct < 2:
            ignored[col.name] = f"{col.distinct} distinct value(s)"
        elif col.distinct > MAX_CLASSES:
            ignored[col.name] = f"{col.distinct} distinct values (more than {MAX_CLASSES})"
        elif col.distinct > 2 and col.distinct == sum(col.values.values()):
            ignored[col.name] = "every value occurs once"
        else:
            builder.multiclass(col)

    if not builder.tasks:
        raise IngestError(
            f"{table}: found no label columns (yes/no columns, or columns with 2-{MAX_CLASSES} "
            "distinct values) besides the image column"
        )
    missing = list(default_missing) + [m for m, _ in found_missing.most_common()]
    tax_name = slug(table.stem if table.stem.lower() not in _GENERIC_STEMS else table.parent.name)
    taxonomy = Taxonomy.from_dict(
        {
            "name": tax_name or "proposed",
            "missing": list(dict.fromkeys(missing)),
            "tasks": builder.tasks,
        },
        f"taxonomy proposed from {table}",
    )
    mapping = IngestMapping(
        taxonomy=TAXONOMY_NAME,
        image=image.name,
        id=id_col.name if id_col else None,
        group=group.name if group else None,
        split=split.name if split else None,
        tasks=builder.mappings,
    )
    return Proposal(taxonomy, mapping.with_taxonomy(taxonomy), ignored)


def write_proposal(table: Path, out_dir: Path, force: bool = False) -> Proposal:
    """Propose, then write taxonomy.yaml and mapping.yaml into `out_dir` (no overwrite unless
    `force`)."""
    proposal = _propose(Path(table))
    taxonomy, mapping = proposal.taxonomy, proposal.mapping
    out_dir = Path(out_dir)
    tax_path, map_path = out_dir / TAXONOMY_NAME, out_dir / MAPPING_NAME
    existing = [str(p) for p in (tax_path, map_path) if p.exists()]
    if existing and not force:
        raise IngestError(f"{', '.join(existing)} already exist; pass --force to overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"name": taxonomy.name, "missing": list(taxonomy.missing), **taxonomy.to_dict()}
    tax_path.write_text(
        f"# Proposed by `attire data init` from {Path(table).name}: rename tasks and classes,\n"
        "# merge or drop classes, add aliases; `missing` lists values that mean 'not labelled'.\n"
        + yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100),
        encoding="utf-8",
    )
    header = (
        f"# Proposed by `attire data init` from {Path(table).name}: edit it, then run\n"
        f"#   attire data ingest table {table} --mapping {map_path} --out DIR\n"
        "# Tasks: `column` (one value per row; `values` maps raw -> class id, null = missing) or\n"
        "# `columns` (yes/no columns -> class: one multilabel task; `yes`/`no` list spellings).\n"
    )
    header += "".join(f"# not used: {col} ({why})\n" for col, why in proposal.ignored.items())
    map_path.write_text(mapping.to_yaml(header), encoding="utf-8")
    proposal.taxonomy_path, proposal.mapping_path = tax_path, map_path
    return proposal


class _Builder:
    """Accumulates proposed tasks (taxonomy dicts) and their mapping entries, with unique names."""

    def __init__(self) -> None:
        self.tasks: list[dict] = []
        self.mappings: dict[str, TaskMapping] = {}

    def _name(self, raw: str) -> str:
        base = slug(raw) or "task"
        name, n = base, 1
        while name in self.mappings or name in META_COLUMNS:
            n += 1
            name = f"{base}_{n}"
        return name

    def binary(self, col: _Column, pair: tuple[str, str]) -> None:
        name = self._name(col.name)
        values = {} if pair == ("yes", "no") else {pair[0]: "yes", pair[1]: "no"}
        classes = [{"id": "no", "name": "No"}, {"id": "yes", "name": "Yes"}]
        self.tasks.append({"name": name, "type": "multiclass", "classes": classes})
        self.mappings[name] = TaskMapping(column=col.name, values=values)

    def multiclass(self, col: _Column) -> None:
        name = self._name(col.name)
        ordered = sorted(col.values.items(), key=lambda kv: (-kv[1], kv[0]))
        spellings = [col.spelling[k] for k, _ in ordered]
        self.tasks.append({"name": name, "type": "multiclass", "classes": _classes(spellings)})
        self.mappings[name] = TaskMapping(column=col.name)

    def multilabel(self, members: list[_Column]) -> None:
        prefix = members[0].name.split("_", 1)[0]
        name = self._name(prefix)
        suffixes = [c.name.split("_", 1)[1] for c in members]
        classes = _classes(suffixes)
        union = set().union(*(set(c.values) for c in members))
        pair = next(p for p in YES_NO_PAIRS if union <= set(p))
        yes = DEFAULT_YES if pair[0] in DEFAULT_YES and pair[1] in DEFAULT_NO else (pair[0],)
        no = DEFAULT_NO if yes == DEFAULT_YES else (pair[1],)
        self.tasks.append({"name": name, "type": "multilabel", "classes": classes})
        self.mappings[name] = TaskMapping(
            columns={c.name: cls["id"] for c, cls in zip(members, classes, strict=True)},
            yes=yes,
            no=no,
        )


def _classes(spellings: list[str]) -> list[dict]:
    """Class dicts with slug ids; an id that would read as another class's name gets a suffix."""
    names = {_key(s) for s in spellings}
    used: set[str] = set()
    out = []
    for i, raw in enumerate(spellings, start=1):
        base = slug(raw) or f"class_{i}"
        cid, n = base, 1
        while cid in used or (_key(cid) in names and _key(cid) != _key(raw)):
            n += 1
            cid = f"{base}_{n}"
        used.add(cid)
        out.append({"id": cid, "name": raw})
    return out


def _prefix_groups(
    columns: list[_Column], yes_no: dict[str, tuple[str, str] | None]
) -> dict[str, list[_Column]]:
    """first member's name -> members, for 2+ yes/no columns `prefix_*` with one yes/no spelling."""
    by_prefix: dict[str, list[_Column]] = {}
    for c in columns:
        if c.name in yes_no and "_" in c.name.strip("_"):
            by_prefix.setdefault(c.name.split("_", 1)[0], []).append(c)
    groups = {}
    for members in by_prefix.values():
        union = set().union(*(set(c.values) for c in members))
        if len(members) >= 2 and any(union <= set(p) for p in YES_NO_PAIRS):
            groups[members[0].name] = members
    return groups


def _image_column(table: Path, columns: list[_Column]) -> _Column:
    def share(c: _Column) -> float:
        n = sum(c.values.values())
        return sum(v for k, v in c.values.items() if is_image_name(k)) / n if n else 0.0

    best = max(columns, key=share)
    if share(best) < 0.5:
        raise IngestError(
            f"{table}: no column of image paths found (values ending in .jpg, .png, ...); "
            f"columns: {', '.join(c.name for c in columns)}"
        )
    return best


def _words(name: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", name.lower())) - {""}


def _is_split(c: _Column) -> bool:
    return bool(_words(c.name) & _SPLIT_NAMES) and set(c.values) <= set(SPLIT_ALIASES)


def _is_id(c: _Column) -> bool:
    unique = c.n_missing == 0 and c.distinct == c.n_rows and c.n_rows > 1
    return unique and (bool(_words(c.name) & _ID_WORDS) or not any(" " in k for k in c.values))


def _group_column(candidates: list[_Column]) -> _Column | None:
    """A column of repeated keys: a sender/user-like name first, else the one with most values.

    A bare '..._id' name only counts with many values, so 'category_id' stays a task.
    """
    named = [
        c
        for c in candidates
        if c.distinct >= 2
        and (
            _words(c.name) & (_GROUP_WORDS - {"id"})
            or ("id" in _words(c.name) and c.distinct > MAX_CLASSES)
        )
    ]
    if named:
        return named[0]
    many = [c for c in candidates if c.distinct > MAX_CLASSES and c.distinct < c.n_rows]
    return max(many, key=lambda c: c.distinct, default=None)
