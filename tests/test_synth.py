"""The synthetic catalogue: determinism, the label model (long tail, rules, corruption), the
drawing's dependence on labels, and that its output is an ordinary, clean manifest."""

from __future__ import annotations

import colorsys
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

import attire.cli.synth  # noqa: F401  (registers `attire synth`)
from attire.cli.apps import app
from attire.data.manifest import Manifest
from attire.data.synth import (
    LabelError,
    LabelModel,
    contact_sheet,
    generate_catalogue,
    label_model,
    render,
    scene,
)
from attire.data.synth import garment as g
from attire.data.synth import generate as gen
from attire.data.synth.draws import pick, uniform
from attire.data.synth.labels import (
    MIN_COLOUR_GAP,
    POPULARITY,
    colour_gap,
    corrupt,
    zipf_weights,
)
from attire.data.synth.preview import sample_shown
from attire.data.synth.scene import (
    MIN_DOT,
    PLACED_PRINTS,
    SUPERSAMPLE,
    Raster,
    _chest_box,
    by_layer,
    plan,
    shapes,
)
from attire.data.synth.surface import pattern_ink
from attire.taxonomy import load_taxonomy

TAX = load_taxonomy()
SIZE = 64


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "images").iterdir())}


# -- determinism ------------------------------------------------------------------------------


def test_same_seed_same_bytes_whatever_the_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "_CHUNK", 3)  # two chunks, so the pool really splits the work
    a = generate_catalogue(tmp_path / "a", 6, size=SIZE, seed=5, noise=0.2, progress=False)
    b = generate_catalogue(tmp_path / "b", 6, size=SIZE, seed=5, noise=0.2, progress=False)
    c = generate_catalogue(
        tmp_path / "c", 6, size=SIZE, seed=5, noise=0.2, workers=2, progress=False
    )
    assert _files(tmp_path / "a") == _files(tmp_path / "b") == _files(tmp_path / "c")
    assert len(_files(tmp_path / "a")) == 6
    for other in (b, c):
        assert a.df.drop(columns="path").equals(other.df.drop(columns="path"))
    d = generate_catalogue(tmp_path / "d", 6, size=SIZE, seed=6, progress=False)
    assert _files(tmp_path / "d") != _files(tmp_path / "a")
    assert not a.df["category"].equals(d.df["category"]) or not a.df["fit"].equals(d.df["fit"])


def test_noise_and_missing_do_not_change_the_images(tmp_path):
    generate_catalogue(tmp_path / "clean", 4, size=SIZE, seed=1, progress=False)
    generate_catalogue(
        tmp_path / "noisy", 4, size=SIZE, seed=1, noise=0.5, missing=0.5, progress=False
    )
    assert _files(tmp_path / "clean") == _files(tmp_path / "noisy")


# -- the label model ----------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [1.0, 8.0])
def test_unconditioned_task_follows_the_head_tail_ratio(ratio):
    counts = Counter(gen.clean_labels(i, 0, ratio)["main_colour"] for i in range(4000))
    order = POPULARITY["main_colour"]
    head, tail = counts[order[0]], counts[order[-1]]
    assert len(counts) == len(order)
    assert ratio * 0.7 < head / tail < ratio * 1.35
    if ratio > 1:  # the tail is ordered by popularity, not by chance
        assert counts.most_common(1)[0][0] == order[0]


def test_conditioned_marginals_are_calibrated_to_zipf():
    model = LabelModel(10.0)
    for task in ("category", "sleeve_length", "garment_length", "fit", "collar"):
        target = model.target(task)
        assert np.allclose(model.marginal(task), target, rtol=0.02), task
        first, last = POPULARITY[task][0], POPULARITY[task][-1]
        classes = list(model.classes(task))
        marginal = model.marginal(task)
        assert marginal[classes.index(first)] / marginal[classes.index(last)] == pytest.approx(
            10.0, rel=0.05
        )
    assert zipf_weights(5, 4.0)[0] / zipf_weights(5, 4.0)[-1] == pytest.approx(4.0)


def test_bad_imbalance_is_a_user_error():
    with pytest.raises(LabelError, match="imbalance"):
        LabelModel(0.5)


def test_every_class_appears_in_a_moderate_balanced_sample():
    model = label_model(1.0, balanced=True)
    rng = np.random.default_rng(3)
    seen: dict[str, Counter] = {t: Counter() for t in TAX.task_names}
    for _ in range(2500):
        labels = model.sample(rng)
        for t in TAX.tasks:
            value = labels[t.name]
            seen[t.name].update(value if t.multilabel else [value])
    for t in TAX.tasks:
        missing = set(t.class_ids) - set(seen[t.name])
        assert not missing, f"{t.name}: never drawn {missing}"
        assert min(seen[t.name].values()) >= 15, (t.name, seen[t.name].most_common()[-1])


@pytest.mark.parametrize(("ratio", "balanced"), [(1.0, True), (20.0, False)])
def test_correlation_rules_hold(ratio, balanced):
    model = label_model(ratio, balanced)
    rng = np.random.default_rng(11)
    for _ in range(3000):
        lab = model.sample(rng)
        cat = lab["category"]
        if cat == "camisole":
            assert lab["sleeve_length"] in ("sleeveless", "invisible")
            assert lab["placket"] == "none"
        if cat == "hoodie":
            assert lab["collar"] in ("hood", "invisible")
        if cat == "coat":
            assert lab["sleeve_length"] not in ("sleeveless", "cup_sleeves", "short_sleeves")
            assert lab["garment_length"] not in ("high_waist", "regular")
        if cat == "shirt":
            assert lab["collar"] in ("shirt_collar", "stand_collar", "peter_pan", "invisible")
            assert lab["placket"] in ("single_breasted", "double_breasted")
        if cat in ("jacket", "coat", "cardigan"):
            assert lab["placket"] not in ("none",)
        if lab["collar"] == "lapel":
            assert lab["placket"] in ("single_breasted", "double_breasted", "open_front", "wrap")
        assert lab["secondary_colour"] != lab["main_colour"]
        if lab["secondary_colour"] != "none":  # a second colour contrasts with the main one
            assert colour_gap(lab["secondary_colour"], lab["main_colour"]) >= MIN_COLOUR_GAP
        assert lab["secondary_pattern"] != lab["main_pattern"]
        if lab["main_pattern"] == "colour_block":
            assert lab["secondary_colour"] != "none"
            assert lab["secondary_pattern"] == "none"


def test_forced_classes_respect_the_rules():
    model = label_model(1.0, balanced=True)
    rng = np.random.default_rng(0)
    for _ in range(20):
        lab = model.sample(rng, {"collar": "hood"})
        assert lab["collar"] == "hood" and lab["category"] in (
            "hoodie",
            "jacket",
            "coat",
            "cardigan",
            "vest",
        )
    with pytest.raises(LabelError, match="no class"):
        model.sample(rng, {"collar": "bow_tie"})


def test_missing_and_noise_rates():
    rng = np.random.default_rng(4)
    model = label_model(1.0)
    n, missing, noise = 3000, 0.3, 0.2
    gone = changed = 0
    for _ in range(n):
        clean = model.sample(rng)
        observed = corrupt(clean, rng, TAX, missing, noise)
        for t in TAX.task_names:
            if observed[t] is None:
                gone += 1
            elif observed[t] != clean[t]:
                changed += 1
    cells = n * len(TAX.task_names)
    assert gone / cells == pytest.approx(missing, abs=0.015)
    # noise is drawn before missing: changed labels are the noisy share of the kept ones
    assert changed / (cells - gone) == pytest.approx(noise, abs=0.015)


# -- drawing ------------------------------------------------------------------------------------


def test_every_class_of_every_task_renders():
    model = label_model(1.0, balanced=True)
    for task in TAX.tasks:
        for k, cls in enumerate(task.class_ids):
            rng = np.random.default_rng([k, len(task.name)])
            labels = model.sample(rng, {task.name: cls})
            if task.multilabel:
                assert cls in labels[task.name]
            side = 32 + k % 3  # odd sides too
            img = render(labels, side, rng)
            assert img.size == (side, side) and img.mode == "RGB"


def test_render_rejects_incomplete_or_unknown_labels():
    labels = label_model().sample(np.random.default_rng(0))
    with pytest.raises(LabelError, match="fit"):
        render({k: v for k, v in labels.items() if k != "fit"}, 64, np.random.default_rng(0))
    with pytest.raises(LabelError, match="purple-ish"):
        render({**labels, "main_colour": "purple-ish"}, 64, np.random.default_rng(0))


def _plain(**over: object) -> dict:
    labels = {
        "category": "t_shirt",
        "main_colour": "grey",
        "secondary_colour": "none",
        "main_pattern": "solid",
        "secondary_pattern": "none",
        "texture": "smooth",
        "trend_elements": [],
        "collar": "round_neck",
        "sleeve_length": "short_sleeves",
        "garment_length": "regular",
        "fit": "regular",
        "placket": "none",
        "fabric": "cotton",
    }
    labels.update(over)
    return labels


def _garment_pixels(labels: dict, seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A render, and the mask of pixels fully covered by the garment's fabric (no trims)."""
    img = np.asarray(render(labels, size, np.random.default_rng(seed)), float)
    rng = np.random.default_rng(seed)  # replay the drawing's first steps: plan and shapes
    p = plan(labels, rng)
    figure, _ = shapes(p, rng, p.view.h / size)
    raster = Raster(p.view, size * SUPERSAMPLE)
    layer = Image.new("L", (size * SUPERSAMPLE,) * 2, 0)
    raster.draw(*by_layer(figure, raster.project(figure))["garment"], ImageDraw.Draw(layer))
    region = np.asarray(layer)
    fabric = np.isin(region, [g.BODY, g.SLEEVE]).astype(np.uint8) * 255
    mask = np.asarray(Image.fromarray(fabric).reduce(SUPERSAMPLE)) == 255
    return img, mask


def _mean_hue(pixels: np.ndarray) -> float:
    """Circular mean hue in degrees of an (N, 3) array of RGB pixels."""
    hues = [colorsys.rgb_to_hsv(*(p / 255))[0] * 2 * math.pi for p in pixels[::7]]
    return math.degrees(math.atan2(np.mean(np.sin(hues)), np.mean(np.cos(hues)))) % 360


def test_main_colour_changes_the_hue_of_the_garment():
    for seed in range(3):
        red, where = _garment_pixels(_plain(main_colour="red"), seed)
        blue, where_b = _garment_pixels(_plain(main_colour="blue"), seed)
        assert (where == where_b).all() and where.sum() > 300
        assert min(_mean_hue(red[where]), 360 - _mean_hue(red[where])) < 25
        assert 190 < _mean_hue(blue[where]) < 240


def test_pattern_adds_contrast_inside_the_garment():
    for seed in range(3):
        solid, where = _garment_pixels(_plain(), seed)
        stripes, _ = _garment_pixels(
            _plain(main_pattern="horizontal_stripe", secondary_colour="navy"), seed
        )
        assert stripes[where].mean(-1).std() > 2 * solid[where].mean(-1).std()


def _runs(row: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a 1-D boolean array, those cut by its ends left out."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
    runs = list(edges[1::2] - edges[0::2])
    cut = [0] if row[0] else []
    cut += [len(runs) - 1] if row[-1] else []
    return [r for i, r in enumerate(runs) if i not in cut]


@pytest.mark.parametrize("kind", ["horizontal_stripe", "vertical_stripe", "plaid", "polka_dot"])
def test_pattern_features_stay_pixels_wide_when_the_garment_is_small(kind):
    """At 8 output px per unit (a floor-length coat in a 64 px image) stripes and plaid lines
    are at least 2 px wide with gaps of 2 px, dots at least 3 px across: nothing aliases away."""
    ppu = 8.0
    ys, xs = np.mgrid[0:96, 0:96].astype(np.float32) + 0.5
    for seed in range(4):
        ink = pattern_ink(kind, xs / ppu, ys / ppu, ppu, np.random.default_rng(seed), (0, 0, 1, 1))
        on = ink > 0.5
        lines = [*on, *on.T] if kind != "horizontal_stripe" else list(on.T)
        lines = lines if kind != "vertical_stripe" else list(on)
        widths = [r for line in lines for r in _runs(line)]
        gaps = [r for line in lines for r in _runs(~line)]
        assert widths and gaps
        if kind == "polka_dot":  # the widest row through each dot
            assert np.percentile(widths, 90) >= 3 and min(gaps) >= 2
        else:
            assert min(widths) >= 2 and min(gaps) >= 2


def _grain(labels: dict, seed: int) -> float:
    """Mean brightness step between neighbouring garment pixels, at the training size."""
    img, mask = _garment_pixels(labels, seed, size=64)
    lum = img.mean(-1)
    both = mask[:, 1:] & mask[:, :-1]
    return float(np.abs(np.diff(lum, axis=1))[both].mean())


@pytest.mark.parametrize("colour", ["navy", "beige"])
def test_knit_heather_shows_at_64_px_even_on_dark_colours(colour):
    """Knit and cotton were the catalogue's most confused fabrics when the heather was a faint
    multiplier (nothing on navy): a speckle of ~2 px with some added light must show at 64 px."""
    for seed in range(3):
        knit = _grain(_plain(main_colour=colour, fabric="knit", category="sweater"), seed)
        cotton = _grain(_plain(main_colour=colour, fabric="cotton", category="sweater"), seed)
        assert knit > 2 * cotton


def _hues(pixels: np.ndarray) -> np.ndarray:
    rgb = pixels / 255
    return np.array([colorsys.rgb_to_hsv(*p) for p in rgb])


@pytest.mark.parametrize("texture", ["ribbed", "cable_knit", "quilted", "sequined", "corduroy"])
def test_texture_is_a_relief_of_the_ground_colour_not_a_second_colour(texture):
    """A textured red top stays red everywhere (no pixel of another hue), and the texture
    changes its brightness: it reads as relief, never as a print. On matte cotton, whose own
    grain is faint (knit's heathered speckle would swamp the comparison of spreads)."""
    labels = _plain(main_colour="red", texture=texture, category="sweater", fabric="cotton")
    smooth = _plain(main_colour="red", texture="smooth", category="sweater", fabric="cotton")
    img, where = _garment_pixels(labels, 0)
    flat, where_flat = _garment_pixels(smooth, 0)
    hsv = _hues(img[where])
    red = (hsv[:, 0] < 0.06) | (hsv[:, 0] > 0.94) | (hsv[:, 2] < 0.25)  # dark seams have no hue
    assert red.mean() > 0.97
    assert img[where].mean(-1).std() > 1.3 * flat[where_flat].mean(-1).std()


def test_secondary_colour_is_carried_by_the_trims_and_none_adds_no_colour():
    """A plain grey top with secondary colour red shows red (neck band, cuffs, hem band); with
    "none" it shows no saturated colour at all."""
    for seed in range(3):
        for sec, expect in (("red", True), ("none", False)):
            labels = _plain(secondary_colour=sec, category="sweater", fabric="knit")
            img = np.asarray(render(labels, 96, np.random.default_rng(seed)), float)
            hsv = _hues(img.reshape(-1, 3))
            red = ((hsv[:, 0] < 0.05) | (hsv[:, 0] > 0.95)) & (hsv[:, 1] > 0.5) & (hsv[:, 2] > 0.4)
            assert (red.sum() > 60) == expect, (sec, seed, red.sum())


def test_small_dots_and_thin_lines_are_drawn_at_least_pixel_sized():
    """Buttons, rivets and eyelets cover a dot of MIN_DOT output px, stitches one output px."""
    n = 64 * SUPERSAMPLE
    raster = Raster(plan(_plain(), np.random.default_rng(0)).view, n)
    dot = g.ellipse(0.0, 2.5, 0.001, 0.001, 255)
    stitch = g.line([[-0.5, 3.0], [0.5, 3.0]], 255, 0.001)
    dot_area = math.pi * (MIN_DOT * SUPERSAMPLE / 2) ** 2
    line_area = SUPERSAMPLE * raster.s  # one output px wide, one unit long, in canvas px
    for shape, least in ((dot, 0.8 * dot_area), (stitch, 0.9 * line_area)):
        layer = Image.new("L", (n, n), 0)
        raster.draw([shape], raster.project([shape]), ImageDraw.Draw(layer))
        assert (np.asarray(layer) > 0).sum() >= least


def test_the_frame_hides_exactly_the_invisible_attributes():
    """Invisible collar / sleeves / hem lie outside the frame (or the arms are hidden); visible
    ones lie inside it with room to judge them."""
    model = label_model(1.0, balanced=True)
    rng = np.random.default_rng(8)
    for i in range(600):
        labels = model.sample(rng)
        p = plan(labels, np.random.default_rng(i))
        d, v = p.design, p.view
        top, bottom = v.y0, v.y0 + v.h
        if labels["garment_length"] == "invisible":
            assert d.hem_y > bottom
        else:
            assert d.hem_y < bottom - 0.3 and bottom > g.HIP_Y  # a crop top is judged by the hips
            assert d.hem_y == g.HEM_Y[labels["garment_length"]]
        if labels["collar"] == "invisible":
            assert top > g.COLLAR_BOTTOM[d.collar] or d.category == "camisole"
        else:
            assert top < g.COLLAR_TOP.get(d.collar, 1.0)
            assert d.collar == labels["collar"]
        if labels["sleeve_length"] == "invisible":
            end, _ = g.sleeve_end(d) if not d.arms_hidden else (None, None)
            assert d.arms_hidden or end[1] > bottom
        else:
            reach_x, reach_y = g.sleeve_reach(d)
            assert reach_y < bottom and reach_x < v.h / 2 + abs(v.xc) + 0.05
            assert d.sleeve == labels["sleeve_length"] and not d.arms_hidden


def _drawn_regions(monkeypatch, labels: dict, seed: int) -> tuple:
    """Render at 64 px and return the region map as `_secondary_panel` leaves it (before seams
    and closures are drawn over it), its box, raster, plan and the secondary share it drew."""
    seen = {}
    real = scene._secondary_panel

    def spy(region, box, raster, p, share):
        real(region, box, raster, p, share)
        seen.update(region=region.copy(), box=box, raster=raster, plan=p, share=share)

    monkeypatch.setattr(scene, "_secondary_panel", spy)
    render(labels, SIZE, np.random.default_rng(seed))
    return seen["region"], seen["box"], seen["raster"], seen["plan"], seen["share"]


def test_the_secondary_pattern_leaves_the_main_pattern_the_majority(monkeypatch):
    """The lower sleeves and one body panel carry a secondary pattern, together 38-45% of the
    visible patterned pixels (body, hood, sleeves), so the main pattern has the majority; the
    sleeves hold at most 60% of it (long sleeves beside a small body took all of it before, and
    the upper sleeves now take the main pattern); a placed print's chest middle stays clear of
    the panel (printed over a patterned yoke it was illegible at 64 px)."""
    model = label_model(1.0, balanced=True)
    rng = np.random.default_rng(3)
    shares, placed_checked, trimmed = [], 0, 0
    for i in range(400):
        labels = model.sample(rng)
        if labels["secondary_pattern"] == "none":
            continue
        region, box, raster, p, drawn = _drawn_regions(monkeypatch, labels, i)
        panel, sleeves = (region == g.PANEL).sum(), (region == g.SLEEVE).sum()
        patterned = np.isin(region, (g.BODY, g.HOOD, g.SLEEVE, g.PANEL)).sum()
        share = (panel + sleeves) / patterned
        assert panel > 0, (i, labels["category"])
        assert share < 0.46, (i, labels["category"], share)
        assert sleeves <= scene.SLEEVE_SHARE * drawn * patterned + 1, (i, sleeves, panel)
        trimmed += sleeves > 0.55 * drawn * patterned  # the sleeves were at their cap
        if labels["main_pattern"] in PLACED_PRINTS:
            x0, y0, x1, y1 = _chest_box(p)
            cx, cy = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) @ raster.m.T + raster.t
            r, c = int(cy) - box[1], int(cx) - box[0]
            if 0 <= r < region.shape[0] and 0 <= c < region.shape[1]:
                assert region[r, c] != g.PANEL, (i, labels)
                placed_checked += 1
        else:
            shares.append(share)
    assert placed_checked > 30 and trimmed > 10
    shares = np.array(shares)
    assert len(shares) > 150
    assert np.mean((shares > 0.37) & (shares < 0.46)) > 0.95, np.quantile(shares, [0.02, 0.5])


def test_a_placed_print_sits_across_the_chest_below_the_neckline():
    """Centred on both fronts whatever the closure (on one front beside an open closure it was
    4-10 px wide at 64 px, and letter prints there had 0.28 accuracy on r11's test images), and
    below a deep neckline or lapels, which would otherwise open through it."""
    model = label_model(1.0, balanced=True)
    rng = np.random.default_rng(5)
    seen = set()
    for i in range(300):
        labels = model.sample(rng)
        p = plan(labels, np.random.default_rng(i))
        x0, y0, x1, y1 = _chest_box(p)
        assert x0 == pytest.approx(-x1) and x1 - x0 > 0.8, (i, labels["placket"], x0, x1)
        lowest = max(p.visible.bottom, p.design.hem_y) - 0.6  # a crop top's hem bounds it
        if lowest >= p.visible.neck_y + 0.6:
            assert (y0 + y1) / 2 >= p.visible.neck_y + 0.6 - 1e-9, (i, labels["collar"])
            seen.add(labels["collar"])
    assert {"lapel", "deep_v_neck", "round_neck"} <= seen


def test_sleeve_length_moves_the_sleeve_end_along_the_arm():
    order = [
        "cup_sleeves",
        "short_sleeves",
        "elbow_sleeves",
        "three_quarter_sleeves",
        "wrist_length",
        "long_sleeves",
        "extra_long_sleeves",
    ]
    ends = []
    for sleeve in order:
        d = plan(_plain(sleeve_length=sleeve, category="blouse"), np.random.default_rng(0)).design
        ends.append(g.sleeve_end(d)[0][1])
    assert ends == sorted(ends) and min(np.diff(ends)) > 0.3


def test_contact_sheet_has_a_row_per_class():
    sheet = contact_sheet("fit", size=32, per_class=2)
    rows = len(TAX.task("fit").class_ids)
    assert sheet.size[1] == rows * (32 + 4)
    assert sheet.size[0] > 2 * 32


def test_contact_sheet_isolates_the_class_where_the_rules_allow():
    model = label_model(1.0, balanced=True)
    rng = np.random.default_rng(0)
    inks = set()
    for _ in range(20):
        lab = sample_shown(model, "collar", {"collar": "hood"}, rng, isolated=True)
        assert lab["collar"] == "hood" and lab["trend_elements"] == []
        assert (lab["texture"], lab["main_pattern"], lab["secondary_pattern"]) == (
            "smooth",
            "solid",
            "none",
        )
        # a pattern keeps its second colour: without one it is only a shade of the main colour
        lab = sample_shown(model, "main_pattern", {"main_pattern": "plaid"}, rng, isolated=True)
        assert lab["main_pattern"] == "plaid" and lab["texture"] == "smooth"
        assert lab["secondary_pattern"] == "none"
        inks.add(lab["secondary_colour"])
        # cable knit is never smooth, and the rules still hold for what could be kept plain
        lab = sample_shown(model, "texture", {"texture": "cable_knit"}, rng, isolated=True)
        assert lab["texture"] == "cable_knit" and lab["fabric"] == "knit"
    assert len(inks - {"none"}) > 3
    context = [
        sample_shown(model, "collar", {"collar": "hood"}, rng, isolated=False)["main_pattern"]
        for _ in range(30)
    ]
    assert len(set(context)) > 3  # the other half keeps the catalogue's usual company
    lab = sample_shown(model, "trend_elements", {"trend_elements": "bow"}, rng, isolated=True)
    assert lab["trend_elements"] == ["bow"]


# -- the catalogue as data ------------------------------------------------------------------------


def test_catalogue_is_an_ordinary_clean_manifest(tmp_path):
    out = tmp_path / "cat"
    generate_catalogue(
        out, 12, size=SIZE, seed=2, imbalance=5, missing=0.25, noise=0.25, progress=False
    )
    m = Manifest.read(out / "manifest.parquet")
    assert len(m) == 12 and not m.label_problems()
    assert m.taxonomy.to_dict() == TAX.to_dict()
    assert load_taxonomy(out / "taxonomy.yaml").to_dict() == TAX.to_dict()
    assert m.df["source"].tolist() == [f"synth:{i}" for i in range(12)]
    assert m.df["image_id"].is_unique
    for t in TAX.tasks:
        assert f"{t.name}__true" in m.df.columns
        truth = m.df[f"{t.name}__true"]
        assert truth.notna().all()
        if t.multilabel:
            assert all(isinstance(v, list) for v in truth)
            assert all(isinstance(v, list) for v in m.df[t.name].dropna())
        else:
            assert set(truth) <= set(t.class_ids)
    assert m.df[TAX.task_names].isna().to_numpy().any()  # some labels are missing
    for path in m.image_paths():
        with Image.open(path) as img:
            assert img.size == (SIZE, SIZE) and img.format == "JPEG"
    enc = m.encode("trend_elements")
    assert enc.shape == (12, 8)


def test_catalogue_without_noise_has_no_truth_columns(tmp_path):
    m = generate_catalogue(tmp_path, 3, size=SIZE, image_format="png", progress=False)
    assert not any(c.endswith("__true") for c in m.df.columns)
    assert all(p.suffix == ".png" and p.exists() for p in m.image_paths())
    assert m.df[TAX.task_names].notna().all().all()
    # the clean labels themselves, in the taxonomy's column order (as with noise, and as ingest)
    assert [c for c in m.df.columns if c in TAX.task_names] == list(TAX.task_names)
    for i in range(3):
        assert m.df.iloc[i][TAX.task_names].to_dict() == gen.clean_labels(i, 0)


def test_catalogue_passes_the_data_check(tmp_path):
    from attire.data.quality import check_manifest

    m = generate_catalogue(tmp_path, 24, size=SIZE, seed=9, imbalance=3, progress=False)
    result = check_manifest(Manifest.read(tmp_path / "manifest.parquet"), progress=False)
    assert result.n_kept == len(m) and result.report.empty


def test_bad_arguments_are_user_errors(tmp_path):
    for kwargs, word in [
        ({"n": 0}, "n"),
        ({"n": 2, "size": 8}, "size"),
        ({"n": 2, "missing": 1.5}, "missing"),
        ({"n": 2, "noise": -0.1}, "noise"),
        ({"n": 2, "workers": 0}, "workers"),
        ({"n": 2, "image_format": "gif"}, "format"),
        ({"n": 2, "imbalance": 0.0}, "imbalance"),
    ]:
        n = kwargs.pop("n")
        with pytest.raises(LabelError, match=word):
            generate_catalogue(tmp_path, n, progress=False, **kwargs)


def test_cli_writes_a_catalogue_and_reports_bad_values(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "synth",
            "--n",
            "3",
            "--size",
            "48",
            "--out",
            str(tmp_path / "o"),
            "--imbalance",
            "4",
            "--missing",
            "0.1",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert len(Manifest.read(tmp_path / "o" / "manifest.parquet")) == 3
    bad = runner.invoke(
        app, ["synth", "--n", "3", "--out", str(tmp_path / "b"), "--imbalance", "0.5"]
    )
    assert bad.exit_code == 2 and "imbalance" in bad.output


def test_a_slogan_has_two_or_three_lines_of_text():
    """A one-line slogan stretched over the chest box read as a graphic at 64 px (graphic and
    letter prints were each other's main confusion on r11's test images)."""
    from attire.data.synth.surface import _slogan_tile

    for variant in range(16):
        rows = _slogan_tile(variant).max(axis=1) > 0.5
        starts = np.flatnonzero(rows[1:] & ~rows[:-1]) + 1
        lines = len(starts) + int(rows[0])
        assert lines in (2, 3), (variant, lines)


def _spy_garment(monkeypatch: pytest.MonkeyPatch) -> dict[str, Image.Image]:
    """What the next render's garment compositing returns: its RGBA image and paste mask."""
    seen: dict[str, Image.Image] = {}
    real = scene._garment

    def spy(*args):
        seen["rgba"], seen["mask"] = out = real(*args)
        return out

    monkeypatch.setattr(scene, "_garment", spy)
    return seen


def test_a_print_on_chiffon_is_nearly_opaque(monkeypatch):
    """Sheer chiffon shows what is behind it at half opacity, but its print's pigment does not:
    at half opacity chiffon's prints were the least legible of all fabrics on r12's test."""
    seen = _spy_garment(monkeypatch)
    labels = _plain(fabric="chiffon", main_pattern="polka_dot", secondary_colour="red")
    render(labels, 128, np.random.default_rng(0))
    alpha = np.asarray(seen["rgba"])[..., 3].astype(int)
    assert seen["mask"] is seen["rgba"]  # pasted by its alpha, not as opaque
    alpha = alpha[alpha > 0]
    dense, sheer = np.mean(alpha >= 0.85 * 255 - 1), np.mean(np.abs(alpha - 127) <= 2)
    assert 0.05 < dense < 0.6 and sheer > 0.3, (dense, sheer)


def test_an_opaque_garment_pastes_with_a_one_bit_mask_of_its_drawn_pixels(monkeypatch):
    """Opaque garments take the cheap 1-bit paste; it must cover exactly the pixels with alpha
    (holes stay out), or the backdrop would show through or the box's corners be painted."""
    seen = _spy_garment(monkeypatch)
    render(_plain(fabric="cotton", trend_elements=["cut_out"]), 128, np.random.default_rng(3))
    assert seen["mask"].mode == "1"
    alpha = np.asarray(seen["rgba"])[..., 3]
    assert set(np.unique(alpha)) == {0, 255}
    assert np.array_equal(np.asarray(seen["mask"]), alpha == 255)


def test_one_colour_patterns_stand_out_from_a_texture_relief():
    """The tone-on-tone shade of a one-colour garment is at least 0.2 away in value (textures
    are +-20-28% reliefs; at 0.16-0.19 such patterns were at 0.31 accuracy) and stays out of
    the grey box for white and black."""
    import colorsys

    from attire.data.synth.surface import COLOUR_HSV, sample_colour, tone_on_tone

    rng = np.random.default_rng(0)
    grey = COLOUR_HSV["grey"][2]
    for name in COLOUR_HSV:
        for _ in range(20):
            rgb = sample_colour(name, rng)
            v0 = colorsys.rgb_to_hsv(*rgb)[2]
            v1 = colorsys.rgb_to_hsv(*tone_on_tone(rgb))[2]
            assert abs(v1 - v0) >= 0.2 - 1e-6, (name, v0, v1)
            if name in ("white", "black"):
                assert not grey[0] - 0.05 <= v1 <= grey[1] + 0.05, (name, v1)


def test_all_over_letters_are_tall_enough_to_read_at_64_px():
    """Lines of letters at least 7 px tall where the garment is small in the frame (at 5 px they
    read as floral or polka dots on sleeves and panels)."""
    from attire.data.synth.surface import _all_over_letters

    ppu = 10.0  # output pixels per body unit: a long coat at 64 px
    y, x = np.mgrid[0:120, 0:120].astype(np.float32)
    ink = _all_over_letters(x / ppu, y / ppu, ppu) > 0.5
    rows = ink.any(axis=1)
    edges = np.flatnonzero(np.diff(rows.astype(int)))
    runs = np.diff(edges)[::2] if rows[0] == 0 else np.diff(edges)[1::2]
    assert len(runs) >= 2 and np.median(runs) >= 7, runs


def test_scalar_draws_equal_numpys_from_the_same_stream():
    """`uniform` and `pick` stand in for rng.uniform and rng.choice in the drawing: the images
    stay the same only if they return the same values and leave the stream where numpy would."""
    ours, numpys = np.random.default_rng(3), np.random.default_rng(3)
    spans = np.sort(np.random.default_rng(4).uniform(-50, 50, (500, 2)), axis=1)
    for lo, hi in spans.tolist():
        assert uniform(ours, lo, hi) == numpys.uniform(lo, hi)
        options = ("a", "b", "c", "d", "e")[: 1 + int(abs(lo)) % 5]
        assert pick(ours, options) == numpys.choice(options)
    assert ours.random() == numpys.random()
