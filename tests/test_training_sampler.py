"""Rebalancing samplers in training: the loader's epoch order comes from the configured
`RowSampler`, batches come out balanced, DDP shares and mid-epoch resume stay exact."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from attire.data.manifest import Manifest
from attire.sampling import build_sampler
from attire.training.config import ConfigError, TrainConfig
from attire.training.fit import fit
from attire.training.module import MultiTaskModule
from attire.training.sampling import EpochSampler
from test_training import (
    COLOURS,
    single_thread,  # noqa: F401  (autouse fixture)
    toy_config,
    toy_data,
)


def _epoch(sampler: EpochSampler, e: int) -> list[tuple[int, int]]:
    sampler.set_epoch(e)
    sampler.begin_epoch()
    return list(sampler)


def _targets() -> dict[str, np.ndarray]:
    return {"colour": np.array([0] * 40 + [1] * 8 + [2] * 2)}


def test_epoch_order_is_the_row_sampler_draw_with_a_seed_per_position():
    rows = build_sampler("class-balanced", _targets(), task="colour", seed=4)
    sampler = EpochSampler(50, seed=9, rows=rows)
    items = _epoch(sampler, 2)
    rows.set_epoch(2)
    assert [i for i, _ in items] == rows.epoch_draw().tolist()
    assert len(items) == len(sampler) == 50
    # rows repeat (class 2 has 2 rows and a third of the draws), their augmentations do not
    by_row: dict[int, list[int]] = {}
    for index, seed in items:
        by_row.setdefault(index, []).append(seed)
    repeated = [seeds for seeds in by_row.values() if len(seeds) > 1]
    assert repeated and all(len(set(s)) == len(s) for s in repeated)
    assert _epoch(EpochSampler(50, seed=9, rows=rows), 2) == items  # a function of (seed, epoch)
    assert [i for i, _ in _epoch(sampler, 3)] != [i for i, _ in items]


def test_row_sampler_epochs_follow_set_epoch_and_resume_mid_epoch():
    rows = build_sampler("progressive", _targets(), task="colour", epochs=3, seed=1)
    sampler = EpochSampler(50, seed=0, rows=rows)
    first, last = _epoch(sampler, 0), _epoch(sampler, 2)
    share = [sum(1 for i, _ in e if i >= 48) / len(e) for e in (first, last)]
    assert share[0] < 0.15 and share[1] > 0.2  # instance-like at first, balanced at the end
    sampler.resume_at(2, 17)
    assert _epoch(sampler, 2) == last[17:]
    assert _epoch(sampler, 2) == last  # the skip applies once


@pytest.mark.parametrize("world", [2, 3])
def test_row_sampler_ranks_take_disjoint_equal_slices_of_one_draw(world):
    shares = []
    for rank in range(world):
        rows = build_sampler(
            "sqrt", _targets(), task="colour", seed=2, rank=rank, num_replicas=world
        )
        sampler = EpochSampler(50, seed=7, rows=rows)
        shares.append(_epoch(sampler, 1))
        assert len(shares[-1]) == len(sampler) == -(-50 // world)
    whole = build_sampler("sqrt", _targets(), task="colour", seed=2, rank=0, num_replicas=world)
    whole.set_epoch(1)
    draw = whole.epoch_draw()
    for rank, share in enumerate(shares):
        assert [i for i, _ in share] == draw[rank::world].tolist()
    seeds = [s for share in shares for _, s in share]
    assert len(set(seeds)) == len(seeds)  # every position its own augmentation


def test_default_sampler_keeps_the_classic_permutation():
    cfg = TrainConfig.from_dict(toy_config(Path("m.parquet"), Path("run")))
    assert cfg.sampler.is_default
    assert not TrainConfig.from_dict(
        toy_config(Path("m.parquet"), Path("run"), sampler={"name": "instance", "num_samples": 9})
    ).sampler.is_default


# -- in real training ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return toy_data(tmp_path_factory.mktemp("sampler"), n_train=96, n_val=16)


def _record_batches(monkeypatch) -> list[dict]:
    """Patch the training step to remember each batch's rows and colour labels."""
    seen: list[dict] = []
    step = MultiTaskModule.training_step

    def recording(self, batch, batch_idx):
        seen.append(
            {
                "epoch": self.current_epoch,
                "index": batch["index"].tolist(),
                "colour": batch["targets"]["colour"].tolist(),
            }
        )
        return step(self, batch, batch_idx)

    monkeypatch.setattr(MultiTaskModule, "training_step", recording)
    return seen


def test_class_balanced_sampler_in_a_fit_yields_balanced_epochs(data, tmp_path, monkeypatch):
    seen = _record_batches(monkeypatch)
    sampler = {"name": "class-balanced", "task": "colour"}
    cfg = TrainConfig.from_dict(
        toy_config(data, tmp_path / "run", epochs=2, batch_size=16, sampler=sampler)
    )
    fit(cfg)
    train = Manifest.read(data).split("train").df
    natural = train["colour"].value_counts(normalize=True)
    assert natural["red"] > 0.4 and natural["blue"] < 0.3  # the toy data is imbalanced
    colours = []
    for epoch in (0, 1):
        rows = [i for b in seen if b["epoch"] == epoch for i in b["index"]]
        colours += [c for b in seen if b["epoch"] == epoch for c in b["colour"]]
        assert len(rows) == 96
        expected = build_sampler("class-balanced", {"colour": _codes(train)}, task="colour")
        expected.set_epoch(epoch)
        assert rows == expected.epoch_draw().tolist()  # the loader yields the sampler's draw
        assert len(set(rows)) < len(rows)  # with replacement: rare images repeat
    shares = {c: n / len(colours) for c, n in Counter(colours).items()}
    assert all(0.29 < s < 0.38 for s in shares.values()), shares  # instance: 0.46 / 0.28 / 0.26


def _codes(train) -> np.ndarray:
    return np.array([list(COLOURS).index(c) for c in train["colour"]])


class CrashError(RuntimeError):
    """Stands in for a killed process."""


def test_resume_mid_epoch_with_a_progressive_sampler_matches_the_uninterrupted_run(
    tmp_path, monkeypatch
):
    data = toy_data(tmp_path / "data", n_train=32, n_val=8)

    def config(out: Path) -> TrainConfig:
        cfg = toy_config(
            data,
            out,
            epochs=2,
            checkpoint_every_n_steps=5,
            sampler={"name": "progressive", "task": "colour"},
        )
        cfg["model"]["head"] = {"hidden": [8], "dropout": 0.2}
        return TrainConfig.from_dict(cfg)

    reference = fit(config(tmp_path / "ref"))
    step = MultiTaskModule.training_step

    def crash_at_step_6(self, batch, batch_idx):
        if self.global_step == 6:
            raise CrashError("killed")
        return step(self, batch, batch_idx)

    monkeypatch.setattr(MultiTaskModule, "training_step", crash_at_step_6)
    with pytest.raises(CrashError):
        fit(config(tmp_path / "run"))
    monkeypatch.undo()
    last = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=False)
    assert last["global_step"] == 5  # 4 steps per epoch: one batch into epoch 1
    assert last["attire_train_loader"] == {"epoch": 1, "batches": 1}

    resumed = fit(config(tmp_path / "run"), resume=True)
    assert resumed.metrics == reference.metrics
    ref_w = load_file(str(reference.export_dir / "weights.safetensors"))
    new_w = load_file(str(resumed.export_dir / "weights.safetensors"))
    assert all(torch.equal(ref_w[k], new_w[k]) for k in ref_w)


def test_a_sampler_task_that_is_not_trained_is_named(data, tmp_path):
    sampler = {"name": "sqrt", "task": "colr"}
    cfg = TrainConfig.from_dict(toy_config(data, tmp_path / "run", sampler=sampler))
    with pytest.raises(ConfigError, match=r"field 'sampler'.*'colr'"):
        fit(cfg)
