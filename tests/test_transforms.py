"""Augmentation policy and transforms: label-safe train ops, deterministic eval, normalisation."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from torchvision.transforms import v2

from attire.data.cache import ImageCache
from attire.data.transforms import (
    HALF,
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentError,
    AugmentPolicy,
    build_transforms,
)
from attire.taxonomy import Taxonomy, load_taxonomy


def _taxonomy(*names: str) -> Taxonomy:
    classes = [{"id": "a"}, {"id": "b"}]
    return Taxonomy.from_dict(
        {"name": "t", "tasks": [{"name": n, "classes": classes} for n in names]}
    )


NO_COLOUR = _taxonomy("category", "sleeve_length")


def _ops(pipeline) -> list:
    return list(pipeline.transforms)


def _jitter(pipeline) -> v2.ColorJitter | None:
    found = [t for t in _ops(pipeline) if isinstance(t, v2.ColorJitter)]
    return found[0] if found else None


def _solid(rgb: tuple[int, int, int], size: int = 48) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1).expand(3, size, size).clone()


def _hues(x: torch.Tensor, mean, std) -> np.ndarray:
    """Per-pixel hue in degrees of a normalised [3, H, W] image."""
    rgb = (x * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)).clamp(0, 1)
    px = rgb.permute(1, 2, 0).reshape(-1, 3).numpy()
    return np.array([colorsys.rgb_to_hsv(*p)[0] * 360 for p in px])


def _hue_shift(a: np.ndarray, b: float) -> np.ndarray:
    d = np.abs(a - b) % 360
    return np.minimum(d, 360 - d)


def test_eval_is_deterministic_and_resizes_only():
    x = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    t = build_transforms(AugmentPolicy(), NO_COLOUR, 32, IMAGENET_MEAN, IMAGENET_STD, train=False)
    torch.manual_seed(0)
    a = t(x)
    torch.manual_seed(1)
    b = t(x)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    expected = v2.functional.resize(x, [32, 32], antialias=True).float() / 255
    expected = (expected - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(
        IMAGENET_STD
    ).view(3, 1, 1)
    torch.testing.assert_close(a, expected)


@pytest.mark.parametrize(("mean", "std"), [(IMAGENET_MEAN, IMAGENET_STD), (HALF, HALF)])
def test_normalisation_matches_mean_std(mean, std):
    x = _solid((10, 128, 250), 16)
    for train in (False, True):
        policy = AugmentPolicy(
            rotate_deg=0, translate=0, brightness=0, contrast=0, saturation=0, hue=0
        )
        out = build_transforms(policy, NO_COLOUR.subset(["category"]), 16, mean, std, train)(x)
        for c, v in enumerate((10, 128, 250)):
            want = (v / 255 - mean[c]) / std[c]
            assert torch.allclose(out[c], torch.full_like(out[c], want), atol=1e-5)
    if mean == HALF:  # EfficientNet-Lite's (x - 127.5) / 127.5
        assert out[2, 0, 0].item() == pytest.approx((250 - 127.5) / 127.5)


def test_train_output_shape_and_randomness():
    t = build_transforms(AugmentPolicy(), NO_COLOUR, 24, HALF, HALF, train=True)
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(0)
    a = t(x)
    b = t(x)
    assert a.shape == b.shape == (3, 24, 24) and a.dtype == torch.float32
    assert not torch.equal(a, b)
    torch.manual_seed(0)
    torch.testing.assert_close(t(x), a, rtol=0, atol=0)  # seeded -> reproducible


def test_colour_task_disables_hue_and_saturation():
    tax = load_taxonomy()  # has main_colour and secondary_colour
    policy = AugmentPolicy()
    assert policy.colour_task_names(tax) == ["main_colour", "secondary_colour"]
    jitter = _jitter(build_transforms(policy, tax, 32, HALF, HALF, train=True))
    assert jitter is not None and jitter.brightness is not None and jitter.contrast is not None
    assert jitter.hue is None and jitter.saturation is None
    free = _jitter(build_transforms(policy, NO_COLOUR, 32, HALF, HALF, train=True))
    assert free.hue is not None and free.saturation is not None
    listed = AugmentPolicy(colour_tasks=("sleeve_length",))
    assert _jitter(build_transforms(listed, NO_COLOUR, 32, HALF, HALF, train=True)).hue is None
    assert (
        _jitter(build_transforms(policy, _taxonomy("shade_color"), 32, HALF, HALF, True)).hue
        is None
    )
    with pytest.raises(AugmentError, match="main_colour"):
        build_transforms(AugmentPolicy(colour_jitter=True), tax, 32, HALF, HALF, train=True)


@pytest.mark.parametrize("rgb", [(180, 90, 60), (60, 150, 90), (70, 80, 170), (160, 60, 150)])
def test_train_with_colour_task_never_changes_hue(rgb):
    tax = load_taxonomy()
    policy = AugmentPolicy(brightness=0.25, contrast=0.25, hue=0.2, saturation=0.5)
    t = build_transforms(policy, tax, 32, IMAGENET_MEAN, IMAGENET_STD, train=True)
    hue = colorsys.rgb_to_hsv(*(v / 255 for v in rgb))[0] * 360
    torch.manual_seed(0)
    for _ in range(10):
        out = t(_solid(rgb))
        rgb_out = out * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(
            3, 1, 1
        )
        value = rgb_out.amax(0)
        # skip the black rotation fill and its blended edge, where hue is undefined or rounded
        lit = value >= 0.75 * value.median()
        hues = _hues(out, IMAGENET_MEAN, IMAGENET_STD)[lit.flatten().numpy()]
        assert len(hues) > 0.5 * 32 * 32
        assert _hue_shift(hues, hue).max() < 4.0


def test_hue_jitter_without_colour_task_does_change_hue():
    """The control for the test above: with no colour task, the same check sees hue shifts."""
    policy = AugmentPolicy(rotate_deg=0, translate=0, hue=0.2, saturation=0.5)
    t = build_transforms(policy, NO_COLOUR, 32, IMAGENET_MEAN, IMAGENET_STD, train=True)
    torch.manual_seed(0)
    shifts = [
        _hue_shift(_hues(t(_solid((180, 90, 60))), IMAGENET_MEAN, IMAGENET_STD), 15.0).max()
        for _ in range(10)
    ]
    assert max(shifts) > 10


def test_hflip_follows_asymmetric_tasks():
    def has_flip(policy, tax):
        ops = _ops(build_transforms(policy, tax, 32, HALF, HALF, train=True))
        return any(isinstance(o, v2.RandomHorizontalFlip) for o in ops)

    assert has_flip(AugmentPolicy(), NO_COLOUR)
    assert not has_flip(AugmentPolicy(asymmetric_tasks=("category",)), NO_COLOUR)
    assert not has_flip(AugmentPolicy(hflip=False), NO_COLOUR)
    # declared asymmetric but not trained here: flipping is harmless
    assert has_flip(AugmentPolicy(asymmetric_tasks=("placket",)), NO_COLOUR)
    with pytest.raises(AugmentError, match="category"):
        has_flip(AugmentPolicy(hflip=True, asymmetric_tasks=("category",)), NO_COLOUR)


def test_crop_is_conservative_by_default():
    crop = next(
        o
        for o in _ops(build_transforms(AugmentPolicy(), NO_COLOUR, 32, HALF, HALF, train=True))
        if isinstance(o, v2.RandomResizedCrop)
    )
    assert crop.scale[0] >= 0.7 and crop.ratio[0] >= 0.8 and crop.ratio[1] <= 1.25


def _corners_kept(policy: AugmentPolicy, trials: int = 40) -> bool:
    """Whether every trial keeps some of each of the four bright corner squares in view."""
    img = torch.zeros(3, 64, 64, dtype=torch.uint8)
    for rows in (slice(0, 4), slice(60, 64)):
        for cols in (slice(0, 4), slice(60, 64)):
            img[:, rows, cols] = 255
    pipe = build_transforms(policy, NO_COLOUR, 64, HALF, HALF, train=True)
    torch.manual_seed(0)
    for _ in range(trials):
        bright = pipe(img)[0] > 0.5
        quads = (bright[:32, :32], bright[:32, 32:], bright[32:, :32], bright[32:, 32:])
        if not all(q.any() for q in quads):
            return False
    return True


def test_zoom_out_varies_scale_without_cutting_the_frame():
    still = {"brightness": 0.0, "contrast": 0.0, "rotate_deg": 0.0, "translate": 0.0}
    frame = AugmentPolicy(scale=(1.0, 1.0), ratio=(1.0, 1.0), zoom_out=0.25, **still)
    assert _corners_kept(frame)
    pipe = build_transforms(frame, NO_COLOUR, 64, HALF, HALF, train=True)
    white = torch.full((3, 64, 64), 255, dtype=torch.uint8)
    outs = {int((pipe(white)[0] > 0.5).sum()) for _ in range(10)}
    assert len(outs) > 1 and min(outs) < 64 * 64  # it does shrink, by varying amounts
    # the default crop, by contrast, cuts the frame's edges off (what zoom_out avoids)
    assert not _corners_kept(AugmentPolicy(**still))


def test_policy_validation():
    with pytest.raises(ValidationError, match="scale"):
        AugmentPolicy(scale=(0.9, 0.5))
    with pytest.raises(ValidationError):
        AugmentPolicy(rotate_deg=90)
    with pytest.raises(ValidationError):
        AugmentPolicy(mixup=0.2)  # unknown fields are typos, not silently ignored


def test_crop_cache_reproduces_probe_preprocessing(tmp_path):
    """256 crop cache + eval_crop 0.875 at 224 == Resize(256) + CenterCrop(224), (x-127.5)/127.5."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:300, 0:270]
    img = np.stack([x * 255 / 270, y * 255 / 300, (x * y) % 256], -1) + rng.integers(
        0, 8, (300, 270, 3)
    )
    path = tmp_path / "photo.png"
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path)
    cache = ImageCache.build([path], 256, mode="crop", cache_dir=tmp_path / "c", workers=0)
    t = build_transforms(AugmentPolicy(eval_crop=0.875), NO_COLOUR, 224, HALF, HALF, train=False)
    ours = t(torch.from_numpy(np.array(cache.array[0])).permute(2, 0, 1))
    probe = v2.Compose(
        [
            v2.Resize(256, interpolation=v2.InterpolationMode.BICUBIC),
            v2.CenterCrop(224),
            v2.PILToTensor(),
        ]
    )(Image.open(path).convert("RGB"))
    want = (probe.float() - 127.5) / 127.5
    assert ours.shape == want.shape == (3, 224, 224)
    assert (ours - want).abs().max().item() <= 1.01 / 127.5
