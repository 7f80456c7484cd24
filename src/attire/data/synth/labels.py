"""The label model of the synthetic catalogue: realistic correlations plus a controllable long tail.

Category is drawn first; every other task is drawn from a table conditioned on a few earlier
tasks (its *parents*), built from compatibility rules (0 = never, small = rare, 1 = typical).
Each table is then calibrated (iterative proportional fitting against the exact distribution of
its parents) so that every task's *marginal* follows a Zipf-like profile over a fixed,
seed-independent popularity order: the most popular class is R times as likely as the rarest.
`balanced=True` ignores the soft weights (only the 0 rules stay) and calibrates to uniform
marginals, as far as the rules allow. See docs/SYNTH.md for the rules.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from attire.data.synth.surface import colour_centre
from attire.errors import AttireError
from attire.taxonomy import Taxonomy, load_taxonomy

Labels = dict[str, object]  # task -> class id, or list of ids for trend_elements

# Sampling order and parents (a task's parents come earlier in the order).
PARENTS: dict[str, tuple[str, ...]] = {
    "category": (),
    "main_colour": (),
    "texture": ("category",),
    "fabric": ("category", "texture"),
    "main_pattern": ("category", "fabric"),
    "secondary_pattern": ("main_pattern",),
    "secondary_colour": ("main_colour", "main_pattern", "secondary_pattern"),
    "collar": ("category",),
    "placket": ("category", "collar"),
    "sleeve_length": ("category", "collar"),
    "garment_length": ("category",),
    "fit": ("category",),
    "trend_elements": ("category",),
}
ORDER = tuple(PARENTS)

# Popularity order per task, most common first: the long tail's shape is fixed by these, not by
# the seed. "invisible" is the rarest wherever it exists.
POPULARITY: dict[str, tuple[str, ...]] = {
    "category": (
        "t_shirt", "shirt", "sweater", "blouse", "jacket", "hoodie", "coat", "cardigan",
        "polo", "camisole", "vest",
    ),
    "main_colour": (
        "black", "white", "blue", "grey", "navy", "beige", "red", "pink", "green", "brown",
        "yellow", "purple", "orange",
    ),
    "fabric": (
        "cotton", "knit", "denim", "chiffon", "linen", "leather", "satin", "fleece", "velvet",
    ),
    "texture": (
        "smooth", "ribbed", "twill", "pleated", "lace", "quilted", "cable_knit", "corduroy",
        "mesh", "sequined",
    ),
    "main_pattern": (
        "solid", "horizontal_stripe", "letter_print", "graphic_print", "floral", "plaid",
        "polka_dot", "vertical_stripe", "colour_block", "geometric",
    ),
    "secondary_pattern": (
        "none", "horizontal_stripe", "plaid", "letter_print", "floral", "vertical_stripe",
        "polka_dot", "geometric",
    ),
    "secondary_colour": (
        "none", "white", "black", "grey", "red", "blue", "navy", "beige", "pink", "yellow",
        "green", "brown", "orange", "purple",
    ),
    "collar": (
        "round_neck", "shirt_collar", "v_neck", "lapel", "hood", "turtleneck", "stand_collar",
        "square_neck", "boat_neck", "deep_v_neck", "off_shoulder", "peter_pan", "invisible",
    ),
    "placket": (
        "none", "single_breasted", "zip", "open_front", "half_zip", "double_breasted", "wrap",
    ),
    "sleeve_length": (
        "long_sleeves", "short_sleeves", "sleeveless", "three_quarter_sleeves", "elbow_sleeves",
        "wrist_length", "cup_sleeves", "extra_long_sleeves", "invisible",
    ),
    "garment_length": (
        "regular", "high_waist", "long", "micro", "knee", "midi", "ankle_floor", "invisible",
    ),
    "fit": ("regular", "loose", "slim", "oversized"),
    "trend_elements": (
        "patch_pockets", "ruffles", "bow", "embroidery", "cut_out", "lace_up", "rivets", "tassels",
    ),
}  # fmt: skip

MEAN_TREND_ELEMENTS = 0.9  # expected number of trend elements per garment
_MAX_ELEMENTS = 16
_FORCE_TRIES = 5000

# -- compatibility rules ---------------------------------------------------------------------
# Tables: category -> {class: weight}; classes not listed are impossible (0) for that category.

_COLLAR: dict[str, dict[str, float]] = {
    "t_shirt": {"round_neck": 1, "v_neck": 0.6, "deep_v_neck": 0.15, "square_neck": 0.2,
                "boat_neck": 0.2, "off_shoulder": 0.15, "turtleneck": 0.1},
    "shirt": {"shirt_collar": 1, "stand_collar": 0.25, "peter_pan": 0.08},
    "blouse": {"round_neck": 0.5, "v_neck": 0.6, "deep_v_neck": 0.3, "square_neck": 0.4,
               "boat_neck": 0.3, "off_shoulder": 0.5, "peter_pan": 0.4, "shirt_collar": 0.3,
               "stand_collar": 0.3},
    "polo": {"shirt_collar": 1, "stand_collar": 0.1},
    "sweater": {"round_neck": 1, "v_neck": 0.6, "turtleneck": 0.8, "boat_neck": 0.3,
                "off_shoulder": 0.2, "stand_collar": 0.3, "deep_v_neck": 0.1,
                "shirt_collar": 0.1, "square_neck": 0.1},
    "hoodie": {"hood": 1},
    "cardigan": {"v_neck": 1, "round_neck": 0.6, "deep_v_neck": 0.3, "lapel": 0.15,
                 "stand_collar": 0.1, "hood": 0.1},
    "jacket": {"lapel": 0.8, "shirt_collar": 0.6, "stand_collar": 0.6, "hood": 0.3,
               "round_neck": 0.15},
    "coat": {"lapel": 1, "shirt_collar": 0.4, "stand_collar": 0.3, "hood": 0.3,
             "round_neck": 0.1},
    "vest": {"v_neck": 1, "round_neck": 0.3, "lapel": 0.3, "stand_collar": 0.3, "hood": 0.15,
             "deep_v_neck": 0.2},
    "camisole": {"v_neck": 0.8, "square_neck": 0.6, "round_neck": 0.5, "deep_v_neck": 0.4},
}  # fmt: skip

_PLACKET: dict[str, dict[str, float]] = {
    "t_shirt": {"none": 1, "single_breasted": 0.15, "wrap": 0.05},
    "shirt": {"single_breasted": 1, "double_breasted": 0.05},
    "blouse": {"none": 1, "single_breasted": 0.6, "wrap": 0.3, "open_front": 0.1},
    "polo": {"single_breasted": 1, "half_zip": 0.3},
    "sweater": {"none": 1, "half_zip": 0.2, "wrap": 0.05},
    "hoodie": {"none": 1, "zip": 0.8, "half_zip": 0.2},
    "cardigan": {"single_breasted": 1, "open_front": 0.8, "zip": 0.15, "wrap": 0.1,
                 "double_breasted": 0.05},
    "jacket": {"zip": 1, "single_breasted": 0.8, "open_front": 0.5, "double_breasted": 0.3,
               "half_zip": 0.05, "wrap": 0.05},
    "coat": {"single_breasted": 1, "double_breasted": 0.7, "open_front": 0.4, "wrap": 0.3,
             "zip": 0.2},
    "vest": {"single_breasted": 1, "zip": 0.6, "open_front": 0.4, "double_breasted": 0.2,
             "none": 0.2},
    "camisole": {"none": 1},
}  # fmt: skip

# collar -> plackets it can be worn with ("invisible" allows every placket).
_COLLAR_PLACKET: dict[str, set[str]] = {
    "round_neck": {"none", "single_breasted", "open_front", "zip", "half_zip", "double_breasted"},
    "v_neck": {"none", "single_breasted", "open_front", "wrap", "double_breasted"},
    "deep_v_neck": {"none", "single_breasted", "open_front", "wrap", "double_breasted"},
    "square_neck": {"none", "single_breasted", "wrap"},
    "turtleneck": {"none", "zip", "half_zip"},
    "shirt_collar": {"single_breasted", "double_breasted", "zip", "half_zip", "open_front"},
    "lapel": {"single_breasted", "double_breasted", "open_front", "wrap"},
    "stand_collar": {"none", "single_breasted", "zip", "half_zip", "open_front"},
    "hood": {"none", "zip", "half_zip", "open_front", "single_breasted"},
    "off_shoulder": {"none", "single_breasted", "wrap"},
    "boat_neck": {"none", "single_breasted", "open_front"},
    "peter_pan": {"none", "single_breasted"},
}

_SLEEVES: dict[str, dict[str, float]] = {
    "t_shirt": {"short_sleeves": 1, "cup_sleeves": 0.4, "elbow_sleeves": 0.3, "long_sleeves": 0.5,
                "three_quarter_sleeves": 0.2},
    "shirt": {"long_sleeves": 1, "short_sleeves": 0.6, "three_quarter_sleeves": 0.3,
              "wrist_length": 0.3, "elbow_sleeves": 0.2, "sleeveless": 0.1},
    "blouse": {"long_sleeves": 0.6, "short_sleeves": 0.6, "sleeveless": 0.4, "cup_sleeves": 0.4,
               "elbow_sleeves": 0.4, "three_quarter_sleeves": 0.5, "wrist_length": 0.4,
               "extra_long_sleeves": 0.2},
    "polo": {"short_sleeves": 1, "long_sleeves": 0.3, "cup_sleeves": 0.2, "sleeveless": 0.05},
    "sweater": {"long_sleeves": 1, "extra_long_sleeves": 0.4, "three_quarter_sleeves": 0.3,
                "wrist_length": 0.3, "elbow_sleeves": 0.15, "short_sleeves": 0.1},
    "hoodie": {"long_sleeves": 1, "extra_long_sleeves": 0.4, "short_sleeves": 0.2,
               "three_quarter_sleeves": 0.1, "wrist_length": 0.1},
    "cardigan": {"long_sleeves": 1, "three_quarter_sleeves": 0.4, "wrist_length": 0.3,
                 "extra_long_sleeves": 0.2, "elbow_sleeves": 0.2, "short_sleeves": 0.15},
    "jacket": {"long_sleeves": 1, "wrist_length": 0.3, "three_quarter_sleeves": 0.2,
               "extra_long_sleeves": 0.1, "elbow_sleeves": 0.1, "short_sleeves": 0.1},
    "coat": {"long_sleeves": 1, "wrist_length": 0.3, "extra_long_sleeves": 0.2,
             "three_quarter_sleeves": 0.1},
    "vest": {"sleeveless": 1},
    "camisole": {"sleeveless": 1},
}  # fmt: skip

_LENGTH: dict[str, dict[str, float]] = {
    "t_shirt": {"regular": 1, "high_waist": 0.5, "long": 0.4, "micro": 0.1, "knee": 0.05},
    "shirt": {"regular": 1, "long": 0.6, "high_waist": 0.2, "micro": 0.3, "knee": 0.1,
              "midi": 0.05},
    "blouse": {"regular": 1, "high_waist": 0.6, "long": 0.5, "micro": 0.2, "knee": 0.1,
               "midi": 0.05, "ankle_floor": 0.05},
    "polo": {"regular": 1, "long": 0.3, "high_waist": 0.2},
    "sweater": {"regular": 1, "high_waist": 0.5, "long": 0.5, "micro": 0.2, "knee": 0.1,
                "midi": 0.05},
    "hoodie": {"regular": 1, "high_waist": 0.4, "long": 0.5, "micro": 0.2, "knee": 0.05},
    "cardigan": {"regular": 1, "long": 0.6, "high_waist": 0.4, "micro": 0.4, "knee": 0.3,
                 "midi": 0.2, "ankle_floor": 0.1},
    "jacket": {"regular": 1, "high_waist": 0.6, "long": 0.5, "micro": 0.2, "knee": 0.05},
    "coat": {"knee": 1, "micro": 0.7, "midi": 0.8, "long": 0.4, "ankle_floor": 0.4},
    "vest": {"regular": 1, "long": 0.5, "high_waist": 0.4, "micro": 0.3, "knee": 0.3,
             "midi": 0.15, "ankle_floor": 0.05},
    "camisole": {"regular": 1, "high_waist": 0.8, "long": 0.3},
}  # fmt: skip

_FIT: dict[str, dict[str, float]] = {
    "t_shirt": {"regular": 1, "loose": 0.6, "slim": 0.6, "oversized": 0.4},
    "shirt": {"regular": 1, "loose": 0.5, "slim": 0.6, "oversized": 0.4},
    "blouse": {"regular": 1, "loose": 0.8, "slim": 0.4, "oversized": 0.2},
    "polo": {"regular": 1, "slim": 0.6, "loose": 0.3, "oversized": 0.1},
    "sweater": {"regular": 1, "loose": 0.8, "oversized": 0.6, "slim": 0.4},
    "hoodie": {"regular": 1, "loose": 0.7, "oversized": 0.7, "slim": 0.15},
    "cardigan": {"regular": 1, "loose": 0.8, "oversized": 0.4, "slim": 0.4},
    "jacket": {"regular": 1, "slim": 0.5, "loose": 0.5, "oversized": 0.4},
    "coat": {"regular": 1, "loose": 0.6, "oversized": 0.4, "slim": 0.4},
    "vest": {"regular": 1, "slim": 0.6, "loose": 0.4, "oversized": 0.2},
    "camisole": {"regular": 1, "slim": 0.8, "loose": 0.5},
}  # fmt: skip

_FABRIC: dict[str, dict[str, float]] = {
    "t_shirt": {"cotton": 1, "knit": 0.5, "linen": 0.3, "chiffon": 0.1, "satin": 0.1,
                "velvet": 0.1, "fleece": 0.05},
    "shirt": {"cotton": 1, "linen": 0.6, "denim": 0.6, "chiffon": 0.3, "satin": 0.3,
              "velvet": 0.05, "leather": 0.03},
    "blouse": {"chiffon": 1, "satin": 0.8, "cotton": 0.7, "linen": 0.4, "velvet": 0.15,
               "knit": 0.1},
    "polo": {"cotton": 1, "knit": 0.6, "linen": 0.1},
    "sweater": {"knit": 1, "fleece": 0.3, "cotton": 0.2, "velvet": 0.05},
    "hoodie": {"cotton": 1, "fleece": 0.8, "knit": 0.3, "velvet": 0.1},
    "cardigan": {"knit": 1, "fleece": 0.15, "cotton": 0.2, "linen": 0.05},
    "jacket": {"denim": 1, "leather": 0.8, "cotton": 0.7, "velvet": 0.2, "fleece": 0.2,
               "linen": 0.1, "satin": 0.15},
    "coat": {"cotton": 1, "leather": 0.3, "fleece": 0.3, "velvet": 0.2, "denim": 0.1,
             "linen": 0.1, "satin": 0.1, "knit": 0.1},
    "vest": {"denim": 0.6, "leather": 0.4, "knit": 0.6, "cotton": 0.6, "fleece": 0.3,
             "satin": 0.2, "velvet": 0.2, "linen": 0.1},
    "camisole": {"satin": 1, "chiffon": 0.8, "cotton": 0.6, "linen": 0.2, "velvet": 0.2,
                 "knit": 0.1, "leather": 0.05, "denim": 0.05},
}  # fmt: skip

# texture -> category weights, and texture -> fabric weights (the weight is their product).
_TEXTURE_CATEGORY: dict[str, dict[str, float]] = {
    "ribbed": {"sweater": 1, "cardigan": 1, "t_shirt": 0.4, "camisole": 0.4, "polo": 0.3,
               "hoodie": 0.3, "vest": 0.3},
    "cable_knit": {"sweater": 1, "cardigan": 0.8, "vest": 0.3},
    "quilted": {"jacket": 1, "coat": 1, "vest": 1},
    "lace": {"blouse": 1, "camisole": 1, "t_shirt": 0.3, "shirt": 0.2, "cardigan": 0.1},
    "mesh": {"t_shirt": 0.6, "blouse": 0.5, "camisole": 0.4, "jacket": 0.1, "hoodie": 0.1},
    "sequined": {"blouse": 0.6, "camisole": 0.6, "jacket": 0.4, "t_shirt": 0.3,
                 "sweater": 0.2, "cardigan": 0.1},
    "twill": {"shirt": 1, "jacket": 1, "coat": 0.8, "vest": 0.3, "t_shirt": 0.05},
    "corduroy": {"shirt": 0.6, "jacket": 1, "coat": 0.4, "vest": 0.4},
    "pleated": {"blouse": 1, "camisole": 0.6, "shirt": 0.3, "t_shirt": 0.1, "coat": 0.1},
}  # fmt: skip
_TEXTURE_FABRIC: dict[str, dict[str, float]] = {
    "ribbed": {"knit": 1, "cotton": 0.5, "fleece": 0.2, "velvet": 0.1},
    "cable_knit": {"knit": 1},
    "quilted": {"cotton": 1, "satin": 0.6, "leather": 0.6, "velvet": 0.4, "denim": 0.1,
                "linen": 0.1},
    "lace": {"cotton": 1, "chiffon": 0.8, "knit": 0.1, "satin": 0.1},
    "mesh": {"chiffon": 1, "cotton": 0.6, "knit": 0.6},
    "sequined": {"chiffon": 1, "satin": 1, "knit": 0.6, "velvet": 0.6, "cotton": 0.4},
    "twill": {"cotton": 1, "denim": 1, "linen": 0.2, "satin": 0.1},
    "corduroy": {"cotton": 1, "velvet": 0.3},
    "pleated": {"chiffon": 1, "satin": 1, "cotton": 0.5, "linen": 0.3, "leather": 0.1,
                "knit": 0.1},
}  # fmt: skip

# main pattern -> category / fabric weights (solid is always possible).
_PATTERN_CATEGORY: dict[str, dict[str, float]] = {
    "graphic_print": {"t_shirt": 1, "hoodie": 1, "sweater": 0.5, "jacket": 0.3, "polo": 0.2,
                      "blouse": 0.1, "camisole": 0.1, "vest": 0.1},
    "letter_print": {"t_shirt": 1, "hoodie": 1, "sweater": 0.5, "jacket": 0.4, "polo": 0.2,
                     "vest": 0.2, "shirt": 0.1, "camisole": 0.1},
    "plaid": {"shirt": 1, "coat": 0.8, "jacket": 0.6, "vest": 0.5, "blouse": 0.3,
              "cardigan": 0.3, "sweater": 0.2},
    "floral": {"blouse": 1, "shirt": 0.6, "camisole": 0.6, "t_shirt": 0.4, "cardigan": 0.3,
               "jacket": 0.1, "coat": 0.1, "sweater": 0.2},
    "colour_block": {"jacket": 1, "hoodie": 0.8, "sweater": 0.6, "t_shirt": 0.5, "polo": 0.3,
                     "coat": 0.2, "vest": 0.3, "shirt": 0.2, "cardigan": 0.3},
}  # fmt: skip
_PATTERN_FABRIC_RARE = {"leather": 0.1, "denim": 0.3, "velvet": 0.3, "fleece": 0.5}

_TREND_CATEGORY: dict[str, dict[str, float]] = {
    "ruffles": {"blouse": 1, "camisole": 0.8, "shirt": 0.4, "t_shirt": 0.4, "cardigan": 0.2,
                "sweater": 0.2, "jacket": 0.1, "polo": 0.1, "vest": 0.1, "coat": 0.05},
    "bow": {"blouse": 1, "shirt": 0.6, "camisole": 0.6, "cardigan": 0.4, "t_shirt": 0.3,
            "sweater": 0.3, "coat": 0.3, "jacket": 0.1},
    "embroidery": {"blouse": 1, "shirt": 0.8, "t_shirt": 0.8, "sweater": 0.6, "jacket": 0.6,
                   "hoodie": 0.6, "cardigan": 0.6, "polo": 0.4, "coat": 0.2, "vest": 0.3,
                   "camisole": 0.2},
    "cut_out": {"t_shirt": 1, "blouse": 1, "camisole": 0.6, "sweater": 0.6, "hoodie": 0.2,
                "cardigan": 0.2, "shirt": 0.2},
    "rivets": {"jacket": 1, "vest": 0.8, "t_shirt": 0.3, "hoodie": 0.3, "coat": 0.2,
               "shirt": 0.1, "sweater": 0.1},
    "tassels": {"jacket": 0.8, "vest": 1, "blouse": 0.5, "cardigan": 0.6, "sweater": 0.4,
                "camisole": 0.4, "t_shirt": 0.2, "coat": 0.2},
    "patch_pockets": {"shirt": 1, "jacket": 1, "coat": 0.8, "cardigan": 0.6, "vest": 0.6,
                      "t_shirt": 0.4, "hoodie": 0.1, "polo": 0.2, "blouse": 0.2},
    "lace_up": {"blouse": 1, "t_shirt": 0.6, "camisole": 0.6, "sweater": 0.5, "hoodie": 0.4,
                "vest": 0.4, "jacket": 0.1, "shirt": 0.1},
}  # fmt: skip


def _compat(task: str, cls: str, pa: Mapping[str, str]) -> float:
    """Weight of class `cls` of `task` given its parents' values (0 = impossible)."""
    cat = pa.get("category")
    if task in ("category", "main_colour"):
        return 1.0
    if task == "texture":
        return 1.0 if cls == "smooth" else _TEXTURE_CATEGORY[cls].get(cat, 0.0)
    if task == "fabric":
        texture = pa["texture"]
        fits = 1.0 if texture == "smooth" else _TEXTURE_FABRIC[texture].get(cls, 0.0)
        return _FABRIC[cat].get(cls, 0.0) * fits
    if task == "main_pattern":
        if cls == "solid":
            return 1.0
        w = _PATTERN_CATEGORY[cls].get(cat, 0.0) if cls in _PATTERN_CATEGORY else 1.0
        return w * _PATTERN_FABRIC_RARE.get(pa["fabric"], 1.0)
    if task == "secondary_pattern":
        if cls == "none":
            return 1.0
        # a second pattern must differ from the first; a colour-block panel takes no second one
        if cls == pa["main_pattern"] or pa["main_pattern"] == "colour_block":
            return 0.0
        return 0.5
    if task == "secondary_colour":
        if cls == "none":  # one colour; patterns are then tone-on-tone shades of it
            if pa["main_pattern"] == "colour_block":
                return 0.0
            plain = pa["main_pattern"] == "solid" and pa["secondary_pattern"] == "none"
            return 1.0 if plain else 0.3
        return 1.0 if colour_gap(cls, pa["main_colour"]) >= MIN_COLOUR_GAP else 0.0
    if task == "collar":
        return 1.0 if cls == "invisible" else _COLLAR[cat].get(cls, 0.0)
    if task == "placket":
        base = _PLACKET[cat].get(cls, 0.0)
        if pa["collar"] == "invisible" or cls in _COLLAR_PLACKET[pa["collar"]]:
            return base
        return 0.0
    if task == "sleeve_length":
        # a hidden collar is cropped off above the shoulders, which would also hide a cap sleeve
        if cls == "cup_sleeves" and pa["collar"] == "invisible":
            return 0.0
        return 1.0 if cls == "invisible" else _SLEEVES[cat].get(cls, 0.0)
    if task == "garment_length":
        return 1.0 if cls == "invisible" else _LENGTH[cat].get(cls, 0.0)
    if task == "fit":
        return _FIT[cat].get(cls, 0.0)
    if task == "trend_elements":
        return _TREND_CATEGORY[cls].get(cat, 0.0)
    raise KeyError(task)


# A second colour contrasts with the main one. Closer pairs (navy on black, pink on beige, yellow
# on orange: 8 of the 78) read as shades of one colour: at 64 px their prints were the least
# learnable, and a model cannot tell which of the two is "main".
MIN_COLOUR_GAP = 0.4


def colour_gap(a: str, b: str) -> float:
    """Euclidean RGB distance of the centres of two colour classes (0..sqrt 3)."""
    return float(np.linalg.norm(colour_centre(a) - colour_centre(b)))


def zipf_weights(k: int, imbalance: float) -> np.ndarray:
    """k probabilities decreasing like rank^-a, with first/last == imbalance."""
    if k == 1:
        return np.ones(1)
    a = math.log(imbalance) / math.log(k)
    w = np.arange(1, k + 1, dtype=np.float64) ** -a
    return w / w.sum()


class LabelError(AttireError):
    """A label request the generator cannot satisfy (bad imbalance, impossible forced class)."""


@dataclass(frozen=True)
class _Node:
    task: str
    parents: tuple[str, ...]
    classes: tuple[str, ...]  # taxonomy order
    table: np.ndarray  # (*parent sizes, K): probabilities (multiclass) or inclusion rates
    multilabel: bool

    @cached_property
    def cumulative(self) -> dict[tuple[int, ...], list[float]]:
        """Cumulative class probabilities per parent key, as lists: `bisect` on a list draws a
        class several times faster than numpy on a tiny array (sampling is per-image hot)."""
        cum = np.cumsum(self.table, axis=-1)
        return {key: cum[key].tolist() for key in np.ndindex(cum.shape[:-1])}

    @cached_property
    def rates(self) -> dict[tuple[int, ...], list[float]]:
        """Inclusion rates per parent key (multilabel), as lists: compared with Python floats
        element by element, where numpy costs more per call than the eight comparisons."""
        return {key: self.table[key].tolist() for key in np.ndindex(self.table.shape[:-1])}


class LabelModel:
    """Calibrated conditional tables for all tasks; `sample` draws one garment's clean labels."""

    def __init__(
        self, imbalance: float = 1.0, balanced: bool = False, taxonomy: Taxonomy | None = None
    ):
        if not math.isfinite(imbalance) or imbalance < 1.0:
            raise LabelError(f"imbalance must be a number >= 1 (got {imbalance})")
        self.taxonomy = taxonomy if taxonomy is not None else load_taxonomy()
        missing = set(ORDER) - set(self.taxonomy.task_names)
        if missing or len(self.taxonomy.tasks) != len(ORDER):
            raise LabelError(
                f"the synthetic generator draws the default 13 tasks; taxonomy "
                f"'{self.taxonomy.name}' differs (missing: {sorted(missing)})"
            )
        self.imbalance, self.balanced = float(imbalance), balanced
        self.nodes: dict[str, _Node] = {}
        for task in ORDER:
            self.nodes[task] = self._calibrated(task)

    # -- building ------------------------------------------------------------------------------

    def classes(self, task: str) -> tuple[str, ...]:
        return tuple(self.taxonomy.task(task).class_ids)

    def target(self, task: str) -> np.ndarray:
        """The marginal each task is calibrated to, in taxonomy class order."""
        classes = self.classes(task)
        order = POPULARITY[task]
        if sorted(order) != sorted(classes):
            raise LabelError(f"popularity order of '{task}' does not list its classes")
        w = zipf_weights(len(order), 1.0 if self.balanced else self.imbalance)
        by_class = dict(zip(order, w, strict=True))
        t = np.array([by_class[c] for c in classes])
        if self.taxonomy.task(task).multilabel:
            return np.minimum(t * MEAN_TREND_ELEMENTS, 0.95)
        return t

    def _compat_table(self, task: str) -> np.ndarray:
        parents = PARENTS[task]
        shapes = [len(self.classes(p)) for p in parents]
        classes = self.classes(task)
        table = np.zeros((*shapes, len(classes)))
        for combo in itertools.product(*(range(s) for s in shapes)):
            pa = {p: self.classes(p)[i] for p, i in zip(parents, combo, strict=True)}
            row = [_compat(task, c, pa) for c in classes]
            table[combo] = row
        if self.balanced:
            table = (table > 0).astype(np.float64)
        return table

    def parent_joint(self, parents: tuple[str, ...]) -> np.ndarray:
        """Exact joint distribution of some already-built tasks (einsum over their ancestors)."""
        closure: list[str] = []
        todo = list(parents)
        while todo:
            t = todo.pop()
            if t not in closure:
                closure.append(t)
                todo.extend(PARENTS[t])
        letters = {t: chr(ord("a") + i) for i, t in enumerate(closure)}
        operands: list[object] = []
        for t in closure:
            node = self.nodes[t]
            operands += [node.table, [letters[x] for x in (*node.parents, t)]]
        spec = ",".join("".join(s) for s in operands[1::2])
        out = "".join(letters[p] for p in parents)
        return np.einsum(f"{spec}->{out}", *operands[0::2], optimize=True)

    def _calibrated(self, task: str) -> _Node:
        parents = PARENTS[task]
        compat = self._compat_table(task)
        k = compat.shape[-1]
        flat = compat.reshape(-1, k)
        joint = self.parent_joint(parents).reshape(-1) if parents else np.ones(1)
        dead = (flat.sum(1) == 0) & (joint > 0)
        if dead.any():
            raise LabelError(f"rules leave no class of '{task}' for some parent values")
        target = self.target(task)
        if self.taxonomy.task(task).multilabel:
            table = _fit_rates(flat, joint, target)
        else:
            table = _fit_multiclass(flat, joint, target)
        multilabel = self.taxonomy.task(task).multilabel
        return _Node(task, parents, self.classes(task), table.reshape(compat.shape), multilabel)

    def marginal(self, task: str) -> np.ndarray:
        """The exact marginal of a task under this model (class probabilities or rates)."""
        node = self.nodes[task]
        if not node.parents:
            return node.table
        joint = self.parent_joint(node.parents).reshape(-1)
        return joint @ node.table.reshape(-1, len(node.classes))

    # -- sampling ------------------------------------------------------------------------------

    def sample(self, rng: np.random.Generator, force: Mapping[str, str] | None = None) -> Labels:
        """One garment's clean labels; `force` fixes some classes (drawn jointly by rejection)."""
        force = dict(force or {})
        for task, cls in force.items():
            if cls not in self.classes(task):
                raise LabelError(f"task '{task}' has no class {cls!r}")
        for _ in range(_FORCE_TRIES):
            labels = self._draw(rng, force)
            if labels is not None:
                return labels
        raise LabelError(f"the label rules never allow {force}")

    def _draw(self, rng: np.random.Generator, force: Mapping[str, str]) -> Labels | None:
        idx: dict[str, int] = {}
        out: Labels = {}
        # one call: sampling is per-image hot
        draws = rng.random(len(ORDER) + _MAX_ELEMENTS).tolist()
        for k, task in enumerate(ORDER):
            node = self.nodes[task]
            key = tuple([idx[p] for p in node.parents])
            if node.multilabel:
                rates = node.rates[key]
                element_draws = draws[len(ORDER) : len(ORDER) + len(rates)]
                present = [u < r for u, r in zip(element_draws, rates, strict=True)]
                if task in force:
                    j = node.classes.index(force[task])
                    if rates[j] <= 0:
                        return None
                    present[j] = True
                out[task] = [c for c, p in zip(node.classes, present, strict=True) if p]
                continue
            if task in force:
                j = node.classes.index(force[task])
                if node.table[key][j] <= 0:
                    return None
            else:
                cum = node.cumulative[key]
                j = min(bisect_right(cum, draws[k] * cum[-1]), len(cum) - 1)
            idx[task] = j
            out[task] = node.classes[j]
        return out


def _fit_multiclass(compat: np.ndarray, joint: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rows p(c | parents) ∝ m_c * compat whose joint-weighted mean approaches `target`."""
    m = np.ones(compat.shape[1])
    for _ in range(400):
        rows = _normalised(compat * m)
        marg = joint @ rows
        if np.max(np.abs(marg - target) / target) < 1e-4:
            break
        m *= np.where(marg > 0, target / np.maximum(marg, 1e-12), 1.0)
        m /= m.max()
        m = np.maximum(m, 1e-9)
    return _normalised(compat * m)


def _normalised(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to sum 1; all-zero rows (parent values that never occur) stay zero."""
    total = rows.sum(1, keepdims=True)
    return np.divide(rows, total, out=np.zeros_like(rows), where=total > 0)


def _fit_rates(compat: np.ndarray, joint: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Inclusion rates min(1, m_e * compat) with joint-weighted means at `target` (bisection)."""
    out = np.zeros_like(compat)
    for e in range(compat.shape[1]):
        lo, hi = 0.0, 1.0 / max(compat[:, e][compat[:, e] > 0].min(initial=1.0), 1e-9)
        for _ in range(60):
            mid = (lo + hi) / 2
            rate = joint @ np.minimum(1.0, mid * compat[:, e])
            lo, hi = (mid, hi) if rate < target[e] else (lo, mid)
        out[:, e] = np.minimum(1.0, hi * compat[:, e])
    return out


@lru_cache(maxsize=16)
def label_model(imbalance: float = 1.0, balanced: bool = False) -> LabelModel:
    """The (cached) model for the default taxonomy."""
    return LabelModel(imbalance, balanced)


# -- corrupting labels (partial labelling and label noise) -----------------------------------


def corrupt(
    labels: Labels,
    rng: np.random.Generator,
    taxonomy: Taxonomy,
    missing: float,
    noise: float,
) -> Labels:
    """The observed labels: a wrong class with prob `noise`, then unlabelled with prob `missing`.

    For the multilabel task, noise flips the presence of one element. Missing labels are None.
    """
    out: Labels = {}
    for task in taxonomy.tasks:
        value = labels[task.name]
        u_noise, u_missing, u_pick = rng.random(3)
        if u_noise < noise:
            k = task.num_classes
            if task.multilabel:
                flip = task.class_ids[int(u_pick * k)]
                present = set(value)  # type: ignore[arg-type]
                present ^= {flip}
                value = [c for c in task.class_ids if c in present]
            else:
                others = [c for c in task.class_ids if c != value]
                value = others[int(u_pick * len(others))]
        out[task.name] = None if u_missing < missing else value
    return out


def check_labels(labels: Mapping[str, object]) -> None:
    """Raise a LabelError naming the task and value unless `labels` is a full, valid label set."""
    known = _known_classes()
    for task, classes in known.items():
        if task not in labels or labels[task] is None:
            raise LabelError(f"labels lack task '{task}' (a drawing needs every task)")
        value = labels[task]
        values = value if task == "trend_elements" else [value]
        if task == "trend_elements" and isinstance(value, str):
            raise LabelError(f"task 'trend_elements' needs a list of class ids, got {value!r}")
        for v in values:  # type: ignore[union-attr]
            if v not in classes:
                raise LabelError(f"task '{task}' has no class {v!r}")


@lru_cache(maxsize=1)
def _known_classes() -> dict[str, frozenset[str]]:
    tax = load_taxonomy()
    return {t.name: frozenset(t.class_ids) for t in tax.tasks}


def check_rate(name: str, value: float) -> float:
    """A probability argument (missing, noise) in [0, 1], or an error naming it."""
    if not (0.0 <= value <= 1.0):
        raise LabelError(f"{name} must be between 0 and 1 (got {value})")
    return float(value)
