"""Training end to end on a tiny learnable dataset (coloured shapes, 32 px, drn_c_tiny, CPU).

`toy_data` and `toy_config` are shared with the resume, DDP and predict tests.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from typer.testing import CliRunner

from attire.cli.main import app
from attire.data.manifest import Manifest
from attire.losses import TaskLoss, build_multitask_loss
from attire.models.multitask import ModelConfig, MultiTaskModel
from attire.taxonomy import Taxonomy
from attire.training import fit as fit_module
from attire.training.config import ConfigError, OptimConfig, TrainConfig
from attire.training.fit import fit, resolve_precision, resolve_strategy
from attire.training.module import MultiTaskModule, warmup_cosine

REPO = Path(__file__).resolve().parents[1]
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 70, 230)}
TOY_TAXONOMY = {
    "name": "toy",
    "tasks": [
        {"name": "colour", "classes": [{"id": c} for c in COLOURS]},
        {"name": "size", "classes": [{"id": "small"}, {"id": "big"}]},
        {"name": "background", "classes": [{"id": "dark"}, {"id": "light"}]},
    ],
}
TASKS = ("colour", "size", "background")


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """One intra-op thread: on a shared 2-core machine, torch's thread pool waiting for a
    descheduled worker makes each tiny op take a scheduler time slice (20x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _draw(colour: str, size: str, background: str, rng: np.random.Generator) -> Image.Image:
    """A 32 px square or disc of `colour` and `size` somewhere on a dark or light background.

    Every class is visible to a globally pooled CNN (a left/right task would not be)."""
    grey = rng.integers(30, 80) if background == "dark" else rng.integers(170, 230)
    im = Image.new("RGB", (32, 32), tuple(int(grey + v) for v in rng.integers(-10, 10, 3)))
    r = (3.2 if size == "small" else 7.7) + rng.uniform(-0.5, 0.5)
    cx, cy = rng.uniform(9, 23, 2)
    draw = ImageDraw.Draw(im)
    box = [cx - r, cy - r, cx + r, cy + r]
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=COLOURS[colour])
    return im


def toy_data(
    root: Path, n_train: int = 160, n_val: int = 48, seed: int = 0, unlabelled: int = 0
) -> Path:
    """Write images and a split manifest; classes are imbalanced (a majority baseline exists).
    The first `unlabelled` train rows carry no label for any task."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n_train + n_val):
        labels = {
            "colour": str(rng.choice(list(COLOURS), p=[0.5, 0.3, 0.2])),
            "size": str(rng.choice(["small", "big"], p=[0.65, 0.35])),
            "background": str(rng.choice(["dark", "light"], p=[0.6, 0.4])),
        }
        image = _draw(labels["colour"], labels["size"], labels["background"], rng)
        image.save(root / f"img/{i}.png")
        if i < unlabelled:
            labels = {t: None for t in TASKS}
        split = "train" if i < n_train else "val"
        records.append({"image_id": str(i), "path": f"img/{i}.png", **labels, "split": split})
    manifest = Manifest.from_records(records, Taxonomy.from_dict(TOY_TAXONOMY), root)
    return manifest.write(root / "manifest.parquet")


def toy_config(manifest: Path, out_dir: Path, **fields) -> dict:
    """A quick run's config as a dict; `fields` replace top-level entries."""
    cfg = {
        "data": {
            "manifest": str(manifest),
            "image_size": 32,
            "workers": 0,
            "cache_dir": str(manifest.parent / "cache"),
        },
        "model": {"backbone": "drn_c_tiny"},
        "optim": {"lr": 3e-3, "warmup_epochs": 0.5},
        "epochs": 1,
        "batch_size": 8,
        "log_every_n_steps": 1,
        "out_dir": str(out_dir),
    }
    cfg.update(fields)
    return cfg


def _export_meta(result) -> dict:
    return json.loads((result.export_dir / "attire.json").read_text())


# -- one learning run, looked at from several sides -----------------------------------------------

LR, MIN_RATIO, BACKBONE_MULT = 1e-2, 0.05, 0.5


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    root = tmp_path_factory.mktemp("learn")
    manifest = toy_data(root)
    cfg = TrainConfig.from_dict(
        toy_config(
            manifest,
            root / "run",
            epochs=4,
            batch_size=16,
            model={"backbone": "test_efficientnet"},
            ema_decay=0.9,
            checkpoint_every_n_steps=3,
            optim={
                "lr": LR,
                "warmup_epochs": 1,
                "min_lr_ratio": MIN_RATIO,
                "backbone_lr_mult": BACKBONE_MULT,
            },
        )
    )
    return cfg, fit(cfg), Manifest.read(manifest)


def test_small_model_beats_majority_baseline_on_every_task(learned):
    _, result, manifest = learned
    val = manifest.split("val").df
    for task in TASKS:
        majority = val[task].value_counts(normalize=True).max()
        assert result.metrics[f"val/acc_{task}"] > majority + 0.1, (task, majority)


def test_run_folder_has_logs_metrics_and_export(learned):
    cfg, result, _ = learned
    out = cfg.out_dir
    rows = list(csv.DictReader((out / "logs/version_0/metrics.csv").open()))
    columns = set(rows[0])
    assert {f"train/loss_{t}" for t in TASKS} <= columns  # the per-task losses the bar shows
    assert {f"val/acc_{t}" for t in TASKS} <= columns
    assert list((out / "tensorboard/version_0").glob("events.out.tfevents.*"))
    assert json.loads((out / "metrics.json").read_text()) == result.metrics
    assert json.loads((out / "config.json").read_text())["epochs"] == 4
    assert {p.name for p in result.export_dir.iterdir()} == {
        "weights.safetensors",
        "attire.json",
        "taxonomy.yaml",
    }
    assert _export_meta(result)["extra"]["global_steps"] == 40


def test_per_task_losses_are_logged_only_on_the_steps_the_loggers_write(tmp_path, monkeypatch):
    # each value costs Lightning ~0.6 ms a step; a test on the wrong steps would leave the
    # written rows without them
    calls: list[str] = []
    real_log = MultiTaskModule.log

    def counting_log(self, name, *args, **kwargs):
        calls.append(name)
        return real_log(self, name, *args, **kwargs)

    monkeypatch.setattr(MultiTaskModule, "log", counting_log)
    manifest = toy_data(tmp_path, n_train=96, n_val=16)
    cfg = toy_config(manifest, tmp_path / "run", log_every_n_steps=3)  # 12 steps
    fit(TrainConfig.from_dict(cfg))
    assert calls.count("train/loss") == 12
    assert all(calls.count(f"train/loss_{t}") == 4 for t in TASKS)
    rows = list(csv.DictReader((tmp_path / "run/logs/version_0/metrics.csv").open()))
    written = [r for r in rows if r.get("train/loss")]
    assert [int(r["step"]) for r in written] == [2, 5, 8, 11]
    assert all(r[f"train/loss_{t}"] and r[f"weight/{t}"] for r in written for t in TASKS)


def test_lr_warms_up_linearly_then_decays_to_min_ratio_backbone_lower(learned):
    cfg, _, _ = learned
    rows = list(csv.DictReader((cfg.out_dir / "logs/version_0/metrics.csv").open()))
    heads = [float(r["lr-AdamW/heads"]) for r in rows if r.get("lr-AdamW/heads")]
    backbone = [float(r["lr-AdamW/backbone"]) for r in rows if r.get("lr-AdamW/backbone")]
    assert len(heads) == 40  # one per optimizer step
    warmup = 10  # one epoch of 10 steps
    assert heads[:warmup] == pytest.approx([LR * (k + 1) / warmup for k in range(warmup)])
    decay = heads[warmup - 1 :]
    assert all(a >= b for a, b in itertools.pairwise(decay))
    assert heads[-1] == pytest.approx(LR * MIN_RATIO)
    assert backbone == pytest.approx([h * BACKBONE_MULT for h in heads])


def test_warmup_cosine_factor_shape():
    f = warmup_cosine(total=20, warmup=4, min_ratio=0.1)
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(4) == pytest.approx(1.0)
    assert f(19) == pytest.approx(0.1)
    assert f(11) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 15)))
    no_warmup = warmup_cosine(total=10, warmup=0, min_ratio=0.0)
    assert no_warmup(0) == 1.0 and no_warmup(9) == pytest.approx(0.0)


def test_exported_weights_are_the_ema_weights(learned):
    cfg, result, _ = learned
    ckpt = torch.load(cfg.out_dir / "checkpoints/last.ckpt", weights_only=False)
    exported = load_file(str(result.export_dir / "weights.safetensors"))
    ema, raw = ckpt["state_dict"], ckpt["current_model_state"]
    for key, value in exported.items():
        assert torch.equal(value, ema[f"model.{key}"]), key
    differs = [k for k, v in exported.items() if not torch.equal(v, raw[f"model.{k}"])]
    assert len(differs) > len(exported) // 2  # the raw (non-averaged) weights were not exported


def test_last_checkpoint_is_written_at_epoch_end_too(learned):
    """With checkpoint_every_n_steps=3, Lightning's ModelCheckpoint would stop saving at epoch
    ends (40 steps is no multiple of 3)."""
    cfg, _, _ = learned
    ckpt = torch.load(cfg.out_dir / "checkpoints/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 40
    assert ckpt["epoch"] == 3


# -- reproducibility, precision, early stopping ---------------------------------------------------


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    return toy_data(tmp_path_factory.mktemp("small"), n_train=32, n_val=16)


def test_same_seed_same_metrics_and_weights(small_data, tmp_path):
    head = {"hidden": [8], "dropout": 0.3}  # dropout: step randomness must be seeded too

    def run(name: str, seed: int):
        model = {"backbone": "drn_c_tiny", "head": head}
        cfg = toy_config(small_data, tmp_path / name, seed=seed, epochs=2, model=model)
        res = fit(TrainConfig.from_dict(cfg))
        return res.metrics, load_file(str(res.export_dir / "weights.safetensors"))

    (m1, w1), (m2, w2), (m3, w3) = run("a", 1), run("b", 1), run("c", 2)
    assert m1 == m2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert m1["train/loss"] != m3["train/loss"]
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)


def test_bf16_mixed_on_cpu_with_gradient_accumulation(small_data, tmp_path):
    cfg = toy_config(small_data, tmp_path / "bf16", precision="bf16-mixed", accumulate=2)
    result = fit(TrainConfig.from_dict(cfg))
    assert _export_meta(result)["extra"]["global_steps"] == 2  # 4 batches, 2 per step
    assert all(math.isfinite(v) for v in result.metrics.values())


def test_precision_auto_is_bf16_where_native_else_32(monkeypatch, small_data, tmp_path):
    cfg = TrainConfig.from_dict(toy_config(small_data, tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(fit_module, "cpu_has_bf16", lambda: False)
    assert resolve_precision(cfg) == "32-true"
    monkeypatch.setattr(fit_module, "cpu_has_bf16", lambda: True)
    assert resolve_precision(cfg) == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision(cfg) == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision(cfg) == "16-mixed"
    on_cpu = cfg.model_copy(update={"accelerator": "cpu"})
    assert resolve_precision(on_cpu) == "bf16-mixed"  # this CPU has native bf16 (patched above)
    monkeypatch.setattr(fit_module, "cpu_has_bf16", lambda: False)
    assert resolve_precision(on_cpu) == "32-true"
    assert resolve_precision(cfg.model_copy(update={"precision": "bf16-mixed"})) == "bf16-mixed"


def test_catavgmax_heads_are_built_on_twice_the_features():
    tax = Taxonomy.from_dict(TOY_TAXONOMY)
    model = MultiTaskModel(tax, ModelConfig(backbone="drn_c_tiny", global_pool="catavgmax"))
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 3, 64, 64))
    assert out["embedding"].shape == (2, 32)
    assert {h.fc.in_features for h in model.heads.values()} == {32}
    assert all(out[t.name].shape == (2, t.num_classes) for t in tax.tasks)


def test_channels_last_and_param_groups():
    tax = Taxonomy.from_dict(TOY_TAXONOMY)
    model = MultiTaskModel(tax, ModelConfig(backbone="drn_c_tiny"))
    loss = build_multitask_loss(tax, {"weighting": "uncertainty"})
    optim = OptimConfig(lr=0.01, backbone_lr_mult=0.1, warmup_epochs=0)
    module = MultiTaskModule(model, loss, optim)
    conv = next(p for p in model.backbone.parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)

    class FakeTrainer:  # configure_optimizers reads the schedule length from its trainer
        estimated_stepping_batches = 10
        max_epochs = 1

    trainer = FakeTrainer()
    module.trainer = trainer  # type: ignore[assignment]
    opt = module.configure_optimizers()["optimizer"]
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == pytest.approx({"backbone": 0.001, "heads": 0.01, "loss": 0.01})
    assert next(g for g in opt.param_groups if g["name"] == "loss")["weight_decay"] == 0.0


def test_early_stopping_stops_on_the_chosen_metric(small_data, tmp_path):
    # val/loss falls while learning, so with mode=max it never "improves" after epoch 0
    early = {"monitor": "val/loss", "mode": "max", "patience": 1}
    cfg = toy_config(small_data, tmp_path / "es", epochs=6, early_stopping=early)
    result = fit(TrainConfig.from_dict(cfg))
    assert _export_meta(result)["extra"]["epochs_run"] == 2


def test_strategy_ddp_finds_unused_parameters_only_when_the_loss_has_some(small_data, tmp_path):
    tax = Taxonomy.from_dict(TOY_TAXONOMY)
    uncertainty = build_multitask_loss(tax, {"weighting": "uncertainty"})
    static = build_multitask_loss(tax, {})
    cfg = TrainConfig.from_dict(toy_config(small_data, tmp_path, strategy="ddp"))
    assert resolve_strategy(cfg, uncertainty) == "ddp_find_unused_parameters_true"
    assert resolve_strategy(cfg, static) == "ddp"
    auto2 = cfg.model_copy(update={"strategy": "auto", "accelerator": "cpu", "devices": 2})
    assert resolve_strategy(auto2, uncertainty) == "ddp_find_unused_parameters_true"
    auto1 = cfg.model_copy(update={"strategy": "auto", "accelerator": "cpu", "devices": 1})
    assert resolve_strategy(auto1, uncertainty) == "auto"


def test_long_tail_and_embedding_losses_get_class_counts_epochs_and_embeddings(
    small_data, tmp_path, monkeypatch
):
    from attire.losses.long_tail import LDAMDRWLoss

    given, epochs = {}, []
    build = fit_module.build_multitask_loss

    def spy_build(taxonomy, cfg, counts):
        given.update(counts)
        return build(taxonomy, cfg, counts)

    set_epoch = LDAMDRWLoss.set_epoch

    def spy_set_epoch(self, epoch):
        epochs.append(epoch)
        set_epoch(self, epoch)

    monkeypatch.setattr(fit_module, "build_multitask_loss", spy_build)
    monkeypatch.setattr(LDAMDRWLoss, "set_epoch", spy_set_epoch)
    ldam = {"name": "ldam-drw", "drw_epoch": 1}
    loss = {"tasks": {"colour": {"loss": ldam}, "size": {"range": {"lambda": 0.1, "k": 1}}}}
    result = fit(
        TrainConfig.from_dict(toy_config(small_data, tmp_path / "run", epochs=2, loss=loss))
    )
    assert all(math.isfinite(v) for v in result.metrics.values())
    train = Manifest.read(small_data).split("train").df
    expected = [int((train["colour"] == c).sum()) for c in COLOURS]
    assert given["colour"].tolist() == expected
    assert sorted(set(epochs)) == [0, 1]


# -- bad input ------------------------------------------------------------------------------------


def test_bad_image_unlabelled_batches_and_nan_loss_do_not_stop_training(
    tmp_path, monkeypatch, caplog
):
    manifest_path = toy_data(tmp_path / "data", n_train=15, n_val=8, unlabelled=3)
    manifest = Manifest.read(manifest_path)
    broken = tmp_path / "data/img/broken.png"
    broken.write_bytes(b"this is not a PNG")
    row = {"image_id": "broken", "path": "img/broken.png", "colour": "red", "size": "big"}
    df = manifest.df
    df.loc[len(df)] = {**row, "background": "dark", "split": "train"}
    manifest.with_df(df).write(manifest_path)

    calls = {"n": 0}
    original = TaskLoss.forward

    def nan_once(self, logits, target, soft=None):
        loss, n = original(self, logits, target, soft)
        if torch.is_grad_enabled():  # training steps only, not validation
            calls["n"] += 1
            if calls["n"] == 7:  # the third stepped batch's first task
                return loss * float("nan"), n
        return loss, n

    monkeypatch.setattr(TaskLoss, "forward", nan_once)
    cfg = toy_config(manifest_path, tmp_path / "run", batch_size=1, loss={"weighting": "gradnorm"})
    with caplog.at_level(logging.WARNING):
        result = fit(TrainConfig.from_dict(cfg))

    log_text = caplog.text
    assert "broken.png" in log_text and "could not be decoded" in log_text
    assert "no label for any task" in log_text
    assert "non-finite loss" in log_text
    assert result.unlabelled_batches == 3
    assert result.skipped_steps == 1
    assert all(math.isfinite(v) for v in result.metrics.values())
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=False)
    # 15 decodable rows, batch size 1: the optimizer updated the weights 15 - 3 - 1 times
    adam_steps = {float(s["step"]) for s in ckpt["optimizer_states"][0]["state"].values()}
    assert adam_steps == {11.0}
    state = ckpt["state_dict"]
    # the NaN step's GradNorm update and BatchNorm statistics were rolled back
    assert torch.isfinite(state["loss.weighting.loss_weights"]).all()
    assert all(torch.isfinite(v).all() for k, v in state.items() if "running_" in k)


# -- config errors --------------------------------------------------------------------------------


def _valid(tmp_path: Path) -> dict:
    return toy_config(tmp_path / "manifest.parquet", tmp_path / "run")


@pytest.mark.parametrize(
    ("change", "field", "why"),
    [
        ({"optim": {"lrr": 0.1}}, "optim.lrr", "Extra inputs are not permitted"),
        ({"epochz": 3}, "epochz", "Extra inputs are not permitted"),
        ({"batch_size": 0}, "batch_size", "greater than or equal to 1"),
        ({"precision": "fp8"}, "precision", "Input should be"),
        ({"model": {"backbone": "resnet_99"}}, "model.backbone", "unknown backbone 'resnet_99'"),
        ({"model": {"global_pool": "gem"}}, "model.global_pool", "Input should be 'avg'"),
        (
            {"early_stopping": {}, "data": {"manifest": "m", "val_split": None}},
            "early_stopping",
            "needs a validation split",
        ),
    ],
)
def test_config_errors_name_the_field(tmp_path, change, field, why):
    raw = {**_valid(tmp_path), **change}
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict(raw, "cfg.yaml")
    assert f"field '{field}'" in str(err.value)
    assert why in str(err.value)
    assert str(err.value).startswith("cfg.yaml: invalid training config")


def test_precision_32_from_yaml_is_accepted(tmp_path):
    assert TrainConfig.from_dict({**_valid(tmp_path), "precision": 32}).precision == "32"


def test_cli_reports_config_errors_in_one_line_and_exits_2(tmp_path):
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_valid(tmp_path)))
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(path), "--set", "optim.lr=-1"])
    assert res.exit_code == 2
    assert "field 'optim.lr'" in res.output and "greater than 0" in res.output
    res = runner.invoke(app, ["train", str(path), "--set", "epochs"])
    assert res.exit_code == 2 and "must look like key.sub=value" in res.output


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_validate(path):
    cfg = TrainConfig.load(path)
    assert cfg.data.manifest.is_relative_to(REPO / "data")  # resolved against configs/


def test_override_creates_a_null_section(tmp_path):
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**_valid(tmp_path), "early_stopping": None}))
    cfg = TrainConfig.load(path, ["early_stopping.patience=3", "optim.lr=0.5"])
    assert cfg.early_stopping is not None and cfg.early_stopping.patience == 3
    assert cfg.optim.lr == 0.5


def test_unknown_early_stopping_metric_is_named_before_training(small_data, tmp_path):
    early = {"monitor": "val/acc_colr"}
    cfg = TrainConfig.from_dict(toy_config(small_data, tmp_path / "run", early_stopping=early))
    with pytest.raises(
        ConfigError, match=r"field 'early_stopping.monitor': no metric 'val/acc_colr'"
    ):
        fit(cfg)
    assert not (tmp_path / "run/checkpoints").exists()
