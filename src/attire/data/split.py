"""Train/val/test splits that never split a group and keep every task's label mix.

Photos of one sender (or near-duplicates of one photo) share background and lighting; a split
that puts them on both sides measures memory, not generalisation. So rows are first joined into
groups (connected components over the ``group`` and ``dup_cluster`` columns), and whole groups are
assigned to splits.

Groups differ in size by orders of magnitude (one clothing-dataset sender has 646 photos, many
have 1), so each group is weighted by its row and label counts. The package
iterative-stratification treats every sample as one unit with 0/1 labels; run on groups it gave
the train split 63% of the rows instead of 80% on clothing-dataset. Here the same algorithm
(Sechidis et al. 2011: rarest label first, each group to the split that still needs it most) is
run with counts, then a local search moves or swaps groups while that brings every split's class
shares and row share closer to the whole.

A group larger than a split's remaining room is never broken: it goes to the split whose unmet
demand absorbs most of its rows and labels (normally train). With a few very large groups the
achieved fractions therefore drift from the asked ones, and a small split can even end up empty;
``split_report`` shows the achieved shares and ``attire data split`` warns about such drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix, csr_matrix, hstack
from scipy.sparse.csgraph import connected_components

from attire.data.manifest import SPLITS, Manifest
from attire.data.stats import class_indicators
from attire.errors import AttireError

DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
DEFAULT_GROUP_COLUMNS = ("group", "dup_cluster")
_TOL = 1e-9
_SWAP_CANDIDATES = 256
_MAX_MOVES = 5000


class SplitError(AttireError):
    """Split fractions or options that cannot be honoured."""


@dataclass(frozen=True)
class SplitSummary:
    """One split of a manifest: its size, its groups and how far its label mix drifts."""

    split: str
    rows: int
    share: float
    groups: int
    shared_groups: int
    gaps: dict[str, float | None]


def check_fractions(fractions: Sequence[float]) -> np.ndarray:
    """Three non-negative fractions (train, val, test) summing to 1, train above 0."""
    fr = np.asarray(list(fractions), float)
    if fr.shape != (len(SPLITS),):
        raise SplitError(f"give {len(SPLITS)} fractions (train, val, test), got {list(fractions)}")
    if (fr < 0).any() or not np.isfinite(fr).all():
        raise SplitError(f"split fractions must be >= 0, got {list(fractions)}")
    if abs(fr.sum() - 1) > 1e-3:
        raise SplitError(f"split fractions must sum to 1, got {list(fractions)} = {fr.sum():g}")
    if fr[0] == 0:
        raise SplitError("the train fraction must be above 0")
    return fr / fr.sum()


def group_components(
    df: pd.DataFrame, group_columns: Sequence[str] = DEFAULT_GROUP_COLUMNS
) -> np.ndarray:
    """Group id per row (0..G-1, in order of first row): rows sharing a value in any of the
    group columns are joined, transitively. Rows without any group value are groups of one.
    Columns the frame lacks are skipped."""
    n = len(df)
    rows, nodes, offset = [], [], n
    for col in group_columns:
        if col not in df.columns:
            continue
        values = df[col].where(df[col].astype(str).str.len() > 0)  # "" means no group
        codes, uniques = pd.factorize(values)
        keep = codes >= 0
        rows.append(np.flatnonzero(keep))
        nodes.append(codes[keep] + offset)
        offset += len(uniques)
    if not rows:
        return np.arange(n)
    r, c = np.concatenate(rows), np.concatenate(nodes)
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(offset, offset))
    _, labels = connected_components(graph, directed=False)
    return pd.factorize(labels[:n])[0]


def split_manifest(
    manifest: Manifest,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    tasks: Sequence[str] | None = None,
    seed: int = 0,
    group_columns: Sequence[str] = DEFAULT_GROUP_COLUMNS,
) -> Manifest:
    """The manifest with a ``split`` column (train/val/test), stratified over ``tasks`` (all by
    default) at the group level. The same input and seed give the same split."""
    fr = check_fractions(fractions)
    names = _task_names(manifest, tasks)
    df = manifest.df.copy()
    if len(df) == 0:
        df["split"] = pd.Series(dtype=object)
        return manifest.with_df(df)
    comp = group_components(df, group_columns)
    n_groups = int(comp.max()) + 1
    members = csr_matrix((np.ones(len(comp)), (comp, np.arange(len(comp)))), (n_groups, len(comp)))
    counts, weights = _label_counts(manifest, names)
    group_counts = (members @ counts).toarray()
    sizes = np.bincount(comp, minlength=n_groups).astype(float)
    rng = np.random.default_rng(seed)
    active = np.flatnonzero(fr > 0)
    assign = _stratify(group_counts, sizes, fr[active], rng)
    assign = _refine(assign, group_counts * weights, sizes / sizes.sum(), fr[active])
    df["split"] = np.asarray(SPLITS, dtype=object)[active[assign[comp]]]
    return manifest.with_df(df)


def _task_names(manifest: Manifest, tasks: Sequence[str] | None) -> list[str]:
    if tasks is None:
        return manifest.taxonomy.task_names
    return [manifest.taxonomy.task(t).name for t in tasks]  # raises on an unknown task


def _label_counts(manifest: Manifest, tasks: list[str]) -> tuple[csr_matrix, np.ndarray]:
    """Row x class indicator matrix over all tasks, and per-column weights 1 / labelled rows of
    the column's task, so that each task counts by class *share*, whatever its size."""
    blocks, weights = [], []
    for task in tasks:
        ind = class_indicators(manifest, task)
        labelled = int(ind.any(1).sum())
        if labelled == 0:
            continue
        used = ind.any(0)
        blocks.append(csr_matrix(ind[:, used].astype(float)))
        weights.append(np.full(int(used.sum()), 1.0 / labelled))
    if not blocks:
        return csr_matrix((len(manifest), 0)), np.zeros(0)
    return hstack(blocks, format="csr"), np.concatenate(weights)


def _stratify(
    counts: np.ndarray, sizes: np.ndarray, fr: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Iterative stratification with weighted groups: labels in order of fewest remaining
    groups; each group to the split whose unmet demand (per label and in rows) absorbs the
    largest part of it; ties to the split that needs the current label most, then most rows."""
    demand_of = np.concatenate([counts, sizes[:, None]], 1)
    demand = np.outer(fr, demand_of.sum(0))
    present = counts > 0
    pending = present.sum(0)
    todo = np.ones(len(sizes), bool)
    assign = np.zeros(len(sizes), int)
    rank = np.empty(len(sizes), int)
    rank[rng.permutation(len(sizes))] = np.arange(len(sizes))

    def place(g: int, label: int) -> None:
        z = demand_of[g]
        absorbed = np.minimum(z, np.clip(demand, 0, None)).sum(1)
        best = np.flatnonzero(absorbed >= absorbed.max() - _TOL)
        for col in (label, -1):
            if len(best) > 1:
                need = demand[best, col]
                best = best[need >= need.max() - _TOL]
        s = best[rng.integers(len(best))] if len(best) > 1 else best[0]
        assign[g] = s
        demand[s] -= z
        todo[g] = False
        pending[present[g]] -= 1

    while pending.any():
        fewest = pending[pending > 0].min()
        tied = np.flatnonzero(pending == fewest)
        label = tied[rng.integers(len(tied))]
        group = np.flatnonzero(todo & present[:, label])
        for g in group[np.lexsort((rank[group], -counts[group, label]))]:
            place(g, label)
    rest = np.flatnonzero(todo)
    for g in rest[np.lexsort((rank[rest], -sizes[rest]))]:
        place(g, -1)
    return assign


def _refine(
    assign: np.ndarray, weighted: np.ndarray, row_share: np.ndarray, fr: np.ndarray
) -> np.ndarray:
    """Best-improvement local search over single-group moves and pairwise swaps.

    Minimises, over splits s and columns c (every class of every task, plus rows),
    sum ((A[s, c] - fr[s] T[c]) / fr[s])^2 with A the split's weighted sums and T the whole's:
    the squared drift of each split's class shares and row share from the whole. Stops when no
    move helps, or after _MAX_MOVES steps (a safety net for very many small groups, where the
    first pass is already close).
    """
    assign = assign.copy()
    w = csr_matrix(np.concatenate([weighted, row_share[:, None]], 1))
    sq = np.asarray(w.multiply(w).sum(1)).ravel()
    total = np.asarray(w.sum(0)).ravel()
    n_splits = len(fr)
    drift = np.stack(
        [
            (np.asarray(w[assign == s].sum(0)).ravel() - fr[s] * total) / fr[s]
            for s in range(n_splits)
        ]
    )
    proj = w @ drift.T
    for _ in range(_MAX_MOVES):
        moves = {}
        best_gain, best = -_TOL, None
        for a in range(n_splits):
            idx = np.flatnonzero(assign == a)
            leave = -2 * proj[idx, a] / fr[a] + sq[idx] / fr[a] ** 2
            for b in range(n_splits):
                if a == b or len(idx) == 0:
                    continue
                delta = leave + 2 * proj[idx, b] / fr[b] + sq[idx] / fr[b] ** 2
                moves[a, b] = idx, delta
                k = int(np.argmin(delta))
                if delta[k] < best_gain:
                    best_gain, best = delta[k], ((idx[k], b),)
        for a in range(n_splits):
            for b in range(a + 1, n_splits):
                if (a, b) not in moves or (b, a) not in moves:
                    continue
                (ia, da), (ib, db) = moves[a, b], moves[b, a]
                ka, kb = _smallest(da, _SWAP_CANDIDATES), _smallest(db, _SWAP_CANDIDATES)
                cross = (w[ia[ka]] @ w[ib[kb]].T).toarray() * 2 * (1 / fr[a] ** 2 + 1 / fr[b] ** 2)
                delta = da[ka][:, None] + db[kb][None, :] - cross
                i, j = np.unravel_index(int(np.argmin(delta)), delta.shape)
                if delta[i, j] < best_gain:
                    best_gain, best = delta[i, j], ((ia[ka[i]], b), (ib[kb[j]], a))
        if best is None:
            break
        changed = set()
        for g, b in best:
            a = assign[g]
            assign[g] = b
            row = w[g].toarray().ravel()
            drift[a] -= row / fr[a]
            drift[b] += row / fr[b]
            changed |= {a, b}
        cols = sorted(changed)
        proj[:, cols] = w @ drift[cols].T
    return assign


def _smallest(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest values, in index order (deterministic, O(n))."""
    if len(values) <= k:
        return np.arange(len(values))
    return np.sort(np.argpartition(values, k)[:k])


# -- report -----------------------------------------------------------------------------------


def split_report(
    manifest: Manifest,
    *,
    tasks: Sequence[str] | None = None,
    group_columns: Sequence[str] = DEFAULT_GROUP_COLUMNS,
) -> list[SplitSummary]:
    """Per split (in train/val/test order, then any other values): rows, share, groups, groups
    also found in another split, and per task the largest gap between a class's share in the
    split and in the whole manifest, in percentage points (None: no labelled rows there)."""
    if "split" not in manifest.df.columns:
        raise SplitError("manifest has no 'split' column: run `attire data split` first")
    names = _task_names(manifest, tasks)
    split = manifest.df["split"].astype(object).where(manifest.df["split"].notna(), None)
    found = [s for s in SPLITS if (split == s).any()]
    found += sorted({str(s) for s in split.dropna()} - set(SPLITS))
    comp = group_components(manifest.df, group_columns)
    splits_per_group = pd.Series(split.to_numpy()).groupby(comp).nunique()
    leaky = set(splits_per_group.index[splits_per_group.to_numpy() > 1])
    indicators = {t: class_indicators(manifest, t) for t in names}
    whole = {t: _shares(ind) for t, ind in indicators.items()}
    out = []
    for name in found:
        mask = (split == name).to_numpy()
        groups = set(comp[mask].tolist())
        gaps: dict[str, float | None] = {}
        for t, ind in indicators.items():
            part = _shares(ind[mask])
            gaps[t] = None if part is None or whole[t] is None else 100 * _max_abs(part - whole[t])
        out.append(
            SplitSummary(
                split=name,
                rows=int(mask.sum()),
                share=float(mask.mean()),
                groups=len(groups),
                shared_groups=len(groups & leaky),
                gaps=gaps,
            )
        )
    return out


def _shares(ind: np.ndarray) -> np.ndarray | None:
    """Per class: share of labelled rows that carry it (None when no row is labelled)."""
    labelled = ind.any(1).sum()
    return ind.sum(0) / labelled if labelled else None


def _max_abs(x: np.ndarray) -> float:
    return float(np.abs(x).max()) if len(x) else 0.0
