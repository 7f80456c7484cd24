"""`attire data ingest` (table, folder, FashionAI) and `attire data init` on small generated data
and on the two real datasets."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import attire.cli.ingest  # noqa: F401  (registers `attire data ingest` and `attire data init`)
import fixtures_real
from attire.cli.apps import app
from attire.data.ingest import (
    REJECT_COLUMNS,
    FashionAIMapping,
    IngestError,
    IngestMapping,
    IngestResult,
    MappingError,
    default_fashionai_mapping_path,
    ingest_fashionai,
    ingest_folder,
    ingest_table,
    propose_mapping,
    write_proposal,
)
from attire.data.manifest import Manifest
from attire.taxonomy import Taxonomy, load_taxonomy

MAPPINGS = fixtures_real.MAPPINGS

TAXONOMY = {
    "name": "shop",
    "tasks": [
        {
            "name": "category",
            "classes": [
                {"id": "t_shirt", "name": "T-shirt", "zh": "T恤", "aliases": ["tee"]},
                {"id": "blouse", "name": "Blouse"},
                {"id": "coat", "name": "Coat"},
            ],
        },
        {"name": "collar", "classes": [{"id": "no"}, {"id": "yes"}]},
        {
            "name": "colour",
            "type": "multilabel",
            "classes": [{"id": "black"}, {"id": "white"}, {"id": "grey", "aliases": ["gray"]}],
        },
        {
            "name": "elements",
            "type": "multilabel",
            "classes": [{"id": "bow"}, {"id": "ruffles"}, {"id": "lace_up"}],
        },
    ],
}
MAPPING = """
taxonomy: taxonomy.yaml
image: file
id: sku
group: sender_id
split: fold
tasks:
  category:
    column: type
    values: {Tshirt: t_shirt, Jumper: null}
  collar: collar
  colour:
    columns: {is_black: black, is_white: white, is_gray: Gray}
  elements:
    column: elements
    separator: ";"
"""
HEADER = "file,sku,sender_id,fold,type,collar,is_black,is_white,is_gray,elements"


def _image(path: Path, colour: tuple[int, int, int] = (120, 30, 60)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


def _shop(tmp_path: Path, rows: list[str], mapping: str = MAPPING) -> tuple[Path, Path]:
    """A label table + mapping + taxonomy in tmp_path; returns (table, mapping)."""
    Taxonomy.from_dict(TAXONOMY).save(tmp_path / "taxonomy.yaml")
    table = _write(tmp_path / "labels.csv", "\n".join([HEADER, *rows]) + "\n")
    return table, _write(tmp_path / "mapping.yaml", mapping)


def _reconciles(result: IngestResult) -> None:
    assert result.rows_in == result.kept + result.merged + len(result.rejected)
    assert list(result.rejected.columns) == list(REJECT_COLUMNS)


def _row(manifest: Manifest, image_id: str) -> dict:
    df = manifest.df
    (i,) = df.index[df["image_id"] == image_id]
    return {
        k: (None if not isinstance(v, list) and pd.isna(v) else v) for k, v in df.loc[i].items()
    }


# -- table ------------------------------------------------------------------------------------


def test_table_maps_resolves_and_keeps_unknown_values(tmp_path):
    table, mapping = _shop(
        tmp_path,
        [
            "img/a.jpg,A1,s1,train,Tshirt,yes,yes,no,,bow;ruffles",
            "img/b.jpg,B1,s1,validation,T恤,no,no,no,no,",
            "img/c.jpg,C1,s2,test,Poncho,Not sure,,,,Lace_Up",
            "img/d.jpg,D1,s2,,Jumper,maybe,yes,yes,perhaps,bow;;Glitter",
            "img/e.jpg,E1,,,TEE,,,,,",
        ],
    )
    result = ingest_table(table, mapping)
    _reconciles(result)
    assert (result.rows_in, result.kept, len(result.rejected)) == (5, 5, 0)
    m = result.manifest
    a, b, c, d, e = (_row(m, i) for i in ("A1", "B1", "C1", "D1", "E1"))
    # values map first, then Task.resolve (name, zh, alias, any case), else the raw value as-is
    assert [a["category"], b["category"], e["category"]] == ["t_shirt"] * 3
    assert c["category"] == "Poncho"
    assert d["category"] is None  # mapped to null
    # yes/no column -> binary multiclass; a raw 'maybe' is kept for `attire data check`
    assert [a["collar"], b["collar"], c["collar"], d["collar"], e["collar"]] == [
        "yes",
        "no",
        None,
        "maybe",
        None,
    ]
    # yes/no group -> multilabel; empty member -> __unknown; all empty -> missing
    assert (a["colour"], a["colour__unknown"]) == (["black"], ["grey"])
    assert (b["colour"], b["colour__unknown"]) == ([], [])
    assert (c["colour"], c["colour__unknown"]) == (None, None)
    assert d["colour"] == ["black", "white", "is_gray=perhaps"]
    assert e["colour"] is None
    # one column split on a separator
    assert a["elements"] == ["bow", "ruffles"]
    assert c["elements"] == ["lace_up"]
    assert d["elements"] == ["bow", "Glitter"]
    assert b["elements"] is None
    # meta columns
    assert [a["group"], c["group"], e["group"]] == ["s1", "s2", None]
    assert [a["split"], b["split"], c["split"], d["split"]] == ["train", "val", "test", None]
    assert [a["source"], e["source"]] == ["labels.csv:2", "labels.csv:6"]
    problems = {(p.source, p.column, p.value) for p in m.label_problems()}
    assert problems == {
        ("labels.csv:4", "category", "Poncho"),
        ("labels.csv:5", "collar", "maybe"),
        ("labels.csv:5", "colour", "is_gray=perhaps"),
        ("labels.csv:5", "elements", "Glitter"),
    }


def test_table_rejects_rows_without_image_and_malformed_rows(tmp_path):
    table, mapping = _shop(
        tmp_path,
        [
            "img/a.jpg,A1,s1,,Tshirt,yes,yes,no,no,",
            ",B1,s1,,Blouse,no,no,no,no,",
            "img/c.jpg,C1,s1,,Coat,no",
            "img/d.jpg,D1,s1,,Coat,no,no,no,no,,extra",
            "img/e.jpg,E1,s1,,Coat,no,no,no,no,",
        ],
    )
    result = ingest_table(table, mapping)
    _reconciles(result)
    assert result.kept == 2
    rej = result.rejected.set_index("row")
    assert rej.loc[3, "reason"] == "no_image"
    assert rej.loc[4, "reason"] == rej.loc[5, "reason"] == "malformed"
    assert "6 fields, the header has 10" in rej.loc[4, "detail"]
    assert set(rej["source"]) == {"labels.csv"}


def test_rows_of_one_image_merge_and_contradictions_are_rejected(tmp_path):
    mapping = MAPPING.replace("id: sku\n", "")
    table, mapping = _shop(
        tmp_path,
        [
            "img/a.jpg,,s1,,Tshirt,,,,,",
            "img/a.jpg,,s1,,,yes,yes,no,no,",
            "img/a.jpg,,s1,,Tshirt,yes,,,,",
            "img/a.jpg,,s1,,Coat,,,,,",
            "img/b.jpg,,s2,,Coat,,,,,",
        ],
        mapping,
    )
    result = ingest_table(table, mapping)
    _reconciles(result)
    assert (result.rows_in, result.kept, result.merged, len(result.rejected)) == (5, 2, 2, 1)
    a = _row(result.manifest, "img/a")
    assert (a["category"], a["collar"], a["colour"]) == ("t_shirt", "yes", ["black"])
    assert a["source"] == "labels.csv:2; labels.csv:3; labels.csv:4"
    (conflict,) = result.rejected.itertuples()
    assert (conflict.row, conflict.reason) == (5, "conflict")
    assert "'category' is 'coat' here but 't_shirt' at labels.csv:2" in conflict.detail


def test_image_ids_are_derived_and_made_unique_in_row_order(tmp_path):
    mapping = MAPPING.replace("id: sku\n", "")
    table, mapping = _shop(
        tmp_path,
        ["img/a.jpg,,,,,,,,,", "img/a.png,,,,,,,,,", "./img/b.jpg,,,,,,,,,", "img/a.webp,,,,,,,,,"],
        mapping,
    )
    ids = ingest_table(table, mapping).manifest.df["image_id"].tolist()
    assert ids == ["img/a", "img/a~2", "img/b", "img/a~3"]


def test_unicode_file_names_round_trip(tmp_path):
    image = _image(tmp_path / "图片" / "连衣裙 01.jpg")
    table, mapping = _shop(
        tmp_path, ["图片/连衣裙 01.jpg,,s1,,T恤,yes,,,,"], MAPPING.replace("id: sku\n", "")
    )
    result = ingest_table(table, mapping)
    out = result.write(tmp_path / "out" / "清单")
    back = Manifest.read(out)
    assert back.df.at[0, "image_id"] == "图片/连衣裙 01"
    assert back.df.at[0, "category"] == "t_shirt"
    assert back.image_path(0).resolve() == image.resolve()


def test_paths_resolve_against_image_root_and_are_stored_relative(tmp_path):
    photos = tmp_path / "photos"
    _image(photos / "img" / "a.jpg")
    table, mapping = _shop(tmp_path / "labels", ["img/a.jpg,A1,,,Coat,,,,,"])
    result = ingest_table(table, mapping, image_root=photos)
    out = result.write(tmp_path / "out")
    back = Manifest.read(out)
    assert back.df.at[0, "path"] == "../photos/img/a.jpg"
    assert back.image_path(0).exists()
    for name in ("taxonomy.yaml", "rejected.csv", "warnings.csv"):
        assert (tmp_path / "out" / name).exists()
    assert Taxonomy.load(tmp_path / "out" / "taxonomy.yaml").name == "shop"


def test_line_numbers_count_multi_line_cells(tmp_path):
    mapping = MAPPING.replace("id: sku\n", "")
    table, mapping = _shop(
        tmp_path,
        ['img/a.jpg,,,,"Coat\n(long)",,,,,', ",,,,Coat,,,,,", "img/c.jpg,,,,Coat,,,,,"],
        mapping,
    )
    result = ingest_table(table, mapping)
    assert result.manifest.df["source"].tolist() == ["labels.csv:2", "labels.csv:5"]
    assert result.rejected["row"].tolist() == [4]


def test_parquet_table_with_typed_columns(tmp_path):
    Taxonomy.from_dict(TAXONOMY).save(tmp_path / "taxonomy.yaml")
    pd.DataFrame(
        {
            "file": ["a.jpg", "b.jpg", None],
            "sender_id": [7, 7, 8],
            "collar": [True, False, True],
            "is_black": [1.0, float("nan"), 0.0],
            "is_white": [0, 0, 1],
        }
    ).to_parquet(tmp_path / "labels.parquet")
    mapping = _write(
        tmp_path / "m.yaml",
        """
taxonomy: taxonomy.yaml
image: file
group: sender_id
tasks:
  collar: {column: collar, values: {true: "yes", false: "no"}}
  colour: {columns: {is_black: black, is_white: white}}
""",
    )
    result = ingest_table(tmp_path / "labels.parquet", mapping)
    _reconciles(result)
    df = result.manifest.df
    assert df["collar"].tolist() == ["yes", "no"]
    assert df["group"].tolist() == ["7", "7"]
    assert df["colour"].tolist() == [["black"], []]
    assert df["colour__unknown"].tolist() == [[], ["black"]]
    assert df["source"].tolist() == ["labels.parquet:1", "labels.parquet:2"]
    assert result.rejected["row"].tolist() == [3]


def test_missing_image_column_names_mapping_field_and_table(tmp_path):
    table, mapping = _shop(tmp_path, ["img/a.jpg,A1,,,Coat,,,,,"], MAPPING.replace("file", "photo"))
    with pytest.raises(MappingError) as err:
        ingest_table(table, mapping)
    msg = str(err.value)
    assert str(mapping) in msg and "field 'image'" in msg and "'photo'" in msg
    assert str(table) in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MAPPING.replace("column: type", "colum: type"), "field 'tasks.category.colum'"),
        (MAPPING.replace("  collar: collar", "  sleeve: collar"), "field 'tasks.sleeve': no task"),
        (
            MAPPING.replace("  collar: collar", "  collar: {columns: {collar: 'yes'}}"),
            "field 'tasks.collar.columns': task 'collar' is multiclass",
        ),
        (MAPPING.replace("image: file\n", ""), "field 'image': Field required"),
        (MAPPING.replace("  collar: collar", "  split: fold"), "field 'tasks.split': 'split' is a"),
        (
            MAPPING.replace("taxonomy.yaml", "nope.yaml"),
            "field 'taxonomy': ",
        ),
        ("image: [unclosed", "not valid YAML"),
        ("- a list", "expected a YAML mapping"),
    ],
)
def test_bad_mapping_errors_name_file_and_field(tmp_path, text, expected):
    _shop(tmp_path, [])
    path = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(MappingError) as err:
        IngestMapping.load(path)
    assert expected in str(err.value)
    assert str(err.value).startswith(str(path))


def test_mapping_yaml_keeps_yes_no_and_numbers_as_text(tmp_path):
    _shop(tmp_path, [])
    path = _write(
        tmp_path / "m.yaml",
        "taxonomy: taxonomy.yaml\nimage: f\n"
        "tasks:\n  collar: {column: c, values: {1: yes, 0: no}}\n",
    )
    assert IngestMapping.load(path).tasks["collar"].values == {"1": "yes", "0": "no"}


def test_inline_taxonomy_in_mapping(tmp_path):
    import yaml

    text = yaml.safe_dump({"taxonomy": TAXONOMY, "image": "file", "tasks": {"category": "type"}})
    table = _write(tmp_path / "t.csv", "file,type\na.jpg,tee\n")
    result = ingest_table(table, _write(tmp_path / "m.yaml", text))
    assert result.manifest.taxonomy.name == "shop"
    assert result.manifest.df["category"].tolist() == ["t_shirt"]


# -- folder -----------------------------------------------------------------------------------


def _tree(root: Path) -> Path:
    _image(root / "T-Shirt" / "a.jpg")
    _image(root / "T-Shirt" / "sub" / "b.png")
    _image(root / "Long sleeve" / "c.jpg")
    _image(root / "Long sleeve" / "c.png")
    _image(root / "连衣裙" / "d.jpeg")
    _write(root / "Long sleeve" / "notes.txt", "not a photo")
    _image(root / "stray.jpg")
    return root


def test_folder_builds_taxonomy_and_reports_non_images(tmp_path):
    result = ingest_folder(_tree(tmp_path / "shop photos"))
    _reconciles(result)
    assert (result.rows_in, result.kept) == (7, 5)
    task = result.manifest.taxonomy.task("label")
    assert task.class_ids == ["long_sleeve", "t-shirt", "class_3"]
    assert task.resolve("连衣裙") == "class_3"
    assert result.manifest.taxonomy.name == "shop_photos"
    df = result.manifest.df.set_index("image_id")
    assert df.loc["T-Shirt/sub/b", "label"] == "t-shirt"
    assert df.loc["Long sleeve/c", "label"] == "long_sleeve"
    assert df.loc["Long sleeve/c~2", "path"] == "Long sleeve/c.png"
    assert result.manifest.label_problems() == []
    reasons = dict(zip(result.rejected["image"], result.rejected["reason"], strict=True))
    assert reasons == {"Long sleeve/notes.txt": "not_image", "stray.jpg": "no_class_folder"}
    back = Manifest.read(result.write(tmp_path / "out"))
    assert all(p.exists() for p in back.image_paths())


def test_folder_resolves_names_through_a_given_taxonomy(tmp_path):
    root = tmp_path / "tops"
    for folder in ("T恤", "blouse", "Ponchos"):
        _image(root / folder / "x.jpg")
    result = ingest_folder(root, task="category", taxonomy=load_taxonomy())
    labels = dict(zip(result.manifest.df["image_id"], result.manifest.df["category"], strict=True))
    assert labels == {"Ponchos/x": "Ponchos", "T恤/x": "t_shirt", "blouse/x": "blouse"}
    assert [p.value for p in result.manifest.label_problems()] == ["Ponchos"]


def test_folder_needs_two_class_folders(tmp_path):
    _image(tmp_path / "only" / "a.jpg")
    with pytest.raises(IngestError, match="at least 2"):
        ingest_folder(tmp_path)
    with pytest.raises(IngestError, match="not a folder"):
        ingest_folder(tmp_path / "absent")


# -- FashionAI --------------------------------------------------------------------------------

FASHIONAI_ROWS = [
    "Images/a.jpg,sleeve_length_labels,nnnynnnnn",  # 1 short sleeves
    "Images/a.jpg,coat_length_labels,nnynnnnn",  # 2 merged: regular length
    "Images/b.jpg,sleeve_length_labels,nnnmnnnmn",  # 3 maybe only: soft, no hard label
    "Images/c.jpg,sleeve_length_labels,nnnynnnmn",  # 4 y + m
    "Images/d.jpg,skirt_length_labels,nynnnn",  # 5 unknown_task
    "Images/e.jpg,sleeve_length_labels,nny",  # 6 bad_length
    "Images/f.jpg,sleeve_length_labels,ynynnnnnn",  # 7 several_y
    "Images/g.jpg,sleeve_length_labels,nnnnnnnnn",  # 8 no_y_or_m
    "Images/h.jpg,sleeve_length_labels,nnnxnnnnn",  # 9 bad_char
    "Images/i.jpg,neckline_design_labels,nnnnnnnnyn",  # 10 sweetheart: no class -> warning
    "Images/j.jpg,collar_design_labels,nynnn",  # 11 shirt collar
    "Images/j.jpg,collar_design_labels,nynnn",  # 12 identical repeat: merged
    "Images/a.jpg,sleeve_length_labels,nnnnnnnyn",  # 13 contradicts row 1: conflict
    ",sleeve_length_labels,nnnynnnnn",  # 14 no_image
    "Images/k.jpg,sleeve_length_labels",  # 15 malformed
    "Images/l.jpg,neckline_design_labels,nnnnmnnnyn",  # 16 y on a class we lack
]


def test_fashionai_hard_soft_merge_and_rejections(tmp_path):
    path = _write(tmp_path / "label.csv", "\n".join(FASHIONAI_ROWS) + "\n")
    result = ingest_fashionai(path)
    _reconciles(result)
    assert (result.rows_in, result.kept, result.merged) == (16, 6, 2)
    reasons = dict(zip(result.rejected["row"], result.rejected["reason"], strict=True))
    assert reasons == {
        5: "unknown_task",
        6: "bad_length",
        7: "several_y",
        8: "no_y_or_m",
        9: "bad_char",
        13: "conflict",
        14: "no_image",
        15: "malformed",
    }
    assert result.warnings["row"].tolist() == [10, 16]
    assert set(result.warnings["reason"]) == {"unmapped_class"}

    m = result.manifest
    sleeves = m.taxonomy.task("sleeve_length")
    a, b, c = _row(m, "Images/a"), _row(m, "Images/b"), _row(m, "Images/c")
    assert (a["sleeve_length"], a["garment_length"]) == ("short_sleeves", "regular")
    assert a["source"] == "label.csv:1; label.csv:2"
    assert a["sleeve_length__soft"][sleeves.index("short_sleeves")] == pytest.approx(1.0)
    assert b["sleeve_length"] is None
    soft_b = b["sleeve_length__soft"]
    assert soft_b[sleeves.index("short_sleeves")] == pytest.approx(0.5)
    assert soft_b[sleeves.index("long_sleeves")] == pytest.approx(0.5)
    assert c["sleeve_length"] == "short_sleeves"
    assert c["sleeve_length__soft"][sleeves.index("long_sleeves")] == pytest.approx(1 / 3)
    assert _row(m, "Images/j")["collar"] == "shirt_collar"
    i = _row(m, "Images/i")
    assert (i["collar"], i["collar__soft"]) == (None, None)
    assert m.labelled("sleeve_length").tolist() == [True, True, True, False, False, False]

    back = Manifest.read(result.write(tmp_path / "out"))
    soft = back.soft_targets("sleeve_length")
    assert soft.shape == (6, sleeves.num_classes)
    assert math.isclose(float(soft[1].sum()), 1.0, rel_tol=1e-6)


def test_fashionai_header_maybe_weight_and_image_root(tmp_path):
    _image(tmp_path / "base" / "Images" / "b.jpg")
    path = _write(
        tmp_path / "Annotations" / "label.csv",
        "image,task,label\nImages/b.jpg,sleeve_length_labels,nnnynnnmn\n",
    )
    result = ingest_fashionai(path, image_root=tmp_path / "base", maybe_weight=0.25)
    (soft,) = result.manifest.df["sleeve_length__soft"]
    sleeves = result.manifest.taxonomy.task("sleeve_length")
    assert soft[sleeves.index("long_sleeves")] == pytest.approx(0.25 / 1.25)
    assert result.rows_in == 1 and result.kept == 1
    assert result.manifest.image_path(0).exists()
    with pytest.raises(IngestError, match="maybe_weight"):
        ingest_fashionai(path, maybe_weight=0)


def test_default_fashionai_mapping_fits_the_default_taxonomy():
    fmap = FashionAIMapping.load(default_fashionai_mapping_path())
    tax = load_taxonomy()
    # sleeve and coat length follow FashionAI's order: the identity on our classes
    assert list(fmap.tasks["sleeve_length_labels"].positions) == tax.task("sleeve_length").class_ids
    assert list(fmap.tasks["coat_length_labels"].positions) == tax.task("garment_length").class_ids
    sizes = {name: len(t.positions) for name, t in fmap.tasks.items()}
    assert sizes == {
        "sleeve_length_labels": 9,
        "coat_length_labels": 8,
        "neckline_design_labels": 10,
        "collar_design_labels": 5,
        "neck_design_labels": 5,
        "lapel_design_labels": 5,
    }


def test_fashionai_mapping_errors_name_file_and_field(tmp_path):
    bad = _write(
        tmp_path / "f.yaml", "tasks:\n  x_labels: {task: collar, classes: [invisible, cape]}\n"
    )
    with pytest.raises(MappingError, match=r"f\.yaml: field 'tasks\.x_labels\.classes\[1\]'"):
        FashionAIMapping.load(bad)
    multi = _write(tmp_path / "g.yaml", "tasks:\n  x_labels: trend_elements\n")
    with pytest.raises(
        MappingError, match=r"'tasks\.x_labels\.task': task 'trend_elements' is multi"
    ):
        FashionAIMapping.load(multi)


def test_fashionai_with_own_mapping_and_taxonomy(tmp_path):
    tax = Taxonomy.from_dict(TAXONOMY)
    mapping = _write(tmp_path / "m.yaml", "tasks:\n  tee_labels: {task: category}\n")
    csv_path = _write(tmp_path / "l.csv", "a.jpg,tee_labels,nny\nb.jpg,tee_labels,ynn\n")
    result = ingest_fashionai(csv_path, mapping, taxonomy=tax)
    assert result.manifest.df["category"].tolist() == ["coat", "t_shirt"]


# -- init (propose) ---------------------------------------------------------------------------


def test_propose_detects_roles_groups_and_missing(tmp_path):
    rows = [["file", "sku", "sender_id", "fold", "source", "kids", "has_bow", "has_lace", "note"]]
    types = ["Shirt"] * 5 + ["Coat"] * 3 + ["Not sure", "?", "Dress"] * 1
    for i, t in enumerate(types):
        rows.append(
            [
                *(f"p/{i}.jpg", f"SKU{i}", str(i % 3), "train" if i else "test", t),
                *("true" if i % 2 else "false", "2" if i < 3 else "1", "" if i == 4 else "1"),
                f"free text {i}",
            ]
        )
    table = tmp_path / "shop.csv"
    with table.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    tax, mapping = propose_mapping(table)
    assert (mapping.image, mapping.id, mapping.group, mapping.split) == (
        "file",
        "sku",
        "sender_id",
        "fold",
    )
    assert tax.name == "shop"
    # by frequency; a task may not take the name of a manifest column ('source')
    assert tax.task("source_2").class_ids == ["shirt", "coat", "dress"]
    assert tax.task("kids").class_ids == ["no", "yes"]
    assert mapping.tasks["kids"].values == {"true": "yes", "false": "no"}
    has = tax.task("has")
    assert has.multilabel and has.class_ids == ["bow", "lace"]
    assert mapping.tasks["has"].yes == ("2",) and mapping.tasks["has"].no == ("1",)
    assert "note" not in mapping.tasks  # every value distinct: not a task
    assert write_proposal(table, tmp_path).ignored == {"note": "every value occurs once"}
    assert {"Not sure", "?"} <= set(tax.missing)

    result = ingest_table(table, mapping)
    df = result.manifest.df.set_index("image_id")
    assert pd.isna(df.loc["SKU8", "source_2"]) and df.loc["SKU0", "source_2"] == "shirt"
    assert df.loc["SKU0", "has"] == ["bow"] and df.loc["SKU4", "has__unknown"] == ["lace"]
    assert df.loc["SKU1", "kids"] == "yes"
    assert result.manifest.label_problems() == []


def test_propose_without_image_column(tmp_path):
    table = _write(tmp_path / "t.csv", "name,colour\na,red\nb,blue\n")
    with pytest.raises(IngestError, match="no column of image paths"):
        propose_mapping(table)


def test_write_proposal_round_trips_and_refuses_to_overwrite(tmp_path):
    table = _write(tmp_path / "t.csv", "image,colour\na.jpg,red\nb.jpg,blue\nc.jpg,red\n")
    proposal = write_proposal(table, tmp_path / "init")
    loaded = IngestMapping.load(proposal.mapping_path)
    assert loaded.resolved_taxonomy == Taxonomy.load(proposal.taxonomy_path)
    assert ingest_table(table, loaded).manifest.df["colour"].tolist() == ["red", "blue", "red"]
    with pytest.raises(IngestError, match="--force"):
        write_proposal(table, tmp_path / "init")
    write_proposal(table, tmp_path / "init", force=True)


# -- real datasets ----------------------------------------------------------------------------


@pytest.mark.shared_data
def test_clothing_dataset_end_to_end(shared_datasets, clothing_dataset_manifest):
    result = ingest_table(
        shared_datasets / "clothing-dataset" / "labels.csv", MAPPINGS / "clothing-dataset.yaml"
    )
    _reconciles(result)
    assert (result.rows_in, result.kept, len(result.rejected)) == (5398, 5398, 0)
    m = clothing_dataset_manifest
    assert len(m) == 5398 and m.label_problems() == []
    assert m.taxonomy.task("label").num_classes == 18
    raw = pd.read_csv(shared_datasets / "clothing-dataset" / "labels.csv", dtype=str)
    not_labelled = raw["label"].isin(["Not sure", "Skip"]).to_numpy()
    assert (~m.labelled("label") == not_labelled).all()
    assert m.df["group"].tolist() == raw["sender_id"].tolist()
    assert m.df["kids"].value_counts().to_dict() == {"no": 4922, "yes": 476}
    assert m.df.at[1, "label"] == "t_shirt" and m.df.at[1, "source"] == "labels.csv:3"
    assert all(p.exists() for p in m.image_paths()[:50])


@pytest.mark.shared_data
def test_clothing_attributes_end_to_end(shared_datasets, clothing_attributes_manifest):
    result = ingest_table(
        shared_datasets / "clothing-attributes" / "labels.csv",
        MAPPINGS / "clothing-attributes.yaml",
    )
    _reconciles(result)
    assert (result.rows_in, result.kept, len(result.rejected)) == (1856, 1856, 0)
    m = clothing_attributes_manifest
    assert m.label_problems() == []
    first = _row(m, "images/000001")
    assert first["category"] == "suit" and first["neckline"] == "v_neck"
    assert first["pattern"] == [] and sorted(first["pattern__unknown"]) == [
        "polka_dot",
        "solid",
        "stripe",
    ]
    assert int((~m.labelled("colour")).sum()) == 112  # every color_* cell empty
    pattern = m.encode("pattern")
    assert (pattern == -1).any() and (pattern == 1).any()
    assert int((m.encode("category") >= 0).sum()) == 1856 - 752


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["clothing-dataset", "clothing-attributes"])
def test_init_then_ingest_real_tables_without_edits(shared_datasets, tmp_path, name):
    table = shared_datasets / name / "labels.csv"
    map_path = write_proposal(table, tmp_path / "init").mapping_path
    result = ingest_table(table, map_path)
    _reconciles(result)
    assert result.kept == result.rows_in and result.manifest.label_problems() == []
    if name == "clothing-dataset":
        assert IngestMapping.load(map_path).group == "sender_id"
        assert result.manifest.taxonomy.task("label").num_classes == 18
    else:
        types = {t.name: t.type for t in result.manifest.taxonomy.tasks}
        assert types["color"] == types["pattern"] == "multilabel"
        assert types["collar"] == "multiclass" and len(types) == 11


# -- CLI --------------------------------------------------------------------------------------


def test_cli_commands(tmp_path):
    runner = CliRunner()
    table, mapping = _shop(tmp_path, ["img/a.jpg,A1,s1,,Tshirt,yes,yes,no,no,", ",B,,,,,,,,"])
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["data", "ingest", "table", str(table), "--mapping", str(mapping), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "rows in" in res.output and "no_image" in res.output and "category" in res.output
    assert len(Manifest.read(out / "manifest.parquet")) == 1
    assert pd.read_csv(out / "rejected.csv")["reason"].tolist() == ["no_image"]

    res = runner.invoke(
        app, ["data", "ingest", "folder", str(_tree(tmp_path / "tree")), "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert Manifest.read(out / "manifest.parquet").taxonomy.task_names == ["label"]

    fai = _write(tmp_path / "fai.csv", "\n".join(FASHIONAI_ROWS) + "\n")
    res = runner.invoke(
        app, ["data", "ingest", "fashionai", str(fai), "--maybe-weight", "0.4", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "unknown_task" in res.output and "warnings" in res.output
    assert len(pd.read_csv(out / "warnings.csv")) == 2

    res = runner.invoke(app, ["data", "init", str(table), "--out", str(tmp_path / "init")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "init" / "mapping.yaml").exists() and "sender_id" in res.output

    bad = _write(tmp_path / "bad.yaml", MAPPING.replace("column: type", "colum: type"))
    res = runner.invoke(
        app, ["data", "ingest", "table", str(table), "--mapping", str(bad), "--out", str(out)]
    )
    assert res.exit_code == 2
    assert "bad.yaml" in res.output and "tasks.category.colum" in res.output
