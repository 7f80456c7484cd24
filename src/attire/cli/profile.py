"""`attire profile CHECKPOINT|BACKBONE`: what a model costs on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from attire.cli.apps import app
from attire.cli.common import console, user_errors
from attire.evaluation.profile import profile_target, rich_table


@app.command("profile")
@user_errors
def profile_command(
    target: str = typer.Argument(
        ..., help="checkpoint folder written by `attire train`, or a backbone name (resnet101)"
    ),
    size: int | None = typer.Option(
        None,
        "--size",
        min=1,
        help="input side in pixels \\[default: the checkpoint's input size, or the backbone's]",
    ),
    batch_sizes: list[int] = typer.Option(
        [1, 8, 32], "--batch-sizes", help="inference batches to time (repeat the option)"
    ),
    max_seconds: float = typer.Option(
        10.0, "--max-seconds", min=0.001, help="time budget of each measurement"
    ),
    train: bool = typer.Option(False, "--train", help="also time training steps"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads"),
    json_out: Path | None = typer.Option(None, "--json", help="write every number here"),
) -> None:
    """Parameters, forward FLOPs at the input size, batch-1 latency (p50/p95), throughput at the
    best batch and peak memory, on the current device (GPU, or CPU threads).

    A backbone name is profiled as the multi-task network attire trains (default taxonomy,
    random init, heads included).
    """
    with console.status(f"profiling {target}") as status:
        result = profile_target(
            target,
            size,
            device=device,
            batch_sizes=batch_sizes,
            max_seconds=max_seconds,
            train=train,
            threads=threads,
            progress=lambda phase: status.update(f"{target}: {phase}"),
        )
    console.print(rich_table([result], title=f"attire profile: {result.name}"))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
        console.print(f"wrote {json_out}", highlight=False)
