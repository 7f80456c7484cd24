"""The long tail of each task: class counts, imbalance, missing labels and shot groups.

Shot groups (many / medium / few training images per class) are how long-tailed results are
reported, so ``shot_groups`` is the one definition evaluation and training reuse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from rich.progress import track

from attire.data.manifest import Manifest
from attire.errors import AttireError

ShotGroup = Literal["many", "medium", "few"]
SHOT_GROUPS: tuple[ShotGroup, ...] = ("many", "medium", "few")
SHOT_COLOURS = {"many": "#2b6cb0", "medium": "#dd8a2c", "few": "#c53030"}


class StatsError(AttireError):
    """Thresholds or a split selection that cannot describe the manifest."""


def shot_groups(
    counts: Mapping[str, int], *, many: int = 100, few: int = 20
) -> dict[str, ShotGroup]:
    """Class id -> "many" (count > many), "few" (count < few) or "medium" (few..many inclusive).

    Counts should be training-image counts: a class is "few-shot" because of what the model saw.
    """
    check_thresholds(many=many, few=few)
    return {
        cid: "many" if n > many else "few" if n < few else "medium" for cid, n in counts.items()
    }


def check_thresholds(*, many: int, few: int) -> None:
    if few < 0 or many < 0:
        raise StatsError(f"shot thresholds must be >= 0 (got many={many}, few={few})")
    if few > many:
        raise StatsError(f"--few ({few}) must not exceed --many ({many})")


def class_indicators(manifest: Manifest, task: str) -> np.ndarray:
    """(rows, classes) bool matrix of hard labels: one-hot (multiclass) or present classes.

    Missing labels give an all-false row; values the taxonomy does not know count nowhere
    (``attire data check`` reports them) so that one bad cell never stops a whole run.
    """
    t = manifest.taxonomy.task(task)
    index = {cid: i for i, cid in enumerate(t.class_ids)}
    out = np.zeros((len(manifest), t.num_classes), bool)
    for row, value in enumerate(manifest.df[task].tolist()):
        if isinstance(value, str):
            value = [value]
        elif not isinstance(value, list | tuple | np.ndarray):
            continue  # None / NaN: not labelled
        for cid in value:
            j = index.get(cid)
            if j is not None:
                out[row, j] = True
    return out


@dataclass(frozen=True)
class TaskStats:
    """Counts of one task over the rows counted (the train split when the manifest has one)."""

    task: str
    type: str
    rows: int
    labelled: int
    counts: dict[str, int]
    names: dict[str, str]
    shot_groups: dict[str, ShotGroup]
    split: str | None
    unknown_values: int = 0
    many: int = 100
    few: int = 20
    group_sizes: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        sizes = {g: sum(1 for v in self.shot_groups.values() if v == g) for g in SHOT_GROUPS}
        object.__setattr__(self, "group_sizes", sizes)

    @property
    def missing_share(self) -> float:
        """Share of counted rows without a label for this task (0 when no rows are counted)."""
        return 1.0 - self.labelled / self.rows if self.rows else 0.0

    @property
    def zero_classes(self) -> int:
        return sum(1 for n in self.counts.values() if n == 0)

    @property
    def imbalance_ratio(self) -> float | None:
        """Largest / smallest non-zero class count; None when no class has an example."""
        nonzero = [n for n in self.counts.values() if n > 0]
        return max(nonzero) / min(nonzero) if nonzero else None

    @property
    def scope(self) -> str:
        return f"{self.split} split" if self.split else "all rows"

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "type": self.type,
            "counted_on": self.scope,
            "rows": self.rows,
            "labelled": self.labelled,
            "missing_share": self.missing_share,
            "unknown_values": self.unknown_values,
            "num_classes": len(self.counts),
            "zero_classes": self.zero_classes,
            "imbalance_ratio": self.imbalance_ratio,
            "thresholds": {"many": self.many, "few": self.few},
            "shot_group_sizes": self.group_sizes,
            "classes": [
                {"id": c, "name": self.names[c], "count": n, "shot_group": self.shot_groups[c]}
                for c, n in self.counts.items()
            ],
        }


def counted_rows(manifest: Manifest, split: str | None) -> tuple[Manifest, str | None]:
    """The rows whose labels count: one split when asked for and present, else all rows."""
    if split is None or "split" not in manifest.df.columns:
        return manifest, None
    mask = manifest.df["split"] == split
    if not mask.any():
        found = sorted(str(v) for v in manifest.df["split"].dropna().unique())
        raise StatsError(f"manifest has a 'split' column but no '{split}' rows (found: {found})")
    return manifest.with_df(manifest.df[mask]), split


def task_stats(
    manifest: Manifest, *, many: int = 100, few: int = 20, split: str | None = "train"
) -> list[TaskStats]:
    """Per task, in taxonomy order: class counts (zeros included) and the derived figures."""
    check_thresholds(many=many, few=few)
    rows, used = counted_rows(manifest, split)
    unknown: dict[str, int] = {}
    for problem in rows.label_problems():
        unknown[problem.column] = unknown.get(problem.column, 0) + 1
    out = []
    for t in manifest.taxonomy.tasks:
        counts = dict(zip(t.class_ids, class_indicators(rows, t.name).sum(0).tolist(), strict=True))
        out.append(
            TaskStats(
                task=t.name,
                type=t.type,
                rows=len(rows),
                labelled=int(rows.labelled(t.name).sum()),
                counts=counts,
                names={c.id: c.name for c in t.classes},
                shot_groups=shot_groups(counts, many=many, few=few),
                split=used,
                unknown_values=unknown.get(t.name, 0),
                many=many,
                few=few,
            )
        )
    return out


# -- report -----------------------------------------------------------------------------------


def write_stats_report(
    manifest: Manifest,
    out_dir: str | Path,
    *,
    many: int = 100,
    few: int = 20,
    split: str | None = "train",
    show_progress: bool = False,
) -> Path:
    """Write one long-tail chart per task, stats.json and a self-contained index.html.

    Returns the path of index.html.
    """
    stats = task_stats(manifest, many=many, few=few, split=split)
    return render_stats_report(stats, out_dir, rows=len(manifest), show_progress=show_progress)


def render_stats_report(
    stats: list[TaskStats], out_dir: str | Path, *, rows: int, show_progress: bool = False
) -> Path:
    """The report files for already computed stats (``rows``: rows in the whole manifest)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    charts = {}
    tasks = track(stats, description="charts", transient=True) if show_progress else stats
    for s in tasks:
        charts[s.task] = plot_long_tail(s, out / f"longtail_{s.task}.png").name
    many, few = (stats[0].many, stats[0].few) if stats else (100, 20)
    payload = {
        "rows": rows,
        "counted_on": stats[0].scope if stats else "all rows",
        "thresholds": {"many": many, "few": few},
        "tasks": [s.to_dict() for s in stats],
    }
    (out / "stats.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    env = Environment(
        loader=PackageLoader("attire.data", "templates"), autoescape=select_autoescape()
    )
    html = env.get_template("stats.html").render(
        stats=stats,
        charts=charts,
        rows=rows,
        many=many,
        few=few,
        colours=SHOT_COLOURS,
        fmt_ratio=format_ratio,
        pct=_percent,
    )
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    return index


def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio:.0f}:1" if ratio >= 10 else f"{ratio:.1f}:1"


def plot_long_tail(stats: TaskStats, path: Path) -> Path:
    """Bar chart of class counts, largest first, log scale, coloured by shot group."""
    order = sorted(stats.counts, key=lambda c: (-stats.counts[c], c))
    counts = np.array([stats.counts[c] for c in order], float)
    fig = Figure(figsize=(max(6.0, 0.42 * len(order) + 2.5), 4.6), dpi=110)
    ax = fig.subplots()
    colours = [SHOT_COLOURS[stats.shot_groups[c]] for c in order]
    x = np.arange(len(order))
    ax.bar(x, np.where(counts > 0, counts, np.nan), color=colours, width=0.75)
    ax.set_yscale("log")
    top = max(counts.max() if len(counts) else 1.0, stats.many, 1.0)
    ax.set_ylim(0.7, top * 2.2)
    for xi, n in zip(x, counts, strict=True):
        ax.annotate(
            f"{int(n)}",
            (xi, max(n, 0.7)),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
            color="#c53030" if n == 0 else "#333333",
        )
    ax.axhline(stats.many, color="#2b6cb0", linestyle="--", linewidth=1)
    ax.axhline(stats.few, color="#c53030", linestyle=":", linewidth=1)
    ax.set_xticks(x, [stats.names[c] for c in order], rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_ylabel(f"images ({stats.scope}, log scale)")
    ax.legend(
        handles=[
            Patch(color=SHOT_COLOURS["many"], label=f"many (> {stats.many})"),
            Patch(color=SHOT_COLOURS["medium"], label=f"medium ({stats.few}-{stats.many})"),
            Patch(color=SHOT_COLOURS["few"], label=f"few (< {stats.few})"),
            Line2D([], [], color="#2b6cb0", linestyle="--", label=f"{stats.many} images"),
            Line2D([], [], color="#c53030", linestyle=":", label=f"{stats.few} images"),
        ],
        fontsize=7,
        loc="upper right",
        framealpha=0.9,
    )
    zero = f", {stats.zero_classes} without examples" if stats.zero_classes else ""
    ax.set_title(
        f"{stats.task}: imbalance {format_ratio(stats.imbalance_ratio)}{zero}, "
        f"{_percent(stats.missing_share)} missing ({stats.scope})",
        fontsize=10,
    )
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"
