"""Front-view geometry of one top on a faint mannequin, in body units (1 unit = one head height).

The mannequin is the fixed reference that makes lengths decidable: its shoulders, hips, knees and
ankles sit at the same heights in every image (y grows downwards from the top of the head), so a
sleeve's end is judged against the arm and hand, and a hem against hip, thigh, knee, calf and
ankle. Everything here is pure geometry: lists of `Shape`s tagged with a region id; `scene`
rasterises them and `surface` colours the regions.
"""

from __future__ import annotations

import bisect
import functools
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# -- regions of the garment map (0 = no garment) ----------------------------------------------
BODY, PANEL, SLEEVE, TRIM, COLLAR, BAND, LINING, BUTTON, METAL, STITCH = range(1, 11)
TOPSTITCH, THREAD_A, THREAD_B, THREAD_C, CORD, RUFFLE, POCKET, HOOD = range(11, 19)
N_REGIONS = 19
FABRIC_REGIONS = (BODY, PANEL, SLEEVE, TRIM, COLLAR, BAND, RUFFLE, POCKET, HOOD)

# -- mannequin landmarks (units) ----------------------------------------------------------------
NECK_BASE = 1.22
SHOULDER_Y = 1.48
ARM_JOINT = (0.92, 1.6)
ARM_LEN = 2.75  # shoulder joint to wrist
HAND_LEN = 0.62
WAIST_Y, HIP_Y, CROTCH_Y, KNEE_Y, ANKLE_Y, FLOOR_Y = 2.85, 3.6, 4.0, 5.9, 7.75, 8.02

SLEEVE_FRACTION = {
    "cup_sleeves": 0.13,
    "short_sleeves": 0.32,
    "elbow_sleeves": 0.5,
    "three_quarter_sleeves": 0.67,
    "wrist_length": 0.84,
    "long_sleeves": 1.02,
    "extra_long_sleeves": 1.26,
}
HEM_Y = {
    "high_waist": 2.55,
    "regular": 3.55,
    "long": 4.28,
    "micro": 4.95,
    "knee": 5.9,
    "midi": 6.8,
    "ankle_floor": 7.7,
}


@dataclass(frozen=True)
class FitProfile:
    """Half-widths of the body at armpit, waist and hip, and how the garment flares below."""

    shoulder: float
    armpit_y: float
    bust: float
    waist: float
    hip: float
    flare: float  # extra half-width per unit below the hip
    sleeve: float  # sleeve ease: multiplier of the arm's half-width


FITS = {
    "slim": FitProfile(0.95, 1.98, 0.82, 0.58, 0.86, 0.02, 1.15),
    "regular": FitProfile(1.0, 2.06, 0.96, 0.95, 0.98, 0.05, 1.55),
    "loose": FitProfile(1.1, 2.22, 1.12, 1.2, 1.3, 0.14, 2.0),  # A-line: wider towards the hem
    "oversized": FitProfile(1.36, 2.55, 1.42, 1.42, 1.42, 0.08, 2.5),
}

# Where a V opening ends (y): shallow against deep, several pixels apart even at 64 px.
V_DEPTH = {"v_neck": 1.95, "deep_v_neck": 3.0}
# Lowest point (y) of each collar's visible parts: a crop must start below it to hide the collar.
COLLAR_BOTTOM = {
    "round_neck": 1.72,
    "v_neck": V_DEPTH["v_neck"] + 0.07,  # the trim band runs a little below the point
    "deep_v_neck": V_DEPTH["deep_v_neck"] + 0.07,
    "square_neck": 1.96,
    "turtleneck": 1.45,
    "shirt_collar": 1.82,
    "lapel": 2.75,
    "stand_collar": 1.5,
    "hood": 2.35,
    "off_shoulder": 1.95,
    "boat_neck": 1.5,
    "peter_pan": 1.78,
}
COLLAR_TOP = {"hood": -0.12, "turtleneck": 0.86, "stand_collar": 1.02}
HEM_BAND = 0.28  # depth of a rib or contrast band at the hem


@dataclass
class Shape:
    """A polygon / ellipse (bbox) / polyline in units, written into `layer` with `value`."""

    kind: str  # "poly" | "ellipse" | "line"
    pts: np.ndarray
    value: int
    width: float = 0.0  # line width in units
    layer: str = "garment"  # "garment" | "mannequin" | "hole" | "panel" | "detail"


@dataclass
class Design:
    """Everything the drawing needs, with hidden attributes already replaced by drawable ones."""

    category: str
    fit: str
    collar: str  # a drawable collar (a shallow stand-in when the label is invisible)
    sleeve: str  # a SLEEVE_FRACTION key, or "sleeveless"
    arms_hidden: bool  # arms behind the back: no arms and no sleeves in view
    hem_y: float
    placket: str
    texture: str
    fabric: str
    arm_angle: float  # radians from vertical
    curved_hem: bool = False
    hem_band: bool = False
    cuffs: bool = False
    kangaroo: bool = False
    belt: bool = False


# -- small geometry helpers -------------------------------------------------------------------


def _memo(*fields: str) -> Callable:
    """Cache a geometry function of a Design on the fields it reads: designs repeat a lot, and
    the outlines are only ever read (never mutate a result)."""

    # one C call for the fields: a generator of getattr calls cost as much as the lookup
    fields_of = operator.attrgetter(*fields)

    def wrap(fn: Callable) -> Callable:
        cache: dict[tuple, object] = {}

        @functools.wraps(fn)
        def inner(d: Design, *args: object) -> object:
            key = (fields_of(d), args)
            hit = cache.get(key)
            if hit is None:
                if len(cache) >= _MEMO_SIZE:
                    cache.clear()
                hit = cache[key] = fn(d, *args)
            return hit

        return inner

    return wrap


_MEMO_SIZE = 4096


Point = Sequence[float]
Points = list[list[float]]  # an outline being assembled in Python floats (see `quad`)


def arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 12):
    t = np.linspace(a0, a1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def quad(p0: Point, p1: Point, p2: Point, n: int = 10) -> Points:
    """Quadratic Bezier curve through p0 and p2 pulled towards p1, as [x, y] lists of Python
    floats: outlines are assembled in floats and made an array once (numpy costs a microsecond
    or more per call on a few points; the arithmetic is numpy's, so the bits are too)."""
    (x0, y0), (x1, y1), (x2, y2) = p0, p1, p2
    return [[a * x0 + b * x1 + c * x2, a * y0 + b * y1 + c * y2] for a, b, c in _bernstein(n)]


@lru_cache(maxsize=32)
def _bernstein(n: int) -> list[tuple[float, float, float]]:
    """The three weights of a quadratic Bezier curve at each of n even steps (built once:
    outlines ask for the same few n thousands of times)."""
    t = np.linspace(0, 1, n)
    return list(
        zip(((1 - t) ** 2).tolist(), (2 * (1 - t) * t).tolist(), (t**2).tolist(), strict=True)
    )


# multiplies points into their mirror image across the centre line (one numpy call, where a
# copy and a negated column are three)
_FLIP_X = np.array([-1.0, 1.0])


def sym(right: np.ndarray | Points) -> np.ndarray:
    """A closed symmetric outline from its right half (listed top to bottom)."""
    right = np.asarray(right, float)
    return np.concatenate([right, right[::-1] * _FLIP_X])


def poly(pts, value: int, layer: str = "garment") -> Shape:
    return Shape("poly", np.asarray(pts, float), value, layer=layer)


def line(pts, value: int, width: float, layer: str = "garment") -> Shape:
    return Shape("line", np.asarray(pts, float), value, width, layer)


def ellipse(cx: float, cy: float, rx: float, ry: float, value: int, layer="garment") -> Shape:
    return Shape("ellipse", np.array([[cx - rx, cy - ry], [cx + rx, cy + ry]]), value, layer=layer)


def both_sides(shape: Shape) -> list[Shape]:
    """A shape and its mirror image across the centre line."""
    m = shape.pts * _FLIP_X
    if shape.kind == "ellipse":
        m = m[::-1]
    return [shape, Shape(shape.kind, m, shape.value, shape.width, shape.layer)]


# -- the mannequin ----------------------------------------------------------------------------


def arm_axis(angle: float) -> tuple[Point, Point, Point]:
    """Right arm: joint, unit direction down the arm, unit normal pointing outwards (as float
    pairs: the points along the arm are a few floats each, see `quad`)."""
    sin, cos = math.sin(angle), math.cos(angle)
    return ARM_JOINT, (sin, cos), (cos, -sin)


def arm_half_width(s: float) -> float:
    """Half-width of the arm at distance s from the joint (upper arm to wrist)."""
    return _interp(s, [0, 1.3, ARM_LEN], [0.2, 0.15, 0.1])


@lru_cache(maxsize=1)
def _mannequin_body() -> tuple[Shape, ...]:
    """Head, neck, torso and legs: the same in every image (the scale reference)."""
    m, v = "mannequin", 255
    shapes = [ellipse(0, 0.5, 0.34, 0.47, v, m), poly(sym([[0.15, 0.85], [0.16, 1.3]]), v, m)]
    torso = [
        [0.16, 1.2],
        [0.55, 1.3],
        [0.9, 1.44],
        [0.99, 1.62],
        [0.88, 2.0],
        [0.8, 2.35],
        [0.66, WAIST_Y],
        [0.8, 3.3],
        [0.88, HIP_Y],
        [0.86, CROTCH_Y],
        [0.0, CROTCH_Y + 0.06],
    ]
    shapes.append(poly(sym(torso), v, m))
    leg = np.array(
        [
            [0.02, CROTCH_Y],
            [0.86, 3.8],
            [0.78, 4.9],
            [0.58, KNEE_Y - 0.15],
            [0.54, KNEE_Y + 0.1],
            [0.6, 6.6],
            [0.48, ANKLE_Y],
            [0.56, FLOOR_Y],
            [0.24, FLOOR_Y],
            [0.3, ANKLE_Y],
            [0.2, 6.7],
            [0.24, KNEE_Y + 0.1],
            [0.2, KNEE_Y - 0.15],
            [0.1, 4.9],
        ]
    )
    shapes += both_sides(poly(leg, v, m))
    return tuple(shapes)


@lru_cache(maxsize=1)
def _straight_arm() -> tuple[np.ndarray, np.ndarray]:
    """Outlines of the right arm and hand hanging straight down, relative to the joint."""
    s = np.linspace(0, ARM_LEN, 6)
    w = np.array([arm_half_width(x) for x in s.tolist()])
    d, n = np.array([0.0, 1.0]), np.array([1.0, 0.0])
    centre = s[:, None] * d
    arm = np.concatenate([centre + w[:, None] * n, (centre - w[:, None] * n)[::-1]])
    tip, wrist = (ARM_LEN + HAND_LEN) * d, ARM_LEN * d
    hand = np.concatenate(
        [
            [wrist + 0.1 * n],
            quad(wrist + 0.14 * n, tip + 0.2 * n, tip, 6),
            quad(tip, tip - 0.16 * n, wrist - 0.12 * n, 6),
            [wrist - 0.1 * n],
        ]
    )
    return arm, hand


@lru_cache(maxsize=256)
def mannequin(angle: float, arms: bool) -> tuple[Shape, ...]:
    """Head, neck, torso, legs and (unless hidden) arms with hands held out by `angle`."""
    shapes = list(_mannequin_body())
    if arms:
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array(
            [[c, -s], [s, c]]
        )  # maps down (0, 1) to (sin, cos), out (1, 0) to (cos, -sin)
        for part in _straight_arm():
            shapes += both_sides(poly(part @ rot + np.array(ARM_JOINT), 255, "mannequin"))
    return tuple(shapes)


# -- the garment --------------------------------------------------------------------------------


# (heights, half-widths) that `half_width` interpolates, per fit
_WIDTH_KNOTS = {
    name: (
        [f.armpit_y, WAIST_Y, HIP_Y, 9.0],
        [f.bust, f.waist, f.hip, f.hip + f.flare * (9.0 - HIP_Y)],
    )
    for name, f in FITS.items()
}


def half_width(d: Design, y: float) -> float:
    """Half-width of the garment body at height y (in Python floats: drawing a garment asks a
    dozen times, and numpy's overhead on one number is ten times the arithmetic)."""
    y = float(y)
    w = _interp(y, *_WIDTH_KNOTS[d.fit])
    if d.category == "blouse":  # A-line
        w = w + 0.14 * max(y - 2.3, 0.0)
    if d.category == "coat":
        w = w + 0.05 * max(y - HIP_Y, 0.0)
    return w


def _interp(x: float, xp: list[float], fp: list[float]) -> float:
    """np.interp of one number, in the same arithmetic (so the same result to the bit)."""
    if x <= xp[0]:
        return fp[0]
    if x >= xp[-1]:
        return fp[-1]
    j = bisect.bisect_right(xp, x) - 1
    if x == xp[j]:
        return fp[j]
    return (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]) * (x - xp[j]) + fp[j]


def shoulder_point(d: Design) -> tuple[float, float]:
    f = FITS[d.fit]
    x = f.shoulder + (0.04 if d.category in ("jacket", "coat") else 0.0)
    drop = 0.2 if d.fit == "oversized" else 0.0
    return x, SHOULDER_Y + 0.02 + drop


def sleeve_end(d: Design) -> tuple[tuple[float, float], float]:
    """Centre of the sleeve's end and its half-width there."""
    (jx, jy), (ax, ay), _ = arm_axis(d.arm_angle)
    s = SLEEVE_FRACTION[d.sleeve] * ARM_LEN
    ease = FITS[d.fit].sleeve
    w = arm_half_width(min(s, ARM_LEN)) * ease + 0.03
    if d.sleeve == "extra_long_sleeves":
        w = max(w, 0.22) + 0.05
    if d.category == "blouse" and d.sleeve in ("elbow_sleeves", "three_quarter_sleeves"):
        w *= 1.3  # bell sleeves
    return (jx + s * ax, jy + s * ay), w


def sleeve_reach(d: Design) -> tuple[float, float]:
    """(max |x|, max y) the sleeve or the arm and hand reach; what a frame must contain.
    Python floats: the frame's size inherits their type, and a numpy float64 there made the
    surface maps of three images in four float64 arrays (twice the work of float32)."""
    (jx, jy), (ax, ay), (nx, ny) = arm_axis(d.arm_angle)
    reach = ARM_LEN + HAND_LEN
    xmax, ymax = abs(jx + reach * ax) + 0.16, jy + reach * ay + 0.06
    if d.sleeve != "sleeveless":
        (ex, ey), w = sleeve_end(d)
        xmax = max(xmax, ex + w * nx + 0.02)
        ymax = max(ymax, ey + w * abs(ny) + 0.02)
    return xmax, ymax


@_memo(
    "category",
    "fit",
    "collar",
    "sleeve",
    "arms_hidden",
    "hem_y",
    "hem_band",
    "curved_hem",
    "texture",
    "placket",
)
def body_outline(d: Design) -> np.ndarray:
    """Closed outline of the body, from the collar's top edge down to the hem (assembled in
    Python floats, see `quad`: a hidden length makes hem_y continuous, so this is rarely cached)."""
    right = neck(d, BAND).top.tolist()
    f = FITS[d.fit]
    sx, sy = right[-1]
    ap = f.armpit_y + (0.25 if d.category == "vest" else 0.0)
    bust = half_width(d, ap)
    if d.sleeve == "sleeveless" and not d.arms_hidden:
        inset = 0.18 if d.category in ("vest", "camisole") else 0.1
        right += quad((sx, sy), (sx - inset, (sy + ap) / 2), (bust, ap), 6)[1:]
    else:
        right += quad((sx, sy), (max(sx, bust) + 0.04, (sy + ap) / 2), (bust, ap), 6)[1:]
    hem = float(d.hem_y)
    right += [
        [half_width(d, y), y] for y in (WAIST_Y, HIP_Y, 4.6, 5.5, 6.5) if ap + 0.1 < y < hem - 0.05
    ]
    hw = half_width(d, hem)
    if d.hem_band:
        right += [[hw, hem - HEM_BAND], [hw - 0.06, hem]]
    else:
        right.append([hw, hem])
    if d.curved_hem:
        right[-1] = [hw, hem - 0.25]
        right += quad((hw, hem - 0.25), (hw * 0.7, hem + 0.12), (0, hem + 0.12), 8)
    elif d.category == "vest" and d.placket in ("single_breasted", "double_breasted"):
        right.append([0.0, hem + 0.18])  # waistcoat points
    else:
        right.append([0.0, hem])
    if d.texture == "pleated":  # a pleated hem zig-zags
        k = 7
        xs = np.linspace(hw, 0, 2 * k + 1).tolist()
        right[-1:] = [[x, hem + 0.07 * (i % 2)] for i, x in enumerate(xs)]
    return sym(right)


def fuzzy(outline: np.ndarray, depth: float) -> np.ndarray:
    """A fuzzy silhouette (fleece): the outline densified and wiggled by about `depth` units,
    deterministically, with tufts about 1.5 `depth` apart."""
    closed = np.concatenate([outline, outline[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    t = np.concatenate([[0], np.cumsum(seg)])
    s = np.arange(0, t[-1], 0.75 * depth)
    pts = np.stack([np.interp(s, t, closed[:, 0]), np.interp(s, t, closed[:, 1])], 1)
    k = 1 / depth
    wiggle = depth * np.sin(s * 2.1 * k) * np.cos(s * 0.67 * k)
    pts[:, 0] += wiggle * np.sign(pts[:, 0])
    pts[:, 1] += wiggle
    return pts


@_memo("sleeve", "fit", "category", "arm_angle", "collar")
def sleeve_shape(d: Design, left: bool = False) -> np.ndarray:
    """Outline of one sleeve from shoulder seam to its end (assembled in Python floats, see
    `quad`; the left one is the right one mirrored, not drawn again)."""
    if left:
        return sleeve_shape(d) * _FLIP_X
    _, (ax, ay), (nx, ny) = arm_axis(d.arm_angle)
    sx, sy = shoulder_point(d)
    (ex, ey), w = sleeve_end(d)
    f = FITS[d.fit]
    ap = [half_width(d, f.armpit_y) - 0.02, f.armpit_y]
    if d.collar == "off_shoulder":
        sx, sy = sx + 0.05, 1.86
    out = (ex + w * nx, ey + w * ny)
    if d.sleeve == "cup_sleeves":
        inner = (sx - 0.12, sy + 0.34)
        pts = [
            [sx, sy],
            *quad((sx, sy), (out[0] + 0.05 * nx, out[1] + 0.05 * ny), out, 5)[1:],
            *quad(out, (ex - 0.1 * nx + 0.08 * ax, ey - 0.1 * ny + 0.08 * ay), inner, 6)[1:],
        ]
    else:
        if d.category == "blouse" and d.sleeve == "short_sleeves":
            puff = (sx + 0.35 * ax + 0.16 * nx, sy + 0.35 * ay + 0.16 * ny)  # a puffed shoulder
            pts = quad((sx, sy), puff, out, 6)
        else:
            mid = ((sx + out[0]) / 2 + 0.03 * nx, (sy + out[1]) / 2 + 0.03 * ny)
            pts = quad((sx, sy), mid, out, 5)
        pts += [[ex - w * nx, ey - w * ny], ap]
    return np.array(pts)


def cuff(d: Design, depth: float = 0.2) -> list[Shape]:
    """A band at each sleeve end (shirt cuff or rib)."""
    _, (ax, ay), (nx, ny) = arm_axis(d.arm_angle)
    (ex, ey), w = sleeve_end(d)
    out, inn = (ex + w * nx, ey + w * ny), (ex - w * nx, ey - w * ny)
    band = [
        out,
        inn,
        (inn[0] - depth * ax, inn[1] - depth * ay),
        (out[0] - depth * ax, out[1] - depth * ay),
    ]
    return both_sides(poly(band, BAND))


# -- collars --------------------------------------------------------------------------------


@dataclass
class Neck:
    """The collar's effect on the body: top edge of the body, hole to cut, pieces to draw."""

    top: np.ndarray  # right half of the body's top edge, centre to shoulder point
    hole: np.ndarray | None  # opening that shows the mannequin
    trim: np.ndarray | None  # band drawn around the opening (slightly larger than the hole)
    pieces: list[Shape]
    placket_top: float  # where a front placket starts


@_memo("collar", "category", "fit")
def neck(d: Design, trim_region: int) -> Neck:
    """Geometry of the drawn collar (see COLLAR_BOTTOM for how low each one reaches)."""
    s = shoulder_point(d)
    c = d.collar
    if c == "off_shoulder":
        edge = np.array(quad([0, 1.78], [0.6, 1.8], [s[0] + 0.08, 1.86], 6))
        band = np.concatenate([edge, (edge + np.array([0.0, 0.12]))[::-1]])
        pieces = both_sides(poly(band, trim_region))  # the elastic band across the arms
        return Neck(edge, None, None, pieces, 1.95)
    if d.category == "camisole":
        return _camisole_neck(d, trim_region)
    nw = _neck_width(c)
    base = [[nw, NECK_BASE + 0.02]]
    base += [[x, y] for x, y in ((0.55, 1.27), (0.88, 1.4)) if nw + 0.05 < x < s[0] - 0.05]
    top = np.concatenate([[[0.0, NECK_BASE]], base, [s]])
    return Neck(top, *_opening(c))


def _neck_width(collar: str) -> float:
    """Half-width of the neck opening a collar leaves."""
    return _NECK_WIDTH.get(collar, 0.3)


_NECK_WIDTH = {"boat_neck": 0.62, "square_neck": 0.42, "turtleneck": 0.2, "stand_collar": 0.22}


@lru_cache(maxsize=16)  # one per collar
def _opening(c: str) -> tuple[np.ndarray | None, np.ndarray | None, list[Shape], float]:
    """A collar's hole, trim band, pieces and placket top (see `Neck`): the same for every
    garment with collar c, so built once per collar (`neck`, cached per collar, category and
    fit, missed on 124 of 580 calls over 300 images)."""
    nw = _neck_width(c)
    pieces: list[Shape] = []
    hole: np.ndarray | None = None
    placket_top = 1.7
    if c == "round_neck":
        hole = sym(
            np.concatenate(
                [[[nw, NECK_BASE - 0.1]], quad([nw, NECK_BASE], [nw, 1.66], [0, 1.67], 6)]
            )
        )
    elif c in ("v_neck", "deep_v_neck"):
        depth = V_DEPTH[c]
        hole = sym([[nw, NECK_BASE - 0.1], [nw, NECK_BASE], [0.0, depth]])
        placket_top = depth
    elif c == "square_neck":
        hole = sym([[nw, NECK_BASE - 0.1], [nw, 1.9], [0, 1.9]])
        placket_top = 1.93
    elif c == "boat_neck":
        hole = sym(
            np.concatenate(
                [[[nw, NECK_BASE - 0.1]], quad([nw, NECK_BASE + 0.04], [0.3, 1.43], [0, 1.43], 6)]
            )
        )
        placket_top = 1.45
    elif c == "turtleneck":
        tube = sym([[0.23, 0.86], [0.25, 1.3], [0.0, 1.36]])
        pieces.append(poly(tube, COLLAR))
        for y in (1.0, 1.12):  # roll folds
            pieces.append(line([[-0.23, y], [0.23, y]], STITCH, 0.025))
        placket_top = 1.36
    elif c == "stand_collar":
        band = sym([[0.22, 1.02], [0.25, 1.3], [0.0, 1.36]])
        pieces.append(poly(band, COLLAR))
        pieces.append(line([[0, 1.03], [0, 1.36]], STITCH, 0.03))
        placket_top = 1.36
    elif c == "shirt_collar":
        hole = sym([[0.2, NECK_BASE - 0.12], [0.2, NECK_BASE], [0.0, 1.5]])
        stand = sym([[0.2, 1.08], [0.22, 1.3], [0.0, 1.34]])
        pieces.append(poly(stand, COLLAR))
        flap = np.array([[0.02, 1.3], [0.26, 1.1], [0.5, 1.34], [0.44, 1.45], [0.12, 1.78]])
        pieces += both_sides(poly(flap, COLLAR))
        placket_top = 1.5
    elif c == "peter_pan":
        hole = sym(
            np.concatenate(
                [[[nw, NECK_BASE - 0.1]], quad([nw, NECK_BASE], [nw, 1.48], [0, 1.5], 6)]
            )
        )
        flap = np.concatenate(
            [
                [[0.02, 1.5]],
                quad([0.02, 1.5], [0.04, 1.7], [0.3, 1.7], 5),
                quad([0.3, 1.7], [0.58, 1.64], [0.5, 1.28], 6),
                [[0.24, NECK_BASE + 0.02]],
            ]
        )
        pieces += both_sides(poly(flap, COLLAR))
        placket_top = 1.72
    elif c == "lapel":
        depth = 2.65
        hole = sym([[0.2, NECK_BASE - 0.12], [0.22, NECK_BASE], [0.0, depth]])
        stand = sym([[0.2, 1.08], [0.24, 1.3], [0.0, 1.36]])
        pieces.append(poly(stand, COLLAR))
        collar_flap = np.array([[0.04, 1.32], [0.24, 1.12], [0.5, 1.3], [0.5, 1.56], [0.3, 1.62]])
        lapel = np.array(
            [[0.3, 1.62], [0.5, 1.56], [0.62, 1.86], [0.02, depth + 0.02], [0.16, 1.9]]
        )
        pieces += both_sides(poly(lapel, COLLAR))
        pieces += both_sides(poly(collar_flap, COLLAR))
        placket_top = depth
    elif c == "hood":
        outer = np.concatenate(
            [
                arc(0, 0.58, 0.6, 0.72, math.pi, 2 * math.pi, 16),
                [[0.64, 1.3], [0.42, 1.52], [0, 1.6], [-0.42, 1.52], [-0.64, 1.3]],
            ]
        )
        pieces.append(poly(outer, HOOD))
        pieces.append(poly(arc(0, 0.6, 0.44, 0.58, 0, 2 * math.pi, 20), LINING))
        pieces.append(ellipse(0, 0.53, 0.32, 0.45, 0))  # the face
        hole = sym([[0.16, 1.2], [0.0, 1.62]])
        for x in (-0.12, 0.12):
            pieces.append(line([[x, 1.5], [x * 1.3, 2.3]], CORD, 0.04))
            pieces.append(ellipse(x * 1.3, 2.32, 0.035, 0.05, METAL))
        placket_top = 1.6
    trim = None
    if hole is not None:  # a band along the opening, flush with the body's top edge
        trim = _grow(hole, 0.1)
        trim[:, 1] = np.maximum(trim[:, 1], NECK_BASE + 0.01)
    return hole, trim, pieces, placket_top


def _camisole_neck(d: Design, trim_region: int) -> Neck:
    """Camisoles: no shoulders, a straight/V/square/scoop top edge and thin straps."""
    c = d.collar
    y = 1.92
    if c in ("v_neck", "deep_v_neck"):
        top = np.array([[0.0, 2.25 if c == "v_neck" else 2.6], [0.32, 1.86], [0.62, 1.9]])
    elif c == "square_neck":
        top = np.array([[0.0, 1.88], [0.36, 1.88], [0.38, 1.78], [0.62, 1.82]])
    else:
        top = np.concatenate([quad([0, 2.08], [0.3, 2.06], [0.4, y - 0.04], 5), [[0.62, y]]])
    pieces = both_sides(line([[0.38, top[-2][1] + 0.02], [0.44, 1.26]], trim_region, 0.05))
    return Neck(top, None, None, pieces, float(top[0][1]))


def _grow(pts: np.ndarray, by: float) -> np.ndarray:
    """The outline pushed outwards from its centroid by about `by` units."""
    c = pts.mean(0)
    v = pts - c
    r = np.linalg.norm(v, axis=1, keepdims=True)
    return c + v * (1 + by / np.maximum(r, 1e-6))


# -- plackets ---------------------------------------------------------------------------------


def placket(d: Design, top: float, trim_region: int) -> tuple[list[Shape], np.ndarray | None]:
    """Shapes of the front closure, and an opening (to cut) for open fronts."""
    p, hem = d.placket, d.hem_y
    out: list[Shape] = []
    if p == "none":
        return out, None
    bottom = hem - (HEM_BAND + 0.03 if d.hem_band else 0.05)
    if p == "single_breasted":
        end = min(2.3, bottom) if d.category == "polo" else bottom
        out.append(poly([[-0.08, top], [0.08, top], [0.08, end], [-0.08, end]], trim_region))
        for y in np.arange(top + 0.18, end - 0.05, 0.4):
            out.append(ellipse(0, y, 0.065, 0.065, BUTTON))
    elif p == "double_breasted":  # the top front laps over to the right: two button columns
        start = max(top, 1.7)
        out.append(line([[0.34, start], [0.34, bottom]], trim_region, 0.06))
        for y in np.arange(start + 0.25, min(bottom, 4.3), 0.5)[:3]:
            out += both_sides(ellipse(0.2, y, 0.065, 0.065, BUTTON))
    elif p in ("zip", "half_zip"):  # zip tape, metal teeth and a pull
        end = min(top + 1.0, bottom) if p == "half_zip" else bottom
        out.append(line([[0, top], [0, end]], trim_region, 0.17))
        out.append(line([[0, top], [0, end]], METAL, 0.07))
        out.append(line([[0, top], [0, end]], STITCH, 0.02))
        tab = [[-0.06, top + 0.02], [0.06, top + 0.02], [0.04, top + 0.28], [-0.04, top + 0.28]]
        out.append(poly(tab, METAL))
        out.append(ellipse(0, end, 0.06, 0.04, METAL))
    elif p == "open_front":
        hole = np.array([[-0.1, top], [0.1, top], [0.28, bottom + 0.3], [-0.28, bottom + 0.3]])
        out += both_sides(line([[0.12, top], [0.31, bottom]], trim_region, 0.1))
        return out, hole
    elif p == "wrap":  # one front crosses over the other to a tie at the side of the waist
        knot = np.array([0.6, WAIST_Y - 0.1])
        out.append(line([[0.26, NECK_BASE + 0.04], [0.02, 2.05]], STITCH, 0.04))
        out.append(line([[-0.28, NECK_BASE + 0.04], knot], trim_region, 0.15))
        out.append(line([knot, [0.8, bottom]], STITCH, 0.04))
        out.append(ellipse(knot[0], knot[1], 0.12, 0.09, trim_region))
        out.append(line([knot, knot + np.array([0.14, 0.6])], trim_region, 0.08))
        out.append(line([knot, knot + np.array([-0.05, 0.65])], trim_region, 0.08))
    return out, None
