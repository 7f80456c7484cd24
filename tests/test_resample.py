"""Over- and under-sampling a manifest: target ratios, untouched splits, unique ids, groups."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from attire.data.manifest import Manifest
from attire.sampling import ResampleError, oversample, undersample
from attire.taxonomy import load_taxonomy

TAX = load_taxonomy()
CATS = TAX.task("category").class_ids
TRAIN_COUNTS = {"t_shirt": 60, "shirt": 15, "blouse": 4}
N_MISSING = 6


def _manifest(split: bool = True) -> Manifest:
    """Train rows with a 15:1 long tail on `category` and unlabelled rows; val and test rows."""
    records = []
    labels = [c for c, n in TRAIN_COUNTS.items() for _ in range(n)] + [None] * N_MISSING
    for i, label in enumerate(labels):
        records.append(
            {
                "image_id": f"tr{i}",
                "path": f"img/tr{i}.jpg",
                "category": label,
                "main_colour": "red" if i % 2 else None,
                "group": f"sender{i % 7}" if i % 3 else None,
                "split": "train",
            }
        )
    for name in ("val", "test"):
        for i in range(8):
            records.append(
                {
                    "image_id": f"{name}{i}",
                    "path": f"img/{name}{i}.jpg",
                    "category": "shirt" if i % 4 else "t_shirt",
                    "group": f"{name}-sender{i}",
                    "split": name,
                }
            )
    m = Manifest.from_records(records, TAX)
    if not split:
        m = m.with_df(m.df[m.df["split"] == "train"].drop(columns=["split"]))
    return m


def _train_counts(m: Manifest) -> dict[str, int]:
    train = m.df[m.df["split"] == "train"] if "split" in m.df.columns else m.df
    return train["category"].dropna().value_counts().to_dict()


def _others(m: Manifest) -> pd.DataFrame:
    return m.df[m.df["split"] != "train"].reset_index(drop=True)


# -- over-sampling -----------------------------------------------------------------------------


@pytest.mark.parametrize(("ratio", "floor"), [(1.0, 60), (2.0, 30), (4.5, 14)])
def test_oversample_lifts_every_class_to_the_target_ratio(ratio: float, floor: int) -> None:
    m = _manifest()
    out = oversample(m, "category", target_ratio=ratio, seed=0)
    counts = _train_counts(out)
    assert counts == {c: max(n, floor) for c, n in TRAIN_COUNTS.items()}
    assert max(counts.values()) / min(counts.values()) <= ratio
    assert out.df["category"].isna().sum() == N_MISSING  # unlabelled rows are not copied
    assert len(out) == len(m) + sum(counts.values()) - sum(TRAIN_COUNTS.values())


def test_oversample_copies_rows_with_new_ids_and_their_group() -> None:
    m = _manifest()
    out = oversample(m, "category", seed=3)
    assert out.df["image_id"].is_unique
    assert _others(out).equals(_others(m))  # val and test untouched
    assert out.df.iloc[: len(m)].drop(columns="group").equals(m.df.drop(columns="group"))
    dups = out.df.iloc[len(m) :]
    assert (dups["split"] == "train").all()
    by_id = out.df.set_index("image_id")
    for _, row in dups.iterrows():
        original, _, k = row["image_id"].partition("#dup")
        assert int(k) >= 1
        source = by_id.loc[original]
        assert row["category"] == source["category"] and row["path"] == source["path"]
        # the copy is in its original's group: the original's own, or the original's id
        assert row["group"] == source["group"]
        assert pd.notna(row["group"])
    lone = m.df["group"].isna() & m.df["image_id"].isin(
        [i.partition("#dup")[0] for i in dups["image_id"]]
    )
    assert (out.df.loc[lone[lone].index, "group"] == m.df.loc[lone, "image_id"]).all()
    untouched = m.df["group"].isna() & ~lone
    assert out.df.loc[untouched[untouched].index, "group"].isna().all()


def test_oversample_is_seeded_and_reruns_never_clash() -> None:
    m = _manifest()
    a = oversample(m, "category", seed=1)
    assert a.df.equals(oversample(m, "category", seed=1).df)
    assert not a.df["image_id"].equals(oversample(m, "category", seed=2).df["image_id"])
    twice = oversample(oversample(m, "category", target_ratio=3.0), "category", target_ratio=1.0)
    assert twice.df["image_id"].is_unique
    assert set(_train_counts(twice).values()) == {60}


def test_oversampled_manifest_round_trips_through_parquet(tmp_path: Path) -> None:
    m = _manifest(split=False)  # no split column: every row may be resampled
    assert "group" in m.df.columns
    m = m.with_df(m.df.drop(columns="group"))
    out = oversample(m, "category", target_ratio=2.0)
    assert _train_counts(out) == {"t_shirt": 60, "shirt": 30, "blouse": 30}
    back = Manifest.read(out.write(tmp_path / "m.parquet"))
    assert back.df["image_id"].tolist() == out.df["image_id"].tolist()
    dup_groups = back.df["group"][back.df["image_id"].str.contains("#dup")]
    assert dup_groups.notna().all()


# -- under-sampling ----------------------------------------------------------------------------


@pytest.mark.parametrize(("ratio", "ceiling"), [(1.0, 4), (2.5, 10), (20.0, 80)])
def test_undersample_cuts_every_class_to_the_target_ratio(ratio: float, ceiling: int) -> None:
    m = _manifest()
    out = undersample(m, "category", target_ratio=ratio, seed=0)
    counts = _train_counts(out)
    assert counts == {c: min(n, ceiling) for c, n in TRAIN_COUNTS.items()}
    assert max(counts.values()) / min(counts.values()) <= ratio
    assert out.df["category"].isna().sum() == N_MISSING  # unlabelled rows are kept
    assert _others(out).equals(_others(m))
    kept = out.df["image_id"].tolist()
    assert kept == [i for i in m.df["image_id"] if i in set(kept)]  # order kept
    assert out.df.set_index("image_id").equals(m.df.set_index("image_id").loc[kept])


def test_undersample_is_seeded() -> None:
    m = _manifest()
    ids = [undersample(m, "category", seed=s).df["image_id"].tolist() for s in (0, 0, 1)]
    assert ids[0] == ids[1] != ids[2]


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("resample", [oversample, undersample])
def test_requests_that_cannot_work_say_why(resample) -> None:
    m = _manifest()
    with pytest.raises(ResampleError, match="must be >= 1"):
        resample(m, "category", target_ratio=0.5)
    with pytest.raises(ResampleError, match="multilabel"):
        resample(m, "trend_elements")
    with pytest.raises(ResampleError, match="no row of split 'train' is labelled"):
        resample(m, "sleeve_length")
    single = m.with_df(m.df[~m.df["category"].isin(["shirt", "blouse"])])
    assert resample(single, "category").df.equals(single.df)  # one class: nothing to balance


def test_only_the_named_split_is_touched() -> None:
    m = _manifest()
    out = oversample(m, "category", split="val")
    val = out.df[out.df["split"] == "val"]["category"].value_counts().to_dict()
    assert val == {"shirt": 6, "t_shirt": 6}
    for other in ("train", "test"):
        assert out.df[out.df["split"] == other].equals(m.df[m.df["split"] == other])


@pytest.mark.shared_data
def test_real_long_tail_reaches_the_ratio(clothing_dataset_manifest) -> None:
    """clothing-dataset `label`: 18 classes from 1011 down to 23 rows, groups = senders."""
    m = clothing_dataset_manifest
    assert "split" not in m.df.columns  # so every labelled row may be resampled
    over = oversample(m, "label", target_ratio=5.0, seed=0)
    counts = over.df["label"].value_counts()
    assert counts.max() / counts.min() <= 5.0
    assert counts.max() == m.df["label"].value_counts().max()
    assert over.df["image_id"].is_unique
    dups = over.df.iloc[len(m) :]
    originals = m.df.set_index("image_id").loc[dups["image_id"].str.partition("#dup")[0]]
    assert (dups["group"].to_numpy() == originals["group"].to_numpy()).all()
    under = undersample(m, "label", target_ratio=5.0, seed=0)
    counts = under.df["label"].value_counts()
    assert counts.max() / counts.min() <= 5.0
    assert counts.min() == m.df["label"].value_counts().min()
    assert under.df["label"].isna().sum() == m.df["label"].isna().sum()
