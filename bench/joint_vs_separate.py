"""One multi-task network against one single-task network per task, same backbone and budget.

The design trains every attribute jointly on one shared backbone; this measures what that costs
or gains against the obvious alternative, 13 separate models (one per task), on the generated
catalogue: accuracy per task on a balanced test set, total training time, and inference cost
(forward FLOPs per image of all the models a shop would run, and measured test-set scoring time).

    .venv/bin/python bench/joint_vs_separate.py --out /tmp/bench-jvs --n-train 3000 --epochs 6

Runs already finished in --out are reused (delete a run folder to redo it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from attire.evaluation.evaluate import evaluate_checkpoint
from attire.evaluation.profile import count_flops
from attire.models.checkpoint import load_checkpoint
from attire.training.config import TrainConfig
from attire.training.fit import fit
from synth_splits import catalogue, combined


def train(manifest: Path, run: Path, args: argparse.Namespace, tasks: list[str] | None) -> float:
    """Train (unless `run` already has a model); the wall-clock seconds it took."""
    done = run / "train_seconds.json"
    if done.exists():
        return json.loads(done.read_text())["seconds"]
    cfg = TrainConfig.from_dict(
        {
            "data": {"manifest": str(manifest), "image_size": 64, "workers": 2, "tasks": tasks},
            "model": {"backbone": args.backbone},
            "optim": {"lr": args.lr, "warmup_epochs": 0.5},
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "out_dir": str(run),
            "seed": args.seed,
        }
    )
    t = time.perf_counter()
    fit(cfg)
    seconds = time.perf_counter() - t
    done.write_text(json.dumps({"seconds": seconds}))
    return seconds


def score(run: Path, manifest: Path) -> tuple[dict[str, float], float, int]:
    """Test accuracy per task, the scoring wall time and forward FLOPs per image."""
    t = time.perf_counter()
    res = evaluate_checkpoint(run / "model", manifest, split="test", progress=False)
    seconds = time.perf_counter() - t
    acc = {task: m["accuracy"] for task, m in res.metrics.items()}
    model, _ = load_checkpoint(run / "model")
    return acc, seconds, count_flops(model.eval(), 64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--n-val", type=int, default=500)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    parts = {
        "train": catalogue(out / "train", args.n_train, seed=1, balanced=True),
        "val": catalogue(out / "val", args.n_val, seed=2, balanced=True),
        "test": catalogue(out / "test", args.n_test, seed=3, balanced=True),
    }
    manifest = combined(parts, out)
    tasks = list(parts["train"].taxonomy.task_names)

    joint_s = train(manifest, out / "joint", args, None)
    joint_acc, joint_eval_s, joint_flops = score(out / "joint", manifest)
    sep_acc: dict[str, float] = {}
    sep_s = sep_eval_s = 0.0
    sep_flops = 0
    for task in tasks:
        run = out / f"single-{task}"
        sep_s += train(manifest, run, args, [task])
        acc, seconds, flops = score(run, manifest)
        sep_acc[task], sep_eval_s, sep_flops = acc[task], sep_eval_s + seconds, sep_flops + flops

    lines = ["| task | joint | separate | joint - separate |", "| --- | --- | --- | --- |"]
    for task in tasks:
        diff = joint_acc[task] - sep_acc[task]
        lines.append(f"| {task} | {joint_acc[task]:.3f} | {sep_acc[task]:.3f} | {diff:+.3f} |")
    jm, sm = (sum(a.values()) / len(a) for a in (joint_acc, sep_acc))
    lines += [
        f"| **mean** | **{jm:.3f}** | **{sm:.3f}** | {jm - sm:+.3f} |",
        "",
        "| cost | joint (1 model) | separate (13 models) | ratio |",
        "| --- | --- | --- | --- |",
        f"| training wall-clock s | {joint_s:.0f} | {sep_s:.0f} | {sep_s / joint_s:.1f}x |",
        f"| forward GFLOPs per image | {joint_flops / 1e9:.3f} | {sep_flops / 1e9:.3f} | "
        f"{sep_flops / joint_flops:.1f}x |",
        f"| test-set scoring s ({args.n_test} images) | {joint_eval_s:.1f} | {sep_eval_s:.1f} | "
        f"{sep_eval_s / joint_eval_s:.1f}x |",
    ]
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n")
    results = {
        "args": vars(args) | {"out": str(out)},
        "joint": {"accuracy": joint_acc, "train_s": joint_s, "eval_s": joint_eval_s,
                  "flops": joint_flops},
        "separate": {"accuracy": sep_acc, "train_s": sep_s, "eval_s": sep_eval_s,
                     "flops": sep_flops},
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
