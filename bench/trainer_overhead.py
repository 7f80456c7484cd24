"""The trainer's own cost per step: steps/s with a model that costs almost nothing.

On a GPU a ResNet-18 step at 64 px takes a few milliseconds, so whatever the training loop does
around the model (logging, target tensors, hooks) sets the speed. This trains timm's
`test_efficientnet` on the generated catalogue (drawn at 32 px, trained at 16 px; 13 tasks,
batch 64, loading in the main process) and reports the median wall time of a step, epoch starts
left out.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
        .venv/bin/python bench/trainer_overhead.py --out /tmp/bench-overhead

To compare two versions of attire, run it once per checkout (`PYTHONPATH=OTHER/src`), on the
same catalogue, alternating, and compare the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import lightning as L

import attire
from attire.training import fit as fit_module
from attire.training.config import TrainConfig
from synth_splits import catalogue, combined


class StepTimer(L.Callback):
    """Wall time between the ends of consecutive training batches."""

    def __init__(self, skip: int) -> None:
        self.skip, self.times, self._last = skip, [], None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None and batch_idx > self.skip:
            self.times.append(now - self._last)
        self._last = now


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=1920, help="training images (30 steps per epoch)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--log-every",
        type=int,
        default=50,
        help="log_every_n_steps (Lightning's default; attire's config default is 10)",
    )
    args = ap.parse_args()
    part = catalogue(args.out / "train", args.n, seed=1, balanced=True, size=32)
    data = combined({"train": part}, args.out)
    timer = StepTimer(skip=3)
    build = fit_module.build_trainer

    def with_timer(*a, **kw) -> L.Trainer:
        trainer = build(*a, **kw)
        trainer.callbacks.append(timer)
        return trainer

    fit_module.build_trainer = with_timer
    raw = {
        "data": {"manifest": str(data), "image_size": 16, "workers": 0, "val_split": None},
        "model": {"backbone": "test_efficientnet"},
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "log_every_n_steps": args.log_every,
        "out_dir": str(args.out / "run"),
    }
    fit_module.fit(TrainConfig.from_dict(raw))
    step = statistics.median(timer.times)
    print(
        f"attire from {Path(attire.__file__).parent}: {len(timer.times)} steps timed, "
        f"median {step * 1000:.1f} ms/step = {1 / step:.1f} steps/s"
    )


if __name__ == "__main__":
    main()
