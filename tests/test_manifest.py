"""The manifest: Parquet round trip, embedded taxonomy, relative paths, encoding, label checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attire.data.manifest import Manifest, ManifestError
from attire.taxonomy import Taxonomy

TAX = Taxonomy.from_dict(
    {
        "name": "toy",
        "tasks": [
            {"name": "fit", "classes": [{"id": "slim"}, {"id": "regular"}, {"id": "loose"}]},
            {
                "name": "decor",
                "type": "multilabel",
                "classes": [{"id": "bow"}, {"id": "rivets"}, {"id": "tassels"}],
            },
        ],
    }
)


def _manifest(root) -> Manifest:
    df = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d"],
            "path": ["img/a.jpg", "img/b.jpg", "img/c.jpg", "img/d.jpg"],
            "fit": ["loose", None, "slim", "regular"],
            "decor": [["bow"], [], None, ["rivets", "tassels"]],
            "decor__unknown": [None, ["tassels"], None, None],
            "fit__soft": [None, [0.5, 0.5, 0.0], None, None],
            "source": ["l.csv:2", "l.csv:3", "l.csv:4", "l.csv:5"],
        }
    )
    return Manifest(df, TAX, root)


def test_round_trip_keeps_values_types_and_taxonomy(tmp_path):
    m = _manifest(tmp_path)
    path = m.write(tmp_path / "out" / "manifest.parquet")
    back = Manifest.read(path)
    assert back.taxonomy == TAX  # embedded, no sidecar needed
    assert back.df["fit"].tolist() == ["loose", None, "slim", "regular"]
    assert back.df["decor"].tolist() == [["bow"], [], None, ["rivets", "tassels"]]
    assert back.df["decor__unknown"].tolist()[1] == ["tassels"]
    # paths are stored relative to the manifest's folder and resolve to the same files
    assert back.df["path"].tolist()[0] == "../img/a.jpg"
    assert back.image_path(0).resolve() == (tmp_path / "img" / "a.jpg").resolve()


def test_paths_written_beside_the_images_are_normalised_and_still_resolve(tmp_path):
    m = _manifest(tmp_path / "cat")
    outside = tmp_path / "elsewhere" / "d.jpg"
    m.df["path"] = ["img/./a.jpg", "img/x/../b.jpg", "../shared/c.jpg", str(outside)]
    back = Manifest.read(m.write(tmp_path / "cat" / "manifest.parquet"))
    assert back.df["path"].tolist() == [
        "img/a.jpg",
        "img/b.jpg",
        "../shared/c.jpg",
        "../elsewhere/d.jpg",  # an absolute path, even outside the folder, is stored relative
    ]
    want = [tmp_path / "cat/img/a.jpg", tmp_path / "cat/img/b.jpg", tmp_path / "shared/c.jpg"]
    for i, path in enumerate([*want, outside]):
        assert back.image_path(i).resolve() == path.resolve()


def test_encode_masks_missing_and_unknown_entries(tmp_path):
    m = _manifest(tmp_path)
    assert m.encode("fit").tolist() == [2, -1, 0, 1]
    assert m.encode("decor").tolist() == [
        [1, 0, 0],
        [0, 0, -1],  # labelled "none present" except tassels, which nobody knows
        [-1, -1, -1],  # not labelled at all
        [0, 1, 1],
    ]
    soft = m.soft_targets("fit")
    assert np.isnan(soft[0]).all()
    assert soft[1].tolist() == [0.5, 0.5, 0.0]
    # a soft label counts as a label
    assert m.labelled("fit").tolist() == [True, True, True, True]
    assert m.labelled("decor").tolist() == [True, True, False, True]


def test_label_problems_name_source_row_column_and_value(tmp_path):
    m = _manifest(tmp_path)
    m.df.at[2, "fit"] = "baggy"
    m.df.at[3, "decor"] = ["rivets", "sequins"]
    problems = m.label_problems()
    assert [(p.source, p.column, p.value) for p in problems] == [
        ("l.csv:4", "fit", "baggy"),
        ("l.csv:5", "decor", "sequins"),
    ]
    assert "l.csv:4" in str(problems[0]) and "'baggy'" in str(problems[0])


def test_missing_task_columns_are_added_as_unlabelled(tmp_path):
    m = Manifest(pd.DataFrame({"image_id": ["x"], "path": ["x.jpg"]}), TAX, tmp_path)
    assert m.encode("fit").tolist() == [-1]
    assert m.task_labels(0) == {"fit": None, "decor": None}


def test_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ManifestError, match="required columns"):
        Manifest(pd.DataFrame({"image_id": ["x"]}), TAX, tmp_path)
    with pytest.raises(ManifestError, match="not found"):
        Manifest.read(tmp_path / "nope.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(ManifestError, match="not a Parquet manifest"):
        Manifest.read(tmp_path / "junk.parquet")
    with pytest.raises(ManifestError, match="attire data split"):
        _manifest(tmp_path).split("train")


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path):
    m = _manifest(tmp_path)
    m.write(tmp_path / "m.parquet")
    m.write(tmp_path / "m.parquet")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["m.parquet"]
