"""Long-tail statistics: counts, imbalance, missing share, shot groups, the report and the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from attire.cli.main import app
from attire.data.manifest import Manifest
from attire.data.stats import StatsError, shot_groups, task_stats, write_stats_report
from attire.taxonomy import Taxonomy

TAXONOMY = Taxonomy.from_dict(
    {
        "name": "toy",
        "tasks": [
            {
                "name": "colour",
                "classes": [{"id": c} for c in ("red", "blue", "green", "pink", "purple")],
            },
            {"name": "tags", "type": "multilabel", "classes": [{"id": c} for c in "abc"]},
        ],
    }
)


def _manifest(split: list[str] | None = None) -> Manifest:
    """15 rows: colour red 5, blue 4, green 2, pink 1, purple 0, missing 3 (None, NaN, None).
    tags: [a, b], [a], [] labelled, everything else missing."""
    colour = ["red"] * 5 + ["blue"] * 4 + ["green"] * 2 + ["pink"] + [None, float("nan"), None]
    tags: list = [["a", "b"], ["a"], []] + [None] * 12
    df = pd.DataFrame(
        {
            "image_id": [f"i{i}" for i in range(15)],
            "path": [f"{i}.jpg" for i in range(15)],
            "colour": colour,
            "tags": tags,
        }
    )
    if split is not None:
        df["split"] = split
    return Manifest(df, TAXONOMY)


def test_counts_imbalance_missing_and_zero_classes():
    colour, tags = task_stats(_manifest(), many=4, few=2)
    assert colour.counts == {"red": 5, "blue": 4, "green": 2, "pink": 1, "purple": 0}
    assert colour.rows == 15 and colour.labelled == 12
    assert colour.missing_share == pytest.approx(3 / 15)
    assert colour.imbalance_ratio == pytest.approx(5.0)  # smallest non-zero is pink (1)
    assert colour.zero_classes == 1
    assert colour.split is None and colour.scope == "all rows"
    # multilabel: every present class counts; [] is labelled with nothing present
    assert tags.counts == {"a": 2, "b": 1, "c": 0}
    assert tags.labelled == 3
    assert tags.missing_share == pytest.approx(12 / 15)


def test_shot_groups_at_thresholds():
    colour = task_stats(_manifest(), many=4, few=2)[0]
    # many: > 4; medium: 2..4 inclusive; few: < 2 (zero included)
    assert colour.shot_groups == {
        "red": "many",
        "blue": "medium",
        "green": "medium",
        "pink": "few",
        "purple": "few",
    }
    assert colour.group_sizes == {"many": 1, "medium": 2, "few": 2}
    assert shot_groups({"x": 101, "y": 100, "z": 20, "w": 19}) == {
        "x": "many",
        "y": "medium",
        "z": "medium",
        "w": "few",
    }


def test_thresholds_must_be_ordered():
    with pytest.raises(StatsError, match="--few"):
        shot_groups({"x": 1}, many=10, few=20)
    with pytest.raises(StatsError, match=">= 0"):
        task_stats(_manifest(), many=10, few=-1)


def test_only_train_rows_count_when_split_exists():
    split = ["train"] * 3 + ["val"] * 2 + ["train"] * 10
    colour = task_stats(_manifest(split), many=4, few=2)[0]
    # rows 3, 4 (red) are val: red 5 -> 3
    assert colour.split == "train" and colour.scope == "train split"
    assert colour.rows == 13
    assert colour.counts["red"] == 3 and colour.counts["blue"] == 4
    assert colour.shot_groups["red"] == "medium"
    every = task_stats(_manifest(split), many=4, few=2, split=None)[0]
    assert every.counts["red"] == 5 and every.split is None


def test_split_column_without_train_rows_is_an_error():
    with pytest.raises(StatsError, match=r"no 'train' rows \(found: \['val'\]\)"):
        task_stats(_manifest(["val"] * 15))


def test_unknown_values_are_counted_not_fatal():
    m = _manifest()
    m.df.at[12, "colour"] = "mauve"
    colour = task_stats(m)[0]
    assert colour.unknown_values == 1
    assert sum(colour.counts.values()) == 12  # mauve counts nowhere


def test_report_files(tmp_path: Path):
    index = write_stats_report(_manifest(), tmp_path / "report", many=4, few=2)
    out = index.parent
    assert index.name == "index.html"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["longtail_colour.png", "longtail_tags.png"]
    for name in pngs:
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 300
    html = index.read_text(encoding="utf-8")
    assert sorted(re.findall(r'<img src="([^"]+)"', html)) == pngs
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "<script" not in html
    data = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    colour = data["tasks"][0]
    assert colour["task"] == "colour" and colour["imbalance_ratio"] == 5.0
    assert {c["id"]: c["count"] for c in colour["classes"]}["purple"] == 0
    assert {c["id"]: c["shot_group"] for c in colour["classes"]}["red"] == "many"
    assert data["thresholds"] == {"many": 4, "few": 2}


def test_task_without_labels_reports_no_ratio(tmp_path: Path):
    m = _manifest()
    m.df["tags"] = None
    tags = task_stats(m)[1]
    assert tags.imbalance_ratio is None and tags.labelled == 0 and tags.missing_share == 1.0
    write_stats_report(m, tmp_path)
    assert json.loads((tmp_path / "stats.json").read_text())["tasks"][1]["imbalance_ratio"] is None


def test_cli_stats(tmp_path: Path):
    path = _manifest(["train"] * 15).write(tmp_path / "m.parquet")
    res = CliRunner().invoke(
        app,
        ["data", "stats", str(path), "--out", str(tmp_path / "out"), "--many", "4", "--few", "2"],
    )
    assert res.exit_code == 0, res.output
    assert "counted on train split" in res.output
    assert "colour" in res.output and "tags" in res.output
    assert "5.0:1" in res.output  # imbalance ratio of colour
    assert (tmp_path / "out" / "index.html").exists()
    assert "index.html" in res.output


def test_cli_stats_bad_thresholds(tmp_path: Path):
    path = _manifest().write(tmp_path / "m.parquet")
    args = ["data", "stats", str(path), "--out", str(tmp_path), "--many", "5", "--few", "9"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert "--few (9) must not exceed --many (5)" in res.output
