"""Classifier rebalancing: embedding resamplers, cRT, tau-normalisation, post-hoc logit
adjustment, and `attire rebalance` on a checkpoint folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from typer.testing import CliRunner

from attire.cli.main import app
from attire.data.manifest import Manifest
from attire.inference.predictor import Predictor
from attire.losses import adjust_logits
from attire.models.checkpoint import CheckpointMeta, Preprocessing, save_checkpoint
from attire.models.multitask import ModelConfig, MultiTaskModel
from attire.sampling.embedding import TaskEmbeddings, extract_embeddings, resample_embeddings
from attire.taxonomy import Taxonomy
from attire.training.rebalance import (
    TAU_GRID,
    Embeddings,
    apply_step,
    balanced_accuracy,
    eval_dataset,
    retrain_fc,
    tau_normalise,
)
from attire.training.recipes import PostTrainingStep
from test_training import (
    COLOURS,
    TOY_TAXONOMY,
    single_thread,  # noqa: F401  (autouse fixture)
    toy_data,
)

BALANCING = ("crt", "smote", "adasyn", "borderline-smote")
CRT_METHODS = (*BALANCING, "nearmiss", "tomek", "enn", "cluster-centroids")


def toy_embeddings(counts, dim=2, seed=0, spread=1.0):
    """Gaussian blobs, one per class, whose neighbours overlap (a boundary to clean); dimensions
    past the first two are quiet noise."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((3, dim))
    centres[1, 0], centres[2, 1] = 2.5, 3.0
    scale = np.full(dim, 0.1)
    scale[:2] = spread
    x = np.concatenate(
        [centres[c] + rng.normal(0, 1, (n, dim)) * scale for c, n in enumerate(counts)]
    )
    y = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    return x.astype(np.float32), y.astype(np.int64)


# -- resampling --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["smote", "adasyn", "borderline-smote"])
def test_oversamplers_raise_the_minority_classes_towards_the_majority(method):
    x, y = toy_embeddings([200, 30, 12])
    res = resample_embeddings(x, y, method, seed=0)
    counts = np.bincount(res.y)
    assert counts[0] == 200
    if method == "adasyn":  # adaptive: close to, not exactly at, the majority
        assert all(abs(c - 200) <= 10 for c in counts)
    else:
        assert counts.tolist() == [200, 200, 200]
    assert np.array_equal(res.x[: len(x)], x)  # the originals are kept, new points appended
    new = res.x[len(x) :][res.y[len(x) :] == 2]
    lo, hi = x[y == 2].min(0), x[y == 2].max(0)
    assert ((new >= lo - 1e-5) & (new <= hi + 1e-5)).all()  # interpolated within the class


@pytest.mark.parametrize("method", ["nearmiss", "cluster-centroids"])
def test_guided_undersamplers_cut_every_class_to_the_smallest(method):
    x, y = toy_embeddings([200, 30, 12])
    res = resample_embeddings(x, y, method, seed=0)
    assert np.bincount(res.y).tolist() == [12, 12, 12]
    if method == "nearmiss":  # a selection of real embeddings
        originals = {tuple(r) for r in x.tolist()}
        assert all(tuple(r) in originals for r in res.x.tolist())


@pytest.mark.parametrize("method", ["tomek", "enn"])
def test_cleaners_remove_only_boundary_points_of_the_larger_classes(method):
    x, y = toy_embeddings([200, 12], spread=1.2)
    res = resample_embeddings(x, y, method)
    counts = np.bincount(res.y)
    assert counts[1] == 12 and 150 < counts[0] < 200  # some majority points removed
    kept = {tuple(r) for r in res.x.tolist()}
    removed = np.array([r for r in x if tuple(r.tolist()) not in kept])
    dist = np.linalg.norm(removed[:, None] - x[None], axis=2)
    dist[dist == 0] = np.inf
    nearest = y[dist.argmin(1)]
    assert (nearest == 1).mean() > 0.5  # the removed points sat next to the minority
    centre = np.array([2.5, 0.0])
    majority = x[y == 0]
    assert np.linalg.norm(removed - centre, axis=1).mean() < (
        np.linalg.norm(majority - centre, axis=1).mean()
    )  # closer to the minority than the majority on average


def test_small_classes_lower_k_or_are_skipped_with_a_reason():
    x, y = toy_embeddings([50, 3, 1])
    res = resample_embeddings(x, y, "smote", k_neighbors=5)
    assert np.bincount(res.y).tolist() == [50, 50, 1]
    assert any("class 1: 3 embeddings, neighbours lowered 5 -> 2" in n for n in res.notes)
    assert any("class 2: 1 embedding, no neighbour" in n for n in res.notes)
    res = resample_embeddings(x, y, "nearmiss")
    assert np.array_equal(res.y, y)
    assert any("skipped: the smallest class has 1 embedding" in n for n in res.notes)
    one_class = resample_embeddings(x[:50], y[:50], "smote")
    assert len(one_class.y) == 50 and "only 1 class" in one_class.notes[0]


# -- cRT, tau-norm, logit adjustment on a model ------------------------------------------------


def test_tau_norm_zero_is_the_identity_and_one_equalises_the_weight_norms():
    torch.manual_seed(0)
    fc = nn.Linear(6, 4)
    with torch.no_grad():
        fc.weight.mul_(torch.tensor([[5.0], [1.0], [0.2], [2.0]]))
    before = {k: v.clone() for k, v in fc.state_dict().items()}
    tau_normalise(fc, 0.0)
    assert all(torch.equal(before[k], v) for k, v in fc.state_dict().items())
    tau_normalise(fc, 1.0)
    assert torch.allclose(fc.weight.norm(dim=1), torch.ones(4))
    scale = before["weight"].norm(dim=1)
    assert torch.allclose(fc.bias, before["bias"] / scale)  # each class's logit scaled whole


@pytest.fixture(scope="module")
def model() -> MultiTaskModel:
    taxonomy = Taxonomy.from_dict(TOY_TAXONOMY)
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="drn_c_tiny", task_heads={"size": {"hidden": [8]}})
    return MultiTaskModel(taxonomy, cfg).eval()


def _meta() -> CheckpointMeta:
    pre = Preprocessing(input_size=32, cache_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    return CheckpointMeta(model={}, preprocessing=pre, thresholds={"colour": 0.7, "size": 0.6})


def _biased_copy(model: MultiTaskModel) -> tuple[MultiTaskModel, Embeddings]:
    """The model with a colour head fitted by plain CE on imbalanced embeddings (500 / 50 / 10):
    biased to the head class, as instance-sampled training leaves it; balanced val embeddings."""
    dim = model.heads["colour"].fc.in_features
    biased = MultiTaskModel(model.taxonomy, model.cfg, load_pretrained=False).eval()
    biased.load_state_dict(model.state_dict())
    train = TaskEmbeddings(*toy_embeddings([500, 50, 10], dim=dim, seed=1))
    val = TaskEmbeddings(*toy_embeddings([60, 60, 60], dim=dim, seed=2))
    retrain_fc(biased.heads["colour"].fc, train.x, train.y)
    return biased, Embeddings({"colour": train}, {"colour": val})


@pytest.mark.parametrize("method", CRT_METHODS)
def test_crt_retrains_only_the_head_fc(model, method):
    biased, data = _biased_copy(model)
    before = {k: v.clone() for k, v in biased.state_dict().items()}
    meta = _meta()
    step = PostTrainingStep(method=method, tasks=["colour"])
    record = apply_step(biased, meta, step, data)
    result = record["tasks"]["colour"]
    assert result["status"] == "changed", result
    if method in BALANCING:  # a head biased to the frequent class gets fairer
        assert result["val_balanced_accuracy_after"] > result["val_balanced_accuracy_before"] + 0.05
    after = biased.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"heads.colour.fc.weight", "heads.colour.fc.bias"}
    assert meta.thresholds == {"size": 0.6}  # the changed head's threshold is dropped
    assert meta.extra["post_training"] == [record]


def test_retraining_is_deterministic(model):
    (a, data), (b, _) = _biased_copy(model), _biased_copy(model)
    for m in (a, b):
        apply_step(m, _meta(), PostTrainingStep(method="smote", tasks=["colour"], seed=4), data)
    assert torch.equal(a.heads["colour"].fc.weight, b.heads["colour"].fc.weight)


def test_logit_adjustment_picks_tau_on_val_and_is_stored_for_the_predictor(model):
    biased, data = _biased_copy(model)
    meta = _meta()
    weights = {k: v.clone() for k, v in biased.state_dict().items()}
    step = PostTrainingStep(method="logit-adjust", tasks=["colour"])
    result = apply_step(biased, meta, step, data)["tasks"]["colour"]
    assert result["tau_source"] == "best validation balanced accuracy"
    assert result["tau"] in TAU_GRID and result["tau"] > 0
    assert result["tau_scores"][str(result["tau"])] == max(result["tau_scores"].values())
    assert result["val_balanced_accuracy_after"] > result["val_balanced_accuracy_before"]
    stored = meta.extra["logit_adjustment"]["colour"]
    assert stored == {"tau": result["tau"], "class_counts": [500, 50, 10]}
    assert all(torch.equal(weights[k], v) for k, v in biased.state_dict().items())


def test_logit_adjustment_refuses_a_task_trained_with_logit_adjusted_loss(model):
    biased, data = _biased_copy(model)
    meta = _meta()
    meta.extra["training_plan"] = {"loss": {"tasks": {"colour": {"loss": "balanced-softmax"}}}}
    step = PostTrainingStep(method="logit-adjust", tasks=["colour"])
    result = apply_step(biased, meta, step, data)["tasks"]["colour"]
    assert result["status"] == "skipped" and "balanced-softmax" in result["reason"]
    assert "logit_adjustment" not in meta.extra


# -- on checkpoint folders ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model) -> dict:
    root = tmp_path_factory.mktemp("rebalance")
    data = toy_data(root / "data", n_train=40, n_val=16)
    info = model.backbone_info
    pre = Preprocessing(input_size=32, cache_size=32, mean=tuple(info.mean), std=tuple(info.std))
    meta = CheckpointMeta(model=model.cfg.model_dump(mode="json"), preprocessing=pre)
    ckpt = save_checkpoint(root / "model", model, meta)
    return {"ckpt": ckpt, "data": data, "root": root}


def _rebalance(checkpoint: dict, out: str, *args: str):
    return CliRunner().invoke(
        app,
        [
            "rebalance",
            str(checkpoint["ckpt"]),
            "--data",
            str(checkpoint["data"]),
            "--out",
            str(checkpoint["root"] / out),
            "--cache-dir",
            str(checkpoint["root"] / "cache"),
            *args,
        ],
    )


def test_extracted_embeddings_are_each_head_last_layer_input(checkpoint, model):
    manifest = Manifest.read(checkpoint["data"])
    ds = eval_dataset(
        model.taxonomy, _meta(), manifest, "val", cache_dir=checkpoint["root"] / "cache"
    )
    emb = extract_embeddings(model, ds, progress=False)
    batch = torch.stack([ds[i]["image"] for i in range(len(ds))])
    with torch.no_grad():
        out = model(batch, task_embeddings=True)
    assert emb["colour"].x.shape == (16, model.backbone_info.num_features)
    assert np.allclose(emb["colour"].x, out["embedding"].numpy(), atol=1e-5)
    assert emb["size"].x.shape == (16, 8)  # a hidden layer: the head's own embedding
    assert np.allclose(emb["size"].x, out["size__emb"].numpy(), atol=1e-5)
    val = manifest.split("val").df
    assert emb["colour"].y.tolist() == [list(COLOURS).index(c) for c in val["colour"]]


def test_cli_smote_writes_a_new_checkpoint_with_only_the_head_fc_changed(checkpoint):
    source_bytes = (checkpoint["ckpt"] / "weights.safetensors").read_bytes()
    res = _rebalance(checkpoint, "smote", "--method", "smote", "--tasks", "colour,size")
    assert res.exit_code == 0, res.output
    old = load_file(str(checkpoint["ckpt"] / "weights.safetensors"))
    new = load_file(str(checkpoint["root"] / "smote/weights.safetensors"))
    changed = {k for k in old if not torch.equal(old[k], new[k])}
    assert changed == {f"heads.{t}.fc.{p}" for t in ("colour", "size") for p in ("weight", "bias")}
    assert (checkpoint["ckpt"] / "weights.safetensors").read_bytes() == source_bytes
    meta = json.loads((checkpoint["root"] / "smote/attire.json").read_text())
    (record,) = meta["extra"]["post_training"]
    assert record["method"] == "smote" and record["source"] == str(checkpoint["ckpt"])
    assert set(record["tasks"]) == {"colour", "size"}
    for result in record["tasks"].values():
        assert result["status"] == "changed"
        assert len(set(result["resampled_counts"])) == 1
        assert "val_balanced_accuracy_after" in result
    train = Manifest.read(checkpoint["data"]).split("train").df
    expected = [int((train["colour"] == c).sum()) for c in COLOURS]
    assert record["tasks"]["colour"]["train_counts"] == expected
    assert "colour" in res.output and "checkpoint:" in res.output


def test_cli_logit_adjust_changes_predictor_outputs_as_adjust_logits_says(checkpoint):
    res = _rebalance(checkpoint, "adjusted", "--method", "logit-adjust", "--tau", "1.5")
    assert res.exit_code == 0, res.output
    out = checkpoint["root"] / "adjusted"
    meta = json.loads((out / "attire.json").read_text())
    stored = meta["extra"]["logit_adjustment"]
    assert set(stored) == {"colour", "size", "background"}
    old_w = load_file(str(checkpoint["ckpt"] / "weights.safetensors"))
    new_w = load_file(str(out / "weights.safetensors"))
    assert all(torch.equal(old_w[k], new_w[k]) for k in old_w)  # weights untouched

    source, adjusted = Predictor(checkpoint["ckpt"]), Predictor(out)
    batch = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        logits = source.model(batch)
    probs = adjusted.scores(batch)
    for task in ("colour", "size", "background"):
        a = stored[task]
        assert a["tau"] == 1.5
        want = torch.softmax(adjust_logits(logits[task], a["class_counts"], a["tau"]), dim=1)
        assert np.allclose(probs[task], want.numpy(), atol=1e-6)
        assert not np.allclose(probs[task], source.scores(batch)[task], atol=1e-4)


def test_cli_tau_norm_without_validation_uses_tau_1(checkpoint):
    res = _rebalance(checkpoint, "taunorm", "--method", "tau-norm", "--val-split", "")
    assert res.exit_code == 0, res.output
    new = load_file(str(checkpoint["root"] / "taunorm/weights.safetensors"))
    for task in ("colour", "size", "background"):
        norms = new[f"heads.{task}.fc.weight"].norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)
    meta = json.loads((checkpoint["root"] / "taunorm/attire.json").read_text())
    result = meta["extra"]["post_training"][0]["tasks"]["colour"]
    assert (result["tau"], result["tau_source"]) == (1.0, "default (no validation images)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "smoot"], "--method 'smoot': choose one of"),
        (["--method", "smote", "--tasks", "colr"], "no task 'colr' in the checkpoint"),
        (["--method", "smote", "--tau", "1"], "takes no `tau`"),
        (["--method", "tau-norm", "--seed", "3"], "takes no `seed`"),
    ],
)
def test_cli_errors_name_the_method_task_or_option(checkpoint, args, message):
    res = _rebalance(checkpoint, "bad", *args)
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert not (checkpoint["root"] / "bad").exists()


def test_cli_refuses_to_overwrite_the_source(checkpoint):
    res = CliRunner().invoke(
        app,
        ["rebalance", str(checkpoint["ckpt"]), "--data", str(checkpoint["data"]),
         "--method", "crt", "--out", str(checkpoint["ckpt"])],
    )  # fmt: skip
    assert res.exit_code == 2 and "is the source checkpoint" in res.output


def test_balanced_accuracy_is_the_mean_recall_of_present_classes():
    logits = torch.tensor([[2.0, 0, 0], [2.0, 0, 0], [0, 2.0, 0], [2.0, 0, 0]])
    assert balanced_accuracy(logits, np.array([0, 0, 1, 1])) == pytest.approx(0.75)
