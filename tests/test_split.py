"""Splits: groups never straddle splits, fractions and label mixes hold, same seed same split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from attire.cli.main import app
from attire.data.manifest import SPLITS, Manifest
from attire.data.split import SplitError, group_components, split_manifest, split_report
from attire.taxonomy import Taxonomy

TAXONOMY = Taxonomy.from_dict(
    {
        "name": "toy",
        "tasks": [
            {"name": "colour", "classes": [{"id": c} for c in ("red", "blue", "green", "rare")]},
            {"name": "tags", "type": "multilabel", "classes": [{"id": c} for c in ("a", "b", "z")]},
        ],
    }
)


def _manifest(colour: list, tags: list | None = None, **columns: list) -> Manifest:
    n = len(colour)
    df = pd.DataFrame(
        {
            "image_id": [f"i{i}" for i in range(n)],
            "path": [f"{i}.jpg" for i in range(n)],
            "colour": colour,
            "tags": tags if tags is not None else [None] * n,
            **columns,
        }
    )
    return Manifest(df, TAXONOMY)


def _random_manifest(n: int, seed: int, n_groups: int | None = None) -> Manifest:
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "blue", "green", None], n, p=[0.5, 0.3, 0.15, 0.05]).tolist()
    tags = [
        None if rng.random() < 0.2 else [t for t in ("a", "b") if rng.random() < 0.5]
        for _ in range(n)
    ]
    extra = {}
    if n_groups is not None:
        extra["group"] = [f"g{g}" for g in rng.integers(0, n_groups, n)]
    return _manifest(colour, tags, **extra)


def _splits_per_value(m: Manifest, column: str) -> pd.Series:
    values = m.df[column]
    return m.df.loc[values.notna(), "split"].groupby(values[values.notna()]).nunique()


def test_group_components_union_group_and_duplicates():
    df = pd.DataFrame(
        {
            "group": ["s1", "s1", None, None, "", "s2"],
            "dup_cluster": [None, 7, 7, 7, None, None],
        }
    )
    comp = group_components(df)
    # rows 0-1 share a sender, 1-2-3 a duplicate cluster -> one group; "" and None join nothing
    assert comp.tolist() == [0, 0, 0, 0, 1, 2]
    assert group_components(df, ["dup_cluster"]).tolist() == [0, 1, 1, 1, 2, 3]
    assert group_components(df, ["no_such_column"]).tolist() == list(range(6))


def test_same_seed_same_split_other_seed_other_split():
    m = _random_manifest(300, seed=1, n_groups=80)
    a = split_manifest(m, seed=3).df["split"]
    b = split_manifest(m, seed=3).df["split"]
    c = split_manifest(m, seed=4).df["split"]
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()
    assert "split" not in m.df.columns  # the input is left alone


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 8)),  # group
            st.one_of(st.none(), st.integers(0, 5)),  # dup_cluster
            st.sampled_from(["red", "blue", "green", "rare", None]),
        ),
        min_size=1,
        max_size=40,
    ),
    seed=st.integers(0, 3),
)
def test_no_group_in_two_splits_and_every_row_split(rows, seed):
    group = [None if g is None else f"s{g}" for g, _, _ in rows]
    dup = [d for _, d, _ in rows]
    m = _manifest([c for _, _, c in rows], group=group, dup_cluster=dup)
    out = split_manifest(m, seed=seed)
    assert len(out) == len(m)
    assert out.df["split"].isin(SPLITS).all()
    assert (_splits_per_value(out, "group") <= 1).all()
    assert (_splits_per_value(out, "dup_cluster") <= 1).all()
    assert all(s.shared_groups == 0 for s in split_report(out))


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.7, 0.3, 0.0)])
def test_fractions_are_honoured(fractions):
    m = _random_manifest(1000, seed=2)
    out = split_manifest(m, fractions=fractions)
    share = out.df["split"].value_counts(normalize=True)
    for name, want in zip(SPLITS, fractions, strict=True):
        assert share.get(name, 0.0) == pytest.approx(want, abs=0.01)


def test_bad_fractions_are_rejected():
    m = _random_manifest(10, seed=0)
    with pytest.raises(SplitError, match="sum to 1"):
        split_manifest(m, fractions=(0.8, 0.1, 0.2))
    with pytest.raises(SplitError, match="3 fractions"):
        split_manifest(m, fractions=(0.8, 0.2))
    with pytest.raises(SplitError, match=">= 0"):
        split_manifest(m, fractions=(1.1, 0.1, -0.2))


def test_rare_classes_of_two_tasks_reach_every_split_unlike_random_groups():
    """10 groups carry a rare colour, 10 others a rare tag: stratification puts both in every
    split for every seed; assigning groups at random misses one for some seeds."""
    n_groups = 200
    group = [f"g{g}" for g in range(n_groups) for _ in range(3)]
    colour = ["red", "blue", "green"] * n_groups
    tags: list = [["a"], ["b"], []] * n_groups
    for g in range(10):
        colour[3 * g] = "rare"  # one photo of groups 0-9
        tags[3 * (g + 100) + 1] = ["z"]  # one photo of groups 100-109
    m = _manifest(colour, tags, group=group)
    random_misses = 0
    for seed in range(10):
        out = split_manifest(m, seed=seed).df
        for name in SPLITS:
            part = out[out["split"] == name]
            assert (part["colour"] == "rare").any(), (seed, name)
            assert part["tags"].map(lambda t: "z" in t).any(), (seed, name)
        rng = np.random.default_rng(seed)
        by_group = dict(
            zip(range(n_groups), rng.choice(3, n_groups, p=[0.8, 0.1, 0.1]), strict=True)
        )
        rare_splits = {by_group[g] for g in range(10)}
        tag_splits = {by_group[g] for g in range(100, 110)}
        random_misses += len(rare_splits) < 3 or len(tag_splits) < 3
    assert random_misses > 0


def test_group_larger_than_a_split_stays_whole_in_train():
    n = 200
    group = ["big"] * 120 + [f"s{i}" for i in range(n - 120)]  # 60% of rows in one group
    m = _manifest(["red", "blue"] * (n // 2), group=group)
    out = split_manifest(m).df
    assert out.loc[:119, "split"].eq("train").all()
    assert set(out["split"]) == set(SPLITS)
    # a group bigger than the train target: kept whole; the other splits take the rest
    huge = _manifest(["red"] * n, group=["big"] * 190 + [f"s{i}" for i in range(10)])
    out = split_manifest(huge).df
    assert out.loc[:189, "split"].nunique() == 1
    report = {s.split: s for s in split_report(huge.with_df(out))}
    assert report["train"].rows >= 190


def test_rows_without_any_label_get_a_split():
    colour = ["red", None] * 50
    m = _manifest(colour, group=[f"g{i // 4}" for i in range(100)])
    out = split_manifest(m).df
    assert out["split"].isin(SPLITS).all()
    unlabelled = out[out["colour"].isna()]
    assert set(unlabelled["split"]) == set(SPLITS)
    nothing = split_manifest(_manifest([None] * 30)).df
    assert nothing["split"].value_counts().to_dict() == {"train": 24, "val": 3, "test": 3}


def test_only_the_chosen_tasks_are_stratified():
    m = _random_manifest(50, seed=5)
    with pytest.raises(Exception, match="no task 'size'"):
        split_manifest(m, tasks=["size"])
    out = split_manifest(m, tasks=["colour"], seed=1)
    assert out.df["split"].isin(SPLITS).all()


def test_split_report_gaps_in_points():
    colour = ["red", "red", "blue", "blue", "red", "blue", "red", None]
    split = ["train", "train", "train", "train", "val", "val", "test", "test"]
    m = _manifest(colour, split=split, group=["a", "a", "b", "c", "d", "e", "c", "f"])
    report = {s.split: s for s in split_report(m, tasks=["colour"])}
    # whole: red 4/7, blue 3/7; train 2/4 each; val 1/2 each; test red 1/1
    assert report["train"].gaps["colour"] == pytest.approx(100 * (4 / 7 - 0.5))
    assert report["test"].gaps["colour"] == pytest.approx(100 * (1 - 4 / 7))
    assert report["train"].rows == 4 and report["train"].groups == 3
    # group c sits in train and test: counted as shared in both
    assert report["train"].shared_groups == 1 and report["test"].shared_groups == 1
    assert report["val"].shared_groups == 0
    assert report["test"].share == pytest.approx(2 / 8)


def test_clothing_dataset_split_by_sender(clothing_dataset_manifest: Manifest):
    """Real data: 348 senders, one with 646 of 5,398 photos. Measured (seed 0): shares
    80.0/10.0/10.0%, largest class-share gap on `label` 0.0 (train) / 0.2 (val) / 0.3 (test)
    points; the package's own iterative stratification run on groups gave 63% train rows."""
    m = clothing_dataset_manifest
    out = split_manifest(m, seed=0)
    senders = {name: set(out.df.loc[out.df["split"] == name, "group"]) for name in SPLITS}
    assert not senders["train"] & senders["val"]
    assert not senders["train"] & senders["test"]
    assert not senders["val"] & senders["test"]
    report = {s.split: s for s in split_report(out)}
    for name, want in zip(SPLITS, (0.8, 0.1, 0.1), strict=True):
        assert report[name].share == pytest.approx(want, abs=0.01)
        assert report[name].gaps["label"] <= 1.5, (name, report[name].gaps)
        assert report[name].gaps["kids"] <= 1.5, (name, report[name].gaps)
    # every class with at least 10 senders reaches the test split
    by_class = m.df.groupby("label")["group"].nunique()
    common = set(by_class[by_class >= 10].index)
    test_classes = set(out.df.loc[out.df["split"] == "test", "label"].dropna())
    assert common <= test_classes


def test_cli_split(tmp_path: Path):
    m = _random_manifest(200, seed=3, n_groups=60)
    path = m.write(tmp_path / "m.parquet")
    out = tmp_path / "split.parquet"
    args = ["data", "split", str(path), "--out", str(out), "--fractions", "0.7,0.15,0.15"]
    res = CliRunner().invoke(app, [*args, "--seed", "2", "--tasks", "colour,tags"])
    assert res.exit_code == 0, res.output
    written = Manifest.read(out)
    assert written.df["split"].isin(SPLITS).all()
    assert (
        written.df["split"].tolist()
        == split_manifest(m, fractions=(0.7, 0.15, 0.15), seed=2).df["split"].tolist()
    )
    for word in ("train", "val", "test", "colour", "tags", "70.0%"):
        assert word in res.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fractions", "0.8,0.1"], "3 fractions"),
        (["--fractions", "a,b,c"], "not three numbers"),
        (["--tasks", "colour,size"], "no task 'size'"),
    ],
)
def test_cli_split_errors(tmp_path: Path, extra: list[str], message: str):
    path = _random_manifest(20, seed=0).write(tmp_path / "m.parquet")
    args = ["data", "split", str(path), "--out", str(tmp_path / "o.parquet"), *extra]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "o.parquet").exists()
