"""Samplers: class shares they promise, determinism per (seed, epoch), DDP shards, Lightning."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.distributed as dist
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from scipy.stats import chisquare
from torch.utils.data import DataLoader, TensorDataset

from attire.data.cache import ImageCache
from attire.data.dataset import MultiTaskDataset
from attire.data.manifest import Manifest
from attire.sampling import (
    SAMPLER_NAMES,
    ClassPowerSampler,
    InstanceSampler,
    MultiTaskBalancedSampler,
    ProgressiveSampler,
    SamplerConfig,
    SamplerError,
    build_sampler,
    class_frequencies,
    class_power_weights,
    multitask_weights,
    targets_from_dataset,
    targets_from_manifest,
)
from attire.taxonomy import load_taxonomy

COUNTS = (600, 150, 40, 10)  # a long tail: 60x between head and tail
N_MISSING = 50


def _long_tail(counts: tuple[int, ...] = COUNTS, missing: int = N_MISSING) -> np.ndarray:
    """Multiclass targets with the given class counts and missing rows, shuffled."""
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)] + [np.full(missing, -1)])
    return np.random.default_rng(7).permutation(y)


def _drawn_classes(sampler, y: np.ndarray) -> np.ndarray:
    return y[np.fromiter(iter(sampler), np.int64)]


# -- single-task samplers ----------------------------------------------------------------------


def test_class_balanced_draws_every_class_equally_often() -> None:
    y = _long_tail()
    s = build_sampler("class-balanced", {"t": y}, task="t", seed=3, num_samples=40_000)
    drawn = _drawn_classes(s, y)
    assert (drawn >= 0).all()  # missing rows get weight 0 by default
    observed = np.bincount(drawn, minlength=len(COUNTS))
    assert chisquare(observed).pvalue > 1e-3
    assert np.abs(observed / observed.sum() - 0.25).max() < 0.01
    # within a class, rows are uniform: the tail class's 10 rows are all drawn about equally
    tail_rows = Counter(np.fromiter(iter(s), np.int64)[drawn == 3].tolist())
    assert len(tail_rows) == COUNTS[3]
    assert chisquare(list(tail_rows.values())).pvalue > 1e-3


def test_missing_share_gives_unlabelled_rows_that_share_of_draws() -> None:
    y = _long_tail()
    s = build_sampler("class-balanced", {"t": y}, task="t", missing_share=0.2, num_samples=20_000)
    drawn = _drawn_classes(s, y)
    assert (drawn == -1).mean() == pytest.approx(0.2, abs=0.015)
    labelled = drawn[drawn >= 0]
    assert np.abs(np.bincount(labelled) / len(labelled) - 0.25).max() < 0.015


@pytest.mark.parametrize("power", [0.5, 0.25])
def test_power_sampler_matches_count_to_the_power_proportions(power: float) -> None:
    y = _long_tail()
    expected = np.array(COUNTS, float) ** power
    expected /= expected.sum()
    kw = {} if power == 0.5 else {"power": power}
    s = build_sampler("sqrt", {"t": y}, task="t", seed=1, num_samples=40_000, **kw)
    assert class_frequencies(s.probabilities(), y) == pytest.approx(expected, abs=1e-12)
    observed = np.bincount(_drawn_classes(s, y), minlength=len(COUNTS))
    assert chisquare(observed, expected * observed.sum()).pvalue > 1e-3


def test_multilabel_class_balanced_is_class_then_row() -> None:
    # classes a: rows 0,1,4 (3 rows); b: row 1; "none" (labelled, nothing present): rows 2,5;
    # row 3 unlabelled; row 4's second entry is unknown (-1) and does not count
    y = np.array([[1, 0], [1, 1], [0, 0], [-1, -1], [1, -1], [0, -1]])
    p = class_power_weights(y, 0.0)
    third = 1 / 3
    assert p == pytest.approx([third / 3, third / 3 + third, third / 2, 0, third / 3, third / 2])


def test_instance_sampler_is_a_seeded_shuffle_without_replacement() -> None:
    s = build_sampler("instance", {"t": _long_tail()}, seed=5)
    order = list(s)
    assert sorted(order) == list(range(len(s)))
    assert order != sorted(order)
    longer = InstanceSampler(10, num_samples=25, seed=5)
    assert sorted(Counter(longer).values()) == [2] * 5 + [3] * 5


def test_progressive_moves_from_instance_to_class_balanced() -> None:
    y = _long_tail()
    s = build_sampler("progressive", {"t": y}, task="t", epochs=5)
    uniform = np.full(len(y), 1 / len(y))
    balanced = class_power_weights(y, 0.0)
    s.set_epoch(0)
    assert s.probabilities() == pytest.approx(uniform)
    s.set_epoch(2)
    assert s.probabilities() == pytest.approx(0.5 * uniform + 0.5 * balanced)
    for last in (4, 9):  # the last epoch, and any after it, is fully balanced
        s.set_epoch(last)
        assert s.probabilities() == pytest.approx(balanced)
    tail = [class_frequencies(_epoch_probs(s, e), y)[3] for e in range(5)]
    assert tail == sorted(tail)
    assert tail[0] == pytest.approx(10 / 800) and tail[-1] == pytest.approx(0.25)


def _epoch_probs(s, epoch: int) -> np.ndarray:
    s.set_epoch(epoch)
    return s.probabilities()


# -- multi-task balanced -----------------------------------------------------------------------


def _two_tasks() -> dict[str, np.ndarray]:
    """Task a multiclass long-tailed; task b multilabel with a rare class and missing rows."""
    rng = np.random.default_rng(11)
    a = _long_tail()
    n = len(a)
    b = np.zeros((n, 3), np.int64)
    b[:, 0] = rng.random(n) < 0.7
    b[:, 1] = rng.random(n) < 0.25
    b[:, 2] = rng.random(n) < 0.03
    b[rng.random(n) < 0.3] = -1  # 30% of rows carry no label for b
    return {"a": a, "b": b}


def test_multitask_balanced_raises_rare_classes_of_every_task() -> None:
    targets = _two_tasks()
    uniform = np.full(len(targets["a"]), 1 / len(targets["a"]))
    s = build_sampler("multitask-balanced", targets, seed=2, num_samples=30_000)
    p = s.probabilities()
    drawn = np.fromiter(iter(s), np.int64)
    for task, y in targets.items():
        before = class_frequencies(uniform, y)
        after = class_frequencies(p, y)
        rare, common = int(np.argmin(before)), int(np.argmax(before))
        assert after[rare] > 2 * before[rare], task
        assert after[common] < before[common], task
        empirical = class_frequencies(np.bincount(drawn, minlength=len(y)) / len(drawn), y)
        assert empirical == pytest.approx(after, abs=0.02), task


def test_multitask_balanced_is_an_equal_mixture_of_per_task_balances() -> None:
    targets = _two_tasks()
    targets["b"][targets["a"] < 0] = 0  # every row labelled somewhere (see the next test)
    for power in (0.0, 0.5):
        expected = (
            class_power_weights(targets["a"], power) + class_power_weights(targets["b"], power)
        ) / 2
        assert multitask_weights(targets, power) == pytest.approx(expected)
    # a row unlabelled for b gets its weight from a alone; a task nobody labelled changes nothing
    unlabelled_task = np.full(len(targets["a"]), -1)
    assert multitask_weights({**targets, "c": unlabelled_task}) == pytest.approx(
        multitask_weights(targets)
    )


def test_multitask_balanced_can_be_limited_to_some_tasks() -> None:
    targets = _two_tasks()
    only_b = build_sampler("multitask-balanced", targets, tasks=["b"], power=0.0)
    assert only_b.probabilities() == pytest.approx(multitask_weights({"b": targets["b"]}, 0.0))
    assert (
        class_frequencies(only_b.probabilities(), targets["b"])[2]
        > class_frequencies(
            build_sampler("multitask-balanced", targets, power=0.0).probabilities(), targets["b"]
        )[2]
    )  # the rare class of b gains more when b is not sharing the mass with a
    for bad in (["b", "zz"], []):
        with pytest.raises(SamplerError, match="`tasks` must name some of"):
            build_sampler("multitask-balanced", targets, tasks=bad)


@pytest.mark.shared_data
def test_multitask_balanced_on_real_partial_labels(clothing_attributes_manifest) -> None:
    """clothing-attributes (11 tasks, partial labels): the numbers docs/SAMPLING.md quotes."""
    targets = targets_from_manifest(clothing_attributes_manifest)
    n = len(clothing_attributes_manifest)
    p = build_sampler("multitask-balanced", targets).probabilities()
    assert 1 / np.sum(p**2) > 0.9 * n  # effective rows: the weights stay moderate
    uniform = np.full(n, 1 / n)
    for task in ("category", "sleeve_length", "skin_exposure", "pattern", "colour"):
        before = class_frequencies(uniform, targets[task])
        rare = int(np.argmin(np.where(before > 0, before, np.inf)))
        assert class_frequencies(p, targets[task])[rare] > 1.1 * before[rare], task


def test_rows_without_any_label_get_the_smallest_weight() -> None:
    a = np.array([0, 0, 0, 1, -1, -1])
    p = multitask_weights({"a": a, "b": np.array([1, 0, 0, 0, 1, -1])}, power=0.0)
    assert p[5] == pytest.approx(p[:5].min()) and p[5] > 0
    assert p.sum() == pytest.approx(1.0)
    assert multitask_weights({"a": np.full(4, -1)}) == pytest.approx(np.full(4, 0.25))


# -- determinism and DDP -----------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_draws_depend_only_on_seed_and_epoch(name: str) -> None:
    targets = _two_tasks()
    opts: dict = {"task": "a"} if name in ("class-balanced", "sqrt", "progressive") else {}
    if name == "progressive":
        opts["epochs"] = 4

    def draw(seed: int, epoch: int) -> list[int]:
        s = build_sampler(name, targets, seed=seed, **opts)
        s.set_epoch(epoch)
        return list(s)

    assert draw(0, 1) == draw(0, 1)
    assert draw(0, 1) != draw(0, 2)
    assert draw(0, 1) != draw(1, 1)
    s = build_sampler(name, targets, seed=0, **opts)
    s.set_epoch(2)
    s.set_epoch(1)  # the draw is a function of the epoch, not of how many epochs went by
    assert list(s) == draw(0, 1) == list(s)


@pytest.mark.parametrize(("num_samples", "replicas"), [(1000, 2), (999, 4), (7, 3)])
def test_ddp_shards_are_disjoint_equal_slices_of_one_draw(num_samples: int, replicas: int) -> None:
    y = _long_tail()
    shards = []
    for rank in range(replicas):
        s = ClassPowerSampler(
            y, 0.5, seed=4, num_samples=num_samples, rank=rank, num_replicas=replicas
        )
        s.set_epoch(3)
        shards.append(list(s))
        assert len(shards[-1]) == len(s) == -(-num_samples // replicas)
    whole = s.epoch_draw()
    assert len(whole) >= num_samples
    rebuilt = np.empty(len(whole), np.int64)
    for rank, shard in enumerate(shards):  # disjoint positions of the draw that cover all of it
        rebuilt[rank::replicas] = shard
    assert (rebuilt == whole).all()


def test_ddp_instance_shards_partition_the_rows() -> None:
    n = 840
    shards = [
        set(InstanceSampler(n, seed=9, rank=r, num_replicas=4)) for r in range(4)
    ]  # fmt: skip
    assert all(len(s) == n // 4 for s in shards)
    assert set().union(*shards) == set(range(n))


def test_rank_and_world_size_come_from_torch_distributed(monkeypatch) -> None:
    s = MultiTaskBalancedSampler(_two_tasks(), seed=1, num_samples=101)
    full = s.epoch_draw()
    assert s.world() == (0, 1) and len(s) == 101
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    assert s.world() == (1, 2) and len(s) == 51
    assert list(s) == s.epoch_draw()[1::2].tolist()
    assert (s.epoch_draw()[:101] == full).all()  # the same draw, only longer for the padding


def test_lightning_calls_set_epoch_and_keeps_the_sampler(tmp_path: Path) -> None:
    seen: list[list[int]] = []

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def on_train_epoch_start(self) -> None:
            seen.append([])

        def training_step(self, batch, _):
            seen[-1].extend(batch[0].tolist())
            return (self.w**2).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    y = _long_tail()
    sampler = build_sampler("sqrt", {"t": y}, task="t", seed=8, num_samples=64)
    loader = DataLoader(TensorDataset(torch.arange(len(y))), batch_size=16, sampler=sampler)
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Recorder(), loader)
    assert trainer.train_dataloader.sampler is sampler
    expected = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        expected.append(list(sampler))
    assert seen == expected and seen[0] != seen[1]


# -- inputs and configuration ------------------------------------------------------------------


def test_targets_from_a_dataset_follow_its_positions(tmp_path: Path) -> None:
    tax = load_taxonomy()
    cats = tax.task("category").class_ids
    records = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        if i == 2:
            path.write_bytes(b"not an image")
        else:
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(path)
        records.append({"image_id": f"im{i}", "path": path.name, "category": cats[i]})
    records[4]["trend_elements"] = ["bow"]
    manifest = Manifest.from_records(records, tax, tmp_path)
    cache = ImageCache.for_manifest(
        manifest, 8, cache_dir=tmp_path / "c", workers=0, progress=False
    )
    ds = MultiTaskDataset(manifest, cache, lambda x: x, tasks=["category", "trend_elements"])
    targets = targets_from_dataset(ds)
    assert targets["category"].tolist() == [0, 1, 3, 4, 5]  # row 2 failed to decode
    assert targets["trend_elements"].dtype == np.int64
    assert targets["trend_elements"][3, tax.task("trend_elements").index("bow")] == 1
    s = build_sampler("class-balanced", ds, task="category", num_samples=50)
    assert max(s) < len(ds) and len(s.probabilities()) == len(ds)
    full = targets_from_manifest(manifest, ["category"])
    assert full["category"].tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("balanced", {}, "unknown sampler 'balanced'"),
        ("class-balanced", {}, "set `task`"),
        ("sqrt", {"task": "nope"}, "'nope' is not among"),
        ("instance", {"task": "a"}, "uses no `task`"),
        ("class-balanced", {"task": "a", "power": 0.5}, "takes no option ['power']"),
        ("multitask-balanced", {"epochs": 3}, "takes no option ['epochs']"),
        ("progressive", {"task": "a"}, "needs `epochs`"),
        ("progressive", {"task": "a", "epochs": 1}, "epochs >= 2"),
        ("sqrt", {"task": "a", "power": 1.5}, "power must be in [0, 1]"),
        ("class-balanced", {"task": "a", "missing_share": 1.0}, "missing_share must be in"),
        ("instance", {"num_samples": 0}, "num_samples must be at least 1"),
        ("instance", {"rank": 2, "num_replicas": 2}, "rank must be in [0, 2)"),
    ],
)
def test_bad_options_name_what_to_fix(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(SamplerError) as e:
        build_sampler(name, _two_tasks(), **kwargs)
    assert message in str(e.value)


def test_bad_targets_are_refused_with_task_and_row() -> None:
    with pytest.raises(SamplerError, match=r"task 'a', row 2: target must be"):
        build_sampler("instance", {"a": np.array([0, 1, -3])})
    with pytest.raises(SamplerError, match="different lengths"):
        build_sampler("instance", {"a": np.zeros(3, int), "b": np.zeros(4, int)})
    with pytest.raises(SamplerError, match="no row is labelled"):
        build_sampler("class-balanced", {"a": np.full(5, -1)}, task="a")


def test_config_validates_per_name_and_builds_with_run_defaults() -> None:
    cfg = SamplerConfig.model_validate({"name": "progressive", "task": "a"})
    s = cfg.build(_two_tasks(), run_seed=12, run_epochs=6)
    assert isinstance(s, ProgressiveSampler) and s.epochs == 6 and s.seed == 12
    s = SamplerConfig(name="sqrt", task="a", power=0.3, seed=1).build(_two_tasks(), run_seed=12)
    assert isinstance(s, ClassPowerSampler) and s.power == 0.3 and s.seed == 1
    cfg = SamplerConfig(name="multitask-balanced", tasks=["b"], power=0.0)
    assert cfg.build(_two_tasks()).probabilities() == pytest.approx(
        multitask_weights({"b": _two_tasks()["b"]}, 0.0)
    )
    s = SamplerConfig().build(_two_tasks(), run_epochs=6)
    assert isinstance(s, InstanceSampler)
    for bad in (
        {"name": "sqrt"},
        {"name": "instance", "power": 0.5},
        {"name": "multitask-balanced", "task": "a"},
        {"name": "sqrt", "task": "a", "epochs": 3},
        {"name": "multitask-balanced", "missing_share": 0.1},
        {"name": "sqrt", "task": "a", "powr": 0.5},
        {"name": "sqrt", "task": "a", "tasks": ["a"]},
    ):
        with pytest.raises(ValueError):
            SamplerConfig.model_validate(bad)


# -- properties --------------------------------------------------------------------------------

_multiclass = arrays(np.int64, st.integers(1, 40), elements=st.integers(-1, 5))
_multilabel = arrays(
    np.int64, st.tuples(st.integers(1, 40), st.integers(1, 4)), elements=st.integers(-1, 1)
)


def _check_distribution(p: np.ndarray, n: int) -> None:
    assert p.shape == (n,)
    assert np.isfinite(p).all() and (p >= 0).all()
    assert p.sum() == pytest.approx(1.0)


@settings(max_examples=150, deadline=None)
@given(
    y=st.one_of(_multiclass, _multilabel),
    power=st.floats(0, 1),
    share=st.sampled_from([0.0, 0.3]),
)
def test_class_weights_are_a_distribution_that_skips_missing_rows(
    y: np.ndarray, power: float, share: float
) -> None:
    labelled = (y >= 0) if y.ndim == 1 else (y >= 0).any(axis=1)
    if not labelled.any():
        with pytest.raises(SamplerError):
            class_power_weights(y, power, missing_share=share)
        return
    p = class_power_weights(y, power, missing_share=share)
    _check_distribution(p, len(y))
    assert (p[labelled] > 0).all()
    if share == 0.0 or labelled.all():
        assert (p[~labelled] == 0).all()
    else:
        assert p[~labelled].sum() == pytest.approx(share)


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 30),
    power=st.floats(0, 1),
)
def test_multitask_weights_are_positive_for_random_partial_labels(
    data: st.DataObject, n: int, power: float
) -> None:
    a = data.draw(arrays(np.int64, n, elements=st.integers(-1, 3)))
    b = data.draw(arrays(np.int64, (n, 3), elements=st.integers(-1, 1)))
    p = multitask_weights({"a": a, "b": b}, power)
    _check_distribution(p, n)
    assert (p > 0).all()
