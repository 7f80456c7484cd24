"""The training config: one YAML file, every field validated, errors naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import timm
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from attire.data.transforms import AugmentPolicy
from attire.errors import AttireError
from attire.models.multitask import ModelConfig
from attire.sampling.samplers import SamplerConfig
from attire.taxonomy import Taxonomy
from attire.training.recipes import (
    PostTrainingStep,
    RecipeNames,
    TrainingPlan,
    recipe_problems,
    resolve_plan,
)
from attire.yaml_file import read_yaml


class ConfigError(AttireError):
    """A training config that does not validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    manifest: Path
    taxonomy: Path | None = Field(default=None, description="default: the manifest's own")
    tasks: list[str] | None = Field(default=None, description="train on these tasks only")
    train_split: str = "train"
    val_split: str | None = "val"
    image_size: int = Field(default=64, ge=16, le=1024)
    cache_size: int | None = Field(default=None, description="default: image_size")
    resize_mode: Literal["pad", "crop"] = "pad"
    cache_dir: Path | None = None
    workers: int = Field(default=2, ge=0)


class OptimConfig(_Strict):
    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.05, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    backbone_lr_mult: float = Field(
        default=1.0, gt=0, le=1, description="e.g. 0.1 for a pretrained backbone"
    )
    warmup_epochs: float = Field(default=1.0, ge=0)
    min_lr_ratio: float = Field(default=0.01, ge=0, le=1)


class EarlyStopConfig(_Strict):
    monitor: str = "val/acc_mean"
    mode: Literal["min", "max"] = "max"
    patience: int = Field(default=5, ge=1)


class TrainConfig(_Strict):
    """A training run; see configs/*.yaml for examples."""

    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: dict[str, Any] = Field(
        default_factory=dict, description="see attire.losses.build_multitask_loss"
    )
    sampler: SamplerConfig = Field(
        default_factory=SamplerConfig, description="see attire.sampling (docs/SAMPLING.md)"
    )
    recipe: RecipeNames | None = Field(
        default=None, description="long-tail recipe(s) for every task (docs/LONG_TAIL.md)"
    )
    recipes: dict[str, RecipeNames] = Field(
        default_factory=dict, description="per-task recipes; replace `recipe` for those tasks"
    )
    post_training: list[PostTrainingStep] = Field(
        default_factory=list, description="classifier rebalancing after training"
    )
    optim: OptimConfig = Field(default_factory=OptimConfig)
    augment: AugmentPolicy = Field(default_factory=AugmentPolicy)
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=32, ge=1)
    accumulate: int = Field(default=1, ge=1)
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = Field(
        default="auto", description="auto: bf16-mixed on CUDA (16-mixed without bf16), else 32"
    )
    channels_last: bool = True
    ema_decay: float | None = Field(default=None, gt=0, lt=1)
    early_stopping: EarlyStopConfig | None = None
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = Field(
        default="auto",
        description="Lightning strategy, e.g. ddp; ddp becomes ddp_find_unused_parameters_true "
        "when the loss has parameters (uncertainty weighting)",
    )
    num_nodes: int = Field(default=1, ge=1)
    max_time: str | None = Field(
        default=None,
        pattern=r"^\d{2}:\d{2}:\d{2}:\d{2}$",
        description="wall-clock cap, 'DD:HH:MM:SS'",
    )
    limit_train_batches: int | float | None = Field(default=None, gt=0)
    checkpoint_every_n_steps: int | None = Field(
        default=None, ge=1, description="also checkpoint mid-epoch (resume loses less work)"
    )
    log_every_n_steps: int = Field(default=10, ge=1)
    out_dir: Path = Path("runs/default")

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, v: object) -> object:
        # YAML reads `precision: 32` as an int
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _resolve(self) -> TrainConfig:
        if self.data.cache_size is None:
            self.data.cache_size = self.data.image_size
        return self

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        """Read YAML, apply `a.b=value` overrides, validate; relative paths are resolved
        against the config file's folder."""
        path = Path(path)
        raw = read_yaml(path, ConfigError, "config file")
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a training config is a mapping of fields, not {raw!r}")
        for item in overrides or []:
            apply_override(raw, item)
        for section, key in (("data", "manifest"), ("data", "taxonomy"), ("data", "cache_dir")):
            node = raw.get(section)
            v = node.get(key) if isinstance(node, dict) else None
            if isinstance(v, str) and not Path(v).is_absolute():
                node[key] = str((path.parent / v).resolve())
        if isinstance(raw.get("out_dir"), str) and not Path(raw["out_dir"]).is_absolute():
            raw["out_dir"] = str(Path.cwd() / raw["out_dir"])
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: dict, source: str = "<config>") -> TrainConfig:
        """Validate; every problem is reported as `field 'a.b': what is wrong`."""
        try:
            cfg = cls.model_validate(raw)
        except ValidationError as e:
            lines = [f"{source}: invalid training config"]
            for err in e.errors():
                field = ".".join(str(p) for p in err["loc"])
                given = "" if err["type"] == "missing" else f" (got {_short(err['input'])})"
                lines.append(f"  field '{field}': {err['msg']}{given}")
            raise ConfigError("\n".join(lines)) from None
        problems = cfg._problems()
        if problems:
            lines = [f"{source}: invalid training config"]
            lines += [f"  field '{field}': {msg}" for field, msg in problems]
            raise ConfigError("\n".join(lines))
        return cfg

    def _problems(self) -> list[tuple[str, str]]:
        """Checks that span fields or need a registry, as (field, message)."""
        out = []
        if not timm.is_model(self.model.backbone):
            out.append(
                (
                    "model.backbone",
                    f"unknown backbone {self.model.backbone!r} "
                    "(see `attire.models.list_backbones()` or timm.list_models())",
                )
            )
        if self.early_stopping is not None and not self.data.val_split:
            out.append(("early_stopping", "needs a validation split (data.val_split)"))
        out += recipe_problems(self.recipe, self.recipes, self.loss, self.sampler)
        return out

    def plan(self, taxonomy: Taxonomy, missing: dict[str, float] | None = None) -> TrainingPlan:
        """The loss, sampler and post-training steps this run uses: its recipes expanded for
        `taxonomy` (`attire.training.recipes.resolve_plan`); `missing`: each task's share of
        training rows without its label. Without recipes: the config's own sections."""
        return resolve_plan(
            recipe=self.recipe,
            recipes=self.recipes,
            loss=self.loss,
            sampler=self.sampler,
            post_training=self.post_training,
            taxonomy=taxonomy,
            epochs=self.epochs,
            missing=missing,
        )


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def apply_override(raw: dict, item: str) -> None:
    """`a.b=value`: the value is read as YAML (numbers, booleans, lists); missing or null
    sections are created."""
    key, eq, value = item.partition("=")
    if not eq or not key:
        raise ConfigError(f"override {item!r} must look like key.sub=value")
    node = raw
    parts = key.split(".")
    for p in parts[:-1]:
        if node.get(p) is None:
            node[p] = {}
        node = node[p]
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: '{p}' is a value, not a section")
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from None
