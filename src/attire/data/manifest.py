"""The manifest: one Parquet table per dataset, the single format every stage reads and writes.

Columns (see docs/MANIFEST.md):
- ``image_id`` (string, unique) and ``path`` (string, relative to the manifest's folder or absolute)
- one column per task, named as the task: a class id (multiclass) or a list of class ids
  (multilabel; ``[]`` = labelled, nothing present); null = not labelled for this task
- optional ``<task>__soft``: list of per-class probabilities for "maybe" answers
- optional ``<task>__unknown`` (multilabel): class ids whose presence nobody knows
- optional ``<task>__true``: the clean label where ``<task>`` holds a deliberately noisy one
- optional ``group`` (images that must stay in one split), ``split`` (train/val/test),
  ``source`` (where the row came from, e.g. ``labels.csv:17``)

The taxonomy travels inside the Parquet metadata, so a manifest is self-describing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from attire import __version__
from attire.errors import AttireError
from attire.taxonomy import Taxonomy, TaxonomyError, load_taxonomy

SOFT, UNKNOWN, TRUE = "__soft", "__unknown", "__true"
META_COLUMNS = ("image_id", "path", "group", "split", "source")
SPLITS = ("train", "val", "test")
_META_KEY = b"attire"


class ManifestError(AttireError):
    """A manifest that cannot be read or does not match its taxonomy."""


@dataclass(frozen=True)
class LabelProblem:
    """A label value in a manifest that its taxonomy does not know."""

    row: int
    image_id: str
    source: str
    column: str
    value: str

    def __str__(self) -> str:
        where = self.source or f"row {self.row}"
        return f"{where} ({self.image_id}): column '{self.column}' has unknown value {self.value!r}"


class Manifest:
    """A dataset: rows (a DataFrame), the taxonomy its labels use, the folder paths start from."""

    def __init__(self, df: pd.DataFrame, taxonomy: Taxonomy, root: str | Path = "."):
        missing = [c for c in ("image_id", "path") if c not in df.columns]
        if missing:
            raise ManifestError(f"manifest lacks required columns {missing}")
        self.df = df.reset_index(drop=True)
        self.taxonomy = taxonomy
        self.root = Path(root)
        for task in taxonomy.tasks:
            if task.name not in self.df.columns:
                self.df[task.name] = None

    def __len__(self) -> int:
        return len(self.df)

    def __repr__(self) -> str:
        return f"Manifest({len(self)} rows, {len(self.taxonomy.tasks)} tasks, root={self.root})"

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_records(
        cls, records: Iterable[dict], taxonomy: Taxonomy, root: str | Path = "."
    ) -> Manifest:
        rows = list(records)
        columns = list(META_COLUMNS[:2]) + [t.name for t in taxonomy.tasks]
        df = pd.DataFrame(rows, columns=None if rows else columns)
        return cls(df, taxonomy, root)

    def with_df(self, df: pd.DataFrame) -> Manifest:
        """A manifest over other rows (a filter or a split) with the same taxonomy and root."""
        return Manifest(df, self.taxonomy, self.root)

    # -- files --------------------------------------------------------------------------------

    @classmethod
    def read(cls, path: str | Path, taxonomy: Taxonomy | str | Path | None = None) -> Manifest:
        """Read a manifest; its own embedded taxonomy is used unless one is given."""
        path = Path(path)
        if not path.exists():
            raise ManifestError(f"{path}: manifest not found")
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise ManifestError(f"{path}: not a Parquet manifest ({e})") from None
        meta = json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}"))
        if taxonomy is None:
            if "taxonomy" in meta:
                tax = Taxonomy.from_dict(meta["taxonomy"], f"{path} (embedded taxonomy)")
            elif (path.parent / "taxonomy.yaml").exists():
                tax = load_taxonomy(path.parent / "taxonomy.yaml")
            else:
                raise ManifestError(f"{path}: no embedded taxonomy; pass one with --taxonomy")
        else:
            tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
        df = table.to_pandas()
        for col in df.columns:
            if df[col].dtype == object:
                df[col] = df[col].map(_from_arrow)
            elif pd.api.types.is_string_dtype(df[col]):
                # missing labels are None everywhere, as in manifests built in memory
                df[col] = df[col].astype(object).where(df[col].notna(), None)
        return cls(df, tax, path.parent)

    def write(self, path: str | Path) -> Path:
        """Write atomically; image paths are stored relative to the manifest's folder (absolute
        only on another Windows drive)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        df = self.df.copy()
        dest, root = os.path.abspath(path.parent), os.path.abspath(self.root)
        df["path"] = [_portable_path(str(p), root, dest) for p in df["path"]]
        table = pa.Table.from_pandas(df, schema=self._schema(df), preserve_index=False)
        meta = {"version": __version__, "taxonomy": self.taxonomy.to_dict()}
        table = table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        return path

    def _schema(self, df: pd.DataFrame) -> pa.Schema:
        fields = []
        for col in df.columns:
            base, _, suffix = col.partition("__")
            task = self._task_or_none(base)
            if task is not None and suffix in ("", "true"):
                t = pa.list_(pa.string()) if task.multilabel else pa.string()
            elif task is not None and suffix == "unknown":
                t = pa.list_(pa.string())
            elif task is not None and suffix == "soft":
                t = pa.list_(pa.float32())
            elif col in ("image_id", "path", "group", "split", "source"):
                t = pa.string()
            else:
                t = pa.Schema.from_pandas(df[[col]], preserve_index=False).field(col).type
            fields.append(pa.field(col, t))
        return pa.schema(fields)

    def _task_or_none(self, name: str):
        try:
            return self.taxonomy.task(name)
        except TaxonomyError:
            return None

    # -- access -------------------------------------------------------------------------------

    def image_path(self, i: int) -> Path:
        """Absolute path of row i's image."""
        return self.root / str(self.df.at[i, "path"])

    def image_paths(self) -> list[Path]:
        return [self.root / str(p) for p in self.df["path"]]

    def split(self, name: str) -> Manifest:
        if "split" not in self.df.columns:
            raise ManifestError("manifest has no 'split' column: run `attire data split` first")
        return self.with_df(self.df[self.df["split"] == name])

    def labelled(self, task: str) -> np.ndarray:
        """Boolean mask of rows that carry a label (hard or soft) for a task."""
        hard = self.df[task].map(_is_present).to_numpy(bool)
        soft_col = task + SOFT
        if soft_col in self.df.columns:
            hard = hard | self.df[soft_col].map(_is_present).to_numpy(bool)
        return hard

    def encode(self, task: str) -> np.ndarray:
        """Integer targets: multiclass -> (N,) with -1 = missing; multilabel -> (N, C) of 0/1/-1.

        In multilabel targets -1 marks an unknown entry (whole row unlabelled, or listed in
        ``<task>__unknown``); losses mask those entries.
        """
        t = self.taxonomy.task(task)
        values = self.df[task].tolist()
        if not t.multilabel:
            return np.array([-1 if not _is_present(v) else t.index(v) for v in values], np.int64)
        out = np.full((len(values), t.num_classes), -1, np.int64)
        unknown = self.df[task + UNKNOWN].tolist() if task + UNKNOWN in self.df else None
        for i, v in enumerate(values):
            if v is None or (isinstance(v, float) and np.isnan(v)):
                continue
            out[i] = 0
            for cid in v:
                out[i, t.index(cid)] = 1
            for cid in unknown[i] if unknown is not None and unknown[i] is not None else []:
                out[i, t.index(cid)] = -1
        return out

    def soft_targets(self, task: str) -> np.ndarray | None:
        """(N, C) float32 soft targets with NaN rows where none was given, or None."""
        col = task + SOFT
        if col not in self.df.columns:
            return None
        n = self.taxonomy.task(task).num_classes
        out = np.full((len(self.df), n), np.nan, np.float32)
        for i, v in enumerate(self.df[col].tolist()):
            if _is_present(v):
                out[i] = np.asarray(v, np.float32)
        return out

    def label_problems(self) -> list[LabelProblem]:
        """Every label value in a task column that the taxonomy does not know."""
        problems = []
        sources = self.df["source"] if "source" in self.df.columns else None
        for col in self.df.columns:
            base, _, suffix = col.partition("__")
            task = self._task_or_none(base)
            if task is None or suffix not in ("", "true", "unknown"):
                continue
            known = set(task.class_ids)
            for i, v in enumerate(self.df[col].tolist()):
                if not _is_present(v):
                    continue
                vals = [v] if isinstance(v, str) else list(v)
                if suffix == "" and not task.multilabel and not isinstance(v, str):
                    vals = [repr(v)]
                for x in vals:
                    if x not in known:
                        src = "" if sources is None or not _is_present(sources[i]) else sources[i]
                        problems.append(
                            LabelProblem(i, str(self.df.at[i, "image_id"]), src, col, str(x))
                        )
        return problems

    def task_labels(self, i: int) -> dict[str, object]:
        """Row i's labels as a dict task -> class id / sorted tuple of ids (None if missing)."""
        out: dict[str, object] = {}
        for t in self.taxonomy.tasks:
            v = self.df.at[i, t.name]
            if not _is_present(v):
                out[t.name] = None
            else:
                out[t.name] = tuple(sorted(v)) if t.multilabel else v
        return out


def _is_present(v: object) -> bool:
    if v is None:
        return False
    if isinstance(v, float):
        return not np.isnan(v)
    return v is not pd.NA


def _from_arrow(v: object) -> object:
    """Arrow lists come back as numpy arrays; manifests use plain lists."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _portable_path(p: str, root: str, dest: str) -> str:
    """Image path `p` (relative to the absolute folder `root`, or absolute) relative to the
    absolute folder `dest`, with forward slashes."""
    # written beside its images (the usual case) and a plain relative path: no drive, no root
    if (
        dest == root
        and not os.path.isabs(p)
        and not os.path.splitdrive(p)[0]
        and p[:1] not in "/\\"
    ):
        rel = os.path.normpath(p)  # what relpath of the abspath gives, at 1/25 of its cost
        if not rel.startswith(".."):
            return rel.replace(os.sep, "/")
    # abspath, not resolve(): no filesystem call per row (185k rows took 20 s with resolve)
    full = os.path.abspath(os.path.join(root, p))
    try:
        return Path(os.path.relpath(full, dest)).as_posix()
    except ValueError:  # another drive on Windows
        return full
