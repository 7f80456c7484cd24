"""`check_manifest`: decode every image once, then find bad files, bad labels and duplicates.

Each file is read and decoded exactly once (sha256, header, full decode, phash, colour thumbnail)
in a process pool; rows that share a path share that work. Everything after that is in memory:
unknown labels from the manifest, repeated rows, byte-identical files (same sha256) and near
duplicates (phash + colour, see duplicates.py). Duplicates form clusters (connected components);
a cluster whose members disagree on a task where two of them are labelled is rejected whole,
since nobody knows which label is right; otherwise the earliest row is kept and each later row
that duplicates a kept row is rejected.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from attire.data.manifest import UNKNOWN, Manifest
from attire.data.quality.duplicates import (
    DEFAULT_NEAR_COLOUR,
    DEFAULT_NEAR_DISTANCE,
    components,
    near_pairs,
)
from attire.data.quality.images import THUMB_SIDE, ImageFacts, inspect_image
from attire.data.quality.report import REPORT_COLUMNS, CheckResult, primary_reasons
from attire.errors import AttireError

Findings = list[list[tuple[str, str]]]
_SHOWN_CLASHES = 4  # labels named in a conflict's detail; the rest are counted
_REFRESH_S = 0.1  # progress bar redraw interval


class CheckError(AttireError):
    """A check setting out of range."""


def check_manifest(
    manifest: Manifest,
    *,
    min_size: int = 32,
    max_pixels: int = 50_000_000,
    near_distance: int = DEFAULT_NEAR_DISTANCE,
    near_colour: float = DEFAULT_NEAR_COLOUR,
    workers: int = 2,
    progress: bool = True,
) -> CheckResult:
    """Check every row of a manifest; nothing is removed (see `CheckResult.kept_manifest`).

    near_distance: max differing bits of 64 in the phash (0 turns near duplicates off);
    near_colour: max mean absolute difference (0-255) of 8x8 colour thumbnails for such a pair.
    """
    _validate(min_size, max_pixels, near_distance, near_colour, workers)
    start = time.perf_counter()
    n = len(manifest)
    paths = [os.path.normpath(os.path.abspath(p)) for p in manifest.image_paths()]
    unique = list(dict.fromkeys(paths))
    inspected = dict(
        zip(unique, _inspect_all(unique, min_size, max_pixels, workers, progress), strict=True)
    )
    facts = [inspected[p] for p in paths]

    findings: Findings = [list(f.findings) for f in facts]
    for problem in manifest.label_problems():
        findings[problem.row].append(("unknown_label", str(problem)))
    _mark_repeated_rows(manifest.df["image_id"].astype(str).tolist(), paths, findings)
    cluster, extra = _duplicates(manifest, facts, findings, near_distance, near_colour)

    primary = primary_reasons(findings)
    kept = np.array([p is None for p in primary], dtype=bool)
    sources = manifest.df["source"] if "source" in manifest.df.columns else pd.Series([None] * n)
    records = [
        (i, str(manifest.df.at[i, "image_id"]), str(manifest.df.at[i, "path"]),
         _text(sources.iloc[i]), p[0], p[1], cluster[i])
        for i, p in enumerate(primary)
        if p is not None
    ]  # fmt: skip
    report = pd.DataFrame(records, columns=list(REPORT_COLUMNS))
    settings = {
        "min_size": min_size,
        "max_pixels": max_pixels,
        "near_distance": near_distance,
        "near_colour": near_colour,
    }
    extra = {"unique_files": len(unique), "workers": workers, **extra}
    return CheckResult(
        manifest, report, kept, cluster, settings, time.perf_counter() - start, extra
    )


def _validate(
    min_size: int, max_pixels: int, near_distance: int, near_colour: float, workers: int
) -> None:
    if min_size < 1:
        raise CheckError(f"--min-size must be at least 1 pixel, got {min_size}")
    if max_pixels < 1:
        raise CheckError(f"--max-pixels must be positive, got {max_pixels}")
    if not 0 <= near_distance <= 64:
        raise CheckError(f"--near-distance must be 0 (off) to 64 bits, got {near_distance}")
    if not 0 <= near_colour <= 255:
        raise CheckError(f"--near-colour must be 0 to 255, got {near_colour}")
    if workers < 1:
        raise CheckError(f"--workers must be at least 1, got {workers}")


def _inspect_all(
    paths: Sequence[str], min_size: int, max_pixels: int, workers: int, progress: bool
) -> list[ImageFacts]:
    """inspect_image over all paths, in a process pool when workers > 1, with a progress bar.

    The bar is redrawn from this loop, not by rich's refresh thread: forking a process that
    runs threads can deadlock its children.
    """
    task = partial(inspect_image, min_size=min_size, max_pixels=max_pixels)
    columns = (
        TextColumn("decoding + hashing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=Console(stderr=True), auto_refresh=False, disable=not progress)
    with bar:
        if workers == 1 or len(paths) < 2:
            return _drain(map(task, paths), bar, len(paths))
        chunk = max(1, min(64, len(paths) // (workers * 8)))
        with ProcessPoolExecutor(max_workers=min(workers, len(paths))) as pool:
            return _drain(pool.map(task, paths, chunksize=chunk), bar, len(paths))


def _drain(results: Iterable[ImageFacts], bar: Progress, total: int) -> list[ImageFacts]:
    job = bar.add_task("decode", total=total)
    out, drawn = [], 0.0
    for facts in results:
        out.append(facts)
        bar.advance(job)
        if time.monotonic() - drawn > _REFRESH_S or len(out) == total:
            bar.refresh()
            drawn = time.monotonic()
    return out


def _mark_repeated_rows(image_ids: list[str], paths: list[str], findings: Findings) -> None:
    """A row whose image_id or file already appeared in an earlier row."""
    first_id: dict[str, int] = {}
    first_path: dict[str, int] = {}
    for i, (image_id, path) in enumerate(zip(image_ids, paths, strict=True)):
        if image_id in first_id:
            findings[i].append(
                ("duplicate_row", f"image_id {image_id!r} repeats row {first_id[image_id]}")
            )
        elif path in first_path:
            findings[i].append(("duplicate_row", f"same file as row {first_path[path]}"))
        first_id.setdefault(image_id, i)
        first_path.setdefault(path, i)


def _duplicates(
    manifest: Manifest,
    facts: list[ImageFacts],
    findings: Findings,
    near_distance: int,
    near_colour: float,
) -> tuple[list[str | None], dict[str, object]]:
    """Cluster byte-identical and near-identical rows, reject conflicts and later copies.

    Only rows with a good image and good labels take part (a repeated row does, so that a file
    listed twice with two different labels is caught as a conflict). Returns the cluster id of
    each row (None outside clusters of two or more rows) and counts for the summary.
    """
    n = len(facts)
    rows = np.array(
        [i for i in range(n) if facts[i].phash is not None
         and all(r == "duplicate_row" for r, _ in findings[i])],
        dtype=np.int64,
    )  # fmt: skip
    cluster: list[str | None] = [None] * n
    if len(rows) == 0:
        return cluster, {"duplicate_clusters": 0, "conflicting_clusters": 0}
    # One node per distinct file content; exact copies are the rows that share a node.
    node_of_row, shas = pd.factorize(pd.Series([facts[i].sha256 for i in rows]))
    first_row = pd.Series(rows).groupby(node_of_row).min().to_numpy()
    hashes = np.array([facts[i].phash for i in first_row], dtype=np.uint64)
    thumbs = np.frombuffer(b"".join(facts[i].thumb for i in first_row), np.uint8)
    pairs = near_pairs(
        hashes, thumbs.reshape(len(shas), 3 * THUMB_SIDE**2), near_distance, near_colour
    )
    comp_of_node = components(len(shas), pairs.i, pairs.j)
    near: dict[int, list[tuple[int, int, float]]] = defaultdict(list)
    for a, b, d, c in zip(
        pairs.i.tolist(),
        pairs.j.tolist(),
        pairs.distance.tolist(),
        pairs.colour.tolist(),
        strict=True,
    ):
        near[a].append((b, d, c))
        near[b].append((a, d, c))

    members: dict[int, list[int]] = defaultdict(list)  # component -> rows, in row order
    node = dict(zip(rows.tolist(), node_of_row.tolist(), strict=True))
    for row, file_node in node.items():
        members[int(comp_of_node[file_node])].append(row)
    multi = sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])
    conflicting = 0
    for k, group in enumerate(multi, start=1):
        name = f"dup{k}"
        for row in group:
            cluster[row] = name
        disagreement = _disagreement(manifest, group)
        if disagreement:
            conflicting += 1
            for row in group:
                findings[row].append(("conflicting_duplicate", f"{name}: {disagreement}"))
        else:
            _reject_later_copies(group, node, near, findings, facts)
    return cluster, {"duplicate_clusters": len(multi), "conflicting_clusters": conflicting}


def _disagreement(manifest: Manifest, rows: list[int]) -> str:
    """'' when the rows agree wherever two of them are labelled; else which values clash, where."""
    values: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for label, value in _known_labels(manifest, row).items():
            values[label][value].append(row)
    clashes = [
        f"{label} "
        + " vs ".join(f"{v} (row{'s' if len(r) > 1 else ''} {', '.join(map(str, r))})"
                      for v, r in by_value.items())
        for label, by_value in values.items()
        if len(by_value) > 1
    ]  # fmt: skip
    if len(clashes) > _SHOWN_CLASHES:
        more = len(clashes) - _SHOWN_CLASHES
        clashes = [*clashes[:_SHOWN_CLASHES], f"and {more} more label{'s' if more > 1 else ''}"]
    return "; ".join(clashes)


def _known_labels(manifest: Manifest, row: int) -> dict[str, str]:
    """A row's known hard labels: task -> class id; for multilabel, `task.class` -> yes/no.

    Multilabel entries listed in `<task>__unknown` are not known, so they never clash.
    """
    df = manifest.df
    out: dict[str, str] = {}
    for task in manifest.taxonomy.tasks:
        value = df.at[row, task.name]
        if not _present(value):
            continue
        if not task.multilabel:
            out[task.name] = str(value)
            continue
        unknown_col = task.name + UNKNOWN
        unknown = df.at[row, unknown_col] if unknown_col in df.columns else None
        unknown = set(unknown) if _present(unknown) else set()
        present = set(value)
        for cid in task.class_ids:
            if cid not in unknown:
                out[f"{task.name}.{cid}"] = "yes" if cid in present else "no"
    return out


def _reject_later_copies(
    rows: list[int],
    node: dict[int, int],
    near: dict[int, list[tuple[int, int, float]]],
    findings: Findings,
    facts: list[ImageFacts],
) -> None:
    """Keep the earliest clean row of each file unless an earlier kept file is near it."""
    clean_by_node: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        if not findings[row]:
            clean_by_node[node[row]].append(row)
    kept_row_of_node: dict[int, int] = {}
    for file_node, clean in sorted(clean_by_node.items(), key=lambda kv: kv[1][0]):
        close = [
            (kept_row_of_node[other], d, c)
            for other, d, c in near.get(file_node, [])
            if other in kept_row_of_node
        ]
        if close:
            keeper, d, c = min(close)
            detail = (
                f"near duplicate of row {keeper} (phash distance {d}, colour difference {c:.1f})"
            )
            for row in clean:
                findings[row].append(("near_duplicate", detail))
            continue
        kept_row_of_node[file_node] = clean[0]
        for row in clean[1:]:
            sha = facts[row].sha256 or ""
            findings[row].append(
                ("exact_duplicate", f"byte-identical to row {clean[0]} (sha256 {sha[:12]}...)")
            )


def _present(value: object) -> bool:
    """Not null: None, NaN and pd.NA mean 'not labelled'; a list (even empty) is a label."""
    if isinstance(value, list | tuple | np.ndarray):
        return True
    return value is not None and not pd.isna(value)


def _text(value: object) -> str:
    return str(value) if _present(value) else ""
