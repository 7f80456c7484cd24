"""Train one multi-task model on the generated catalogue and score it on a held-out test set.

Two uses (docs/BENCHMARKS.md records both):
- learnability: a balanced catalogue (--imbalance 1 --balanced) of 64 px drawings; every task
  should be learnable from the pixels (target: >= 90% mean accuracy over tasks on a balanced
  test; met by ImageNet EfficientNet-Lite0 seeing the drawings at 192 px, the first command)
- the bite of the long tail: --imbalance 100 with plain cross-entropy; many/medium/few-shot recall
  on a balanced test set, overall accuracy on an instance-distributed one.

    .venv/bin/python bench/train_synth.py --out /tmp/bench-learn --n-train 10000 --balanced \
        --epochs 8 --augment frame --backbone tf_efficientnet_lite0 \
        --set model.pretrained=package --set data.image_size=192 \
        --set optim.backbone_lr_mult=0.5 --tag pre192 --tta
    .venv/bin/python bench/train_synth.py --out /tmp/bench-r100 --n-train 10000 --imbalance 100

Data and trained models are reused when the output folder already has them. Other backbones
(`--backbone resnet18_lowres`, the 64 px ResNet-18 of the learnability figures) and variants of
the training config (`--set optim.weight_decay=0.1 --tag wd01`) train beside the default run on
the same data, each with its own run-NAME/ and results-NAME.json; on a GPU box add
`--workers 12`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from attire.training.config import TrainConfig, apply_override
from attire.training.fit import fit
from synth_splits import catalogue, combined

_FRAME = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "rotate_deg": 0.0, "translate": 0.0}
AUGMENT = {"default": {}, "frame": _FRAME, "zoom": _FRAME | {"zoom_out": 0.2}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--imbalance", type=float, default=1.0)
    ap.add_argument("--balanced", action="store_true", help="balanced training catalogue")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--augment",
        choices=list(AUGMENT),
        default="default",
        help="frame: no crop, shift or rotation (the drawing already varies the framing, and a "
        "crop can cut off the sleeve ends or collar that a tight frame keeps in view); zoom: "
        "frame plus a random shrink of up to 20%% inside the padded frame",
    )
    ap.add_argument("--size", type=int, default=64, help="image size (drawn and trained)")
    ap.add_argument("--workers", type=int, default=2, help="drawing and data loading processes")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="training config override, as `attire train --set` (repeatable)",
    )
    ap.add_argument("--tag", default="", help="names the run folder and results of a --set variant")
    ap.add_argument(
        "--tta", action="store_true", help="also score with test-time mirroring (as TEST_tta)"
    )
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    r, bal = args.imbalance, args.balanced
    draw = {"size": args.size, "workers": max(1, args.workers)}
    parts = {
        "train": catalogue(out / "train", args.n_train, seed=1, imbalance=r, balanced=bal, **draw),
        "val": catalogue(out / "val", args.n_val, seed=2, imbalance=r, balanced=bal, **draw),
        "test": catalogue(out / "test", args.n_test, seed=3, imbalance=1.0, balanced=True, **draw),
    }
    if r > 1:
        parts["test_instance"] = catalogue(
            out / "test_instance", args.n_test, seed=4, imbalance=r, balanced=False, **draw
        )
    manifest_path = combined(parts, out)
    gen_s = time.perf_counter() - t0

    suffix = "" if args.augment == "default" else f"-{args.augment}"
    suffix += f"-{args.tag}" if args.tag else ""
    name = f"{args.backbone}{suffix}"  # runs side by side in one folder keep their own files
    run = out / f"run-{name}"
    t1 = time.perf_counter()
    reused = (run / "model" / "weights.safetensors").exists()
    if not reused:
        raw = {
            "data": {
                "manifest": str(manifest_path),
                "image_size": args.size,
                "workers": args.workers,
            },
            "model": {"backbone": args.backbone},
            "optim": {"lr": args.lr, "warmup_epochs": 0.5},
            "augment": AUGMENT[args.augment],
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "out_dir": str(run),
        }
        for item in args.set:
            apply_override(raw, item)
        fit(TrainConfig.from_dict(raw))
    train_s = None if reused else time.perf_counter() - t1  # a reused run's time is in its log

    from attire.evaluation.evaluate import evaluate_checkpoint  # after training: heavy import

    results = {"generate_s": gen_s, "train_s": train_s, "args": vars(args) | {"out": str(out)}}
    for split in [s for s in parts if s.startswith("test")]:
        for tta in (False, True) if args.tta else (False,):
            res = evaluate_checkpoint(run / "model", manifest_path, split=split, tta=tta)
            key = f"{split}_tta" if tta else split
            results[key] = {"averages": res.averages, "tasks": res.metrics}
            print(f"\n== {key} ==")
            print(res.markdown())
    path = out / f"results-{name}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    trained = f"train {train_s:.0f} s" if train_s is not None else f"{run.name} reused"
    print(f"\ngenerate {gen_s:.0f} s, {trained}; results in {path}")


if __name__ == "__main__":
    main()
