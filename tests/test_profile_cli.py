"""`attire profile`: a backbone name or a checkpoint folder, exact counts, clear errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import attire.cli.profile  # noqa: F401  (registers the command)
from attire.cli.apps import app
from attire.evaluation.profile import count_flops
from attire.models.checkpoint import CheckpointMeta, Preprocessing, save_checkpoint
from attire.models.multitask import ModelConfig, MultiTaskModel
from attire.taxonomy import Taxonomy, load_taxonomy
from test_training import single_thread  # noqa: F401  (autouse fixture)

FAST = ["--max-seconds", "0.3", "--batch-sizes", "1", "--batch-sizes", "2", "--device", "cpu"]


def profile(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["profile", *args])
    return result.exit_code, " ".join(result.output.split())


def test_backbone_name_profiles_the_multitask_network(tmp_path):
    code, output = profile("drn_c_tiny", "--size", "32", "--json", str(tmp_path / "p.json"), *FAST)
    assert code == 0, output
    assert "attire profile: drn_c_tiny" in output
    record = json.loads((tmp_path / "p.json").read_text())
    model = MultiTaskModel(load_taxonomy(), ModelConfig(backbone="drn_c_tiny"))
    assert record["name"] == "drn_c_tiny"
    assert record["input_size"] == 32
    assert record["params"] == sum(p.numel() for p in model.parameters())
    assert record["gflops"] * 1e9 == pytest.approx(count_flops(model, 32))
    assert [t["batch_size"] for t in record["inference"]] == [1, 2]
    assert record["latency_b1_p50_ms"] > 0 and record["best_throughput"] > 0
    assert record["train"] is None


def test_backbone_default_size_is_its_own_input_size(tmp_path):
    code, output = profile("drn_c_tiny", "--json", str(tmp_path / "p.json"), *FAST)
    assert code == 0, output
    assert json.loads((tmp_path / "p.json").read_text())["input_size"] == 64  # drn_c_tiny's


def test_checkpoint_folder_at_its_input_size(tmp_path):
    taxonomy = Taxonomy.from_dict(
        {
            "name": "toy",
            "tasks": [
                {"name": "colour", "classes": [{"id": "red"}, {"id": "blue"}]},
                {"name": "fit", "classes": [{"id": "slim"}, {"id": "loose"}, {"id": "boxy"}]},
            ],
        }
    )
    cfg = ModelConfig(backbone="drn_d_tiny", head={"hidden": [8]})
    model = MultiTaskModel(taxonomy, cfg)
    meta = CheckpointMeta(
        model=cfg.model_dump(mode="json"),
        preprocessing=Preprocessing(
            input_size=40, cache_size=40, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
        ),
    )
    ckpt = save_checkpoint(tmp_path / "model", model, meta)
    code, output = profile(str(ckpt), "--json", str(tmp_path / "p.json"), "--train", *FAST)
    assert code == 0, output
    record = json.loads((tmp_path / "p.json").read_text())
    assert record["name"] == "model"
    assert record["input_size"] == 40
    assert record["params"] == sum(p.numel() for p in model.parameters())
    assert record["gflops"] * 1e9 == pytest.approx(count_flops(model.eval(), 40))
    assert record["train"] is not None and record["train_throughput"] > 0


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_neither_checkpoint_nor_backbone_is_a_clear_error(tmp_path, kind):
    target = tmp_path / "resnet_9000"
    if kind == "file":
        target.write_text("not a model")
    code, output = profile(str(target))
    assert code == 2
    assert f"error: {target}: neither a checkpoint folder" in output
    assert "nor a known backbone name" in output
    assert ("a file" if kind == "file" else "not a folder") in output


def test_unknown_name_and_incomplete_folder(tmp_path):
    code, output = profile("resnet_9000")
    assert code == 2 and "error: resnet_9000: neither a checkpoint folder" in output
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "attire.json").write_text("{}")
    code, output = profile(str(tmp_path / "half"))
    assert code == 2
    assert "not an attire checkpoint folder (missing weights.safetensors)" in output
