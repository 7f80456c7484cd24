"""Synthetic catalogue drawing: a fingerprint of its pixels and its instructions per image.

    .venv/bin/python bench/synth_instructions.py hash [--n 300]
    .venv/bin/python bench/synth_instructions.py count [--n 40]

`hash` renders n images at 128 px (imbalance 10, fixed seeds) and prints the first 16 hex digits
of the sha256 of their pixels: a speed change that must not change the images must not change
this. `count` runs `hash` under valgrind's callgrind twice, with 5 and with 5 + n images, and
prints the difference per image: CPU instructions do not drift with the neighbours' load the way
wall and CPU time do on a shared machine (two runs of one tree still differ by up to ~2.5%; the
sha256 adds ~1.4 M per image to both sides of a comparison). Needs valgrind (Debian `valgrind`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from attire.data.synth import label_model, render

_WARM_UP = 40  # renders before the hashed ones, so that cached tiles and fonts are built


def fingerprint(n: int, size: int = 128) -> str:
    model = label_model(10.0)
    for i in range(_WARM_UP):
        render(model.sample(np.random.default_rng([9, i])), size, np.random.default_rng([10, i]))
    h = hashlib.sha256()
    for i in range(n):
        labels = model.sample(np.random.default_rng([7, i]))
        h.update(render(labels, size, np.random.default_rng([8, i])).tobytes())
    return h.hexdigest()[:16]


def _instructions(n: int, out: str) -> int:
    """Instructions callgrind counts for a whole `hash --n n` process."""
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    cmd += [sys.executable, __file__, "hash", "--n", str(n)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in every run
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no instruction count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("what", choices=("hash", "count"))
    ap.add_argument("--n", type=int, default=None, help="images (hash: 300, count: 40)")
    args = ap.parse_args()
    if args.what == "hash":
        print(fingerprint(args.n or 300))
        return
    if shutil.which("valgrind") is None:
        sys.exit("count needs valgrind on the PATH (apt-get install -y valgrind)")
    n = args.n or 40
    with tempfile.TemporaryDirectory() as tmp:
        base = _instructions(5, os.path.join(tmp, "few"))
        more = _instructions(5 + n, os.path.join(tmp, "more"))
    print(f"{(more - base) / n / 1e6:.2f} M instructions per image ({n} images at 128 px)")


if __name__ == "__main__":
    main()
