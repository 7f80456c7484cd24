"""The training config: one YAML file, every field validated, errors naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from attire.data.transforms import AugmentPolicy
from attire.errors import AttireError
from attire.models.multitask import ModelConfig


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
    optim: OptimConfig = Field(default_factory=OptimConfig)
    augment: AugmentPolicy = Field(default_factory=AugmentPolicy)
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=32, ge=1)
    accumulate: int = Field(default=1, ge=1)
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = "auto"
    channels_last: bool = True
    ema_decay: float | None = Field(default=None, gt=0, lt=1)
    early_stopping: EarlyStopConfig | None = None
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    max_time: str | None = Field(default=None, description="wall-clock cap, 'DD:HH:MM:SS'")
    limit_train_batches: int | float | None = None
    checkpoint_every_n_steps: int | None = Field(
        default=None, ge=1, description="also checkpoint mid-epoch (resume loses less work)"
    )
    out_dir: Path = Path("runs/default")

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
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        for item in overrides or []:
            _apply_override(raw, item)
        for section, key in (("data", "manifest"), ("data", "taxonomy"), ("data", "cache_dir")):
            v = raw.get(section, {}).get(key)
            if v is not None and not Path(v).is_absolute():
                raw[section][key] = str((path.parent / v).resolve())
        if "out_dir" in raw and not Path(raw["out_dir"]).is_absolute():
            raw["out_dir"] = str(Path.cwd() / raw["out_dir"])
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: dict, source: str = "<config>") -> TrainConfig:
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            lines = [f"{source}: invalid training config"]
            for err in e.errors():
                field = ".".join(str(p) for p in err["loc"])
                lines.append(f"  field '{field}': {err['msg']}")
            raise ConfigError("\n".join(lines)) from None


def _apply_override(raw: dict, item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.sub=value")
    key, value = item.split("=", 1)
    node = raw
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: '{p}' is not a section")
    node[parts[-1]] = yaml.safe_load(value)
