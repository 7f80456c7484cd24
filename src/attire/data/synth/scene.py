"""One product photo: plan the frame from the labels, draw the figure, light and shade it.

Invisibility is made by the camera, not painted: a hidden collar is cropped off by the top of the
frame, a hidden hem by its bottom (the garment is drawn long enough to run out of frame), hidden
sleeves either run out of the frame or the arms are held behind the back. The frame is chosen by
`plan_view` so that every *visible* attribute is entirely inside it (sleeve ends with the hands,
the hem with enough leg below it to judge the length, the collar with the head above it).

Shapes are rasterised with ImageDraw on a canvas twice the output size and reduced 2x (box
filter), which anti-aliases every edge; surfaces are numpy maps over the garment's bounding box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from attire.data.synth import garment as g
from attire.data.synth.decor import Visible, trend_shapes
from attire.data.synth.draws import pick, uniform
from attire.data.synth.labels import LabelError, check_labels
from attire.data.synth.surface import (
    F32,
    fabric_maps,
    luminance,
    pattern_ink,
    sample_colour,
    secondary_ink,
    texture_maps,
    tone_on_tone,
)

SUPERSAMPLE = 2
MIN_DOT = 2.6  # output pixels: the smallest button, rivet or eyelet still reads as a dot
_MIN_R = MIN_DOT * SUPERSAMPLE / 2  # in canvas pixels
PLACED_PRINTS = ("graphic_print", "letter_print")  # main patterns printed on the chest
_CUFF_CATEGORIES = ("shirt", "sweater", "hoodie", "cardigan", "jacket", "coat", "polo")
_MANNEQUIN_TONES = np.array(
    [
        [0.93, 0.8, 0.7],
        [0.8, 0.62, 0.5],
        [0.52, 0.37, 0.29],
        [0.9, 0.89, 0.86],
        [0.58, 0.58, 0.6],
        [0.2, 0.2, 0.22],
    ],
    F32,
)


@dataclass
class View:
    """The frame in body units: centre x, top y, side length, and a small rotation (radians)."""

    xc: float
    y0: float
    h: float
    angle: float
    clear_x: float  # the figure lies within |x| <= clear_x


@dataclass
class Plan:
    """Everything decided before drawing: the drawable design, the frame and what it shows."""

    labels: dict
    design: g.Design
    view: View
    visible: Visible
    show_collar: bool
    show_sleeves: bool
    show_hem: bool


# -- planning ---------------------------------------------------------------------------------


def _drawn_collar(labels: dict, rng: np.random.Generator) -> str:
    """The label's collar, or a shallow stand-in that a crop can hide when it is invisible."""
    if labels["collar"] != "invisible":
        return labels["collar"]
    if labels["category"] == "camisole":
        return "square_neck"
    if labels["category"] == "hoodie":
        return "stand_collar"
    return pick(rng, ("round_neck", "stand_collar", "boat_neck"))


def _collar_bottom(d: g.Design) -> float:
    if d.category == "camisole":
        return {"v_neck": 2.3, "deep_v_neck": 2.65, "square_neck": 1.93}.get(d.collar, 2.12)
    return g.COLLAR_BOTTOM[d.collar]


def plan(labels: dict, rng: np.random.Generator) -> Plan:
    """Resolve hidden attributes into drawable ones and choose a frame that hides exactly them."""
    cat = labels["category"]
    show_collar = labels["collar"] != "invisible"
    show_sleeves = labels["sleeve_length"] != "invisible"
    show_hem = labels["garment_length"] != "invisible"
    sleeve = labels["sleeve_length"]
    arms_hidden = False
    if not show_sleeves:
        croppable = cat not in ("vest", "camisole") and labels["garment_length"] in (
            "high_waist",
            "invisible",
        )
        if croppable and rng.random() < 0.6:
            sleeve = "extra_long_sleeves" if rng.random() < 0.5 else "long_sleeves"
        else:
            sleeve, arms_hidden = "sleeveless", True
    spread = round(uniform(rng, 11, 15) * 2) / 2  # half-degree steps: outlines can be cached
    angle = math.radians(spread + (4 if labels["fit"] == "oversized" else 0))
    hem = g.HEM_Y[labels["garment_length"]] if show_hem else 0.0
    d = g.Design(
        category=cat,
        fit=labels["fit"],
        collar=_drawn_collar(labels, rng),
        sleeve=sleeve,
        arms_hidden=arms_hidden,
        hem_y=hem,
        placket=labels["placket"],
        texture=labels["texture"],
        fabric=labels["fabric"],
        arm_angle=angle,
    )
    d.curved_hem = (cat == "shirt" and rng.random() < 0.7) or (
        cat == "blouse" and rng.random() < 0.2
    )
    d.hem_band = cat in ("sweater", "hoodie", "cardigan") or (
        cat == "jacket" and rng.random() < 0.5
    )
    d.cuffs = cat in _CUFF_CATEGORIES and g.SLEEVE_FRACTION.get(sleeve, 0) >= 0.7
    d.kangaroo = cat == "hoodie"
    d.belt = cat == "coat" and rng.random() < 0.35
    if d.curved_hem and d.texture == "pleated":
        d.curved_hem = False
    view = plan_view(d, show_collar, show_sleeves, show_hem, rng)
    visible = Visible(
        top=view.y0,
        bottom=min(view.y0 + view.h, d.hem_y),
        hem_in_view=show_hem,
        sleeves=show_sleeves and sleeve != "sleeveless",
        neck_y=g.COLLAR_BOTTOM.get(d.collar, 1.6) if d.collar != "lapel" else 2.65,
    )
    return Plan(labels, d, view, visible, show_collar, show_sleeves, show_hem)


def plan_view(
    d: g.Design, show_collar: bool, show_sleeves: bool, show_hem: bool, rng: np.random.Generator
) -> View:
    """A square frame containing every visible attribute and none of the hidden ones.

    Sets `d.hem_y` when the length is hidden (the garment is drawn long enough to leave the
    frame), and falls back to arms behind the back when cropped-off sleeves cannot fit.
    """
    top = g.COLLAR_TOP.get(d.collar, 1.0) if d.category != "camisole" else 1.0
    if show_collar:  # cropped at the chin or above, as catalogue shots are: the garment fills it
        y0 = top - uniform(rng, 0.08, 0.25)
    else:
        y0 = _collar_bottom(d) + uniform(rng, 0.12, 0.35)
    sleeve_crop = not show_sleeves and not d.arms_hidden
    for _ in range(2):
        widest = g.half_width(d, d.hem_y if show_hem else 4.5)
        need_x = widest + 0.15
        lo = 0.0
        hi = 9.2  # the floor is at 8.02: below ~9 there is only backdrop
        if show_sleeves:
            reach_x, reach_y = g.sleeve_reach(d)
            need_x = max(need_x, reach_x + 0.1)
            lo = max(lo, reach_y + 0.1)
        elif sleeve_crop:
            e, _ = g.sleeve_end(d)
            hi = min(hi, e[1] - 0.45)
        lo = max(lo, y0 + 2 * need_x)
        if show_hem:  # enough leg below the hem to judge its height, and the hips (a crop top
            # is told from a hip-length top against them); a lower floor than 4.3 also gives crop
            # tops, under half the garment pixels of the average top, a little more room
            lo = max(lo, d.hem_y + uniform(rng, 0.45, 0.7), g.HIP_Y + 0.2)
        else:
            d.hem_y = max(lo + uniform(rng, 0.5, 1.4), 3.9)
            hi = min(hi, d.hem_y - 0.35)
        if lo <= hi or not sleeve_crop:
            break
        d.sleeve, d.arms_hidden, sleeve_crop = "sleeveless", True, False
        d.cuffs = False
    y1 = lo + uniform(rng, 0, max(0.0, min(0.1, hi - lo)))
    h = y1 - y0
    slack = max(0.0, h / 2 - need_x)
    xc = uniform(rng, -1, 1) * min(slack, 0.25)
    return View(xc, y0, h, math.radians(uniform(rng, -3, 3)), need_x)


# -- shapes -------------------------------------------------------------------------------------


@dataclass
class Colours:
    main: np.ndarray
    ink: np.ndarray  # the patterns' second colour (secondary colour, or a shade of the main)
    mannequin: np.ndarray
    lut: np.ndarray  # (N_REGIONS, 3) base colour of each region


def shapes(p: Plan, rng: np.random.Generator, px: float) -> tuple[list[g.Shape], str]:
    """Every shape in drawing order, and how the secondary colour is carried ('trim' etc.).

    px: the length of one output pixel in units (fine outlines are drawn at least that coarse).
    """
    d, lab = p.design, p.labels
    out = list(g.mannequin(d.arm_angle, not d.arms_hidden))
    one_pattern = lab["main_pattern"] == "solid" and lab["secondary_pattern"] == "none"
    trim_mode = one_pattern and lab["secondary_colour"] != "none"
    trim_region = g.TRIM if trim_mode else g.BAND
    if trim_mode and p.show_hem and d.category not in ("camisole",):
        d.hem_band = True
    if trim_mode and p.show_sleeves and d.sleeve not in ("sleeveless", "cup_sleeves"):
        d.cuffs = True
    nk = g.neck(d, trim_region)
    behind = [s.value in (g.HOOD, g.LINING, 0) for s in nk.pieces]  # the hood frames the head
    out += [s for s, b in zip(nk.pieces, behind, strict=True) if b]
    body = g.body_outline(d)
    if d.fabric == "fleece":
        body = g.fuzzy(body, max(0.022, 1.2 * px))
    out.append(g.poly(body, g.BODY))
    out += _panels(p, trim_mode, rng)
    if d.hem_band:
        hw = g.half_width(d, d.hem_y) + 0.01
        depth = g.HEM_BAND
        band = [
            [hw, d.hem_y - depth],
            [hw - 0.06, d.hem_y],
            [-hw + 0.06, d.hem_y],
            [-hw, d.hem_y - depth],
        ]
        out.append(g.poly(band, g.TRIM if trim_mode else g.BAND))
    if d.kangaroo and d.hem_y > 3.2:
        y = min(d.hem_y - 0.25, 3.5)
        out.append(g.poly([[-0.5, y - 0.62], [0.5, y - 0.62], [0.68, y], [-0.68, y]], g.POCKET))
        out += g.both_sides(g.line([[0.5, y - 0.62], [0.68, y]], g.STITCH, 0.05))
    if d.sleeve != "sleeveless" and not d.arms_hidden:
        out.append(g.poly(g.sleeve_shape(d), g.SLEEVE))
        out.append(g.poly(g.sleeve_shape(d, True), g.SLEEVE))
        if d.cuffs:
            cuff = g.cuff(d, 0.26 if d.category in ("shirt", "coat", "jacket") else 0.22)
            out += [g.Shape(s.kind, s.pts, g.TRIM if trim_mode else g.BAND) for s in cuff]
    if nk.trim is not None:
        out.append(g.poly(nk.trim, g.TRIM if trim_mode else g.BAND))
    if nk.hole is not None:
        out.append(g.poly(nk.hole, 0))
    out += [s for s, b in zip(nk.pieces, behind, strict=True) if not b]
    pl, opening = g.placket(d, nk.placket_top, g.TRIM if trim_mode else g.BAND)
    if opening is not None:
        out.append(g.Shape("poly", opening, 1, layer="hole"))
    out += pl
    if d.belt:
        y = g.WAIST_Y + 0.1
        hw = g.half_width(d, y) + 0.02
        out.append(
            g.poly(
                [[-hw, y - 0.09], [hw, y - 0.09], [hw, y + 0.09], [-hw, y + 0.09]],
                g.TRIM if trim_mode else g.BAND,
            )
        )
        out.append(g.ellipse(0.0, y, 0.12, 0.1, g.METAL))
    out += _category_details(p, nk.placket_top)
    if d.fabric == "denim":
        out += _topstitching(d, body)
    out += trend_shapes(d, list(lab["trend_elements"]), p.visible, rng)
    return out, ("trim" if trim_mode else "pattern")


def _category_details(p: Plan, neck_y: float) -> list[g.Shape]:
    """Seams and details that tell categories apart whatever the other attributes are."""
    d, cat = p.design, p.design.category
    out: list[g.Shape] = []
    hem = d.hem_y - (g.HEM_BAND if d.hem_band else 0.0)
    if cat == "shirt":  # yoke seam
        out.append(g.line([[-0.9, 1.72], [0.9, 1.72]], g.STITCH, 0.02, "detail"))
    elif cat in ("t_shirt", "polo") and not d.hem_band:  # twin-needle hem
        hw = g.half_width(d, hem) - 0.02
        for dy in (0.08, 0.12):
            out.append(g.line([[-hw, hem - dy], [hw, hem - dy]], g.STITCH, 0.014, "detail"))
    elif cat == "blouse" and p.show_collar and d.collar != "off_shoulder":  # gathers
        y = min(neck_y, 1.75) + 0.04
        for x in np.linspace(-0.3, 0.3, 6):
            out.append(g.line([[x * 0.8, y], [x, y + 0.3]], g.STITCH, 0.018, "detail"))
    elif cat in ("jacket", "coat"):  # princess seams and welt pockets
        for sx in (-1, 1):
            out.append(
                g.line(
                    [[sx * 0.55, 1.4], [sx * 0.45, 2.6], [sx * 0.5, hem]], g.STITCH, 0.02, "detail"
                )
            )
            if hem > 3.3:
                y = min(3.15, hem - 0.3)
                out.append(
                    g.line([[sx * 0.35, y], [sx * 0.72, y - 0.08]], g.STITCH, 0.04, "detail")
                )
    return out


def _panels(p: Plan, trim_mode: bool, rng: np.random.Generator) -> list[g.Shape]:
    """Colour-block panels, or side trims that carry a secondary colour; always inside the
    visible rows of the body. (A secondary pattern's panel is cut from the drawn body's pixels:
    `_secondary_panel`.)"""
    d, lab, vis = p.design, p.labels, p.visible
    y_top, y_bot = max(vis.top, _body_top(d)), min(vis.bottom, d.hem_y)
    span = max(y_bot - y_top, 0.3)
    wide = 3.0
    if lab["main_pattern"] == "colour_block":  # the second colour takes at most ~40%
        style = pick(rng, ("lower", "side", "diagonal", "centre"))
        if style == "lower":
            split = y_bot - 0.38 * span
            return [_panel([[-wide, split], [wide, split], [wide, 9], [-wide, 9]], g.PANEL)]
        if style == "side":
            return [_panel([[0.3, 0], [wide, 0], [wide, 9], [0.3, 9]], g.PANEL)]
        if style == "centre":
            return [_panel([[-0.3, 0], [0.3, 0], [0.3, 9], [-0.3, 9]], g.PANEL)]
        a, b = y_top + 0.45 * span, y_bot - 0.05 * span
        return [_panel([[wide, a - 1.5], [wide, 9], [-wide, 9], [-wide, b + 1.5]], g.PANEL)]
    if trim_mode and not (vis.hem_in_view or vis.sleeves or vis.top < 1.6):
        hw = g.half_width(d, y_top)
        return [
            _panel([[hw - 0.2, 0], [wide, 0], [wide, 9], [hw - 0.2, 9]], g.TRIM),
            _panel([[-hw + 0.2, 0], [-wide, 0], [-wide, 9], [-hw + 0.2, 9]], g.TRIM),
        ]
    return []


def _body_top(d: g.Design) -> float:
    """Where the body proper starts (a camisole's is below its straps)."""
    return 1.9 if d.category == "camisole" else g.NECK_BASE


SECONDARY_SHARE = (0.38, 0.45)  # of the garment's visible patterned pixels
SLEEVE_SHARE = 0.6  # at most this much of the secondary pattern's pixels on the sleeves


def _secondary_panel(
    region: np.ndarray, box: tuple[int, int, int, int], raster: Raster, p: Plan, share: float
) -> None:
    """Recolour body pixels of `region` (in place) into the panel that, with the lower sleeves,
    carries the secondary pattern: sleeves and panel together `share` of the visible patterned
    pixels (body, hood, sleeves), the sleeves at most `SLEEVE_SHARE` of that, the panel at most
    60% of the body. Sized in pixels, not units, because the frame decides what shows: on r8's
    test images a share over 50% (a third of them) left main pattern accuracy at 0.37-0.54,
    against 0.80 at 30-40%; without the sleeves (r10) the secondary pattern lost more than the
    main one gained. A yoke when the neckline is in view,
    else a hem band, else side panels; a placed print keeps the middle of its chest box clear
    (printed over a pattern it was illegible)."""
    d, vis = p.design, p.visible
    flat = region.ravel()  # a view: writes go to `region`
    body = np.flatnonzero(flat == g.BODY)
    if len(body) == 0:
        return
    # pixel centres are separable: a row and a column combined by broadcasting, then the
    # body's pixels taken (a third of the cost of dividing their flat indices into rows)
    px = np.arange(region.shape[1], dtype=F32) + F32(box[0] + 0.5)
    py = np.arange(region.shape[0], dtype=F32) + F32(box[1] + 0.5)
    u, v = (a.ravel().take(body) for a in raster.units(px[None, :], py[:, None]))
    sleeve = np.flatnonzero(flat == g.SLEEVE)
    patterned = len(body) + len(sleeve) + int(np.count_nonzero(flat == g.HOOD))
    budget = share * patterned
    sleeves = _lower_sleeves(flat, sleeve, round(SLEEVE_SHARE * budget))
    k = round(min(max(budget - sleeves, 0.0), 0.6 * len(body)))
    placed = p.labels["main_pattern"] in PLACED_PRINTS
    _, py0, _, py1 = _chest_box(p)
    clear_below = (py0 + py1) / 2 + 0.3  # a band under a placed print starts below this
    pick = None
    if vis.top < _body_top(d) + 0.05 and d.category != "camisole" and not placed:
        pick = _smallest(v, k)  # a yoke: the top rows
    elif vis.hem_in_view or placed:
        band = _smallest(-v, k)  # a band: the bottom rows
        if not placed or (k > 0 and v[band].min() > clear_below):
            pick = band
    if pick is None:  # side panels (beside a placed print: its outer 36% only)
        y_top = max(vis.top, _body_top(d))
        inner = g.half_width(d, y_top) * 0.64 if placed else 0.0
        side = np.abs(u)
        pick = _smallest(-side, min(k, int(np.count_nonzero(side > inner))))
    flat[body[pick]] = g.PANEL


def _smallest(key: np.ndarray, k: int) -> np.ndarray:
    """A mask of the k smallest keys, ties going to the earlier ones: the first k of a stable
    sort, found by selection (O(n)): sorting every body pixel cost more than the panel."""
    if k <= 0:
        return np.zeros(len(key), bool)
    if k >= len(key):
        return np.ones(len(key), bool)
    t = np.partition(key, k - 1)[k - 1]
    pick = key < t
    ties = np.flatnonzero(key == t)[: k - int(np.count_nonzero(pick))]
    pick[ties] = True
    return pick


def _lower_sleeves(flat: np.ndarray, sleeve: np.ndarray, most: int) -> int:
    """Keep the secondary pattern on at most `most` sleeve pixels, the lowest ones (cuff side):
    the upper sleeves above them take the main pattern (drawn as body). Long sleeves beside a
    small body held the whole secondary share on r11's test images, and the main pattern then
    had 0.34 accuracy; thin sleeves also show a motif worse than a panel does. `sleeve` indexes
    the sleeve pixels of the flat region map in row order (the upper ones first). Returns the
    sleeve pixels left."""
    if len(sleeve) > most:
        flat[sleeve[: len(sleeve) - most]] = g.BODY
    return min(len(sleeve), most)


def _panel(pts: list, value: int) -> g.Shape:
    """A region that recolours the body where it overlaps it (and nothing else)."""
    return g.Shape("poly", np.asarray(pts, float), value, layer="panel")


def _topstitching(d: g.Design, body: np.ndarray) -> list[g.Shape]:
    """Denim's contrast stitching: along the hem, the sides and the yoke."""
    hw = g.half_width(d, d.hem_y) - 0.08
    out = [g.line([[-hw, d.hem_y - 0.1], [hw, d.hem_y - 0.1]], g.TOPSTITCH, 0.035, "detail")]
    yoke = [[-0.95, 1.8], [-0.3, 1.95], [0.3, 1.95], [0.95, 1.8]]
    out.append(g.line(yoke, g.TOPSTITCH, 0.035, "detail"))
    for sx in (-1, 1):
        side = [[sx * 0.5, 1.95], [sx * 0.55, d.hem_y - 0.1]]
        out.append(g.line(side, g.TOPSTITCH, 0.035, "detail"))
    return out


# -- colours --------------------------------------------------------------------------------


def colours(p: Plan, mode: str, rng: np.random.Generator) -> Colours:
    """The colour of each region, the patterns' ink and the mannequin's tone. Rows of the table
    are set one at a time: a fancy-indexed assignment costs about ten of them."""
    lab = p.labels
    main = sample_colour(lab["main_colour"], rng)
    lum = luminance(main)  # computed once, as numpy float32 arithmetic (the picks depend on it)
    sec = None
    if lab["secondary_colour"] != "none":  # of a few shades of the class, the most contrasting
        shades = [sample_colour(lab["secondary_colour"], rng) for _ in range(3)]
        chroma = main - lum
        sec = max(shades, key=lambda c: _contrast(c, lum, chroma))
    tone = tone_on_tone(main)
    ink = sec if sec is not None else tone
    trim = sec if sec is not None else tone * 0.5 + main * 0.5
    lut = np.zeros((g.N_REGIONS, 3), F32)
    lut[g.BODY] = lut[g.SLEEVE] = lut[g.HOOD] = main
    # raised parts catch the light, so shapes of the garment's own colour still read
    lut[g.COLLAR] = lut[g.RUFFLE] = np.minimum(main * 1.1 + 0.05, 1)
    lut[g.PANEL] = ink if lab["main_pattern"] == "colour_block" else main
    # the second colour is carried by the ink AND the trims (bands, pockets, bows): wherever a
    # garment has one, its bands show it even when the print is small
    lut[g.TRIM] = lut[g.POCKET] = lut[g.BAND] = trim
    if mode == "trim" and p.design.collar not in ("hood", "off_shoulder"):
        lut[g.COLLAR] = trim  # contrast collar
    lut[g.LINING] = trim * 0.7 if mode == "trim" else main * 0.47  # the hood's shaded inside
    # (main + 0.22 is positive: only the upper bound of a clip applies, at a fifth of its cost)
    lut[g.STITCH] = np.minimum(main + 0.22, 1) if lum < 0.35 else main * 0.55
    lut[g.TOPSTITCH] = (0.86, 0.62, 0.22)
    # hardware and cords stand out from the garment: light ones on dark colours and vice versa
    metals = [m for m, m_lum in _METALS if abs(m_lum - lum) > 0.25] or [m for m, _ in _METALS]
    metal = pick(rng, metals)
    lut[g.METAL] = metal
    contrast = _LIGHT_CONTRAST if lum < 0.5 else _DARK_CONTRAST
    lut[g.BUTTON] = metal if rng.random() < 0.3 else contrast
    # three of the thread hues, in random order (the regions are consecutive)
    lut[g.THREAD_A : g.THREAD_C + 1] = _THREAD_HUES[rng.permutation(len(_THREAD_HUES))[:3]]
    lut[g.CORD] = contrast
    tones = range(len(_MANNEQUIN_TONES))  # picked by index, to look their luminances up
    mann = pick(rng, tones)
    for _ in range(6):
        if abs(_MANNEQUIN_LUMINANCE[mann] - lum) > 0.18:
            break
        mann = pick(rng, tones)
    return Colours(main, ink, _MANNEQUIN_TONES[mann], lut)


# each metal with its luminance
_METALS = [
    (m, luminance(m))
    for m in (np.array(c, F32) for c in ((0.8, 0.8, 0.82), (0.85, 0.68, 0.3), (0.36, 0.36, 0.38)))
]
_MANNEQUIN_LUMINANCE = [luminance(t) for t in _MANNEQUIN_TONES]
_LIGHT_CONTRAST = np.array((0.95, 0.94, 0.9), F32)  # buttons and cords on a dark garment
_DARK_CONTRAST = np.array((0.12, 0.1, 0.1), F32)
_THREAD_HUES = np.array(
    [(0.9, 0.2, 0.25), (0.98, 0.8, 0.2), (0.2, 0.6, 0.3), (0.3, 0.45, 0.9), (0.95, 0.55, 0.7)]
)


def _contrast(c: np.ndarray, lum: float, chroma: np.ndarray) -> float:
    """How far colour c stands from one of luminance `lum` and chroma (colour minus luminance)
    `chroma`: their luminance gap plus half their chromatic distance (0 for two greys; halved to
    the scale of a luminance gap)."""
    c_lum = luminance(c)
    return abs(c_lum - lum) + float(np.abs((c - c_lum) - chroma).sum()) / 2


@dataclass(frozen=True)
class Light:
    """Studio light: brightness plus a linear gradient over the frame (coordinates -0.5..0.5)."""

    level: float
    gx: float
    gy: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Light:
        gx, gy = uniform(rng, -0.12, 0.12), uniform(rng, -0.12, 0.12)
        return cls(uniform(rng, 0.94, 1.06), gx, gy)

    def grid(self, rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
        """Light factor at pixel rows x cols of an n x n canvas."""
        ty = ((rows + 0.5) / n - 0.5).astype(F32)
        tx = ((cols + 0.5) / n - 0.5).astype(F32)
        return self.level + self.gx * tx[None, :] + self.gy * ty[:, None]


def background(
    n: int,
    col: Colours,
    p: Plan,
    light: Light,
    silhouette: Image.Image,
    rng: np.random.Generator,
) -> Image.Image:
    """A studio backdrop with the figure's soft shadow: low-saturation tone, gradient, vignette,
    kept apart from the brightness of the garment AND of the mannequin, so that the silhouette,
    the arms and the legs (the references of sleeve and garment length) all show. Smooth, so
    drawn at a quarter of the canvas size (like `silhouette`) and scaled up."""
    r = rng.random()
    if r < 0.6:
        v, s = uniform(rng, 0.78, 0.97), uniform(rng, 0, 0.05)
    elif r < 0.85:
        v, s = uniform(rng, 0.8, 0.95), uniform(rng, 0.06, 0.16)
    else:
        v, s = uniform(rng, 0.35, 0.6), uniform(rng, 0, 0.06)
    avoid = (luminance(col.main), luminance(col.mannequin))
    if min(abs(v - a) for a in avoid) < 0.2:  # the most distinct of a few other tones
        v = float(max(rng.uniform(0.08, 0.97, 6), key=lambda c: min(abs(c - a) for a in avoid)))
    hue = uniform(rng, 0, 2 * math.pi)
    tint = np.array([math.cos(hue), math.cos(hue - 2.1), math.cos(hue + 2.1)], F32)
    tone = np.clip(v * (1 + s * tint), 0, 1).astype(F32)
    # smooth, so computed at the output size and repeated 2x2 (the final reduce undoes that)
    m = n // SUPERSAMPLE
    idx, ys = _backdrop_grid(m)
    vign = uniform(rng, 0.0, 0.25)
    vert = (1 + uniform(rng, -0.12, 0.12) * ys) * (1 - vign * ys**2)
    prof = vert[:, None] * (1 - vign * ys[None, :] ** 2) * light.grid(idx, idx, n)
    floor_y = (g.FLOOR_Y - 0.04 - p.view.y0) / p.view.h
    if floor_y < 1:
        prof[max(0, int(floor_y * m)) :] *= F32(0.93)
    # the shadow: the silhouette (a quarter of the canvas) blurred, shifted down and sideways
    k = _BG_STEP // SUPERSAMPLE
    sil = np.asarray(silhouette.filter(ImageFilter.BoxBlur(2))).repeat(k, 0).repeat(k, 1)
    if sil.shape != (m, m):  # odd sizes: pad the edge
        sil = np.pad(sil[:m, :m], ((0, max(0, m - sil.shape[0])), (0, max(0, m - sil.shape[1]))))
    dx, dy = (int(v) for v in rng.integers(1, max(2, m // 20), 2))
    dx *= pick(rng, (-1, 1))
    # darken where the shifted silhouette falls (elsewhere the factor would be exactly 1)
    shadow = sil[: m - dy, max(-dx, 0) : m - max(dx, 0)] * F32(1 / 255)
    prof[dy:, max(dx, 0) : m + min(dx, 0)] *= 1 - uniform(rng, 0.15, 0.35) * shadow
    # colour = brightness x tone, as grey levels times a solid tint, looked up as RGBX words
    top = float(tone.max()) or 1.0
    grey = np.clip(prof * F32(255 * top) + F32(0.5), 0, 255).astype(np.uint8)
    rgb = Image.frombytes("RGB", (m, m), _tint_words(_rgb(tone / top)).take(grey), "raw", "RGBX")
    return rgb.resize((n, n), Image.NEAREST)


def _tint_words(tint: tuple[int, int, int]) -> np.ndarray:
    """Grey level -> RGBX word of that grey times `tint`, rounded as ImageChops.multiply does
    (a table lookup is several times faster than multiplying two images)."""
    words = np.zeros((256, 4), np.uint8)
    words[:, :3] = np.arange(256)[:, None] * np.array(tint) // 255
    return words.view(np.uint32).ravel()


_BG_STEP = 4


@lru_cache(maxsize=4)
def _backdrop_grid(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Canvas rows of the backdrop's m samples, and their heights in -0.5..0.5."""
    return np.arange(m) * SUPERSAMPLE + SUPERSAMPLE // 2, np.linspace(-0.5, 0.5, m, dtype=F32)


# -- raster -----------------------------------------------------------------------------------


class Raster:
    """Units -> canvas pixels for one view (scale, offset, rotation about the centre)."""

    def __init__(self, view: View, n: int):
        self.n, self.s = n, n / view.h
        c, si = math.cos(view.angle), math.sin(view.angle)
        # pixel = R @ ((x - xc) * s, (y - y0) * s - n/2) + (n/2, n/2)
        self.m = np.array([[c * self.s, -si * self.s], [si * self.s, c * self.s]])
        off = np.array([-view.xc * self.s, -view.y0 * self.s - n / 2])
        self.t = self.m @ (off / self.s) + np.array([n / 2, n / 2])
        self.inv = self.m.T / self.s**2  # m is a scaled rotation

    def units(self, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u, v) unit coordinates of canvas points (pixel centres are at +0.5)."""
        a = self.inv.astype(F32)
        x, y = px - F32(self.t[0]), py - F32(self.t[1])
        return a[0, 0] * x + a[0, 1] * y, a[1, 0] * x + a[1, 1] * y

    def project(self, shapes: list[g.Shape], scale: float = 1.0) -> list[list[float]]:
        """Every shape's points in canvas pixels (times `scale`), flat [x0, y0, x1, ...] as
        ImageDraw takes them: one matrix product and one conversion to floats for all shapes."""
        allpts = np.concatenate([sh.pts for sh in shapes]) @ self.m.T + self.t
        if scale != 1.0:
            allpts *= scale
        flat = allpts.ravel().tolist()
        ends = np.cumsum([2 * len(sh.pts) for sh in shapes]).tolist()
        return [flat[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]

    def draw(
        self,
        shapes: list[g.Shape],
        pts: list[list[float]],
        target: ImageDraw.ImageDraw,
        fill: object = None,
        outline: object = None,
        scale: float = 1.0,
    ) -> None:
        """Rasterise shapes projected at `scale` (`project`, with the same scale: it also sizes
        the line widths and dots) onto `target`. `fill`/`outline` override the shape's value (to
        paint the mannequin straight onto the RGB canvas, outlined); `scale` < 1 draws on a
        smaller canvas."""
        for s, q in zip(shapes, pts, strict=True):
            value = s.value if fill is None else fill
            if s.kind == "poly":
                target.polygon(q, fill=value)
                if outline is not None:  # a line, not polygon(width=2): that one builds masks
                    target.line([*q, *q[:2]], fill=outline, width=2)
            elif s.kind == "line":  # at least one output pixel wide (Pillow draws a sloped
                # line of width w about w - 1 pixels thick)
                w = max(1, round(max(s.width * self.s, SUPERSAMPLE + 1) * scale))
                target.line(q, fill=value, width=w, joint="curve")
            else:  # at least MIN_DOT output pixels across (in Python floats: two points)
                x0, y0, x1, y1 = q
                (u0, v0), (u1, v1) = s.pts.tolist()
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                rx = max(abs(u1 - u0) * (self.s / 2), _MIN_R) * scale
                ry = max(abs(v1 - v0) * (self.s / 2), _MIN_R) * scale
                target.ellipse(
                    [cx - rx, cy - ry, cx + rx, cy + ry], fill=value, outline=outline, width=2
                )


def by_layer(
    shapes: list[g.Shape], pts: list[list[float]]
) -> dict[str, tuple[list[g.Shape], list[list[float]]]]:
    """The shapes of each layer with their projected points, in drawing order: each layer is
    drawn on its own image, and most garments have no holes, panels or seams."""
    out: dict[str, tuple[list[g.Shape], list[list[float]]]] = {}
    for s, q in zip(shapes, pts, strict=True):
        group = out.setdefault(s.layer, ([], []))
        group[0].append(s)
        group[1].append(q)
    return out


# -- compositing ------------------------------------------------------------------------------


def _edges(region: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour belongs to another region (seams, outlines)."""
    e = np.zeros(region.shape, bool)
    across = region[:, :-1] != region[:, 1:]  # a change between columns marks both sides
    e[:, :-1] |= across
    e[:, 1:] |= across
    down = region[:-1, :] != region[1:, :]
    e[:-1, :] |= down
    e[1:, :] |= down
    return e


def render(labels: dict, size: int = 128, rng: np.random.Generator | None = None) -> Image.Image:
    """Draw one garment with these (clean) labels as a size x size RGB image.

    labels: every task of the default taxonomy -> class id (a list of ids for trend_elements),
    as `LabelModel.sample` returns them; rng: drives every random choice of the drawing.
    """
    rng = rng if rng is not None else np.random.default_rng()
    check_labels(labels)
    if size < 16:
        raise LabelError(f"image size must be at least 16 pixels (got {size})")
    p = plan(labels, rng)
    figure, mode = shapes(p, rng, p.view.h / size)
    col = colours(p, mode, rng)
    n = size * SUPERSAMPLE
    raster = Raster(p.view, n)
    groups = by_layer(figure, raster.project(figure))
    layers = {
        k: Image.new("L", (n, n), 0) for k in _GARMENT_LAYERS if k == "garment" or k in groups
    }
    for k, im in layers.items():
        if k in groups:
            raster.draw(*groups[k], ImageDraw.Draw(im))
    # the shadow is blurred anyway: its silhouette is drawn at a quarter of the canvas size
    side = -(-n // _BG_STEP)  # the size Image.reduce gives
    small = Image.new("L", (side, side), 0)
    body, quarter = groups["mannequin"][0], 1 / _BG_STEP
    raster.draw(body, raster.project(body, quarter), ImageDraw.Draw(small), 255, scale=quarter)
    # plus any pixel the garment touches: a sum scaled far up and clipped is 255 wherever
    # either image is not 0 (one pass, where Image.point also rounds its table in Python)
    small = ImageChops.add(small, layers["garment"].reduce(_BG_STEP), scale=0.001)

    light = Light.sample(rng)
    img = background(n, col, p, light, small, rng)
    fill, edge = _rgb(col.mannequin * light.level), _rgb(col.mannequin * 0.8 * light.level)
    raster.draw(*groups["mannequin"], ImageDraw.Draw(img), fill, edge)
    box = layers["garment"].getbbox()
    if box is not None:
        region = np.array(layers["garment"].crop(box))
        if "panel" in layers:  # recolours the body only
            panel = np.asarray(layers["panel"].crop(box))
            np.copyto(region, panel, where=(panel > 0) & (region == g.BODY))
        if p.labels["secondary_pattern"] != "none":
            _secondary_panel(region, box, raster, p, uniform(rng, *SECONDARY_SHARE))
        if "detail" in layers:  # seams: on any part of the garment
            detail = np.asarray(layers["detail"].crop(box))
            np.copyto(region, detail, where=(detail > 0) & (region > 0))
        hole = np.asarray(layers["hole"].crop(box)) if "hole" in layers else None
        rgba, mask = _garment(region, hole, box, raster, p, col, light, rng)
        img.paste(rgba, box[:2], mask)
    prop = _prop(p, rng)
    if prop:
        colour = pick(rng, _PROP_COLOURS)
        fill = _rgb(sample_colour(colour, rng) * light.level)
        edge = _rgb(np.array(fill, F32) / 255 * 0.7)
        raster.draw(prop, raster.project(prop), ImageDraw.Draw(img), fill, edge)
    return img.reduce(SUPERSAMPLE)


_GARMENT_LAYERS = ("garment", "hole", "panel", "detail")
_PROP_COLOURS = ("brown", "beige", "grey", "white", "green")


def _prop(p: Plan, rng: np.random.Generator) -> list[g.Shape]:
    """Now and then a studio prop (box, plant pot, stool) in a bottom corner, beside the figure
    where the frame leaves room (tall frames): it hides backdrop, never the garment or body."""
    v = p.view
    side = pick(rng, (-1.0, 1.0))
    inner = side * (v.clear_x + 0.1)
    edge = v.xc + side * v.h / 2
    if rng.random() > 0.25 or side * (edge - inner) < 0.6:
        return []
    bottom = v.y0 + v.h
    top = bottom - uniform(rng, 0.2, 0.35) * v.h
    outer = edge + side  # beyond the frame
    kind = int(rng.integers(3))
    if kind == 0:  # a box
        box = [[inner, top], [outer, top], [outer, 9.5], [inner, 9.5]]
        return [g.Shape("poly", np.array(box), 1, layer="prop")]
    if kind == 1:  # a plant pot with leaves
        mid, w = (inner + edge) / 2, abs(edge - inner) / 2
        pot = [[mid - w * 0.7, top + 0.5], [mid + w * 0.7, top + 0.5], [mid + w * 0.5, 9.5],
               [mid - w * 0.5, 9.5]]  # fmt: skip
        leaves = [
            g.ellipse(mid + dx * w, top + 0.3, 0.35 * w, 0.3, 1, "prop") for dx in (-0.4, 0.4)
        ]
        return [*leaves, g.Shape("poly", np.array(pot), 1, layer="prop")]
    seat = [[inner, top], [outer, top], [outer, top + 0.15], [inner, top + 0.15]]
    leg = g.line([[inner + side * 0.1, top + 0.1], [inner + side * 0.1, 9.5]], 1, 0.08, "prop")
    return [g.Shape("poly", np.array(seat), 1, layer="prop"), leg]


def _rgb(c: np.ndarray) -> tuple[int, int, int]:
    r, g_, b = (min(255, max(0, int(float(x) * 255 + 0.5))) for x in c)
    return (r, g_, b)


def _garment(
    region2d: np.ndarray,
    hole: np.ndarray | None,
    box: tuple[int, int, int, int],
    raster: Raster,
    p: Plan,
    col: Colours,
    light: Light,
    rng: np.random.Generator,
) -> tuple[Image.Image, Image.Image]:
    """Colour, pattern, texture and fabric of the garment in its bounding box (left, top, right,
    bottom), given its region and hole maps cropped to that box (no hole map: nothing is cut
    out), as an RGBA image and the mask to paste it with (itself, or 1-bit where it is opaque).

    Maps are computed on the garment's pixels only, colours as (3, k) planes: contiguous 1-D
    work that is several times faster than (k, 3) rows.
    """
    c0, r0 = box[:2]
    h, w = region2d.shape
    inside = region2d.ravel() > 0
    region = region2d.ravel()[inside]
    k = len(region)
    # pixel-centre coordinates are separable: a row and a column combined by broadcasting
    px = np.arange(c0, c0 + w, dtype=F32)[None, :] + F32(0.5)
    py = np.arange(r0, r0 + h, dtype=F32)[:, None] + F32(0.5)
    u, v = (a.ravel()[inside] for a in raster.units(px, py))
    lab = p.labels
    alb = np.take(col.lut.T, region, axis=1)

    main_lut = np.zeros(g.N_REGIONS, bool)
    main_lut[[g.BODY, g.HOOD]] = True  # flounces stay plain: they read as flounces
    sec_lut = np.zeros(g.N_REGIONS, bool)
    sec_lut[g.PANEL] = True
    if lab["secondary_pattern"] != "none":  # the sleeves and a panel: `_secondary_panel`
        sec_lut[g.SLEEVE] = True
    elif lab["main_pattern"] != "colour_block":  # colour-block sleeves are plain
        main_lut[g.SLEEVE] = True
    ppu = raster.s / SUPERSAMPLE  # output pixels per unit: surface features scale with it
    if lab["main_pattern"] in PLACED_PRINTS:
        main_lut[g.PANEL] = True  # a placed print goes over a yoke or band, never under it
    # the per-region switches as bits of one lookup (a lookup costs more than a bit test;
    # `take` is three times faster than indexing with a uint8 array)
    switch = (main_lut | sec_lut << 1 | _FABRIC_LUT << 2).astype(np.uint8).take(region)
    # ink is >= 0, so a mask multiplies it to zero where np.where would (and twice as fast)
    main_ink = pattern_ink(lab["main_pattern"], u, v, ppu, rng, _chest_box(p))
    cover = None if main_ink is None else main_ink * (switch & 1).view(bool)
    if lab["secondary_pattern"] != "none":  # same ink colour, on other regions
        sink = secondary_ink(lab["secondary_pattern"], u, v, ppu, rng) * (switch & 2 > 0)
        cover = sink if cover is None else np.maximum(cover, sink)
    if cover is not None:
        alb += cover * (col.ink[:, None] - alb)

    fabric = switch & 4 > 0
    tm, ta, talpha = texture_maps(lab["texture"], u, v, ppu, rng, top=p.visible.top)
    rim = _rim(region2d > 0, raster.s).ravel()[inside] if lab["fabric"] == "velvet" else None
    fm, fa, falpha = fabric_maps(lab["fabric"], u, v, ppu, rng, rim)
    if cover is not None:  # prints sit flat on the relief: texture shows on the ground only
        flat = cover > 0.5
        tm = _put(tm, flat, F32(1), k)
        ta = _put(ta, flat, F32(0), k)
        fm = _put(fm, flat, F32(1) + F32(0.4) * (fm - F32(1)), k)  # grain and folds at 40%
        # and the pigment makes sheer chiffon nearly opaque: at half opacity its prints were
        # the least legible of all fabrics (main pattern 0.68, secondary colour 0.58 on r12's test)
        falpha = _put(falpha, flat, np.maximum(falpha, F32(0.85)), k)
    if p.design.category in ("sweater", "cardigan", "hoodie", "polo"):  # rib-knit bands
        band = region == g.BAND
        if band.any():
            period = max(0.06, 3 / ppu)
            ub = u[band] / period
            tm = _dense(tm, k)
            tm[band] = np.where(ub - np.floor(ub) < 0.4, F32(0.8), F32(1.0))
    lit = light.level + light.gx * (px / raster.n - 0.5) + light.gy * (py / raster.n - 0.5)
    lit = lit.ravel()[inside]
    matte = None if fabric.all() else ~fabric  # metal, buttons, stitching: no surface maps
    mult = _put(tm * fm * lit, matte, lit, k)
    add = _put(_dense(ta + fa, k), matte, F32(0), k)
    # outlines and seams: darker on light colours, lighter on dark ones (both read at 64 px)
    edge = _edges(region2d).ravel()[inside]
    np.multiply(mult, F32(0.62), out=mult, where=edge)
    if luminance(col.main) < 0.3:
        np.add(add, F32(0.12), out=add, where=edge)
    add *= F32(255)
    rgb = alb * (mult * F32(255))
    rgb += add
    rgb = np.clip(rgb, 0, 255, out=rgb).astype(np.uint8)
    opacity = talpha * falpha
    alpha = _put(_dense(opacity, k), matte, F32(1.0), k)
    alpha *= F32(255)
    holes = hole is not None and hole.any()
    if holes:
        np.copyto(alpha, F32(0), where=hole.ravel()[inside] > 0)
    alpha = alpha.astype(np.uint8)
    # interleave as RGBA words and scatter them in one 1-D pass
    words = np.stack([rgb[0], rgb[1], rgb[2], alpha], axis=1).view(np.uint32).ravel()
    out = np.zeros(h * w, np.uint32)
    out[inside] = words
    rgba = Image.fromarray(out.view(np.uint8).reshape(h, w, 4), "RGBA")
    if isinstance(opacity, np.ndarray) or opacity != 1:
        return rgba, rgba  # see-through: blend by the alpha
    # opaque wherever it is drawn: a 1-bit mask pastes the same pixels at a third of the cost
    shown = region2d > 0
    if holes:
        shown &= hole == 0
    return rgba, Image.fromarray(shown)


def _put(
    a: np.ndarray | float, mask: np.ndarray | None, value: object, k: int
) -> np.ndarray | float:
    """np.where(mask, value, a) as a float32 array of k pixels, written into `a` itself when it
    is one (maps are fresh arrays): a masked copy costs half of np.where. A mask of None
    selects nothing; a constant map that already equals `value` stays a scalar."""
    if not isinstance(a, np.ndarray) and np.ndim(value) == 0 and a == value:
        return a
    a = _dense(a, k)
    if mask is not None:
        np.copyto(a, value, where=mask)
    return a


def _dense(a: np.ndarray | float, k: int) -> np.ndarray:
    """A map of k pixels as an array (a constant map is a scalar until here)."""
    return a if isinstance(a, np.ndarray) and a.shape == (k,) else np.full(k, a, F32)


def _rim(mask: np.ndarray, ppu: float) -> np.ndarray:
    """1 at the garment's outline fading to 0 inside it (velvet's bright edges)."""
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    blur = np.asarray(img.filter(ImageFilter.BoxBlur(max(3, int(ppu * 0.15)))), F32) / 255
    return np.clip(2 * (1 - blur), 0, 1)


_FABRIC_LUT = np.zeros(g.N_REGIONS, bool)
_FABRIC_LUT[list(g.FABRIC_REGIONS)] = True


def _chest_box(p: Plan) -> tuple[float, float, float, float]:
    """Where a placed print goes: centred on the visible chest below the neckline (a deep V or
    lapels opened through it), across both fronts, as wide as the front allows."""
    d, vis = p.design, p.visible
    y = min(max(2.3, vis.top + 0.6, vis.neck_y + 0.6), max(vis.bottom, d.hem_y) - 0.6)
    w = min(0.95, g.half_width(d, y) * 0.9)
    return (-w, y - w, w, y + w)
