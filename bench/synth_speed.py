"""Synthetic catalogue speed: images per second of `generate_catalogue` with one worker.

    .venv/bin/python bench/synth_speed.py [--n 1000] [--repeats 4] [--size 128] [--imbalance 10]

Times the whole write path (label sampling, drawing, JPEG encoding, file creation, manifest) in
`--repeats` runs of `--n` images each, then the drawing alone (`render`) on the same number of
images. Reports wall-clock and per-CPU-second rates, best and median: on a machine shared with
other work the wall clock measures the neighbours too, and even CPU time inflates when they
compete for the same cores, so the best run is the closest to the code's own speed.
Target: >= 200 images/s per core at 128 px.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import numpy as np

from attire.data.synth import generate_catalogue, label_model, render


def _rates(n: int, runs: list[tuple[float, float]]) -> str:
    wall = [n / w for w, _ in runs]
    cpu = [n / c for _, c in runs]
    return (
        f"wall {max(wall):5.0f} best {statistics.median(wall):5.0f} median | "
        f"CPU {max(cpu):5.0f} best {statistics.median(cpu):5.0f} median  (img/s)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="images per run")
    ap.add_argument("--repeats", type=int, default=4, help="runs per measurement")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--imbalance", type=float, default=10.0)
    ap.add_argument(
        "--dir", default=".", help="where the temporary catalogues are written (a local disk)"
    )
    args = ap.parse_args()

    model = label_model(args.imbalance)
    render(model.sample(np.random.default_rng(0)), args.size, np.random.default_rng(0))  # warm up

    write: list[tuple[float, float]] = []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory(dir=args.dir, prefix=".synth-bench-") as tmp:
            wall, cpu = time.perf_counter(), time.process_time()
            generate_catalogue(
                tmp, args.n, size=args.size, imbalance=args.imbalance, seed=r, progress=False
            )
            write.append((time.perf_counter() - wall, time.process_time() - cpu))

    draw: list[tuple[float, float]] = []
    for r in range(args.repeats):
        rng = np.random.default_rng([1, r])
        labels = [model.sample(rng) for _ in range(args.n)]
        wall, cpu = time.perf_counter(), time.process_time()
        for i, lab in enumerate(labels):
            render(lab, args.size, np.random.default_rng([r, i]))
        draw.append((time.perf_counter() - wall, time.process_time() - cpu))

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, load average {load}; 1 worker")  # fmt: skip
    print(f"{args.repeats} runs of {args.n} images, size {args.size}, imbalance {args.imbalance}")
    print(f"generate_catalogue (JPEG files): {_rates(args.n, write)}")
    print(f"render only:                     {_rates(args.n, draw)}")


if __name__ == "__main__":
    main()
