"""The cost profiler: counts are exact, timing honours its iteration and time budgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn

from attire.errors import AttireError
from attire.evaluation import (
    FLOPS_NOTE,
    markdown_table,
    profile_backbone,
    profile_model,
    rich_table,
)
from attire.models.multitask import ModelConfig, MultiTaskModel
from attire.taxonomy import load_taxonomy

TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")


def small_net() -> nn.Sequential:
    """conv 3->8 (3x3, bias) + BN(8) + ReLU + pool + linear 8->5: 224 + 16 + 45 = 285 params."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )


class CallLog(nn.Module):
    """small_net that records the batch size of every forward call."""

    def __init__(self) -> None:
        super().__init__()
        self.net = small_net()
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.net(x)


class Slow(nn.Module):
    """Sleeps 10 ms per image, so its cost per call is known."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.01 * x.shape[0])
        return self.fc(x.mean(dim=(2, 3)))


def quick(**kw):
    return {"warmup": 1, "iters": 3, "max_seconds": 30.0, **kw}


def test_params_are_the_parameter_count():
    model = small_net()
    result = profile_model(model, 16, batch_sizes=(1,), **quick())
    assert result.params == 285 == sum(p.numel() for p in model.parameters())


def test_linear_flops_are_two_per_multiply_add():
    size, out = 4, 10
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, out))
    result = profile_model(model, size, batch_sizes=(1,), **quick())
    assert result.gflops * 1e9 == pytest.approx(2 * 3 * size * size * out)
    assert "multiply-add counts as 2" in FLOPS_NOTE


def test_conv_flops_follow_the_hand_formula():
    # stride 2 on 32 px -> 16x16 outputs, each a 3x3x3 dot product; BN and ReLU are not counted.
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    result = profile_model(model, 32, batch_sizes=(2,), **quick())
    assert result.gflops * 1e9 == pytest.approx(2 * 8 * 16 * 16 * 3 * 3 * 3)


def test_iteration_counts_are_honoured_and_timings_positive():
    model = CallLog()
    result = profile_model(
        model,
        8,
        batch_sizes=(4, 1),
        warmup=2,
        iters=5,
        max_seconds=60.0,
        train=True,
        train_batch_size=4,
    )
    assert [t.batch_size for t in result.inference] == [1, 4]
    for t in [*result.inference, result.train]:
        assert (t.iters, t.warmup, t.truncated) == (5, 2, False)
        assert t.seconds > 0 and t.throughput > 0 and 0 < t.p50_ms <= t.p95_ms
    # One FLOP-counting call, then 2 + 5 calls per measurement; training ran on a copy.
    assert model.batches == [1] + [1] * 7 + [4] * 7
    assert result.latency is result.inference[0]
    assert result.best.throughput == max(t.throughput for t in result.inference)


def test_max_seconds_cuts_iterations_skips_and_shrinks_batches():
    budget = 0.35
    start = time.perf_counter()
    result = profile_model(
        Slow(),
        8,
        batch_sizes=(1, 2, 64),
        warmup=2,
        iters=10_000,
        max_seconds=budget,
        train=True,
        train_batch_size=32,
    )
    elapsed = time.perf_counter() - start
    assert [t.batch_size for t in result.inference] == [1, 2]  # 64 x 10 ms would not fit
    assert any("batch 64 skipped" in n for n in result.notes)
    for t in result.inference:
        assert t.truncated and 1 <= t.iters < 10_000
        assert t.wall_s <= budget + 0.1
    # 3 x 10 ms x batch, warm-up + timed, must fit 0.35 s: 32 -> 16 -> 8 -> 4.
    assert result.train.batch_size == 4
    assert any("shrunk from 32 to 4" in n for n in result.notes)
    assert elapsed < 30.0  # unbounded: 10,000 x 10 ms at batch 1 alone is 100 s (loose: busy CI)


def test_training_leaves_the_callers_model_alone():
    model = small_net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = profile_model(model, 16, batch_sizes=(1,), train=True, train_batch_size=4, **quick())
    assert result.train is not None and result.train.throughput > 0
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_cpu_peak_memory_sees_a_large_allocation():
    class Hungry(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scratch = torch.ones(16 * 2**20)  # 64 MiB, touched
            return self.fc(x.mean(dim=(2, 3))) + scratch[:1]

    result = profile_model(Hungry(), 8, batch_sizes=(1,), **quick())
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("peak RSS cannot be reset on this platform")
    assert result.inference[0].peak_memory_mb >= 48
    assert "RSS" in result.memory_measure


def test_threads_bf16_and_bad_arguments():
    threads = torch.get_num_threads()
    result = profile_model(small_net(), 16, batch_sizes=(1,), threads=1, bf16=True, **quick())
    assert "1 torch threads" in result.device
    assert result.precision == "bf16 autocast"
    assert torch.get_num_threads() == threads
    with pytest.raises(AttireError, match="iters must be >= 1"):
        profile_model(small_net(), 16, iters=0)
    with pytest.raises(AttireError, match="batch sizes must be >= 1"):
        profile_model(small_net(), 16, batch_sizes=(0, 4))


def test_profile_backbone_costs_the_multitask_network():
    result = profile_backbone(
        "drn_c_tiny", 32, batch_sizes=(1, 4), train=True, train_batch_size=4, **quick()
    )
    net = MultiTaskModel(load_taxonomy(), ModelConfig(backbone="drn_c_tiny"))
    assert result.name == "drn_c_tiny"
    assert result.params == sum(p.numel() for p in net.parameters())
    assert result.gflops > 0 and result.train.throughput > 0
    data = json.loads(json.dumps(result.to_dict()))
    assert data["latency_b1_p50_ms"] == result.latency.p50_ms
    assert data["train_batch_size"] == 4 and data["inference"][1]["iters"] == 3

    md = markdown_table([result])
    row = next(line for line in md.splitlines() if line.startswith("| drn_c_tiny"))
    assert row.count("|") == md.splitlines()[0].count("|")
    assert "(b4)" in row
    console = Console(record=True, width=200)
    console.print(rich_table([result]))
    assert "drn_c_tiny" in console.export_text()


@pytest.mark.skipif(not TCMALLOC.exists(), reason="libtcmalloc-minimal4 not installed")
def test_device_description_names_a_preloaded_tcmalloc():
    code = "from attire.evaluation import describe_device; print(describe_device('cpu'))"
    env = {**os.environ, "LD_PRELOAD": str(TCMALLOC)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().endswith("tcmalloc")
