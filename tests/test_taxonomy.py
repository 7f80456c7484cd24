"""The taxonomy: the default file's content, value resolution, and errors that name the place."""

from __future__ import annotations

import pytest

from attire.taxonomy import Taxonomy, TaxonomyError, UnknownLabelError, load_taxonomy

TASKS = [
    "category",
    "main_colour",
    "secondary_colour",
    "main_pattern",
    "secondary_pattern",
    "texture",
    "trend_elements",
    "collar",
    "sleeve_length",
    "garment_length",
    "fit",
    "placket",
    "fabric",
]


def test_default_taxonomy_has_the_13_tasks_in_order():
    tax = load_taxonomy()
    assert tax.task_names == TASKS
    assert [t.name for t in tax.tasks if t.multilabel] == ["trend_elements"]
    for name in ("collar", "sleeve_length", "garment_length"):
        assert tax.task(name).invisible == "invisible"
        assert tax.task(name).class_ids[0] == "invisible"


def test_length_tasks_follow_fashionai_order():
    """FashionAI y/m/n strings map position by position onto these two tasks."""
    tax = load_taxonomy()
    assert tax.task("sleeve_length").class_ids == [
        "invisible",
        "sleeveless",
        "cup_sleeves",
        "short_sleeves",
        "elbow_sleeves",
        "three_quarter_sleeves",
        "wrist_length",
        "long_sleeves",
        "extra_long_sleeves",
    ]
    assert tax.task("garment_length").class_ids == [
        "invisible",
        "high_waist",
        "regular",
        "long",
        "micro",
        "knee",
        "midi",
        "ankle_floor",
    ]


def test_resolve_accepts_id_name_alias_and_chinese_in_any_case():
    task = load_taxonomy().task("collar")
    assert task.resolve("v_neck") == "v_neck"
    assert task.resolve("V-Neck") == "v_neck"
    assert task.resolve("v-shape") == "v_neck"
    assert task.resolve("V领") == "v_neck"
    assert task.resolve("  Turtle   Neck ") == "turtleneck"
    with pytest.raises(UnknownLabelError, match=r"collar.*'sailor'"):
        task.resolve("sailor")


def test_missing_tokens_and_index():
    tax = load_taxonomy()
    assert tax.is_missing("fit", "Not sure")
    assert tax.is_missing("fit", "")
    assert tax.is_missing("fit", None)
    assert tax.is_missing("fit", float("nan"))
    assert not tax.is_missing("secondary_colour", "None")  # a class name, not a missing token
    assert tax.task("secondary_colour").resolve("None") == "none"
    assert tax.task("fit").index("loose") == 2
    with pytest.raises(UnknownLabelError):
        tax.task("fit").index("baggy")


def test_round_trip_through_yaml(tmp_path):
    tax = load_taxonomy()
    back = load_taxonomy(tax.save(tmp_path / "t.yaml"))
    assert back == tax


def test_subset_keeps_order_of_request():
    sub = load_taxonomy().subset(["fit", "collar"])
    assert sub.task_names == ["fit", "collar"]


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([{"name": "fit", "classes": [{"id": "slim"}]}], "task 'fit'.*at least 2 classes"),
        (
            [{"name": "fit", "classes": [{"id": "slim"}, {"id": "slim"}]}],
            "task 'fit'.*duplicate class ids",
        ),
        (
            [{"name": "fit", "classes": [{"id": "Slim Fit"}, {"id": "loose"}]}],
            "task 'fit'.*'Slim Fit'",
        ),
        (
            [{"name": "fit", "invisible": "hidden", "classes": [{"id": "a"}, {"id": "b"}]}],
            "invisible class 'hidden'",
        ),
        (
            [{"name": "fit", "classes": [{"id": "a", "aliases": ["x"]}, {"id": "b", "name": "X"}]}],
            "'X' would mean both 'a' and 'b'",
        ),
        ([{"name": "fit", "type": "ordinal", "classes": [{"id": "a"}, {"id": "b"}]}], "type"),
    ],
)
def test_errors_name_the_file_task_and_value(tmp_path, tasks, message):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "tasks": tasks}))
    with pytest.raises(TaxonomyError, match=message) as err:
        Taxonomy.load(path)
    assert str(path) in str(err.value)


def test_unreadable_files_say_so(tmp_path):
    with pytest.raises(TaxonomyError, match="not found"):
        Taxonomy.load(tmp_path / "absent.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("tasks: [unclosed")
    with pytest.raises(TaxonomyError, match="not valid YAML"):
        Taxonomy.load(bad)
