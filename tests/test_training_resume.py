"""Kill training with SIGKILL mid-epoch, resume, and get exactly the uninterrupted run's result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from attire.cli.main import app
from attire.training import checkpointing
from attire.training.checkpointing import AtomicCheckpointIO, remove_stale_temps
from attire.training.config import TrainConfig
from attire.training.fit import fit
from attire.training.sampling import EpochSampler
from test_training import (
    single_thread,  # noqa: F401  (autouse fixture)
    toy_config,
    toy_data,
)

STEPS_PER_EPOCH = 4  # 32 train images, batch 8

# Runs `attire train` with a pause in every step, so the test can kill it mid-epoch.
SLOW_TRAIN = """
import sys, time
from attire.training import module

step = module.MultiTaskModule.training_step

def slow_step(self, batch, batch_idx):
    time.sleep(1.0)
    return step(self, batch, batch_idx)

module.MultiTaskModule.training_step = slow_step
from attire.cli.main import app
app(["train", *sys.argv[1:]])
"""


def _run_config(data: Path, out: Path) -> dict:
    cfg = toy_config(
        data,
        out,
        epochs=2,
        checkpoint_every_n_steps=2,
        ema_decay=0.8,
        loss={"weighting": "gradnorm"},  # weighting state must survive the restart too
    )
    cfg["model"]["head"] = {"hidden": [8], "dropout": 0.2}
    return cfg


def _all_checkpoints_load(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.ckpt"))
    for f in files:
        torch.load(f, weights_only=False)  # raises on a truncated file
    return files


def _kill_at_first_checkpoint(proc: subprocess.Popen, ckpt: Path, seen: list[str]) -> None:
    """Watcher thread: SIGKILL `proc` as soon as `ckpt` exists (or give up after 120 s)."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if ckpt.exists():
            seen.append("checkpoint")
            proc.send_signal(signal.SIGKILL)
            return
        time.sleep(0.02)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    data = toy_data(tmp_path / "data", n_train=32, n_val=16)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(_run_config(data, tmp_path / "run")))
    script = tmp_path / "slow_train.py"
    script.write_text(SLOW_TRAIN)
    last = tmp_path / "run/checkpoints/last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(cfg_path)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # as this process: same float reductions
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    seen: list[str] = []
    watcher = threading.Thread(target=_kill_at_first_checkpoint, args=(proc, last, seen))
    watcher.start()
    try:
        # the uninterrupted run, while the other one starts up
        reference = fit(TrainConfig.from_dict(_run_config(data, tmp_path / "ref")))
        watcher.join(timeout=120)
        stderr = proc.communicate(timeout=30)[1].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert seen == ["checkpoint"], stderr[-3000:]
    assert proc.returncode == -signal.SIGKILL

    killed_at = torch.load(last, weights_only=False)["global_step"]
    assert killed_at % STEPS_PER_EPOCH != 0, "the kill should land mid-epoch"
    assert _all_checkpoints_load(last.parent) == [last]
    assert not (tmp_path / "run/model").exists()

    res = CliRunner().invoke(app, ["train", str(cfg_path), "--resume"])
    assert res.exit_code == 0, res.output

    # Exact on CPU: same data order, same augmentation, same dropout, same optimizer/EMA/GradNorm
    # state as the uninterrupted run.
    resumed = json.loads((tmp_path / "run/metrics.json").read_text())
    assert resumed == reference.metrics
    ref_w = load_file(str(reference.export_dir / "weights.safetensors"))
    new_w = load_file(str(tmp_path / "run/model/weights.safetensors"))
    assert ref_w.keys() == new_w.keys()
    assert all(torch.equal(ref_w[k], new_w[k]) for k in ref_w)
    assert _all_checkpoints_load(last.parent) == [last]
    assert not list(last.parent.glob(".*"))  # no temp file left behind
    # the resumed run added a log version instead of wiping the first one
    assert (tmp_path / "run/logs/version_0/metrics.csv").exists()
    assert (tmp_path / "run/logs/version_1/metrics.csv").exists()


def test_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "ckpt/last.ckpt"
    io.save_checkpoint({"step": 1}, target)

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpointing.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=False) == {"step": 1}
    assert os.listdir(target.parent) == ["last.ckpt"]


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    stale = tmp_path / f".last.ckpt.{dead.stdout.strip()}.tmp"
    live = tmp_path / f".last.ckpt.{os.getpid()}.tmp"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [stale]
    assert live.exists() and not stale.exists()


def test_epoch_order_is_a_function_of_seed_and_epoch_and_resumes_mid_epoch():
    def epoch(sampler: EpochSampler, e: int) -> list[tuple[int, int]]:
        sampler.set_epoch(e)
        sampler.begin_epoch()
        return list(sampler)

    a, b = EpochSampler(20, seed=3), EpochSampler(20, seed=3)
    assert epoch(a, 0) == epoch(b, 0)
    assert epoch(a, 1) == epoch(b, 1)
    assert [i for i, _ in epoch(a, 0)] != [i for i, _ in epoch(a, 1)]
    assert sorted(i for i, _ in epoch(a, 2)) == list(range(20))
    # an image's augmentation seed depends on (seed, epoch, image), not on its position
    assert dict(epoch(a, 0)) != dict(epoch(a, 1))
    full = epoch(a, 4)
    a.resume_at(4, 7)
    assert epoch(a, 4) == full[7:]
    assert epoch(a, 4) == full  # the skip applies once
    a.resume_at(4, 7)
    assert epoch(a, 5) == epoch(b, 5)  # a resume point of another epoch is ignored
