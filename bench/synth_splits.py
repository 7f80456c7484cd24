"""Generated train/val/test catalogues in one manifest, shared by the synthetic benchmarks.

Each split is drawn separately with its own seed (so no image or near copy crosses splits) and
reused when its folder already holds a manifest; the combined manifest points at every image by
absolute path and prefixes image ids with the split name.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from attire.data.manifest import Manifest
from attire.data.synth import generate_catalogue


def catalogue(
    out: Path,
    n: int,
    *,
    seed: int,
    imbalance: float = 1.0,
    balanced: bool = False,
    size: int = 64,
    workers: int = 2,
) -> Manifest:
    """The catalogue in `out`, drawn first if it is not there yet."""
    if (out / "manifest.parquet").exists():
        return Manifest.read(out / "manifest.parquet")
    return generate_catalogue(
        out, n, size=size, imbalance=imbalance, balanced=balanced, seed=seed, workers=workers
    )


def combined(parts: dict[str, Manifest], out: Path, name: str = "manifest.bench.parquet") -> Path:
    """One manifest with a `split` column naming the catalogue each row came from."""
    frames = []
    for split, m in parts.items():
        df = m.df.copy()
        df["path"] = [str(p.resolve()) for p in m.image_paths()]
        df["image_id"] = split + "_" + df["image_id"].astype(str)
        df["split"] = split
        frames.append(df)
    first = next(iter(parts.values()))
    return Manifest(pd.concat(frames, ignore_index=True), first.taxonomy, out).write(out / name)
