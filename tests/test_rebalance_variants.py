"""`rebalance_variants`: several rebalancing steps on one checkpoint, embeddings extracted once,
each result the same as `rebalance_checkpoint` gives for that step alone."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import attire.training.rebalance as rebalance
from attire.models.checkpoint import CheckpointMeta, Preprocessing, read_meta, save_checkpoint
from attire.models.multitask import ModelConfig, MultiTaskModel
from attire.taxonomy import Taxonomy
from attire.training.rebalance import RebalanceError, rebalance_checkpoint, rebalance_variants
from attire.training.recipes import PostTrainingStep
from test_training import (
    TOY_TAXONOMY,
    single_thread,  # noqa: F401  (autouse fixture)
    toy_data,
)

STEPS = {
    "smote": PostTrainingStep(method="smote", tasks=["colour"], epochs=20),
    "tau-norm": PostTrainingStep(method="tau-norm", tasks=["colour"]),
    "logit-adjust": PostTrainingStep(method="logit-adjust", tasks=["colour"]),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("variants")
    data = toy_data(root / "data", n_train=40, n_val=16)
    torch.manual_seed(0)
    model = MultiTaskModel(Taxonomy.from_dict(TOY_TAXONOMY), ModelConfig(backbone="drn_c_tiny"))
    info = model.backbone_info
    pre = Preprocessing(input_size=32, cache_size=32, mean=tuple(info.mean), std=tuple(info.std))
    meta = CheckpointMeta(model=model.cfg.model_dump(mode="json"), preprocessing=pre)
    return {"ckpt": save_checkpoint(root / "model", model.eval(), meta), "data": data, "root": root}


def test_each_variant_equals_its_step_alone_and_embeddings_are_extracted_once(
    checkpoint, monkeypatch
):
    root, cache = checkpoint["root"], checkpoint["root"] / "cache"
    source = load_file(checkpoint["ckpt"] / "weights.safetensors")
    alone = {
        name: rebalance_checkpoint(
            checkpoint["ckpt"], checkpoint["data"], step, root / f"alone-{name}", cache_dir=cache
        )
        for name, step in STEPS.items()
    }
    calls = []
    extract = rebalance.extract_embeddings
    monkeypatch.setattr(
        rebalance, "extract_embeddings", lambda *a, **k: calls.append(1) or extract(*a, **k)
    )
    records = rebalance_variants(
        checkpoint["ckpt"],
        checkpoint["data"],
        {root / f"many-{name}": step for name, step in STEPS.items()},
        cache_dir=cache,
    )
    assert len(calls) == 2  # train and val, once for all three steps
    assert list(records) == [root / f"many-{name}" for name in STEPS]
    changed_some = False
    for name, (alone_dir, alone_record) in alone.items():
        together = root / f"many-{name}"
        assert records[together] == alone_record
        a = load_file(alone_dir / "weights.safetensors")
        b = load_file(together / "weights.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        changed_some |= not torch.equal(
            b["heads.colour.fc.weight"], source["heads.colour.fc.weight"]
        )
        meta, _ = read_meta(together)
        assert [r["method"] for r in meta.extra["post_training"]] == [STEPS[name].method]
    assert changed_some  # the steps did something, so equality above is not trivial
    # each variant starts from the trained model: no step sees another's change
    meta, _ = read_meta(root / "many-tau-norm")
    assert "logit_adjustment" not in meta.extra
    after = load_file(checkpoint["ckpt"] / "weights.safetensors")
    assert all(torch.equal(source[k], after[k]) for k in source)  # source untouched


def test_refuses_to_write_over_the_source(checkpoint):
    with pytest.raises(RebalanceError, match="is the source checkpoint"):
        rebalance_variants(
            checkpoint["ckpt"], checkpoint["data"], {checkpoint["ckpt"]: STEPS["smote"]}
        )
