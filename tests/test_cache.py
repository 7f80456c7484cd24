"""The image cache: right pixels, decoded once, rebuilt on change, atomic, failures recorded."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.transforms import v2

import attire.data.cache as cache_mod
from attire.data.cache import ImageCache, ImageCacheError, content_key
from attire.data.manifest import Manifest
from attire.taxonomy import load_taxonomy

S = 20


def _gradient(w: int, h: int, seed: int) -> Image.Image:
    """A smooth, non-symmetric RGB image (so crops, pads and channel order all show)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a, b, c = rng.uniform(0.2, 1.0, 3)
    img = np.stack([x * 255 / w * a, y * 255 / h * b, (x + y) * 127 / (w + h) * c + 60], -1)
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """Landscape, portrait and square PNGs plus one JPEG; the pads are even on both sides."""
    out = []
    for i, (w, h) in enumerate([(40, 24), (24, 40), (33, 33), (60, 36)]):
        p = tmp_path / "img" / f"{i}.{'jpg' if i == 3 else 'png'}"
        p.parent.mkdir(exist_ok=True)
        _gradient(w, h, i).save(p, quality=95)
        out.append(p)
    return out


@pytest.fixture
def broken(tmp_path: Path) -> list[Path]:
    """A text file named .jpg and a JPEG cut in half."""
    text = tmp_path / "img" / "text.jpg"
    text.parent.mkdir(exist_ok=True)
    text.write_text("not an image")
    full = tmp_path / "full.jpg"
    _gradient(64, 48, 9).save(full, quality=90)
    cut = tmp_path / "img" / "truncated.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return [text, cut]


def _pad_reference(path: Path, size: int) -> np.ndarray:
    im = Image.open(path).convert("RGB")
    scale = size / max(im.size)
    small = np.asarray(im.resize((round(im.width * scale), round(im.height * scale)), 3))
    ring = np.concatenate([small[0], small[-1], small[1:-1, 0], small[1:-1, -1]])
    out = np.empty((size, size, 3), np.uint8)
    out[:] = np.rint(ring.mean(0))
    top, left = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    return out


def _crop_reference(path: Path, size: int) -> np.ndarray:
    pipeline = v2.Compose(
        [v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC), v2.CenterCrop(size)]
    )
    return np.asarray(pipeline(Image.open(path).convert("RGB")))


@pytest.mark.parametrize(
    ("mode", "reference"), [("pad", _pad_reference), ("crop", _crop_reference)]
)
def test_content_matches_pillow_resize(tmp_path, images, mode, reference):
    cache = ImageCache.build(images, S, mode=mode, cache_dir=tmp_path / "c", workers=0)
    assert cache.array.shape == (len(images), S, S, 3)
    assert cache.array.dtype == np.uint8
    assert cache.ok.all()
    for row, path in enumerate(images):
        diff = np.abs(cache.array[row].astype(int) - reference(path, S))
        assert diff.max() <= 2, (path.name, diff.max())


def test_large_jpeg_decoded_at_reduced_scale_stays_close(tmp_path):
    """JPEG draft decoding (>= 2x the target) may differ from a full decode only slightly."""
    p = tmp_path / "big.jpg"
    _gradient(400, 300, 7).save(p, quality=95)
    for mode, reference in (("pad", _pad_reference), ("crop", _crop_reference)):
        arr = ImageCache.build([p], S, mode=mode, cache_dir=tmp_path, workers=0).array[0]
        assert np.abs(arr.astype(int) - reference(p, S)).mean() < 1.5


def test_pad_keeps_whole_image_and_fills_with_border_colour(tmp_path):
    p = tmp_path / "wide.png"
    img = np.full((20, 40, 3), 200, np.uint8)  # light background
    img[5:15, 10:30] = (255, 0, 0)  # a red garment in the middle
    Image.fromarray(img).save(p)
    arr = ImageCache.build([p], S, mode="pad", cache_dir=tmp_path, workers=0).array[0]
    assert (arr[:5] == 200).all() and (arr[-5:] == 200).all()  # letterbox bands = background
    red = (arr[..., 0] > 200) & (arr[..., 1] < 60)
    rows, cols = np.nonzero(red)
    assert rows.min() >= 5 and rows.max() < S - 5  # inside the letterboxed band
    assert cols.min() <= 6 and cols.max() >= 13  # the garment is not cropped away


def test_transparent_background_becomes_white(tmp_path):
    p = tmp_path / "cutout.png"
    img = np.zeros((20, 20, 4), np.uint8)  # fully transparent black...
    img[5:15, 5:15] = (0, 0, 255, 255)  # ...around an opaque blue garment
    Image.fromarray(img, "RGBA").save(p)
    arr = ImageCache.build([p], S, cache_dir=tmp_path, workers=0).array[0]
    assert (arr[0, 0] == 255).all() and (arr[S // 2, S // 2] == (0, 0, 255)).all()


def test_second_build_reuses_without_decoding(tmp_path, images, monkeypatch):
    calls = []
    real = cache_mod.load_image
    monkeypatch.setattr(cache_mod, "load_image", lambda *a: calls.append(a) or real(*a))
    first = ImageCache.build(images, S, cache_dir=tmp_path, workers=0)
    assert len(calls) == len(images)
    second = ImageCache.build(images, S, cache_dir=tmp_path, workers=0)
    assert len(calls) == len(images)  # nothing decoded again
    assert second.path == first.path
    np.testing.assert_array_equal(second.array, first.array)
    # another size or mode is another cache
    other = ImageCache.build(images, S, mode="crop", cache_dir=tmp_path, workers=0)
    assert other.path != first.path and len(calls) == 2 * len(images)


def test_key_changes_when_a_file_changes(tmp_path, images):
    first = ImageCache.build(images, S, cache_dir=tmp_path / "c", workers=0)
    before = np.array(first.array[0])
    Image.new("RGB", (40, 24), (0, 255, 0)).save(images[0])
    st = images[0].stat()
    os.utime(images[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = ImageCache.build(images, S, cache_dir=tmp_path / "c", workers=0)
    assert second.key != first.key and second.path != first.path
    assert not np.array_equal(second.array[0], before)
    assert (second.array[0][S // 2, S // 2] == (0, 255, 0)).all()
    assert content_key(images, S, "pad") != content_key(images, S, "pad", key_extra="v2")


def test_interrupted_build_leaves_no_cache(tmp_path, images, monkeypatch):
    real = cache_mod.load_image

    def dies_on_third(path, size, mode):
        if str(path).endswith("2.png"):
            raise KeyboardInterrupt  # not an image error: aborts the whole build
        return real(path, size, mode)

    monkeypatch.setattr(cache_mod, "load_image", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        ImageCache.build(images, S, cache_dir=tmp_path / "c", workers=0)
    assert list((tmp_path / "c").iterdir()) == []  # neither the array, the sidecar nor temps


def test_temps_of_killed_builds_are_removed(tmp_path, images):
    folder = tmp_path / "c"
    folder.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    key = content_key(
        [os.path.abspath(p) for p in images], S, "pad", ids=[os.path.abspath(p) for p in images]
    )
    stale = folder / f".pad{S}-{key[:20]}.{dead}.tmp.npy"
    stale.write_bytes(b"half written")
    cache = ImageCache.build(images, S, cache_dir=folder, workers=0)
    assert not stale.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted([cache.path.name, cache.sidecar.name])


def test_broken_images_are_recorded_not_fatal(tmp_path, images, broken, caplog):
    paths = [images[0], broken[0], images[1], broken[1]]
    with caplog.at_level(logging.WARNING, logger="attire.data.cache"):
        cache = ImageCache.build(paths, S, cache_dir=tmp_path / "c", workers=0)
    assert cache.ok.tolist() == [True, False, True, False]
    assert sorted(cache.errors) == [1, 3]
    assert "truncated" in cache.errors[3].lower()
    assert not cache.array[1].any() and not cache.array[3].any()
    assert cache.array[0].any()
    assert str(broken[0]) in caplog.text and str(broken[1]) in caplog.text
    assert "2 of 4 images failed" in caplog.text
    side = json.loads(cache.sidecar.read_text())
    assert side["ok"] == [True, False, True, False] and set(side["errors"]) == {"1", "3"}
    reopened = ImageCache.open(cache.path)
    assert reopened.errors == cache.errors and reopened.ok.tolist() == cache.ok.tolist()


def test_missing_file_is_a_failed_row(tmp_path, images):
    cache = ImageCache.build([images[0], tmp_path / "gone.jpg"], S, cache_dir=tmp_path, workers=0)
    assert cache.ok.tolist() == [True, False]
    assert "FileNotFoundError" in cache.errors[1]


def test_parallel_build_equals_serial(tmp_path, images, broken):
    paths = images + broken
    serial = ImageCache.build(paths, S, cache_dir=tmp_path / "a", workers=0)
    parallel = ImageCache.build(paths, S, cache_dir=tmp_path / "b", workers=2)
    np.testing.assert_array_equal(serial.array, parallel.array)
    assert parallel.errors.keys() == serial.errors.keys()


def test_pickles_by_path_not_pixels(tmp_path, images):
    cache = ImageCache.build(images, S, cache_dir=tmp_path, workers=0)
    _ = cache.array  # opened in this process
    blob = pickle.dumps(cache)
    assert len(blob) < cache.array.nbytes
    np.testing.assert_array_equal(pickle.loads(blob).array, cache.array)


def test_for_manifest_keeps_manifest_order_and_ids(tmp_path, images):
    tax = load_taxonomy()
    records = [{"image_id": f"id{i}", "path": f"img/{p.name}"} for i, p in enumerate(images)]
    manifest = Manifest.from_records(records[::-1], tax, root=tmp_path)
    cache = ImageCache.for_manifest(manifest, S, cache_dir=tmp_path / "c", workers=0)
    assert cache.ids == [r["image_id"] for r in records[::-1]]
    direct = ImageCache.build(images[::-1], S, cache_dir=tmp_path / "d", workers=0)
    np.testing.assert_array_equal(cache.array, direct.array)


def test_cache_dir_defaults_to_env(tmp_path, images, monkeypatch):
    monkeypatch.setenv("ATTIRE_CACHE", str(tmp_path / "env-cache"))
    cache = ImageCache.build(images[:1], S, workers=0, progress=False)
    assert cache.path.parent == tmp_path / "env-cache"


def test_bad_arguments_name_the_problem(tmp_path, images):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ImageCacheError, match="cannot create"):
        ImageCache.build(images, S, cache_dir=blocker / "sub", workers=0)
    with pytest.raises(ImageCacheError, match="resize mode 'stretch'"):
        ImageCache.build(images, S, mode="stretch", cache_dir=tmp_path, workers=0)
    with pytest.raises(ImageCacheError, match="3 ids for 4"):
        ImageCache.build(images, S, ids=["a", "b", "c"], cache_dir=tmp_path, workers=0)
