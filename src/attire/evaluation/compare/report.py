"""A comparison's reports: the table (Markdown and HTML), the accuracy-vs-cost plot with its
Pareto front, and results.json with every number."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from attire.evaluation.compare.runner import PROFILE_FILE, Comparison, RunOutcome, write_json
from attire.evaluation.profile import FLOPS_NOTE
from attire.evaluation.report import fmt

RESULTS_FILE, MARKDOWN_FILE, HTML_FILE, PLOT_FILE = (
    "results.json",
    "report.md",
    "report.html",
    "pareto.png",
)
SCORES = ("accuracy", "balanced_accuracy", "macro_f1", "few_shot")
SCORE_NAMES = {
    "accuracy": "mean accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro-F1",
    "few_shot": "few-shot recall",
}

COLUMNS = (
    "experiment",
    "backbone",
    "px",
    "mean accuracy",
    "balanced acc",
    "macro-F1",
    "few-shot recall",
    "params M",
    "GFLOPs",
    "latency p50 ms",
    "throughput img/s",
    "train min",
    "Pareto front",
)


def table_rows(comparison: Comparison) -> list[list[str]]:
    """The report table's cells (COLUMNS), accuracies in percent; one row per experiment."""
    fronts = comparison.fronts()
    rows = []
    for i, r in enumerate(comparison.runs):
        p, t = r.profile or {}, r.train or {}
        on = [
            name for name, key in (("GFLOPs", "gflops"), ("latency", "latency")) if fronts[key][i]
        ]
        weights = f" ({r.pretrained})" if r.pretrained else ""
        rows.append(
            [
                r.name if r.status == "done" else f"{r.name} ({r.status})",
                r.backbone + weights,
                str(r.image_size),
                *(_pct(r.score(k)) for k in SCORES),
                fmt(p["params"] / 1e6, 2) if p else "–",
                f"{p['gflops']:.3g}" if p else "–",
                fmt(p.get("latency_b1_p50_ms"), 1) if p else "–",
                fmt(p.get("best_throughput"), 1) if p else "–",
                fmt(t["seconds"] / 60, 1) if t else "–",
                ", ".join(on),
            ]
        )
    return rows


def markdown_report(comparison: Comparison) -> str:
    """report.md: what was compared, the table, and how each number was measured."""
    spec = comparison.spec
    rows = table_rows(comparison)
    lines = [
        f"# {comparison.title}",
        "",
        *_context_lines(comparison),
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---", "---", "---:"] + ["---:"] * (len(COLUMNS) - 4) + ["---"]) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        *(f"- {line}" for line in _legend(comparison)),
    ]
    failed = [r for r in comparison.runs if r.status != "done"]
    if failed:
        lines += ["", "Not in the table:"]
        lines += [f"- {r.name}: {r.error or 'not run yet (use --only or rerun)'}" for r in failed]
    lines += ["", f"Experiments file: `{spec.source}`; every number: `{RESULTS_FILE}`.", ""]
    return "\n".join(lines)


def _context_lines(c: Comparison) -> list[str]:
    base = c.spec.base
    val = f", validation '{base.splits.val}'" if base.splits.val else ""
    return [
        f"Data: {c.data.description}; trained on '{base.splits.train}'{val}, scored on "
        f"'{base.splits.test}'. Same budget for every experiment: {base.budget.describe()}; "
        f"seed {base.seed}."
    ]


def _legend(c: Comparison) -> list[str]:
    many, few = c.spec.eval.many, c.spec.eval.few
    lines = [
        "Accuracies are means over tasks, in percent, on the test split; few-shot recall: "
        f"mean recall of classes with fewer than {few} training images (many-shot: > {many}).",
        f"Pareto front: no other experiment is as cheap or cheaper and scores as high or higher "
        f"({SCORE_NAMES[c.score_key]}), on forward GFLOPs and on batch-1 latency.",
        f"GFLOPs: {FLOPS_NOTE}.",
        "Latency: median of batch-1 forward calls; throughput: the best inference batch "
        f"among {c.spec.profile.batch_sizes}; train min: wall clock of training "
        "(validation and export included).",
    ]
    lines += [f"Cost measured on: {d}." for d in c.devices()]
    return lines


def plot_pareto(comparison: Comparison, path: Path) -> Path:
    """Score against GFLOPs and against batch-1 latency (log x), the Pareto front drawn as a
    staircase and its points filled; each point named."""
    key = comparison.score_key
    fronts = comparison.fronts()
    fig = Figure(figsize=(11.5, 4.6), dpi=110)
    axes = fig.subplots(1, 2)
    for ax, (cost, label) in zip(
        axes,
        (
            ("gflops", "forward GFLOPs per image (log)"),
            ("latency", "batch-1 latency p50, ms (log)"),
        ),
        strict=True,
    ):
        pts = [
            (r.cost(cost), r.score(key), r.name, fronts[cost][i])
            for i, r in enumerate(comparison.runs)
        ]
        pts = [(x, 100 * y, n, f) for x, y, n, f in pts if x is not None and y is not None]
        ax.set_xlabel(label)
        ax.set_ylabel(f"{SCORE_NAMES[key]}, % (test, mean over tasks)")
        ax.spines[["top", "right"]].set_visible(False)
        if not pts:
            ax.text(0.5, 0.5, "no finished experiment", ha="center", transform=ax.transAxes)
            continue
        on = sorted((x, y) for x, y, _, f in pts if f)
        off = [(x, y) for x, y, _, f in pts if not f]
        if off:
            ax.scatter(*zip(*off, strict=True), s=46, facecolors="white", edgecolors="#718096")
        ax.scatter(*zip(*on, strict=True), s=58, color="#c05621", zorder=3, label="Pareto front")
        ax.plot(*zip(*on, strict=True), drawstyle="steps-post", color="#c05621", linewidth=1.2)
        for x, y, name, _ in pts:
            ax.annotate(name, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8)
        ax.set_xscale("log")
        xs = [x for x, *_ in pts]
        ax.set_xlim(min(xs) / 1.6, max(xs) * 2.2)
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(y=0.15)
        ax.legend(fontsize=8, loc="best", framealpha=0.9)
    fig.suptitle(f"{SCORE_NAMES[key]} against cost: up and to the left is better", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_reports(comparison: Comparison) -> dict[str, Path]:
    """results.json, report.md, pareto.png and report.html in the output folder."""
    out = comparison.out
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": out / RESULTS_FILE,
        "markdown": out / MARKDOWN_FILE,
        "plot": out / PLOT_FILE,
        "html": out / HTML_FILE,
    }
    write_json(paths["results"], comparison.to_dict())
    paths["markdown"].write_text(markdown_report(comparison), encoding="utf-8")
    plot_pareto(comparison, paths["plot"])
    env = Environment(
        loader=PackageLoader("attire.evaluation", "templates"), autoescape=select_autoescape()
    )
    links = {r.name: _links(r, out) for r in comparison.runs}
    html = env.get_template("compare.html").render(
        c=comparison,
        columns=COLUMNS,
        rows=table_rows(comparison),
        context=_context_lines(comparison),
        legend=_legend(comparison),
        links=links,
        plot=PLOT_FILE,
        results=RESULTS_FILE,
        markdown=MARKDOWN_FILE,
    )
    paths["html"].write_text(html, encoding="utf-8")
    return paths


def _links(r: RunOutcome, out: Path) -> dict[str, str]:
    """Relative links to the run's own files, for the HTML page."""
    candidates = {
        "eval page": (r.eval or {}).get("page"),
        "metrics": (r.eval or {}).get("metrics"),
        "profile": PROFILE_FILE if r.profile else None,
        "checkpoint": (r.train or {}).get("export"),
        "error": "error.txt" if r.status == "failed" else None,
    }
    return {
        label: f"{r.run_dir}/{target}"
        for label, target in candidates.items()
        if target and (out / r.run_dir / target).exists()
    }


def _pct(x: float | None) -> str:
    return f"{100 * x:.1f}" if x is not None else "–"
