"""The experiments file `attire compare` reads: a shared base and the experiments that override it.

Validated with pydantic before any work starts, so a typo fails in a second, not after an hour of
training; every error names the field (`field 'experiments.1.image_size': ...`). Paths in the file
are relative to its folder. See docs/COMPARE.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from attire.data.split import DEFAULT_FRACTIONS, check_fractions
from attire.errors import AttireError
from attire.models.pretrained import package_weights_path
from attire.training.config import ConfigError, TrainConfig
from attire.training.recipes import RecipeNames
from attire.yaml_file import read_yaml

# With only a wall-clock budget the LR schedule still needs a length; the clock cuts it.
EPOCHS_UNDER_MINUTES = 1000
# Training fields the experiments file sets itself: the shared budget, split, seed and data.
_RESERVED = {
    "epochs": "base.budget",
    "max_time": "base.budget",
    "seed": "base.seed",
    "out_dir": "--out",
    "data.manifest": "base.data",
    "data.taxonomy": "base.data.taxonomy",
    "data.train_split": "base.splits",
    "data.val_split": "base.splits",
    "data.image_size": "image_size",
    "data.cache_dir": "--out (shared image cache)",
}


class CompareError(AttireError):
    """An experiments file that does not validate, or a comparison that cannot start."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SynthSpec(_Strict):
    """A generated catalogue (attire.data.synth.generate_catalogue), split with the base seed."""

    n: int = Field(ge=10, description="images to draw")
    size: int | None = Field(
        default=None, ge=16, le=1024, description="default: the largest image size used"
    )
    imbalance: float = Field(default=1.0, ge=1.0)
    missing: float = Field(default=0.0, ge=0.0, lt=1.0)
    noise: float = Field(default=0.0, ge=0.0, lt=1.0)
    balanced: bool = False
    seed: int = 0
    workers: int = Field(default=2, ge=1)


class DataSpec(_Strict):
    manifest: Path | None = Field(default=None, description="a Parquet manifest")
    synth: SynthSpec | None = Field(default=None, description="or a catalogue to generate")
    taxonomy: Path | None = Field(default=None, description="default: the manifest's own")

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.manifest is None) == (self.synth is None):
            raise ValueError("give exactly one of 'manifest' and 'synth'")
        return self


class Splits(_Strict):
    train: str = "train"
    val: str | None = "val"
    test: str = "test"
    fractions: tuple[float, float, float] = Field(
        default=DEFAULT_FRACTIONS,
        description="train/val/test shares when the manifest has no split column",
    )

    @field_validator("fractions")
    @classmethod
    def _shares(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        check_fractions(v)
        return v


class Budget(_Strict):
    """The same for every experiment: epochs, a wall-clock cap per run, or both."""

    epochs: int | None = Field(default=None, ge=1)
    minutes: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _some(self) -> Budget:
        if self.epochs is None and self.minutes is None:
            raise ValueError("give 'epochs', 'minutes' (wall clock per run) or both")
        return self

    def train_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"epochs": self.epochs or EPOCHS_UNDER_MINUTES}
        if self.minutes is not None:
            s = max(1, round(self.minutes * 60))
            out["max_time"] = (
                f"{s // 86400:02d}:{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
            )
        return out

    def describe(self) -> str:
        epochs = f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}" if self.epochs else ""
        clock = f"{self.minutes:g} min of wall clock per run" if self.minutes else ""
        return f"{epochs}, cut at {clock}" if epochs and clock else epochs or clock


_MISSING = object()


def _check_train_overrides(value: dict[str, Any]) -> dict[str, Any]:
    for key, owner in _RESERVED.items():
        node: Any = value
        for part in key.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is not _MISSING:
            raise ValueError(f"'{key}' is set by the experiments file: use {owner}")
    return value


class _TrainOverrides(_Strict):
    """`train`: training-config fields (base: shared by every experiment; experiment: its own),
    never the ones the comparison itself fixes."""

    train: dict[str, Any] = Field(default_factory=dict, description="training config fields")

    @field_validator("train")
    @classmethod
    def _not_reserved(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_train_overrides(v)


class Base(_TrainOverrides):
    data: DataSpec
    splits: Splits = Field(default_factory=Splits)
    seed: int = 0
    image_size: int = Field(default=64, ge=16, le=1024)
    budget: Budget


class Experiment(_TrainOverrides):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)
    backbone: str | None = None
    pretrained: str | None = Field(default=None, description="'package', 'hub' or a file")
    recipe: RecipeNames | None = None
    image_size: int | None = Field(default=None, ge=16, le=1024)


class EvalSettings(_Strict):
    batch_size: int = Field(default=64, ge=1)
    many: int = Field(default=100, ge=1)
    few: int = Field(default=20, ge=1)
    pages: bool = Field(default=True, description="write each run's eval page and charts")
    device: str = "auto"


class ProfileSettings(_Strict):
    batch_sizes: list[PositiveInt] = Field(default=[1, 8, 32], min_length=1)
    max_seconds: float = Field(default=10.0, gt=0)
    warmup: int = Field(default=2, ge=0)
    iters: int = Field(default=20, ge=1)
    threads: int | None = Field(default=None, ge=1)
    device: str = "auto"


class ReportSettings(_Strict):
    score: Literal["accuracy", "balanced_accuracy", "macro_f1", "few_shot"] = Field(
        default="accuracy", description="the y axis of the accuracy-vs-cost plot"
    )


class ExperimentsFile(_Strict):
    """What `attire compare` reads; see configs/experiments/*.yaml and docs/COMPARE.md."""

    title: str | None = None
    base: Base
    experiments: list[Experiment] = Field(min_length=1)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    profile: ProfileSettings = Field(default_factory=ProfileSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    _source: Path = PrivateAttr(default=Path("<experiments>"))

    @property
    def source(self) -> Path:
        """The file this was read from (errors and reports name it)."""
        return self._source

    @model_validator(mode="after")
    def _unique_names(self) -> ExperimentsFile:
        seen: set[str] = set()
        for e in self.experiments:
            if e.name in seen:
                raise ValueError(f"experiment name {e.name!r} is used twice")
            seen.add(e.name)
        return self

    @classmethod
    def load(cls, path: str | Path) -> ExperimentsFile:
        """Read and validate; paths (manifest, taxonomy, weights files) are relative to the
        file's folder. Errors name the field: `field 'experiments.1.image_size': ...`."""
        path = Path(path)
        raw = read_yaml(path, CompareError, "experiments file")
        if not isinstance(raw, dict):
            raise CompareError(f"{path}: an experiments file is a mapping, not {raw!r}")
        return cls.from_dict(raw, path)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: str | Path) -> ExperimentsFile:
        path = Path(path)
        try:
            spec = cls.model_validate(raw)
        except ValidationError as e:
            lines = [f"{path}: invalid experiments file"]
            for err in e.errors():
                where = ".".join(str(p) for p in err["loc"])
                given = "" if err["type"] == "missing" else f" (got {_short(err['input'])})"
                lines.append(
                    f"  field '{where}': {err['msg'].removeprefix('Value error, ')}{given}"
                )
            raise CompareError("\n".join(lines)) from None
        spec._source = path
        folder = path.parent
        data = spec.base.data
        data.manifest = _relative_to(data.manifest, folder)
        data.taxonomy = _relative_to(data.taxonomy, folder)
        for e in spec.experiments:
            if e.pretrained not in (None, "package", "hub"):
                e.pretrained = str(_relative_to(Path(e.pretrained), folder))
        return spec

    def image_size(self, exp: Experiment) -> int:
        return exp.image_size or self.base.image_size

    def train_config(self, exp: Experiment, manifest: Path, out: Path) -> TrainConfig:
        """The experiment's validated training config: base, then its overrides, then the
        shared data, seed and budget (which no experiment may change)."""
        base = self.base
        raw: dict[str, Any] = _merge({}, base.train)
        raw = _merge(raw, exp.train)
        model = {
            k: v
            for k, v in (("backbone", exp.backbone), ("pretrained", exp.pretrained))
            if v is not None
        }
        raw = _merge(raw, {"model": model} if model else {})
        if exp.recipe is not None:
            raw["recipe"] = exp.recipe
        raw = _merge(
            raw,
            {
                "data": {
                    "manifest": str(manifest),
                    "taxonomy": str(base.data.taxonomy) if base.data.taxonomy else None,
                    "train_split": base.splits.train,
                    "val_split": base.splits.val,
                    "image_size": self.image_size(exp),
                    "cache_dir": str(out / "cache"),
                },
                "seed": base.seed,
                "out_dir": str(out / "runs" / exp.name / "train"),
                **base.budget.train_fields(),
            },
        )
        index = self.experiments.index(exp)
        try:
            cfg = TrainConfig.from_dict(
                raw, f"{self.source}: experiment '{exp.name}' (experiments.{index})"
            )
        except ConfigError as e:
            raise CompareError(
                f"{e}\n  (fields of the training config the experiment resolves to; set them "
                f"under base.train or experiments.{index}.train)"
            ) from None
        if cfg.model.pretrained == "package":
            try:
                package_weights_path(cfg.model.backbone)
            except AttireError as e:
                raise CompareError(
                    f"{self.source}: field 'experiments.{index}.pretrained': {e}"
                ) from None
        return cfg


def _relative_to(p: Path | None, folder: Path) -> Path | None:
    if p is None:
        return None
    p = p.expanduser()
    return p if p.is_absolute() else (folder / p).resolve()


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """``a`` updated by ``b``, recursing into sections both have (a copy; inputs unchanged)."""
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out
