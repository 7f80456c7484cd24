"""The evaluation page: one self-contained HTML file with its PNG charts beside it.

No JavaScript and no external CSS, so it opens offline in any browser. Per task: a row-normalised
confusion heatmap, per-class recall against training frequency (the long-tail picture) and a
reliability diagram.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from attire.data.stats import SHOT_COLOURS, SHOT_GROUPS
from attire.evaluation.evaluate import EvalResult
from attire.taxonomy import Task

METRICS_FILE, PAGE_FILE = "metrics.json", "index.html"
NO_GROUP_COLOUR = "#4a5568"


def write_report(result: EvalResult, out_dir: str | Path) -> Path:
    """Write metrics.json, index.html and the charts into ``out_dir``; returns index.html."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS_FILE).write_text(result.to_json(), encoding="utf-8")
    charts: dict[str, dict[str, str]] = {}
    for name, m in result.metrics.items():
        if m.get("n", 0) == 0:
            continue
        task = result.taxonomy.task(name)
        charts[name] = {
            "confusion": plot_confusion(task, m, out / f"confusion_{name}.png").name,
            "reliability": plot_reliability(name, m, out / f"reliability_{name}.png").name,
        }
        if any(r["train_count"] is not None for r in m["per_class"]):
            charts[name]["recall"] = plot_recall_vs_frequency(
                task, m, result.settings, out / f"recall_{name}.png"
            ).name
    env = Environment(
        loader=PackageLoader("attire.evaluation", "templates"), autoescape=select_autoescape()
    )
    html = env.get_template("eval.html").render(
        r=result,
        tasks=result.taxonomy.tasks,
        charts=charts,
        colours=SHOT_COLOURS,
        fmt=fmt,
        pct=pct,
        metrics_file=METRICS_FILE,
    )
    page = out / PAGE_FILE
    page.write_text(html, encoding="utf-8")
    return page


def fmt(x: object, digits: int = 3) -> str:
    """A metric for display; "–" where it is undefined (None, or absent from the task's dict)."""
    return f"{x:.{digits}f}" if isinstance(x, int | float) else "–"


def pct(x: object) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, int | float) else "–"


# -- charts -----------------------------------------------------------------------------------


def plot_confusion(task: Task, m: dict[str, Any], path: Path) -> Path:
    """Multiclass: true x predicted, each row divided by its support. Multilabel: one 2x2 per
    class (absent / present x answered no / yes), rows normalised the same way."""
    if task.multilabel:
        return _plot_binary_confusions(task, m, path)
    cm = np.asarray(m["confusion"], np.float64)
    support = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = cm / support[:, None]
    n = len(cm)
    side = max(4.4, 0.4 * n + 2.4)
    fig = Figure(figsize=(side + 1.2, side), dpi=110)
    ax = fig.subplots()
    masked = np.ma.masked_invalid(norm)
    image = ax.imshow(masked, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_facecolor("#eeeeee")  # rows without test items
    for i in range(n):
        for j in range(n):
            if support[i] and cm[i, j]:
                ax.text(
                    j,
                    i,
                    f"{norm[i, j]:.2f}".lstrip("0") if norm[i, j] < 1 else "1",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.6 else "#222222",
                )
    names = [c.name for c in task.classes]
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), [f"{nm} ({int(s)})" for nm, s in zip(names, support, strict=True)])
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (test items)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_title(
        f"{task.name}: accuracy {fmt(m['accuracy'])}, balanced {fmt(m['balanced_accuracy'])}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    return path


def _plot_binary_confusions(task: Task, m: dict[str, Any], path: Path) -> Path:
    rows = m["per_class"]
    cols = min(4, len(rows))
    nrows = -(-len(rows) // cols)
    fig = Figure(figsize=(2.4 * cols + 0.6, 2.3 * nrows + 0.5), dpi=110)
    axes = np.atleast_1d(fig.subplots(nrows, cols)).ravel()
    for ax, row, cls in zip(axes, rows, task.classes, strict=False):
        cm = np.asarray(row["confusion"], np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = cm / cm.sum(1, keepdims=True)
        ax.imshow(np.ma.masked_invalid(norm), cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_facecolor("#eeeeee")
        for i in range(2):
            for j in range(2):
                if cm[i].sum():
                    ax.text(
                        j,
                        i,
                        f"{norm[i, j]:.2f}\n({int(cm[i, j])})",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.6 else "#222222",
                    )
        ax.set_xticks([0, 1], ["no", "yes"], fontsize=7)
        ax.set_yticks([0, 1], ["absent", "present"], fontsize=7)
        ax.set_title(cls.name, fontsize=8)
    for ax in axes[len(rows) :]:
        ax.set_visible(False)
    fig.suptitle(f"{task.name}: answers at p >= 0.5 per class (rows: truth)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_recall_vs_frequency(
    task: Task, m: dict[str, Any], settings: dict[str, Any], path: Path
) -> Path:
    """Per-class recall on test against training images (log x), coloured by shot group."""
    rows = [r for r in m["per_class"] if r["recall"] is not None and r["train_count"] is not None]
    many, few = settings.get("many", 100), settings.get("few", 20)
    fig = Figure(figsize=(7.2, 4.6), dpi=110)
    ax = fig.subplots()
    names = {c.id: c.name for c in task.classes}
    xs = np.array([max(r["train_count"], 0.5) for r in rows], np.float64)  # 0 drawn at 0.5
    ys = np.array([r["recall"] for r in rows], np.float64)
    colours = [SHOT_COLOURS.get(r["shot_group"], NO_GROUP_COLOUR) for r in rows]
    sizes = [18 + 4 * np.sqrt(r["support"]) for r in rows]
    ax.scatter(xs, ys, c=colours, s=sizes, alpha=0.85, edgecolors="white", linewidths=0.6)
    for x, y, r in zip(xs, ys, rows, strict=True):
        ax.annotate(names[r["id"]], (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    top = max([*xs.tolist(), many * 2.0, 10.0])
    ax.set_xlim(0.35, top * 1.8)
    ax.set_ylim(-0.04, 1.08)
    ax.axvline(many, color=SHOT_COLOURS["many"], linestyle="--", linewidth=1)
    ax.axvline(few, color=SHOT_COLOURS["few"], linestyle=":", linewidth=1)
    ax.set_xlabel("training images of the class (log scale; 0 drawn at 0.5)")
    ax.set_ylabel("recall on the evaluated split")
    label = "recall at p >= 0.5" if task.multilabel else "recall"
    handles = [
        Line2D([], [], marker="o", linestyle="", color=SHOT_COLOURS[g], label=f"{g}-shot")
        for g in SHOT_GROUPS
    ]
    ax.legend(handles=handles, fontsize=7, loc="lower right", framealpha=0.9)
    absent = sum(1 for r in m["per_class"] if r["recall"] is None)
    note = f"; {absent} classes without test items not shown" if absent else ""
    ax.set_title(f"{task.name}: {label} against training frequency{note}", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_reliability(name: str, m: dict[str, Any], path: Path) -> Path:
    """Accuracy against mean confidence per bin, the diagonal, and how many answers each bin has."""
    rel = m["reliability"]
    edges = np.asarray(rel["edges"])
    width = edges[1] - edges[0]
    centres = edges[:-1] + width / 2
    acc = np.array([np.nan if a is None else a for a in rel["accuracy"]])
    conf = np.array([np.nan if c is None else c for c in rel["confidence"]])
    fig = Figure(figsize=(5.4, 5.6), dpi=110)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = ~np.isnan(acc)
    top.bar(centres[filled], acc[filled], width=width * 0.95, color="#2b6cb0", label="accuracy")
    top.bar(
        centres[filled],
        (conf - acc)[filled],
        bottom=acc[filled],
        width=width * 0.95,
        fill=False,
        edgecolor="#c53030",
        hatch="///",
        linewidth=0.8,
        label="gap to mean confidence",
    )
    top.plot([0, 1], [0, 1], color="#555555", linestyle="--", linewidth=1, label="calibrated")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy of the answers in the bin")
    top.legend(fontsize=7, loc="upper left")
    unit = "yes/no answers" if m["type"] == "multilabel" else "answers (top class)"
    top.set_title(f"{name}: ECE {fmt(m['ece'])} over {sum(rel['count'])} {unit}", fontsize=10)
    bottom.bar(centres, rel["count"], width=width * 0.95, color="#718096")
    bottom.set_yscale("symlog", linthresh=1)
    bottom.set_ylabel("answers")
    bottom.set_xlabel("confidence")
    for ax in (top, bottom):
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    return path
