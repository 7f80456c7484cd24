"""`attire data check` on real bad files: one reason per rejected row, counts that reconcile."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import struct
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile
from typer.testing import CliRunner

import attire.cli.check  # noqa: F401  (registers `attire data check`)
import attire.data.quality.duplicates as dup_mod
from attire.cli.apps import app
from attire.data.manifest import Manifest
from attire.data.quality import REASONS, CheckError, CheckResult, check_manifest
from attire.data.quality.duplicates import hamming_pairs, near_pairs
from attire.data.quality.images import inspect_image
from attire.taxonomy import Taxonomy

TAXONOMY = Taxonomy.from_dict(
    {
        "name": "quality_test",
        "tasks": [
            {
                "name": "category",
                "classes": [{"id": "t_shirt"}, {"id": "shirt"}, {"id": "sweater"}],
            },
            {"name": "colour", "type": "multilabel", "classes": [{"id": "red"}, {"id": "blue"}]},
        ],
    }
)
UNICODE_NAME = "café_シャツ.jpg"


def _picture(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A smooth random picture: distinct seeds give far-apart perceptual hashes."""
    grid = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(grid).resize(size, Image.Resampling.BICUBIC)


def _jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height RGB pixels (and whose data is empty)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _bad_dataset(root: Path) -> tuple[Manifest, dict[int, str]]:
    """A manifest with one row per problem; returns it and the expected reason per rejected row."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "good.jpg": _jpeg(_picture(1)),
        "empty.jpg": b"",
        "cut.jpg": _jpeg(_picture(2))[:-400],
        "text.jpg": b"this is a text file, not a photo\n",
        "dot.png": None,
        "bomb.png": _png_header(100_000, 100_000),
        "odd.jpg": _jpeg(_picture(3)),
        UNICODE_NAME: _jpeg(_picture(4)),
        "twin_a.jpg": _jpeg(_picture(5)),
        "clash_a.jpg": _jpeg(_picture(6)),
        "near_a.jpg": _jpeg(_picture(7, (160, 120)), quality=95),
        "near_b.jpg": _jpeg(_picture(7, (160, 120)).resize((120, 90)), quality=70),
        "cut_small.jpg": _jpeg(_picture(9, (20, 16)))[:-60],
        "part_a.jpg": _jpeg(_picture(10)),
    }
    files["twin_b.jpg"] = files["twin_a.jpg"]
    files["clash_b.jpg"] = files["clash_a.jpg"]
    files["part_b.jpg"] = files["part_a.jpg"]
    for name, data in files.items():
        if name == "dot.png":
            Image.new("RGB", (1, 1), "red").save(root / name)
        else:
            (root / name).write_bytes(data)
    rows = [  # image_id, path, category, colour, colour__unknown, expected reason
        ("good", "good.jpg", "t_shirt", ["red"], None, None),
        ("empty", "empty.jpg", "shirt", None, None, "empty_file"),
        ("cut", "cut.jpg", "shirt", None, None, "truncated"),
        ("text", "text.jpg", "shirt", None, None, "unreadable"),
        ("dot", "dot.png", "shirt", None, None, "too_small"),
        ("bomb", "bomb.png", "shirt", None, None, "decompression_bomb"),
        ("odd", "odd.jpg", "spaceship", None, None, "unknown_label"),
        ("gone", "gone.jpg", "shirt", None, None, "missing_file"),
        ("cafe", UNICODE_NAME, "sweater", ["blue"], None, None),
        ("good", "good.jpg", "t_shirt", ["red"], None, "duplicate_row"),
        ("twin_a", "twin_a.jpg", "shirt", ["blue", "red"], None, None),
        ("twin_b", "twin_b.jpg", "shirt", ["red", "blue"], None, "exact_duplicate"),
        ("clash_a", "clash_a.jpg", "shirt", None, None, "conflicting_duplicate"),
        ("clash_b", "clash_b.jpg", "sweater", None, None, "conflicting_duplicate"),
        ("near_a", "near_a.jpg", "sweater", None, None, None),
        ("near_b", "near_b.jpg", "sweater", ["blue"], None, "near_duplicate"),
        ("cut_small", "cut_small.jpg", "shirt", None, None, "truncated"),
        ("part_a", "part_a.jpg", "t_shirt", [], ["red"], None),
        ("part_b", "part_b.jpg", None, ["red"], [], "exact_duplicate"),
        ("cafe_again", UNICODE_NAME, "sweater", ["blue"], None, "duplicate_row"),
    ]
    df = pd.DataFrame(
        {
            "image_id": [r[0] for r in rows],
            "path": [r[1] for r in rows],
            "category": [r[2] for r in rows],
            "colour": [r[3] for r in rows],
            "colour__unknown": [r[4] for r in rows],
            "source": [f"labels.csv:{i + 2}" for i in range(len(rows))],
        }
    )
    expected = {i: r[5] for i, r in enumerate(rows) if r[5] is not None}
    return Manifest(df, TAXONOMY, root), expected


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> tuple[Manifest, dict[int, str], CheckResult]:
    manifest, expected = _bad_dataset(tmp_path_factory.mktemp("bad") / "photos")
    return manifest, expected, check_manifest(manifest, workers=2, progress=False)


def _reasons(result: CheckResult) -> dict[int, str]:
    return dict(zip(result.report["row"], result.report["reason"], strict=True))


def _row(result: CheckResult, row: int) -> pd.Series:
    return result.report.set_index("row").loc[row]


def test_every_bad_row_gets_its_reason_and_good_rows_are_kept(bad) -> None:
    manifest, expected, result = bad
    assert _reasons(result) == expected
    kept_ids = set(manifest.df["image_id"][result.kept])
    assert kept_ids == {"good", "cafe", "twin_a", "near_a", "part_a"}  # incl. the unicode name


def test_counts_reconcile(bad) -> None:
    manifest, expected, result = bad
    assert result.report["row"].is_unique
    assert result.counts == {r: Counter(expected.values()).get(r, 0) for r in REASONS}
    assert result.rows_in == len(manifest) == result.n_kept + sum(result.counts.values())
    summary = result.summary()
    assert summary["rows_in"] == summary["kept"] + sum(summary["counts"].values())
    assert summary["thresholds"] == {
        "min_size": 32,
        "max_pixels": 50_000_000,
        "near_distance": 4,
        "near_colour": 10.0,
    }


def test_unknown_label_names_its_source_column_and_value(bad) -> None:
    row = _row(bad[2], 6)
    assert row["source"] == "labels.csv:8"
    assert "labels.csv:8" in row["detail"]
    assert "'category'" in row["detail"] and "'spaceship'" in row["detail"]


def test_file_problems_say_what_is_wrong(bad) -> None:
    result = bad[2]
    assert (
        "100000x100000" in _row(result, 5)["detail"] or "10000000000" in _row(result, 5)["detail"]
    )
    assert "1x1" in _row(result, 4)["detail"]
    # a row with two problems is counted once, under the first; the other is in its detail
    small_cut = _row(result, 16)["detail"]
    assert "truncated" in small_cut.lower() and "also too_small" in small_cut
    assert "repeats row 0" in _row(result, 9)["detail"]
    assert "same file as row 8" in _row(result, 19)["detail"]


def test_conflicting_duplicates_reject_every_member_and_name_the_clash(bad) -> None:
    result = bad[2]
    a, b = _row(result, 12), _row(result, 13)
    assert a["cluster"] == b["cluster"] and a["cluster"]
    assert "category" in a["detail"] and "shirt (row 12)" in a["detail"]
    assert "sweater (row 13)" in a["detail"]


def test_agreeing_duplicates_keep_the_first_row(bad) -> None:
    result = bad[2]
    assert "byte-identical to row 10" in _row(result, 11)["detail"]
    # colour red is unknown in row 17 and missing category in row 18: no clash, a plain copy
    assert "byte-identical to row 17" in _row(result, 18)["detail"]
    assert "near duplicate of row 14" in _row(result, 15)["detail"]
    kept = result.kept_manifest().df.set_index("image_id")
    assert kept.at["twin_a", "dup_cluster"] == _row(result, 11)["cluster"]
    assert kept.at["near_a", "dup_cluster"] == _row(result, 15)["cluster"]
    assert kept.at["part_a", "dup_cluster"] not in (None, kept.at["twin_a", "dup_cluster"])


def test_near_distance_zero_turns_near_duplicates_off(bad) -> None:
    manifest = bad[0]
    pair = manifest.with_df(manifest.df.iloc[14:16])
    assert _reasons(check_manifest(pair, workers=1, progress=False)) == {1: "near_duplicate"}
    assert len(check_manifest(pair, near_distance=0, workers=1, progress=False).report) == 0


def test_inline_and_pool_give_the_same_report(bad) -> None:
    manifest, _, pooled = bad
    inline = check_manifest(manifest, workers=1, progress=False)
    pd.testing.assert_frame_equal(inline.report, pooled.report)


@pytest.mark.parametrize(
    ("side", "said"),
    [
        (100_000, "Pillow refused"),  # past Pillow's hard limit: DecompressionBombError
        (10_000, "Pillow refused"),  # past Pillow's warning limit: DecompressionBombWarning
        (8_000, "header claims 8000x8000"),  # under Pillow's limits, over --max-pixels
    ],
)
def test_decompression_bombs_are_caught_from_the_header(tmp_path, side, said) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(side, side))
    facts = inspect_image(str(path), 32, 50_000_000)
    # a decoded (empty) body would have said 'truncated'/'unreadable': the header decided
    assert [r for r, _ in facts.findings] == ["decompression_bomb"]
    assert said in facts.findings[0][1]


def test_pillow_settings_of_the_caller_neither_leak_in_nor_get_changed(
    tmp_path, monkeypatch
) -> None:
    """A loader that allows truncated files or lowers the bomb limit must not change verdicts."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    cut, ok = tmp_path / "cut.jpg", tmp_path / "ok.jpg"
    cut.write_bytes(_jpeg(_picture(2))[:-400])
    ok.write_bytes(_jpeg(_picture(1)))
    assert inspect_image(str(cut), 32, 50_000_000).findings[0][0] == "truncated"
    assert inspect_image(str(ok), 32, 50_000_000).findings == ()
    assert inspect_image(str(ok), 32, 1000).findings[0][0] == "decompression_bomb"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True and Image.MAX_IMAGE_PIXELS == 100


def test_hamming_pairs_match_a_brute_force_search_across_blocks(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 40, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, (40, 3)).astype(np.uint64)
    hashes = np.concatenate([base, base ^ flips[:, 0], base ^ flips[:, 0] ^ flips[:, 1]])
    monkeypatch.setattr(dup_mod, "_BLOCK_ELEMENTS", 7 * len(hashes))  # 7 rows per block
    i, j, d = hamming_pairs(hashes, 2)
    want = {
        (a, b, bin(int(hashes[a]) ^ int(hashes[b])).count("1"))
        for a in range(len(hashes))
        for b in range(a + 1, len(hashes))
        if bin(int(hashes[a]) ^ int(hashes[b])).count("1") <= 2
    }
    assert set(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == want
    assert len(want) >= 120  # every base hash has its 1- and 2-bit variants


def test_colour_check_separates_recoloured_copies_from_duplicates() -> None:
    hashes = np.array([5, 5, 5], dtype=np.uint64)  # same grey structure
    thumbs = np.array([[100] * 12, [104] * 12, [160] * 12], dtype=np.uint8)
    pairs = near_pairs(hashes, thumbs, max_distance=4, max_colour=10)
    assert list(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True)) == [(0, 1)]
    assert pairs.colour.tolist() == [4.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_size": 0},
        {"max_pixels": 0},
        {"near_distance": 65},
        {"near_colour": -1},
        {"workers": 0},
    ],
)
def test_settings_out_of_range_are_user_errors(bad, kwargs) -> None:
    with pytest.raises(CheckError, match="--"):
        check_manifest(bad[0], **kwargs)


def test_cli_writes_report_summary_and_with_drop_the_kept_manifest(tmp_path) -> None:
    manifest, expected = _bad_dataset(tmp_path / "photos")
    path = manifest.write(tmp_path / "data" / "manifest.parquet")
    runner = CliRunner()

    out = tmp_path / "check"
    res = runner.invoke(app, ["data", "check", str(path), "-o", str(out), "-j", "1"])
    assert res.exit_code == 0, res.output
    assert not (out / "manifest.parquet").exists()  # nothing removed without --drop
    assert "conflicting_duplicate" in res.output and "kept" in res.output
    report = pd.read_csv(out / "report.csv", keep_default_na=False)
    assert list(report.columns) == [
        "row",
        "image_id",
        "path",
        "source",
        "reason",
        "detail",
        "cluster",
    ]
    assert dict(zip(report["row"], report["reason"], strict=True)) == expected
    assert UNICODE_NAME not in set(report["path"][report["reason"] != "duplicate_row"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_in"] == len(manifest) and summary["elapsed_seconds"] > 0
    assert summary["counts"]["conflicting_duplicate"] == 2

    res = runner.invoke(app, ["data", "check", str(path), "-o", str(out), "--drop"])
    assert res.exit_code == 0, res.output
    cleaned = Manifest.read(out / "manifest.parquet")
    assert len(cleaned) == summary["kept"] == len(manifest) - len(expected)
    assert all(cleaned.image_path(i).exists() for i in range(len(cleaned)))
    clusters = dict(zip(cleaned.df["image_id"], cleaned.df["dup_cluster"], strict=True))
    twin_cluster = report.set_index("row").at[11, "cluster"]
    assert clusters["twin_a"] == twin_cluster and clusters["near_a"].startswith("dup")


def test_cli_reports_a_bad_setting_as_one_line(tmp_path) -> None:
    manifest, _ = _bad_dataset(tmp_path / "photos")
    path = manifest.write(tmp_path / "manifest.parquet")
    res = CliRunner().invoke(app, ["data", "check", str(path), "--min-size", "0"])
    assert res.exit_code == 2
    assert "--min-size must be at least 1" in res.output


@pytest.mark.shared_data
def test_real_byte_identical_photos_with_disagreeing_labels_are_found(
    clothing_attributes_manifest: Manifest, shared_datasets: Path
) -> None:
    """Multi-person photos of clothing-attributes are byte-identical copies, one per person."""
    n = 600  # enough rows for a dozen such copies, decoded in a few seconds
    manifest = clothing_attributes_manifest.with_df(clothing_attributes_manifest.df.iloc[:n])
    result = check_manifest(manifest, progress=False)

    # the oracle: the source CSV itself, and sha256 of the files
    folder = shared_datasets / "clothing-attributes"
    with open(folder / "labels.csv", newline="") as fh:
        source = list(csv.DictReader(fh))[:n]
    by_sha: dict[str, list[int]] = defaultdict(list)
    for k, rec in enumerate(source):
        by_sha[hashlib.sha256((folder / rec["image"]).read_bytes()).hexdigest()].append(k)

    def clash(a: dict, b: dict) -> bool:
        return any(a[c] and b[c] and a[c] != b[c] for c in a if c != "image")

    conflicting = {
        k
        for rows in by_sha.values()
        for k in rows
        if any(clash(source[a], source[b]) for a in rows for b in rows if a < b)
    }
    assert len(conflicting) >= 20
    reasons = _reasons(result)
    assert {r for r, why in reasons.items() if why == "conflicting_duplicate"} == conflicting
    assert set(reasons.values()) <= {"conflicting_duplicate", "exact_duplicate"}
    gender = _row(result, 136)["detail"]  # 000137/000138: one man, one woman in one photo
    assert "gender male (row 136) vs female (row 137)" in gender
