"""Long-tail recipes: expansion into loss / sampler / post-training config, errors that name the
recipe, and a per-task mix of recipes in a real tiny fit."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from attire.evaluation.compare import runner
from attire.losses.long_tail import ClassBalancedFocal, LDAMDRWLoss
from attire.losses.masked import MaskedCrossEntropy
from attire.sampling import SamplerConfig
from attire.taxonomy import Taxonomy
from attire.training import recipes
from attire.training.config import ConfigError, TrainConfig
from attire.training.fit import fit
from attire.training.recipes import RECIPES, RecipeError
from test_training import (
    TOY_TAXONOMY,
    single_thread,  # noqa: F401  (autouse fixture)
    toy_config,
    toy_data,
)

REPO = Path(__file__).resolve().parents[1]
MARKS = {"name": "marks", "type": "multilabel", "classes": [{"id": "dot"}, {"id": "line"}]}
TAXONOMY = Taxonomy.from_dict({**TOY_TAXONOMY, "tasks": [*TOY_TAXONOMY["tasks"], MARKS]})
REQUIRED = (
    "ce",
    "cb-focal",
    "ldam-drw",
    "logit-adjust",
    "balanced-softmax",
    "range",
    "sqrt-sampler",
    "class-balanced-sampler",
    "progressive-sampler",
    "crt",
    "crt-smote",
    "crt-adasyn",
    "crt-borderline-smote",
    "crt-nearmiss",
    "crt-tomek",
    "crt-enn",
    "crt-cluster-centroids",
    "tau-norm",
    "posthoc-logit-adjust",
)


def plan(epochs: int = 10, missing: dict | None = None, **fields):
    raw = toy_config(Path("m.parquet"), Path("run"), epochs=epochs, **fields)
    return TrainConfig.from_dict(raw).plan(TAXONOMY, missing)


def task_losses(p) -> dict:
    return {t: c.get("loss") for t, c in (p.loss.get("tasks") or {}).items()}


def test_no_recipe_plans_exactly_the_config():
    loss = {"weighting": "uncertainty", "tasks": {"size": {"loss": "focal"}}}
    p = plan(loss=loss, sampler={"name": "sqrt", "task": "colour"})
    assert p.loss == loss
    assert p.sampler == SamplerConfig(name="sqrt", task="colour")
    assert p.post_training == [] and p.recipes == {}


def test_recipe_for_every_task_and_per_task_replacement():
    p = plan(recipe="cb-focal", recipes={"colour": "ce", "size": []})
    spec = {"name": "cb-focal", "beta": 0.9999, "gamma": 2.0}
    assert task_losses(p) == {"colour": {"name": "ce"}, "background": spec, "marks": spec}
    assert p.recipes == {"colour": ["ce"], "background": ["cb-focal"], "marks": ["cb-focal"]}


def test_ldam_drw_switches_at_80_percent_of_the_epochs():
    p = plan(epochs=10, recipes={"colour": "ldam-drw"})
    assert task_losses(p)["colour"] == {"name": "ldam-drw", "s": 1.0, "max_m": 1.0, "drw_epoch": 8}


def test_multiclass_recipes_skip_multilabel_tasks_from_recipe_and_refuse_them_by_name():
    p = plan(recipe=["logit-adjust", "range"])
    assert set(task_losses(p)) == {"colour", "size", "background"}
    assert p.loss["tasks"]["size"]["range"] == {"lambda": 0.1, "normalize": True}
    assert "recipe 'logit-adjust' left out on multilabel task 'marks'" in p.notes
    with pytest.raises(RecipeError, match=r"recipes.marks.*'balanced-softmax'.*multilabel"):
        plan(recipes={"marks": "balanced-softmax"})


@pytest.mark.parametrize(
    ("recipes", "expected"),
    [
        ({"colour": "class-balanced-sampler"}, SamplerConfig(name="class-balanced", task="colour")),
        ({"size": "sqrt-sampler"}, SamplerConfig(name="sqrt", task="size", missing_share=0.25)),
        ({"colour": "progressive-sampler"}, SamplerConfig(name="progressive", task="colour")),
        (
            {"colour": "class-balanced-sampler", "marks": "class-balanced-sampler"},
            SamplerConfig(name="multitask-balanced", tasks=["colour", "marks"], power=0.0),
        ),
        (
            {"colour": "sqrt-sampler", "size": "sqrt-sampler"},
            SamplerConfig(name="multitask-balanced", tasks=["colour", "size"], power=0.5),
        ),
    ],
)
def test_sampler_recipes_resolve_to_one_sampler(recipes, expected):
    # a task's missing labels keep their share of the draws (size: a quarter unlabelled)
    assert plan(recipes=recipes, missing={"colour": 0.0, "size": 0.25}).sampler == expected


def test_sampler_recipe_for_every_task_is_the_multitask_balanced_sampler():
    p = plan(recipe="class-balanced-sampler")
    assert p.sampler.name == "multitask-balanced"
    assert p.sampler.tasks == ["colour", "size", "background", "marks"]


def test_post_training_recipes_become_one_step_per_method_before_explicit_steps():
    p = plan(
        recipes={
            "colour": ["cb-focal", "crt-smote"],
            "size": "crt-smote",
            "background": "tau-norm",
        },
        post_training=[{"method": "logit-adjust", "tasks": ["colour"], "tau": 1.0}],
    )
    steps = [(s.method, s.tasks) for s in p.post_training]
    assert steps == [
        ("smote", ["colour", "size"]),
        ("tau-norm", ["background"]),
        ("logit-adjust", ["colour"]),
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"recipe": "cb-focl"}, r"field 'recipe': unknown recipe 'cb-focl'"),
        ({"recipes": {"colour": ["ce", "nope"]}}, r"field 'recipes.colour': unknown recipe 'nope'"),
        (
            {"recipes": {"colour": ["cb-focal", "ldam-drw"]}},
            r"field 'recipes.colour': recipes 'cb-focal' and 'ldam-drw' both set the loss",
        ),
        (
            {"recipe": "sqrt-sampler", "sampler": {"name": "sqrt", "task": "size"}},
            r"field 'sampler': recipe 'sqrt-sampler' sets the sampler, and so does",
        ),
        (
            {"recipe": "focal", "loss": {"loss": "ce"}},
            r"field 'recipe': recipe 'focal' sets every task's loss, and so does `loss.loss`",
        ),
        (
            {"post_training": [{"method": "tau-norm", "epochs": 3}]},
            r"post-training method 'tau-norm' takes no `epochs`",
        ),
    ],
)
def test_config_errors_name_the_recipe(fields, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(toy_config(Path("m.parquet"), Path("run"), **fields), "cfg.yaml")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"recipes": {"colr": "ce"}}, r"field 'recipes.colr': no such task"),
        (
            {"recipes": {"colour": "sqrt-sampler", "size": "class-balanced-sampler"}},
            r"one sampler, and the recipes ask for \['class-balanced-sampler', 'sqrt-sampler'\]",
        ),
        (
            {"recipe": "progressive-sampler"},
            r"recipe 'progressive-sampler' balances one task",
        ),
        (
            {"recipes": {"colour": "focal"}, "loss": {"tasks": {"colour": {"loss": "ce"}}}},
            r"recipes.colour.*'focal' sets the loss of task 'colour', and so does "
            r"loss.tasks.colour.loss",
        ),
    ],
)
def test_plan_errors_name_the_recipe_and_task(fields, message):
    with pytest.raises(RecipeError, match=message):
        plan(**fields)


def test_recipe_yields_to_a_task_loss_written_in_the_loss_section():
    p = plan(recipe="focal", loss={"tasks": {"colour": {"loss": "cb-ce", "weight": 2}}})
    assert task_losses(p)["colour"] == "cb-ce"
    assert p.loss["tasks"]["colour"]["weight"] == 2
    assert task_losses(p)["size"] == {"name": "focal", "gamma": 2.0}
    assert any("left out on task 'colour'" in n for n in p.notes)


def test_every_recipe_is_documented_with_its_reference():
    assert set(REQUIRED) <= set(RECIPES)
    doc = (REPO / "docs/LONG_TAIL.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^### `([a-z-]+)`", doc, flags=re.M))
    assert documented == set(RECIPES)
    for recipe in RECIPES.values():
        section = " ".join(doc.split(f"### `{recipe.name}`")[1].split("\n### ")[0].split())
        assert recipe.reference.split(",")[0] in section, recipe.name


# -- a real fit ------------------------------------------------------------------------------


def test_per_task_recipe_mix_in_a_tiny_fit(tmp_path, monkeypatch):
    from attire.training import fit as fit_module

    data = toy_data(tmp_path / "data", n_train=32, n_val=16)
    built = {}
    build_loss, build_sampler = fit_module.build_multitask_loss, fit_module.build_row_sampler

    def spy_loss(taxonomy, cfg, counts):
        built["loss"] = build_loss(taxonomy, cfg, counts)
        return built["loss"]

    def spy_sampler(cfg, plan, dataset):
        built["sampler"] = build_sampler(cfg, plan, dataset)
        return built["sampler"]

    monkeypatch.setattr(fit_module, "build_multitask_loss", spy_loss)
    monkeypatch.setattr(fit_module, "build_row_sampler", spy_sampler)
    recipes = {
        "colour": ["cb-focal", "crt-smote"],
        "size": "class-balanced-sampler",
        "background": ["ldam-drw", "tau-norm"],
    }
    result = fit(TrainConfig.from_dict(toy_config(data, tmp_path / "run", recipes=recipes)))
    assert all(math.isfinite(v) for v in result.metrics.values())

    losses = built["loss"].task_losses
    assert type(losses["colour"]) is ClassBalancedFocal
    assert type(losses["size"]) is MaskedCrossEntropy
    assert type(losses["background"]) is LDAMDRWLoss and losses["background"].drw_epoch == 0
    assert (built["sampler"].task, built["sampler"].power) == ("size", 0.0)

    meta = json.loads((result.export_dir / "attire.json").read_text())
    assert meta["extra"]["training_plan"]["recipes"] == recipes | {
        "size": ["class-balanced-sampler"]
    }
    steps = meta["extra"]["post_training"]
    assert [(s["method"], list(s["tasks"])) for s in steps] == [
        ("smote", ["colour"]),
        ("tau-norm", ["background"]),
    ]
    smote = steps[0]["tasks"]["colour"]
    assert smote["status"] == "changed"
    assert len(set(smote["resampled_counts"])) == 1  # every class up to the largest
    assert "val_balanced_accuracy_after" in smote

    base = load_file(str(tmp_path / "run/model-base/weights.safetensors"))
    final = load_file(str(result.export_dir / "weights.safetensors"))
    changed = {k for k in base if not torch.equal(base[k], final[k])}
    background = steps[1]["tasks"]["background"]
    expected = {"heads.colour.fc.weight", "heads.colour.fc.bias"}
    if background["status"] == "changed":
        expected |= {"heads.background.fc.weight", "heads.background.fc.bias"}
    assert changed == expected  # backbone and the other heads bit-identical


def test_a_recipe_redefinition_changes_the_compare_fingerprint(monkeypatch) -> None:
    # compare reuses a finished run while its fingerprint holds; a run trained under an earlier
    # definition of `range` (unnormalised) must not pass for one of the current definition
    spec = SimpleNamespace(
        base=SimpleNamespace(splits=SimpleNamespace(test="test", train="train")),
        eval=SimpleNamespace(model_dump=lambda **_: {}),
        profile=SimpleNamespace(model_dump=lambda **_: {}),
    )
    data = SimpleNamespace(sha256="0" * 64)

    def key(**fields: object) -> str:
        cfg = TrainConfig.from_dict({"data": {"manifest": "m.parquet"}, **fields})
        return runner._keys(spec, cfg, data, "cpu").train

    plain, ranged = key(), key(recipe=["cb-focal", "range"])
    assert key(recipe=["cb-focal", "range"]) == ranged  # stable
    old = dataclasses.replace(recipes.RECIPES["range"], range={"lambda": 0.1})
    monkeypatch.setitem(recipes.RECIPES, "range", old)
    assert key(recipe=["cb-focal", "range"]) != ranged
    assert key() == plain  # runs without recipes keep their fingerprints
    ldam = key(recipe="ldam-drw")
    monkeypatch.setattr(recipes, "DRW_AT", 0.5)  # a different switch epoch is another recipe
    assert key(recipe="ldam-drw") != ldam
