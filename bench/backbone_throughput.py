"""Cost of attire's backbones on this CPU: params, GFLOPs, latency, inference and training speed.

    .venv/bin/python bench/backbone_throughput.py [--sizes 128 224] [--models resnet18 ...]
        [--max-seconds 15] [--train/--no-train] [--train-batch 32] [--threads N]
        [--tcmalloc/--no-tcmalloc] [--out results.json]

Each model is the multi-task network on the default taxonomy (random init, heads included),
fp32, channels-last, on random images. Inference is timed at batch 1, 8 and 32; training is
forward + backward + SGD at batch 32, halved while a step would not fit --max-seconds. Every
measurement stops at --max-seconds, and the table says how many timed calls each got.

With --tcmalloc (the default) the script re-runs itself with libtcmalloc_minimal preloaded when
it is installed (apt-get install libtcmalloc-minimal4); it prints which malloc was used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from attire.errors import AttireError
from attire.evaluation import ProfileResult, malloc_name, markdown_table, profile_backbone

MODELS = ["resnet18", "resnet101", "seresnet101", "drn_c_26", "drn_d_54", "tf_efficientnet_lite0"]
TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
_REEXEC = "ATTIRE_BENCH_TCMALLOC_REEXEC"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224], help="input px")
    parser.add_argument("--models", nargs="+", default=MODELS, help="backbone names")
    parser.add_argument("--max-seconds", type=float, default=15.0, help="per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=20, help="timed calls, at most")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--train", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--tcmalloc", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=None, help="write every number as JSON")
    args = parser.parse_args()

    if args.tcmalloc:
        _preload_tcmalloc()  # returns only when no re-run is needed or possible
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc = malloc_name()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"malloc: {malloc}" + ("" if malloc == "tcmalloc" else _tcmalloc_hint()))
    load_start = os.getloadavg()[0]
    print(f"load average at start: {load_start:.2f} (above 0 means other work shares the cores)")

    err = Console(stderr=True)
    jobs = [(m, s) for s in args.sizes for m in args.models]
    results: list[ProfileResult] = []
    failed: dict[str, str] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("profiling", total=len(jobs))
        for name, size in jobs:

            def show(phase: str, name: str = name, size: int = size) -> None:
                bar.update(task, description=f"{name} @ {size} px: {phase}")

            try:
                results.append(
                    profile_backbone(
                        name,
                        size,
                        batch_sizes=args.batch_sizes,
                        warmup=args.warmup,
                        iters=args.iters,
                        max_seconds=args.max_seconds,
                        train=args.train,
                        train_batch_size=args.train_batch,
                        progress=show,
                    )
                )
            except AttireError as e:
                failed[f"{name}@{size}"] = str(e)
                err.print(f"[red]{name} @ {size} px failed:[/] {e}", highlight=False)
            bar.advance(task)

    load_end = os.getloadavg()[0]
    print(f"load average at end: {load_end:.2f} (this run adds about {torch.get_num_threads()})")
    print()
    print(markdown_table(results))
    if args.out:
        record = {
            "machine": {
                "arch": platform.machine(),
                "cores": os.cpu_count(),
                "torch": torch.__version__,
                "malloc": malloc,
                "load_avg_1min": [load_start, load_end],
            },
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "results": [r.to_dict() for r in results],
            "failed": failed,
        }
        args.out.write_text(json.dumps(record, indent=2))
        print(f"\nwrote {args.out}")
    return 1 if failed else 0


def _preload_tcmalloc() -> None:
    """Re-run this script with tcmalloc preloaded, once, when it is installed but not loaded."""
    if malloc_name() == "tcmalloc" or os.environ.get(_REEXEC) or not TCMALLOC.exists():
        return
    preload = " ".join(p for p in (os.environ.get("LD_PRELOAD"), str(TCMALLOC)) if p)
    env = {**os.environ, "LD_PRELOAD": preload, _REEXEC: "1"}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def _tcmalloc_hint() -> str:
    if not TCMALLOC.exists():
        return " (tcmalloc not installed: apt-get install libtcmalloc-minimal4)"
    return " (tcmalloc installed but not loaded: --no-tcmalloc given, or LD_PRELOAD failed)"


if __name__ == "__main__":
    raise SystemExit(main())
