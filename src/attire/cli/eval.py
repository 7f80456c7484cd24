"""`attire eval CHECKPOINT --data MANIFEST`: metrics, long-tail view and production thresholds."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Table

from attire.cli.apps import app
from attire.cli.common import console, user_errors
from attire.errors import AttireError
from attire.evaluation.evaluate import EvalResult, evaluate_checkpoint, has_split
from attire.evaluation.metrics import SUMMARY_KEYS
from attire.evaluation.report import fmt, pct, write_report
from attire.evaluation.thresholds import ThresholdResult, save_thresholds

SUMMARY_COLUMNS = SUMMARY_KEYS[:-1]  # without f1_tuned: an optimistic ceiling


@app.command("eval")
@user_errors
def eval_command(
    checkpoint: Path = typer.Argument(..., help="checkpoint folder written by `attire train`"),
    data: Path = typer.Option(..., "--data", help="manifest (.parquet) with a split column"),
    split: str = typer.Option("test", "--split", help="split to score"),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="folder for metrics.json, index.html and charts "
        "\\[default: eval-SPLIT beside the checkpoint folder]",
    ),
    target_precision: float = typer.Option(
        0.95,
        "--target-precision",
        min=0.0,
        max=1.0,
        help="precision each task's confidence threshold must reach on --thresholds-split",
    ),
    thresholds_split: str | None = typer.Option(
        None,
        "--thresholds-split",
        help="split to fit the thresholds on; they are then applied to --split "
        "\\[default: val when the manifest has it, else the checkpoint's saved thresholds]",
    ),
    save: bool = typer.Option(
        False, "--save-thresholds", help="write the fitted thresholds into the checkpoint"
    ),
    clean_labels: bool = typer.Option(
        False, "--clean-labels", help="score against <task>__true where the manifest has it"
    ),
    top_k: int = typer.Option(3, "--top-k", min=1, help="report top-1 ... top-K accuracy"),
    many: int = typer.Option(100, help="classes with more training images: many-shot"),
    few: int = typer.Option(20, help="classes with fewer training images: few-shot"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    workers: int = typer.Option(0, "--workers", min=0, help="image decoding processes"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    tta: bool = typer.Option(
        False, "--tta", help="average each image's scores with its mirror image's (2x the cost)"
    ),
) -> None:
    """Score a checkpoint on a split: accuracy, balanced accuracy, macro-F1, many/medium/few-shot
    recall (groups from the train split), top-k, calibration, FashionAI AP and mAP, written to
    OUT/metrics.json and OUT/index.html.

    Thresholds: per task the lowest confidence reaching --target-precision on --thresholds-split.
    The page shows the precision and coverage each threshold gives on --split.
    --save-thresholds writes them into the checkpoint, for a service to flag uncertain answers.
    """
    if tta and save:
        raise AttireError(
            "--tta with --save-thresholds: thresholds fitted on mirrored-and-averaged scores "
            "would not fit the plain scores a service computes; drop --tta or --save-thresholds"
        )
    if thresholds_split is None and (save or has_split(data, "val")):
        thresholds_split = "val"
    out = out if out is not None else checkpoint.resolve().parent / f"eval-{split}"
    result = evaluate_checkpoint(
        checkpoint,
        data,
        split=split,
        batch_size=batch_size,
        thresholds_split=thresholds_split,
        target_precision=target_precision,
        clean_labels=clean_labels,
        device=device,
        workers=workers,
        top_k=range(1, top_k + 1),
        many=many,
        few=few,
        progress=True,
        tta=tta,
    )
    page = write_report(result, out)
    for s in result.skipped[:20]:
        console.print(f"[yellow]skipped[/] {s['path']}: {s['reason']}", highlight=False)
    for p in result.label_problems[:20]:
        console.print(f"[yellow]label[/] {p}", highlight=False, soft_wrap=True)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    console.print(results_table(result))
    if result.thresholds:
        console.print(thresholds_table(result))
    if save:
        fits = {t: ThresholdResult(**th["fit"]) for t, th in result.thresholds.items()}
        path = save_thresholds(checkpoint, fits, fitted_on=thresholds_split or "")
        unreachable = [t for t, r in fits.items() if not r.reachable]
        console.print(f"thresholds saved into {path}", highlight=False)
        if unreachable:
            console.print(
                f"[yellow]precision {target_precision:g} unreachable on '{thresholds_split}' "
                f"for {unreachable}: every answer of these tasks will be flagged for review",
                highlight=False,
            )
    console.print(f"metrics: {page.parent / 'metrics.json'}\npage: {page}", highlight=False)


def results_table(result: EvalResult) -> Table:
    """One line per task plus the mean over tasks; metrics in percent to fit a terminal."""
    table = Table(
        title=f"attire eval: {result.split} split, {len(result.image_ids)} rows scored (%)",
        caption="bacc: mean recall over classes; many/med/few: mean recall by training "
        "frequency; FAI: FashionAI AP",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
    )
    table.add_column("task", overflow="fold")
    for name in ("n", "acc", "bacc", "F1", "many", "med", "few", "ECE", "FAI", "mAP"):
        table.add_column(name, justify="right", no_wrap=True)
    for task, m in result.metrics.items():
        table.add_row(task, str(m["n"]), *[_pc(m.get(k)) for k in SUMMARY_COLUMNS])
    avg = result.averages
    table.add_section()
    mean = [_pc(avg[k]["mean"]) if k in avg else "–" for k in SUMMARY_COLUMNS]
    table.add_row("mean", "", *mean, style="bold")
    return table


def thresholds_table(result: EvalResult) -> Table:
    """Per task: the threshold, and the precision and coverage it gives on the scored split."""
    source = next(iter(result.thresholds.values()))["source"]
    table = Table(
        title=f"thresholds ({source}) on the {result.split} split",
        box=box.SIMPLE_HEAD,
        caption="answers with confidence >= threshold go out without review",
    )
    table.add_column("task", overflow="fold")
    for name in ("threshold", "precision", "coverage", "answered"):
        table.add_column(name, justify="right", no_wrap=True)
    for task, th in result.thresholds.items():
        shown = "unreachable" if th["threshold"] > 1 else fmt(th["threshold"])
        answered = f"{th['answered']}/{th['total']}"
        table.add_row(task, shown, fmt(th["precision"]), pct(th["coverage"]), answered)
    return table


def _pc(x: object) -> str:
    return f"{100 * x:.1f}" if isinstance(x, int | float) else "–"
