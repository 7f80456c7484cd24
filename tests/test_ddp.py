"""Distributed data parallel: 2 CPU processes on gloo through Lightning's own launcher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from attire.data.manifest import Manifest
from attire.training import sampling
from attire.training.sampling import EpochSampler
from test_training import (
    single_thread,  # noqa: F401  (autouse fixture)
    toy_config,
    toy_data,
)

# `attire train`, recording what each rank trains on, with a NaN image on rank 1 only once.
DDP_TRAIN = """
import json, os, sys
from pathlib import Path
from attire.training import module

step = module.MultiTaskModule.training_step

def recording_step(self, batch, batch_idx):
    seen = Path(os.environ["SEEN_DIR"]) / f"rank{self.global_rank}.jsonl"
    row = {
        "epoch": self.current_epoch,
        "index": batch["index"].tolist(),
        "background": int((batch["targets"]["background"] >= 0).sum()),
    }
    with seen.open("a") as f:
        f.write(json.dumps(row) + "\\n")
    if self.global_rank == 1 and self.current_epoch == 0 and batch_idx == 1:
        batch["image"][0] = float("nan")  # the other rank must skip this step too
    return step(self, batch, batch_idx)

module.MultiTaskModule.training_step = recording_step
from attire.cli.main import app
app(["train", *sys.argv[1:]])
"""


@pytest.mark.parametrize(("world", "pad"), [(2, True), (3, True), (3, False)])
def test_epoch_sampler_gives_each_rank_a_disjoint_share(monkeypatch, world, pad):
    shares = []
    for rank in range(world):
        monkeypatch.setattr(sampling, "_shard", lambda rank=rank: (rank, world))
        sampler = EpochSampler(10, seed=5, pad=pad, shuffle=pad)
        sampler.set_epoch(1)
        shares.append([i for i, _ in sampler])
        assert len(shares[-1]) == len(sampler)
    flat = [i for share in shares for i in share]
    assert sorted(set(flat)) == list(range(10))
    if pad:  # equal shares, so every rank steps as often; a few items twice
        assert len({len(s) for s in shares}) == 1
        assert len(flat) == -(-10 // world) * world
    else:  # validation: nothing seen twice
        assert len(flat) == 10


def test_ddp_on_two_cpu_processes(tmp_path):
    data = toy_data(tmp_path / "data", n_train=32, n_val=8)
    manifest = Manifest.read(data)
    # 3 rows in 4 lack `background`: some batches have none, so uncertainty weighting's
    # background parameter gets no gradient there, which plain DDP refuses
    manifest.df.loc[manifest.df.index % 4 != 0, "background"] = None
    manifest.write(data)
    cfg = toy_config(
        data,
        tmp_path / "run",
        epochs=2,
        batch_size=4,
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        loss={"weighting": "uncertainty"},
    )
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_TRAIN)
    seen_dir = tmp_path / "seen"
    seen_dir.mkdir()
    env = {**os.environ, "SEEN_DIR": str(seen_dir), "OMP_NUM_THREADS": "1"}
    # own session: on a hang, the whole group (Lightning's rank-1 child too) is killed
    proc = subprocess.Popen(
        [sys.executable, str(script), str(cfg_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stderr = proc.communicate(timeout=180)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("DDP training hung (a rank waiting for a gradient the other never sent?)")
    assert proc.returncode == 0, stderr[-4000:]

    rows = {
        rank: [
            json.loads(line) for line in (seen_dir / f"rank{rank}.jsonl").read_text().splitlines()
        ]
        for rank in (0, 1)
    }
    for epoch in (0, 1):
        shares = [
            [i for row in rows[rank] if row["epoch"] == epoch for i in row["index"]]
            for rank in (0, 1)
        ]
        assert len(shares[0]) == len(shares[1]) == 16
        assert not set(shares[0]) & set(shares[1])  # the ranks saw different images
        assert set(shares[0]) | set(shares[1]) == set(range(32))
    assert any(row["background"] == 0 for r in rows.values() for row in r)

    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints",
        "config.json",
        "logs",
        "metrics.json",
        "model",
        "tensorboard",
    ]  # one export, no leftovers of a second writer
    meta = json.loads((run / "model/attire.json").read_text())
    assert meta["extra"]["skipped_steps"] == 1
    assert meta["extra"]["global_steps"] == 2 * 4
    assert (run / "model/weights.safetensors").stat().st_size > 0
    assert json.loads((run / "metrics.json").read_text())["val/acc_mean"] >= 0


def test_uses_find_unused_parameters_strategy_for_uncertainty_weighting(tmp_path: Path):
    """The config the DDP run above relies on is resolved, not passed through."""
    from attire.losses import build_multitask_loss
    from attire.taxonomy import Taxonomy
    from attire.training.config import TrainConfig
    from attire.training.fit import resolve_strategy
    from test_training import TOY_TAXONOMY

    cfg = TrainConfig.from_dict(toy_config(tmp_path / "m.parquet", tmp_path, strategy="ddp"))
    loss = build_multitask_loss(Taxonomy.from_dict(TOY_TAXONOMY), {"weighting": "uncertainty"})
    assert resolve_strategy(cfg, loss) == "ddp_find_unused_parameters_true"
