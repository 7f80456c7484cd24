"""The outcome of a check: one primary reason per rejected row, counts that reconcile, outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from attire.data.manifest import Manifest

# Reasons in priority order: a row with several problems is counted under the first that applies.
# File problems come first, most basic first (nothing else can be known about a missing file);
# then labels; then duplicate relations, conflicts first because they reject the whole cluster,
# including the row that would otherwise have been kept.
REASONS: tuple[str, ...] = (
    "missing_file",
    "empty_file",
    "unreadable",
    "decompression_bomb",
    "truncated",
    "too_small",
    "unknown_label",
    "conflicting_duplicate",
    "duplicate_row",
    "exact_duplicate",
    "near_duplicate",
)
REPORT_COLUMNS = ("row", "image_id", "path", "source", "reason", "detail", "cluster")
PRIORITY = {r: k for k, r in enumerate(REASONS)}


@dataclass
class CheckResult:
    """What `check_manifest` found; `report` lists rejected rows (row = 0-based manifest row)."""

    manifest: Manifest
    report: pd.DataFrame
    kept: np.ndarray  # bool per manifest row
    cluster: list[str | None]  # duplicate-cluster id per manifest row
    settings: dict[str, object]
    elapsed_s: float
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Rejected rows per primary reason, every reason listed (0 when none)."""
        found = self.report["reason"].value_counts()
        return {r: int(found.get(r, 0)) for r in REASONS}

    @property
    def rows_in(self) -> int:
        return len(self.manifest)

    @property
    def n_kept(self) -> int:
        return int(self.kept.sum())

    def kept_manifest(self) -> Manifest:
        """The kept rows plus `dup_cluster`: kept rows of one duplicate cluster share an id.

        The split stage groups by it, so that near-identical photos never straddle train/test.
        """
        df = self.manifest.df.copy()
        df["dup_cluster"] = pd.Series(self.cluster, index=df.index, dtype=object)
        return self.manifest.with_df(df[self.kept])

    def summary(self) -> dict[str, object]:
        return {
            "rows_in": self.rows_in,
            "kept": self.n_kept,
            "rejected": self.rows_in - self.n_kept,
            "counts": self.counts,
            "reason_priority": list(REASONS),
            "thresholds": self.settings,
            **self.extra,
            "elapsed_seconds": round(self.elapsed_s, 3),
        }

    def write(self, out_dir: str | Path, drop: bool = False) -> list[Path]:
        """Write report.csv and summary.json, and with `drop` the cleaned manifest.parquet."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "report.csv", out / "summary.json"]
        self.report.to_csv(written[0], index=False)
        written[1].write_text(json.dumps(self.summary(), indent=2) + "\n", encoding="utf-8")
        if drop:
            written.append(self.kept_manifest().write(out / "manifest.parquet"))
        return written


def primary_reasons(findings: list[list[tuple[str, str]]]) -> list[tuple[str, str] | None]:
    """Per row, the highest-priority finding with the others appended to its detail."""
    out: list[tuple[str, str] | None] = []
    for row in findings:
        if not row:
            out.append(None)
            continue
        ordered = sorted(row, key=lambda f: PRIORITY[f[0]])  # stable: keeps detail order
        reason, detail = ordered[0]
        others = [f"{r}: {d}" for r, d in ordered[1:]]
        out.append((reason, "; also ".join([detail, *others])))
    return out
