"""Time `attire data check` (the Python API) on the real clothing-dataset photos.

    .venv/bin/python bench/data_check.py [--workers 2] [--repeat 1] [--dataset clothing-dataset]

The dataset is ingested first with its shipped mapping, outside the timing; each timed run
decodes and hashes every image (no cache) and searches all pairs for near duplicates.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from attire.data.ingest import ingest_table
from attire.data.manifest import Manifest
from attire.data.quality import check_manifest

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="clothing-dataset")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="timed runs; the best is reported")
    args = parser.parse_args()

    shared = Path(os.environ.get("ATTIRE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
    labels = shared / args.dataset / "labels.csv"
    if not labels.exists():
        print(f"no dataset at {labels}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        mapping = REPO / "examples" / "mappings" / f"{args.dataset}.yaml"
        manifest = Manifest.read(ingest_table(labels, mapping).write(Path(tmp)))
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = check_manifest(manifest, workers=args.workers, progress=False)
            times.append(time.perf_counter() - start)
    best = min(times)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    )
    print(f"dataset: {args.dataset}, {len(manifest):,} rows, workers={args.workers}")
    print(f"runs (s): {', '.join(f'{t:.2f}' for t in times)}")
    print(f"best: {best:.2f} s, {len(manifest) / best:,.0f} images/s")
    found = {r: n for r, n in result.counts.items() if n}
    print(f"kept {result.n_kept:,} of {result.rows_in:,}; rejected: {found or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
