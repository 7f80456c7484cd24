"""Contact sheets: for one task, a row of samples per class, labelled at the left.

They are how a person judges whether every class is drawn recognisably (docs/SYNTH.md). In a
balanced catalogue nearly every garment also wears a print, a second pattern and a texture, which
hide the class a row is about; so the first half of each row draws it *isolated* (the other
surface tasks forced to their plain values where the label rules allow), the second half in the
catalogue's usual company.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.progress import track

from attire.data.synth.labels import LabelError, LabelModel, label_model
from attire.data.synth.scene import render

LABEL_WIDTH = 170
NONE_ROW = "(none)"
# Plain values of the tasks that cover the surface, in the order they are given up when the
# label rules forbid them next to the class shown (e.g. cable knit needs knit, not smooth).
PLAIN = {
    "texture": "smooth",
    "secondary_colour": "none",
    "secondary_pattern": "none",
    "main_pattern": "solid",
}
# Tasks drawn with each other keep each other's company: the second colour is the patterns' ink
# (without one, a pattern is only a tone-on-tone shade of the main colour).
_CARRIERS = {
    "secondary_colour": ("main_pattern", "secondary_pattern"),
    "main_pattern": ("secondary_colour",),
    "secondary_pattern": ("secondary_colour",),
}
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
            shown = {} if cls == NONE_ROW else {task: cls}
            labels = sample_shown(model, task, shown, rng, isolated=k < (per_class + 1) // 2)
            sheet.paste(render(labels, size, rng), (LABEL_WIDTH + k * (size + pad), y))
    return sheet


def sample_shown(
    model: LabelModel,
    task: str,
    shown: dict[str, str],
    rng: np.random.Generator,
    isolated: bool,
) -> dict:
    """Labels with `shown` forced; `isolated`: the other surface tasks plain where allowed."""
    plain = (
        {}
        if not isolated
        else {t: v for t, v in PLAIN.items() if t != task and t not in _CARRIERS.get(task, ())}
    )
    while True:
        try:
            labels = model.sample(rng, plain | shown)
            break
        except LabelError:
            plain.pop(next(iter(plain)))  # empty plain cannot fail: `shown` alone is possible
    if model.taxonomy.task(task).multilabel:  # exactly the element shown (or none)
        labels[task] = list(shown.values())
    elif isolated:
        labels["trend_elements"] = []
    return labels


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
