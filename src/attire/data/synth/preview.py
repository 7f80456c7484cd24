"""Contact sheets: for one task, a row of samples per class, labelled at the left.

They are how a person judges whether every class is drawn recognisably (docs/SYNTH.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.progress import track

from attire.data.synth.labels import LabelModel, label_model
from attire.data.synth.scene import render

LABEL_WIDTH = 170
NONE_ROW = "(none)"
_console = Console(stderr=True)


def contact_sheet(
    task: str, size: int = 96, per_class: int = 8, seed: int = 0, model: LabelModel | None = None
) -> Image.Image:
    """One row per class of `task` (plus an empty row for the multilabel task)."""
    model = model or label_model(1.0, balanced=True)
    t = model.taxonomy.task(task)
    rows = list(t.class_ids) + ([NONE_ROW] if t.multilabel else [])
    pad = 4
    sheet = Image.new(
        "RGB", (LABEL_WIDTH + per_class * (size + pad), len(rows) * (size + pad)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=15)
    except (OSError, TypeError, ValueError):  # Pillow without FreeType: the bitmap font
        font = ImageFont.load_default()
    for r, cls in enumerate(rows):
        y = r * (size + pad)
        draw.text((6, y + size // 2 - 8), cls, fill=(0, 0, 0), font=font)
        for k in range(per_class):
            rng = np.random.default_rng([seed, r, k])
            if t.multilabel:
                labels = model.sample(rng, None if cls == NONE_ROW else {task: cls})
                labels[task] = [] if cls == NONE_ROW else [cls]
            else:
                labels = model.sample(rng, {task: cls})
            sheet.paste(render(labels, size, rng), (LABEL_WIDTH + k * (size + pad), y))
    return sheet


def write_previews(
    out_dir: str | Path,
    size: int = 96,
    per_class: int = 8,
    seed: int = 0,
    tasks: list[str] | None = None,
    progress: bool = True,
) -> list[Path]:
    """A PNG contact sheet per task in out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = label_model(1.0, balanced=True)
    paths = []
    names = tasks or model.taxonomy.task_names
    for task in track(names, "drawing contact sheets", console=_console, disable=not progress):
        path = out / f"preview_{task}.png"
        contact_sheet(task, size, per_class, seed, model).save(path)
        paths.append(path)
    return paths
