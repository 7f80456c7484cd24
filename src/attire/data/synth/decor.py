"""Trend elements as shapes: ruffles, bow, embroidery, cut-outs, rivets, tassels, pockets, lace-up.

Each element is placed where the frame shows it (a hem fringe only when the hem is in view, a
chest patch only below the top of the frame), so a present label is always a visible one.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from attire.data.synth.draws import pick, uniform
from attire.data.synth.garment import (
    BAND,
    CORD,
    METAL,
    POCKET,
    RUFFLE,
    SLEEVE_FRACTION,
    STITCH,
    THREAD_A,
    THREAD_B,
    THREAD_C,
    TRIM,
    Design,
    Shape,
    arm_axis,
    both_sides,
    ellipse,
    half_width,
    line,
    poly,
    sleeve_end,
)


@dataclass(frozen=True)
class Visible:
    """The part of the garment in frame: body rows [top, bottom] and whether sleeves show."""

    top: float
    bottom: float
    hem_in_view: bool
    sleeves: bool
    neck_y: float  # lowest point of the neckline (where a bow or lace-up starts)


def trend_shapes(d: Design, elements: list[str], vis: Visible, rng: np.random.Generator):
    """Shapes of every element, in drawing order."""
    out: list[Shape] = []
    for name in elements:
        out += _DRAW[name](d, vis, rng)
    return out


def _rows(vis: Visible, lo: float, hi: float, rng: np.random.Generator, size: float) -> float:
    """A height for an element of `size` inside both [lo, hi] and the visible rows."""
    a = max(lo, vis.top + 0.08)
    b = min(hi, vis.bottom - size - 0.05)
    if b <= a:
        return (max(vis.top + 0.08, 1.5) + min(vis.bottom - size, 4.5)) / 2
    return uniform(rng, a, b)


def _ruffles(d: Design, vis: Visible, rng: np.random.Generator) -> list[Shape]:
    if vis.hem_in_view and rng.random() < 0.6:
        y = d.hem_y - 0.06
    else:
        y = _rows(vis, vis.neck_y + 0.1, d.hem_y - 0.5, rng, 0.3)
    out = []
    for tier in range(2 if rng.random() < 0.5 else 1):  # flounces with rounded scallops
        yt = y + tier * 0.22
        hw = half_width(d, yt) + 0.12
        k = max(4, int(hw / 0.2))
        t = np.linspace(0, k * np.pi, 12 * k + 1)
        xs = np.linspace(-hw, hw, len(t))
        edge = yt + 0.26 + 0.09 * np.abs(np.sin(t))
        band = np.concatenate([[[-hw + 0.05, yt]], np.stack([xs, edge], 1), [[hw - 0.05, yt]]])
        out.append(poly(band, RUFFLE))
        out.append(line([[-hw + 0.05, yt + 0.02], [hw - 0.05, yt + 0.02]], STITCH, 0.025))
        for x in np.linspace(-hw, hw, k + 1)[1:-1]:
            out.append(line([[x, yt + 0.06], [x, yt + 0.3]], STITCH, 0.02))
    return out


def _bow(d: Design, vis: Visible, rng: np.random.Generator) -> list[Shape]:
    if vis.top < vis.neck_y - 0.05 and rng.random() < 0.7:
        c = np.array([0.0, vis.neck_y + 0.12])
    else:
        c = np.array([pick(rng, (-0.45, 0.0, 0.45)), _rows(vis, 2.3, 3.1, rng, 0.4)])
    s = uniform(rng, 1.2, 1.5)
    loop = np.array([[0, 0], [0.3, -0.17], [0.34, 0.15]]) * s
    tail = np.array([[0.02, 0.02], [0.2, 0.42], [0.1, 0.45], [-0.01, 0.06]]) * s
    out = []
    for shp in (loop, tail):
        out += both_sides(poly(c + shp, TRIM))
    out.append(ellipse(c[0], c[1], 0.07 * s, 0.08 * s, TRIM))
    out += both_sides(line(c + np.array([[0.06, 0.0], [0.28, -0.08]]) * s, STITCH, 0.02))
    return out


def _embroidery(d: Design, vis: Visible, rng: np.random.Generator) -> list[Shape]:
    y = _rows(vis, 1.8, 3.0, rng, 0.65)
    x = pick(rng, (-0.4, 0.4)) if rng.random() < 0.7 else 0.0
    out = []
    threads = [THREAD_A, THREAD_B, THREAD_C]
    k_ = 1.4  # three stitched flowers on stems
    for k in range(3):
        fx, fy = x + (k - 1) * 0.17 * k_, y + (0.12 if k == 1 else 0.2) * k_
        out.append(line([[fx, fy], [x, y + 0.45 * k_]], THREAD_B, 0.03))
        for p in range(5):
            a = 2 * math.pi * p / 5
            out.append(
                ellipse(
                    fx + 0.075 * math.cos(a),
                    fy + 0.075 * math.sin(a),
                    0.055,
                    0.055,
                    threads[(k + p) % 3],
                )
            )
        out.append(ellipse(fx, fy, 0.04, 0.04, THREAD_C))
    for sx in (-1, 1):  # two leaves
        out.append(ellipse(x + sx * 0.12, y + 0.5, 0.1, 0.045, THREAD_B))
    return out


def _cut_out(d: Design, vis: Visible, rng: np.random.Generator) -> list[Shape]:
    """Openings that show the mannequin: a keyhole, side or shoulder cut-outs, or a row of holes."""
    choices = ["side", "row"]
    if vis.top < vis.neck_y + 0.2:
        choices.append("keyhole")
    if vis.sleeves and d.sleeve in SLEEVE_FRACTION and d.sleeve != "cup_sleeves":
        (jx, jy), _, (nx, ny) = arm_axis(d.arm_angle)
        (ex, ey), _ = sleeve_end(d)
        # on the upper sleeve
        shoulder = (jx + 0.45 * (ex - jx) + 0.02 * nx, jy + 0.45 * (ey - jy) + 0.02 * ny)
        if shoulder[1] > vis.top + 0.3:
            choices.append("shoulder")
    kind = pick(rng, choices)
    if kind == "keyhole":
        y = vis.neck_y + 0.05
        tear = [[0, y], [0.14, y + 0.25], [0.1, y + 0.45], [0, y + 0.5], [-0.1, y + 0.45],
                [-0.14, y + 0.25]]  # fmt: skip
        return [poly(tear, 1, "hole")]
    if kind == "shoulder":
        return both_sides(ellipse(shoulder[0], shoulder[1], 0.13, 0.2, 1, "hole"))
    if kind == "side" or vis.bottom < 2.6:
        y = _rows(vis, 2.2, min(3.3, d.hem_y - 0.45), rng, 0.35)
        hw = half_width(d, y)
        return both_sides(ellipse(hw - 0.22, y + 0.17, 0.13, 0.2, 1, "hole"))
    y = _rows(vis, 1.9, 3.2, rng, 0.2)
    return [ellipse(x, y, 0.1, 0.1, 1, "hole") for x in np.linspace(-0.45, 0.45, 4)]


def _rivets(d: Design, vis: Visible, rng: np.random.Generator) -> list[Shape]:
    out = []
    if vis.top < 1.6 and rng.random() < 0.5:  # along the shoulders
        pts = [(x, 1.32 + 0.18 * x) for x in np.linspace(0.35, 0.85, 3)]
        pts += [(-x, y) for x, y in pts]
    else:
        y = _rows(vis, 1.9, d.hem_y - 0.3, rng, 0.3)
        hw = half_width(d, y) - 0.18
        pts = [(x, y) for x in np.linspace(-hw, hw, 6)]
        if rng.random() < 0.5:
            pts += [(x, y + 0.26) for x in np.linspace(-hw + 0.15, hw - 0.15, 5)]
    for x, y in pts:
        out.append(ellipse(x, y, 0.09, 0.09, METAL))
    return out


def _tassels(d: Design, vis: Visible, rng: np.random.Generator) -> list[Shape]:
    y = d.hem_y - 0.04 if vis.hem_in_view else _rows(vis, 1.9, 3.2, rng, 0.4)
    hw = half_width(d, y)
    out = [line([[-hw, y], [hw, y]], BAND, 0.08)]
    for x in np.arange(-hw + 0.05, hw, 0.11):
        out.append(line([[x, y], [x + 0.03, y + 0.48]], BAND, 0.05))
    return out


def _pockets(d: Design, vis: Visible, rng: np.random.Generator) -> list[Shape]:
    chest = vis.top < 1.95 and rng.random() < 0.5
    w, h = (0.34, 0.38) if chest else (0.44, 0.46)
    y = _rows(vis, 1.9, 2.3, rng, h) if chest else _rows(vis, 2.6, d.hem_y - 0.6, rng, h)
    x = 0.42 if chest else min(0.5, half_width(d, y) - 0.3)
    out = []
    for sx in (-1, 1):
        cx = sx * x
        box = np.array([[cx - w / 2, y], [cx + w / 2, y], [cx + w / 2, y + h], [cx - w / 2, y + h]])
        out.append(poly(box, POCKET))
        out.append(line([[cx - w / 2, y + 0.1], [cx + w / 2, y + 0.1]], STITCH, 0.025))
        out.append(Shape("line", np.concatenate([box, box[:1]]), STITCH, 0.02))
    return out


def _lace_up(d: Design, vis: Visible, rng: np.random.Generator) -> list[Shape]:
    top = max(vis.neck_y, vis.top + 0.1)
    if d.placket != "none" or top > 2.4:
        top = _rows(vis, 2.2, 3.0, rng, 0.7)
        cx = half_width(d, top + 0.35) - 0.22
        centres = [cx, -cx]
    else:
        centres = [0.0]
    out = []
    for cx in centres:
        ys = np.linspace(top + 0.06, top + 0.74, 4)
        slit = [[cx - 0.09, top], [cx + 0.09, top], [cx + 0.04, top + 0.8], [cx - 0.04, top + 0.8]]
        out.append(Shape("poly", np.array(slit), 1, layer="hole"))
        for y in ys:
            out += [ellipse(cx + sx * 0.15, y, 0.045, 0.045, METAL) for sx in (-1, 1)]
        for a, b in itertools.pairwise(ys):
            out.append(line([[cx - 0.15, a], [cx + 0.15, b]], CORD, 0.05))
            out.append(line([[cx + 0.15, a], [cx - 0.15, b]], CORD, 0.05))
        end = [[cx, ys[0]], [cx - 0.12, ys[0]], [cx - 0.2, ys[0] + 0.45]]
        out.append(line(end, CORD, 0.05))
    return out


_DRAW = {
    "ruffles": _ruffles,
    "bow": _bow,
    "embroidery": _embroidery,
    "cut_out": _cut_out,
    "rivets": _rivets,
    "tassels": _tassels,
    "patch_pockets": _pockets,
    "lace_up": _lace_up,
}
