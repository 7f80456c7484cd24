"""Datasets and loader: the target contract, failed images dropped, batches that stack."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attire.data.cache import ImageCache, ImageCacheError
from attire.data.dataset import MultiTaskDataset, PathsDataset, collate, make_loader
from attire.data.manifest import Manifest
from attire.data.transforms import HALF, AugmentPolicy, build_transforms
from attire.taxonomy import load_taxonomy

S = 24
TAX = load_taxonomy()
N_CAT = TAX.task("category").num_classes
N_TREND = TAX.task("trend_elements").num_classes


def _record(i: int, path: str) -> dict:
    """Rows with a mix of labelled, missing, multilabel-unknown and soft labels."""
    soft = [0.0] * N_CAT
    soft[i % N_CAT], soft[(i + 1) % N_CAT] = 0.6, 0.4
    return {
        "image_id": f"im{i}",
        "path": path,
        "category": None if i % 4 == 3 else TAX.task("category").class_ids[i % N_CAT],
        "main_colour": "red" if i % 2 else None,
        "trend_elements": None if i % 3 == 2 else (["bow", "ruffles"] if i % 2 else []),
        "trend_elements__unknown": ["rivets"] if i % 3 == 1 else None,
        "category__soft": soft if i % 4 == 3 else None,
    }


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    """Eight decodable images and, at rows 2 and 5, a text file and a truncated JPEG."""
    (tmp_path / "img").mkdir()
    records = []
    for i in range(8):
        p = tmp_path / "img" / f"{i}.jpg"
        if i == 2:
            p.write_text("this is not a JPEG")
        elif i == 5:
            full = tmp_path / "full.jpg"
            Image.new("RGB", (50, 40), (10, 200, 30)).save(full)
            p.write_bytes(full.read_bytes()[:200])
        else:
            Image.new("RGB", (30 + i, 20 + 2 * i), (20 * i, 100, 255 - 20 * i)).save(p)
        records.append(_record(i, f"img/{p.name}"))
    return Manifest.from_records(records, TAX, root=tmp_path)


@pytest.fixture
def cache(manifest: Manifest, tmp_path: Path) -> ImageCache:
    return ImageCache.for_manifest(manifest, S, cache_dir=tmp_path / "cache", workers=0)


def _eval(size: int = 16):
    return build_transforms(AugmentPolicy(), TAX, size, HALF, HALF, train=False)


def test_failed_images_are_excluded_and_logged(manifest, cache, caplog):
    with caplog.at_level(logging.WARNING, logger="attire.data.dataset"):
        ds = MultiTaskDataset(manifest, cache, _eval())
    assert len(ds) == 6
    assert ds.rows.tolist() == [0, 1, 3, 4, 6, 7]
    assert sorted(int(ds[i]["index"]) for i in range(len(ds))) == [0, 1, 3, 4, 6, 7]
    for row in (2, 5):
        assert str(manifest.image_path(row)) in caplog.text
    assert "UnidentifiedImageError" in caplog.text  # the reason, not just the path
    assert "2 of 8 images excluded" in caplog.text


def test_targets_match_manifest_encode(manifest, cache):
    ds = MultiTaskDataset(manifest, cache, _eval())
    for i in range(len(ds)):
        item = ds[i]
        row = item["index"]
        assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
        assert set(item["targets"]) == set(item["soft"]) == set(TAX.task_names)
        for task in TAX.tasks:
            target = item["targets"][task.name]
            want = manifest.encode(task.name)[row]
            if task.multilabel:
                assert target.dtype == torch.float32 and target.shape == (task.num_classes,)
            else:
                assert target.dtype == torch.int64 and target.shape == ()
            np.testing.assert_array_equal(target.numpy(), want)
            soft = item["soft"][task.name]
            assert soft.dtype == torch.float32 and soft.shape == (task.num_classes,)
    # spot-check the contract itself, not only its agreement with encode
    row1 = ds[1]  # manifest row 1: labelled, trend [bow, ruffles] with rivets unknown
    trend = TAX.task("trend_elements")
    t = row1["targets"]["trend_elements"]
    assert t[trend.index("bow")] == 1 and t[trend.index("ruffles")] == 1
    assert t[trend.index("rivets")] == -1 and t[trend.index("embroidery")] == 0
    assert row1["targets"]["main_colour"].item() == TAX.task("main_colour").index("red")
    assert torch.isnan(row1["soft"]["category"]).all()
    row3 = ds[2]  # manifest row 3: category missing, but a soft label
    assert row3["index"] == 3 and row3["targets"]["category"].item() == -1
    assert math.isclose(row3["soft"]["category"].sum().item(), 1.0, rel_tol=1e-6)
    assert ds[3]["targets"]["main_colour"].item() == -1  # manifest row 4: colour missing


def test_image_is_the_cached_row_transformed(manifest, cache):
    ds = MultiTaskDataset(manifest, cache, _eval(S))
    img = ds[0]["image"]
    want = torch.from_numpy(np.array(cache.array[0])).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(img, want)


def test_no_decodable_image_is_an_error_not_an_empty_epoch(tmp_path):
    paths = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    cache = ImageCache.build(paths, S, cache_dir=tmp_path / "c", workers=0)
    with pytest.raises(ImageCacheError, match=r"none of the 2 images.*a\.jpg.*FileNotFound"):
        PathsDataset(cache, _eval())


def test_task_subset(manifest, cache):
    ds = MultiTaskDataset(manifest, cache, _eval(), tasks=["category", "trend_elements"])
    assert set(ds[0]["targets"]) == set(ds[0]["soft"]) == {"category", "trend_elements"}


def test_one_cache_serves_every_split(manifest, cache):
    """Rows are matched by image_id, so a split (reordered, subset) reuses the whole cache."""
    part = manifest.with_df(manifest.df.iloc[[7, 5, 0]])
    ds = MultiTaskDataset(part, cache, _eval(S))
    assert len(ds) == 2 and ds.rows.tolist() == [0, 2]  # row 1 (image 5) failed to decode
    first = ds[0]
    assert first["index"] == 0
    want = torch.from_numpy(np.array(cache.array[7])).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(first["image"], want)
    assert first["targets"]["category"].item() == manifest.encode("category")[7]


def test_cache_without_the_manifests_images_is_refused(manifest, cache):
    other = manifest.with_df(manifest.df.assign(image_id=[f"x{i}" for i in range(8)]))
    with pytest.raises(ImageCacheError, match="8 image_ids of the manifest are not in"):
        MultiTaskDataset(other, cache, _eval())


def test_default_collate_stacks_nested_dicts(manifest, cache):
    ds = MultiTaskDataset(manifest, cache, _eval())
    batch = collate([ds[i] for i in range(4)])
    assert batch["image"].shape == (4, 3, 16, 16)
    assert batch["targets"]["category"].shape == (4,)
    assert batch["targets"]["category"].dtype == torch.int64
    assert batch["targets"]["trend_elements"].shape == (4, N_TREND)
    assert batch["soft"]["category"].shape == (4, N_CAT)
    assert batch["index"].tolist() == [0, 1, 3, 4]
    np.testing.assert_array_equal(
        batch["targets"]["category"].numpy(), manifest.encode("category")[[0, 1, 3, 4]]
    )


def test_loader_with_two_workers(manifest, cache):
    train = build_transforms(AugmentPolicy(), TAX, 16, HALF, HALF, train=True)
    ds = MultiTaskDataset(manifest, cache, train)
    loader = make_loader(ds, batch_size=4, shuffle=True, workers=2, seed=3)
    assert loader.persistent_workers and not loader.pin_memory
    batches = list(loader)
    assert [b["image"].shape[0] for b in batches] == [4, 2]
    b = batches[0]
    assert b["image"].dtype == torch.float32 and b["image"].shape[1:] == (3, 16, 16)
    assert b["targets"]["category"].dtype == torch.int64 and b["targets"]["category"].dim() == 1
    assert b["targets"]["trend_elements"].dtype == torch.float32
    assert b["soft"]["main_colour"].shape == (4, TAX.task("main_colour").num_classes)
    seen = torch.cat([x["index"] for x in batches]).tolist()
    assert sorted(seen) == [0, 1, 3, 4, 6, 7]
    # the same seed gives the same order and the same augmented pixels
    again = list(make_loader(ds, batch_size=4, shuffle=True, workers=2, seed=3))
    assert torch.cat([x["index"] for x in again]).tolist() == seen
    torch.testing.assert_close(again[0]["image"], b["image"], rtol=0, atol=0)
    other = list(make_loader(ds, batch_size=4, shuffle=True, workers=2, seed=4))
    assert torch.cat([x["index"] for x in other]).tolist() != seen


def test_paths_dataset_for_prediction(tmp_path, manifest):
    paths = manifest.image_paths()
    cache = ImageCache.build(paths, S, cache_dir=tmp_path / "p", workers=0)
    ds = PathsDataset(cache, _eval())
    assert len(ds) == 6
    assert {p for p, _ in ds.failed} == {str(paths[2]), str(paths[5])}
    item = ds[2]
    assert set(item) == {"image", "index"} and item["index"] == 3
    batch = next(iter(make_loader(ds, batch_size=6)))
    assert batch["image"].shape == (6, 3, 16, 16)
    assert batch["index"].tolist() == [0, 1, 3, 4, 6, 7]
