"""What the garment is made of, as pixels: colours and their shades, patterns, textures, fabrics.

Every map is a function of garment coordinates (u, v) in body units, so patterns follow the
figure's position, scale and rotation. Repeating motifs (flowers, letters, pictograms, sequin
brightness) come from small tiles drawn once and looked up by coordinate, which keeps a whole
pattern to a handful of numpy operations.

Three kinds of surface are kept apart so that each reads on its own, even at 64 px:
- a *pattern* is crisp ink of the second colour (the secondary colour, or a shade of the main one
  on a one-colour garment); its feature sizes have floors in OUTPUT pixels (stripes >= 2 px, dots
  >= 3 px, motifs >= 5 px), so it never dissolves into a blend;
- a *texture* is a luminance relief of the ground colour (or see-through holes, or glints), never
  a second colour, at its own scale, and prints sit flat on it (scene), so it cannot pass for a
  pattern; measured: stronger relief made textures more learnable without costing the patterns;
- a *fabric* is the light response at the scale of the whole garment: folds, sheen, specular
  streaks, translucency, grain, bright edges.
Every `ppu` argument here is output pixels per unit.
"""

from __future__ import annotations

import colorsys
import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from attire.data.synth.draws import uniform

F32 = np.float32

# Colour classes as HSV boxes (hue in degrees). The boxes do not overlap, with a margin, so that
# lighting and fabric shading keep a colour inside its class.
COLOUR_HSV: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "black": ((0, 360), (0.0, 0.2), (0.04, 0.13)),
    "white": ((0, 360), (0.0, 0.04), (0.93, 0.99)),
    "grey": ((0, 360), (0.0, 0.05), (0.4, 0.6)),
    "beige": ((32, 44), (0.24, 0.36), (0.76, 0.88)),
    "brown": ((18, 30), (0.5, 0.75), (0.3, 0.48)),
    "red": ((-6, 6), (0.75, 0.95), (0.68, 0.9)),
    "pink": ((328, 348), (0.28, 0.48), (0.9, 1.0)),
    "orange": ((22, 32), (0.85, 1.0), (0.92, 1.0)),
    "yellow": ((47, 56), (0.7, 0.92), (0.9, 1.0)),
    "green": ((100, 145), (0.5, 0.8), (0.4, 0.7)),
    "blue": ((200, 218), (0.6, 0.85), (0.7, 0.92)),
    "navy": ((220, 232), (0.7, 0.9), (0.27, 0.4)),
    "purple": ((270, 290), (0.4, 0.7), (0.42, 0.7)),
}


def sample_colour(name: str, rng: np.random.Generator) -> np.ndarray:
    """A random shade of a colour class, as RGB floats in [0, 1]."""
    (h0, h1), (s0, s1), (v0, v1) = COLOUR_HSV[name]
    h = (uniform(rng, h0, h1) % 360) / 360
    rgb = colorsys.hsv_to_rgb(h, uniform(rng, s0, s1), uniform(rng, v0, v1))
    return np.array(rgb, F32)


def colour_centre(name: str) -> np.ndarray:
    """The middle of a colour class's HSV box, as RGB floats in [0, 1]."""
    (h0, h1), (s0, s1), (v0, v1) = COLOUR_HSV[name]
    rgb = colorsys.hsv_to_rgb(((h0 + h1) / 2 % 360) / 360, (s0 + s1) / 2, (v0 + v1) / 2)
    return np.array(rgb, F32)


def tone_on_tone(rgb: np.ndarray) -> np.ndarray:
    """A visibly different shade of the same colour (patterns of a one-colour garment).

    The step is kept small enough that the shade stays out of the neighbouring colour classes
    (white's shade is a light grey above the grey box, black's a charcoal below it), so a
    one-colour garment does not look like a two-colour one, and large enough to stand out from
    a texture's relief (+-20-28%): at 0.19 / 0.16, main-pattern accuracy of one-colour garments
    was 0.31 on r12's test images, against 0.82 with a second colour."""
    h, s, v = colorsys.rgb_to_hsv(*rgb.tolist())
    v2 = v - 0.25 if v > 0.5 else v + 0.21
    return np.array(colorsys.hsv_to_rgb(h, s, min(max(v2, 0.0), 1.0)), F32)


def luminance(rgb: np.ndarray) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _odd_half(row: np.ndarray) -> np.ndarray:
    """0.5 where a whole number is odd, 0 where it is even: the offset of alternate rows of a
    repeat (20 times faster than `0.5 * (row % 2)`: numpy's float remainder is slow)."""
    return _frac(row * F32(0.5))


def _period(nominal: float, ppu: float, min_px: float) -> float:
    """A period in units, at least `min_px` output pixels long."""
    return max(nominal, min_px / ppu)


def _tri(x: np.ndarray) -> np.ndarray:
    """A triangle wave of period 1 in [-1, 1] (1 at integers): a cheap soft ridge profile."""
    return np.abs(_frac(x) - F32(0.5)) * F32(4) - F32(1)


# -- tiles, drawn once -------------------------------------------------------------------------

_TILE = 64


@lru_cache(maxsize=1)
def _flower_tile() -> np.ndarray:
    """Ink coverage of one floral repeat: a five-petal flower with an open centre and two leaves."""
    n = _TILE * 4
    img = Image.new("L", (n, n), 0)
    d = ImageDraw.Draw(img)
    c = n / 2
    for k in range(5):
        a = 2 * math.pi * k / 5 - math.pi / 2
        px, py = c + 0.2 * n * math.cos(a), c + 0.2 * n * math.sin(a)
        d.ellipse([px - 0.13 * n, py - 0.13 * n, px + 0.13 * n, py + 0.13 * n], fill=255)
    d.ellipse([c - 0.09 * n, c - 0.09 * n, c + 0.09 * n, c + 0.09 * n], fill=0)
    for sx in (-1, 1):
        lx, ly = c + sx * 0.38 * n, c + 0.36 * n
        d.polygon(
            [
                (c + sx * 0.26 * n, c + 0.3 * n),
                (lx, ly - 0.1 * n),
                (lx + sx * 0.08 * n, ly),
                (lx, ly + 0.04 * n),
            ],
            fill=190,
        )
    return np.asarray(img.resize((_TILE, _TILE), Image.BOX), F32) / 255


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=40)
    except (OSError, ValueError, TypeError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


_WORDS = (
    "LOVE",
    "PARIS",
    "NYC",
    "DREAM",
    "WILD",
    "SUNNY",
    "CITY",
    "STAR",
    "ROCK",
    "HELLO",
    "CALM",
    "BLOOM",
    "TOKYO",
    "YES",
    "WAVE",
    "FREE",
    "BOLD",
    "COOL",
    "MOOD",
    "1998",
    "ZEN",
    "JOY",
)


@lru_cache(maxsize=16)
def _slogan_tile(variant: int) -> np.ndarray:
    """A block of two or three lines of short words, as ink coverage (height/width = 0.5)."""
    r = np.random.default_rng(1000 + variant)
    lines = [" ".join(r.choice(_WORDS, size=int(r.integers(1, 3)))) for _ in range(2 + variant % 2)]
    w, h = 400, 200
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    font = _font()
    bold = _bold(font, 5)
    step = h / len(lines)
    for i, text in enumerate(lines):
        box = d.textbbox((0, 0), text, font=font, stroke_width=bold.get("stroke_width", 0))
        tw, th = box[2] - box[0], box[3] - box[1]
        scale_img = Image.new("L", (tw + 4, th + 4), 0)
        ImageDraw.Draw(scale_img).text((2 - box[0], 2 - box[1]), text, 255, font, **bold)
        fitted = scale_img.resize((int(w * 0.96), int(step * 0.8)), Image.BILINEAR)
        img.paste(fitted, (int(w * 0.02), int(i * step + step * 0.1)))
    return np.asarray(img, F32) / 255


@lru_cache(maxsize=1)
def _text_tile() -> np.ndarray:
    """All-over repeating lines of letters (a secondary letter print)."""
    w, h = 256, 128
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=28) if _freetype(_font()) else _font()
    for row, text in enumerate(("ABC XYZ AB", "LOVE ME YES")):
        d.text((4 + row * 30, 8 + row * 64), text, 255, font, **_bold(font, 2))
    return np.asarray(img, F32) / 255


def _bold(font: object, width: int) -> dict:
    """Text options for heavy letters (block prints stay legible when small): a stroke in the
    text's own colour, where the font supports one."""
    return {"stroke_width": width, "stroke_fill": 255} if _freetype(font) else {}


def _freetype(font: object) -> bool:
    return isinstance(font, ImageFont.FreeTypeFont)


@lru_cache(maxsize=8)
def _pictogram(variant: int) -> np.ndarray:
    """One big graphic: heart, star, sun, lightning, mountain, smiley, cherry or butterfly."""
    n = 200
    img = Image.new("L", (n, n), 0)
    d = ImageDraw.Draw(img)
    kind = variant % 8
    if kind == 0:  # heart
        d.ellipse([20, 30, 105, 115], fill=255)
        d.ellipse([95, 30, 180, 115], fill=255)
        d.polygon([(24, 90), (176, 90), (100, 185)], fill=255)
    elif kind == 1:  # star
        pts = []
        for k in range(10):
            rad = 92 if k % 2 == 0 else 38
            a = math.pi * k / 5 - math.pi / 2
            pts.append((100 + rad * math.cos(a), 105 + rad * math.sin(a)))
        d.polygon(pts, fill=255)
    elif kind == 2:  # sun
        d.ellipse([55, 55, 145, 145], fill=255)
        for k in range(12):
            a = 2 * math.pi * k / 12
            d.line(
                [
                    (100 + 58 * math.cos(a), 100 + 58 * math.sin(a)),
                    (100 + 95 * math.cos(a), 100 + 95 * math.sin(a)),
                ],
                fill=255,
                width=12,
            )
    elif kind == 3:  # lightning bolt
        d.polygon(
            [(115, 5), (45, 110), (95, 110), (70, 195), (155, 80), (105, 80), (140, 5)], fill=255
        )
    elif kind == 4:  # mountains and a moon
        d.polygon([(5, 185), (70, 60), (120, 140), (150, 95), (195, 185)], fill=255)
        d.ellipse([130, 10, 180, 60], fill=255)
    elif kind == 5:  # smiley
        d.ellipse([10, 10, 190, 190], fill=255)
        d.ellipse([60, 60, 85, 95], fill=0)
        d.ellipse([115, 60, 140, 95], fill=0)
        d.arc([50, 70, 150, 155], 20, 160, fill=0, width=12)
    elif kind == 6:  # cherries
        d.ellipse([20, 110, 95, 185], fill=255)
        d.ellipse([105, 100, 180, 175], fill=255)
        d.line([(57, 115), (120, 20), (142, 105)], fill=255, width=9)
        d.polygon([(120, 20), (175, 15), (150, 45)], fill=255)
    else:  # butterfly
        d.ellipse([15, 25, 100, 110], fill=255)
        d.ellipse([100, 25, 185, 110], fill=255)
        d.ellipse([35, 95, 100, 170], fill=255)
        d.ellipse([100, 95, 165, 170], fill=255)
        d.rectangle([94, 30, 106, 175], fill=0)
    return np.asarray(img, F32) / 255


@lru_cache(maxsize=1)
def _noise_tiles() -> dict[str, np.ndarray]:
    """Seed-fixed noise tiles: fine grain, horizontal slubs, per-cell random brightness."""
    r = np.random.default_rng(12345)
    grain = r.normal(0, 1, (256, 256)).astype(F32)
    grain = (grain + np.roll(grain, 1, 0) + np.roll(grain, 1, 1)) / 3
    slub_small = r.normal(0, 1, (256, 20)).astype(F32)
    slub = np.asarray(Image.fromarray(slub_small, mode="F").resize((256, 256), Image.BILINEAR), F32)
    slub = np.clip(slub, -2, 2) / 2
    cells = r.uniform(0, 1, (64, 64)).astype(F32)
    return {"grain": grain, "slub": slub, "cells": cells}


def _lookup(tile: np.ndarray, ty: np.ndarray, tx: np.ndarray) -> np.ndarray:
    """tile[ty mod h, tx mod w] for float tile coordinates (nearest); sides are powers of 2."""
    h, w = tile.shape  # powers of two: the modulo is a bit mask
    return _take(tile, ty.astype(np.int32) & (h - 1), tx.astype(np.int32) & (w - 1))


def _take(tile: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """tile[iy, ix] through one flat index: 2-D fancy indexing is far slower."""
    return tile.ravel().take(iy * tile.shape[1] + ix)


def _boxed(tile: np.ndarray, u, v, box: tuple[float, float, float, float]) -> np.ndarray:
    """A tile stretched over box (x0, y0, x1, y1), zero outside it."""
    x0, y0, x1, y1 = box
    h, w = tile.shape
    tx = (u - x0) * (w / (x1 - x0))
    ty = (v - y0) * (h / (y1 - y0))
    inside = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h)
    iy = np.clip(ty, 0, h - 1).astype(np.int32)
    ix = np.clip(tx, 0, w - 1).astype(np.int32)
    return _take(tile, iy, ix) * inside


# -- patterns: ink coverage in [0, 1] ------------------------------------------------------------


def pattern_ink(
    kind: str,
    u: np.ndarray,
    v: np.ndarray,
    ppu: float,
    rng: np.random.Generator,
    chest: tuple[float, float, float, float],
    all_over: bool = False,
) -> np.ndarray | None:
    """Where a pattern's second colour goes; None for solid. `chest` boxes a placed print
    (graphic print, or a letter print's slogan unless `all_over`: lines of letters everywhere).

    Ink always covers well under half of the area, so the main colour stays the majority."""
    if kind in ("solid", "none", "colour_block"):
        return None
    if kind in ("horizontal_stripe", "vertical_stripe"):
        p = _period(uniform(rng, 0.24, 0.36), ppu, uniform(rng, 6.0, 7.5))
        duty = uniform(rng, 0.34, 0.42)
        coord = v if kind == "horizontal_stripe" else u
        return (_frac(coord / p + rng.random()) < duty).astype(F32)
    if kind == "plaid":  # crossing bands (half ink each, full where they cross) and thin lines
        p = _period(uniform(rng, 0.5, 0.65), ppu, 14)
        fu, fv = _frac(u / p + rng.random()), _frac(v / p + rng.random())
        bands = F32(0.5) * (fu < 0.28) + F32(0.5) * (fv < 0.28)  # float32, as the others
        half = max(0.05, 1.0 / (p * ppu))  # lines at least 2 output px wide
        lines = (np.abs(fu - 0.64) < half) | (np.abs(fv - 0.64) < half)
        return np.maximum(bands, F32(0.9) * lines)
    if kind == "polka_dot":
        p = _period(uniform(rng, 0.28, 0.36), ppu, 8)
        row = np.floor(v / p)
        fu = _frac(u / p + _odd_half(row))
        fv = _frac(v / p)
        r = max(uniform(rng, 0.2, 0.26), 1.6 / (p * ppu))  # dots at least 3.2 output px across
        return (((fu - 0.5) ** 2 + (fv - 0.5) ** 2) < r * r).astype(F32)
    if kind == "floral":
        p = _period(uniform(rng, 0.42, 0.55), ppu, 16)
        row = np.floor(v / p)
        tx = (u / p + _odd_half(row)) * _TILE
        return _lookup(_flower_tile(), v / p * _TILE, tx)
    if kind == "geometric":
        p = _period(uniform(rng, 0.36, 0.46), ppu, 14)  # larger than dots (8 px): not read as them
        gu, gv = u / p, v / p
        fu, fv = _frac(gu), _frac(gv)
        if rng.random() < 0.5:  # triangles in alternate cells
            even = _odd_half(np.floor(gu) + np.floor(gv)) == 0  # cells whose indices sum even
            return ((fu > fv + 0.08) & even).astype(F32)
        # chevrons: zigzag bands (diamonds or small motifs would read as dots at 64 px)
        return (_frac(gv + np.abs(fu - 0.5)) < 0.36).astype(F32)
    if kind == "graphic_print":
        return _boxed(_pictogram(int(rng.integers(0, 8))), u, v, chest)
    if kind == "letter_print":
        if all_over:
            return _all_over_letters(u, v, ppu)
        return _boxed(_slogan_tile(int(rng.integers(0, 16))), u, v, _slogan_box(chest))
    raise ValueError(f"unknown pattern {kind!r}")


def secondary_ink(kind: str, u, v, ppu: float, rng: np.random.Generator) -> np.ndarray | None:
    """A secondary pattern: the same families, always all-over (it covers sleeves or a panel)."""
    return pattern_ink(kind, u, v, ppu, rng, (0, 0, 1, 1), all_over=True)


def _all_over_letters(u, v, ppu: float) -> np.ndarray:
    tile = _text_tile()
    # one tile row of text is half the tile: lines of letters 7 px tall at the floor (at 5 px,
    # r12's floor, they read as floral or polka dots as often as letters on sleeves and panels)
    p = _period(0.62, ppu, 20)
    return _lookup(tile, v / p * tile.shape[0] / 2, u / p * tile.shape[0] / 2)


def _slogan_box(chest: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = chest
    cy, w = (y0 + y1) / 2, x1 - x0
    return (x0, cy - 0.36 * w, x1, cy + 0.36 * w)


# -- textures: (multiplier, additive light, alpha) ---------------------------------------------

Maps = tuple[np.ndarray | float, np.ndarray | float, np.ndarray | float]


def _relief(r: np.ndarray, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Shading of a relief r in [-1, 1]: a multiplier plus a little added light, so that the
    relief also shows on black (where a multiplier alone does nothing)."""
    shade = F32(depth) * r.astype(F32, copy=False)
    return F32(1) + shade, F32(0.3) * shade


def texture_maps(kind: str, u, v, ppu: float, rng: np.random.Generator, top: float) -> Maps:
    """Surface relief of a texture as light multiplier, added light and opacity.

    Soft and moderate in amplitude (+-20-28% of the base colour's light), at its own scale: fine
    ribs, wales and twill lines (3-5 px), wider cables, quilting diamonds and pleats (6-10 px);
    lace and mesh are see-through, sequins glint."""
    one = 1.0
    if kind == "smooth":
        return one, 0.0, one
    if kind == "ribbed":  # narrow recessed lines between raised ribs
        p = _period(0.1, ppu, 3.0)
        m, a = _relief(np.where(_frac(u / p) < 0.34, F32(-1), F32(0.5)), 0.25)
        return m, a, one
    if kind == "corduroy":  # rounded wales with dark grooves (zero mean: no overall brightening)
        p = _period(0.17, ppu, 5.0)
        t = _frac(u / p) - F32(0.5)
        m, a = _relief(F32(2 / 3) - F32(8) * t * t, 0.22)
        return m, a, one
    if kind == "twill":
        p = _period(0.085, ppu, 3.2)
        m, a = _relief(_tri((u + v) / p), 0.22)
        return m, a, one
    if kind == "cable_knit":  # braided columns separated by recessed purl gutters
        w = _period(0.36, ppu, 10)
        fx = (_frac(u / w) - 0.5) * w
        s = 0.085 * w / 0.36 * np.sin(v * (2 * math.pi / (1.3 * w)))
        sig = 0.06 * w / 0.36
        d = np.minimum(np.abs(fx - s), np.abs(fx + s)) / sig
        ridge = np.maximum(F32(1) - d * d, F32(0)) * F32(2) - F32(1)
        m, a = _relief(np.where(np.abs(fx) > 0.42 * w, F32(-1), ridge), 0.21)
        return m, a, one
    if kind == "quilted":  # puffed diamonds between stitched seams
        p = _period(0.46, ppu, 9)
        ta, tb = _tri((u + v) / p), _tri((u - v) / p)
        puff = (F32(1) - ta * ta) * (F32(1) - tb * tb)  # 1 mid-diamond, 0 at the seams
        m, a = _relief(puff * F32(2) - F32(1), 0.21)
        return m, a, one
    if kind == "lace":  # opaque flowers on a see-through net
        p = _period(0.36, ppu, 8)
        row = np.floor(v / p)
        fu, fv = _frac(u / p + _odd_half(row)) - 0.5, _frac(v / p) - 0.5
        r2 = fu * fu + fv * fv
        ang = np.arctan2(fv, fu)
        motif = r2 < (0.2 + 0.07 * np.cos(5 * ang)) ** 2
        q = _period(0.075, ppu, 2.5)
        net = (_frac((u + v) / q) < 0.3) | (_frac((u - v) / q) < 0.3)
        # the gaps still show the fabric's colour: a net that shows only the body underneath
        # would hide the main colour, fabric and pattern of one garment in ten
        alpha = np.where(motif, F32(1.0), np.where(net, F32(0.8), F32(0.45)))
        return np.where(motif & (r2 > 0.012), F32(1.05), F32(0.9)), 0.0, alpha
    if kind == "mesh":  # a fine square grid of holes: a see-through screen
        p = _period(0.1, ppu, 3.0)
        hole = (np.abs(_frac(u / p) - 0.5) < 0.25) & (np.abs(_frac(v / p) - 0.5) < 0.25)
        return one, 0.0, np.where(hole, F32(0.45), F32(1.0))
    if kind == "sequined":  # discs of random brightness, a few of them glinting white
        p = _period(0.085, ppu, 2.5)
        cells = _noise_tiles()["cells"]
        bright = _lookup(cells, v / p, u / p)
        m, a = _relief(bright * F32(2) - F32(1), 0.28)
        glint = np.where(bright > 0.88, F32(0.6), F32(0.0))
        return m, a + glint, one
    if kind == "pleated":  # sharp folds fanning out from the top
        p = _period(0.3, ppu, 6.0)
        fan = u / (1.0 + 0.22 * np.clip(v - top, 0, None))
        m, a = _relief(_frac(fan / p) * F32(2) - F32(1), 0.3)
        return m, a, one
    raise ValueError(f"unknown texture {kind!r}")


def fabric_maps(
    kind: str, u, v, ppu: float, rng: np.random.Generator, rim: np.ndarray | None = None
) -> Maps:
    """Light response of a fabric at the garment's scale: folds, grain, sheen, translucency.

    rim (velvet only): 1 at the garment's outline, 0 well inside it.
    """
    phase = uniform(rng, 0, 2 * math.pi)
    fold = np.sin(u * uniform(rng, 3.5, 5.0) + phase) * np.sin(u * 1.7 + v * 0.4 + phase * 0.5)
    tiles = _noise_tiles()
    ox, oy = rng.integers(0, 256, 2).tolist()  # Python ints: a numpy int64 made the lookups float64
    px = ppu  # noise texels per unit: one texel per output pixel
    if kind == "cotton":  # matte, soft folds
        return 1 + 0.08 * fold, 0.0, 1.0
    if kind == "chiffon":  # sheer: what is behind shows through
        return 1.08 + 0.08 * fold, 0.0, 0.5
    if kind == "knit":  # heathered yarn: a speckle of lighter and darker stitches, in rows
        # speckles of ~2 px: single-pixel grain would not survive JPEG and resizing
        marl = _lookup(tiles["grain"], v * px / 2 + oy, u * px / 2 + ox)
        p = _period(0.065, ppu, 3.0)
        rows = np.where(_frac(v / p) < 0.5, F32(0.88), F32(1.08))
        # plus a little added light: a multiplier alone vanishes on black and navy
        return rows + 0.45 * marl + 0.04 * fold, (0.07 * marl).astype(F32), 1.0
    if kind == "denim":  # vertical streaks of the weave, faded down the middle
        streak = _lookup(tiles["slub"], u * px + ox, v * px + oy)  # rows are smooth along x
        fade = 0.22 * np.exp(-((u / 0.5) ** 2))
        return 0.86 + 0.16 * streak + fade + 0.04 * fold, 0.0, 1.0
    if kind == "leather":  # dark, with sharp specular streaks along the folds
        s = np.maximum(np.sin(u * 2.6 + phase + 0.25 * v), 0)
        s2 = s * s  # powers as products: numpy's float32 ** 10 costs ~40 multiplies
        s8 = s2 * s2
        s8 *= s8
        spec = s8 * s2
        return 0.8 + 0.12 * fold, (0.7 * spec).astype(F32), 1.0
    if kind == "satin":  # one broad lustrous sheen
        lobe = 0.5 + 0.5 * np.sin(u * 2.2 + v * 0.9 + phase)
        sheen = lobe * lobe * lobe
        return 0.86 + 0.05 * fold, (0.45 * sheen).astype(F32), 1.0
    if kind == "linen":  # horizontal slubs: short thick threads
        slub = _lookup(tiles["slub"], v * px + oy, u * px + ox)
        return 1 + 0.28 * slub + 0.05 * fold, (0.05 * slub).astype(F32), 1.0
    if kind == "fleece":  # a soft blotchy pile, a little lighter (and a fuzzy outline: scene)
        pile = _lookup(tiles["grain"], v * px / 3 + oy, u * px / 3 + ox)
        return 1 + 0.28 * pile + 0.03 * fold, 0.05, 1.0
    if kind == "velvet":  # deep in the folds, light at the edges
        edge = rim if rim is not None else 0.0
        return 0.68 + 0.12 * fold, (0.5 * edge).astype(F32), 1.0
    raise ValueError(f"unknown fabric {kind!r}")
