"""Mapping files: how a label table's (or FashionAI's) columns and values land on a taxonomy.

A mapping is YAML validated with pydantic; every error names the file and the field to fix. It
carries its taxonomy inline or points to a taxonomy file (relative to the mapping file); without
one, the packaged default taxonomy is used. YAML here is read with every scalar as text (only
``null``/``~``/empty mean null), so ``yes``, ``no``, ``true`` and ``1`` stay the strings written.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from attire.data.manifest import META_COLUMNS
from attire.errors import AttireError
from attire.taxonomy import Task, Taxonomy, TaxonomyError, UnknownLabelError, load_taxonomy
from attire.yaml_file import read_yaml

DEFAULT_YES = ("yes", "y", "true", "t", "1")
DEFAULT_NO = ("no", "n", "false", "f", "0")
_NULL_TAG = "tag:yaml.org,2002:null"


class MappingError(AttireError):
    """A mapping file that is not valid or does not fit its taxonomy or table."""


class _TextLoader(yaml.SafeLoader):
    """A YAML loader that reads every scalar as text except null."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag == _NULL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def resolve_or_raw(task: Task, raw: str) -> str:
    """The class id a raw value names, or the raw value itself for `attire data check` to report."""
    try:
        return task.resolve(raw)
    except UnknownLabelError:
        return raw


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskMapping(_Model):
    """Where one task's labels come from: one column, or a group of yes/no columns (multilabel)."""

    column: str | None = Field(default=None, description="the column holding this task's value")
    columns: dict[str, str] | None = Field(
        default=None, description="multilabel: yes/no column -> class it stands for"
    )
    values: dict[str, str | None] = Field(
        default_factory=dict, description="raw value -> class id (null = missing)"
    )
    separator: str | None = Field(
        default=None, description="multilabel from one column: what separates the values"
    )
    yes: tuple[str, ...] = DEFAULT_YES
    no: tuple[str, ...] = DEFAULT_NO

    @field_validator("yes", "no", mode="before")
    @classmethod
    def _one_token(cls, v: object) -> object:
        """`yes: "2"` is short for `yes: ["2"]`."""
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.column is None) == (self.columns is None):
            raise ValueError("give exactly one of 'column' or 'columns'")
        if self.columns is not None and (self.values or self.separator):
            raise ValueError("'values' and 'separator' apply to 'column', not to 'columns'")
        if self.columns is not None and not self.columns:
            raise ValueError("'columns' is empty")
        clash = {_norm(y) for y in self.yes} & {_norm(n) for n in self.no}
        if clash:
            raise ValueError(f"{sorted(clash)} listed as both yes and no")
        return self

    def source_columns(self) -> list[str]:
        return [self.column] if self.column is not None else list(self.columns or {})


class _TaxonomyRef(_Model):
    taxonomy: str | dict[str, Any] | None = Field(
        default=None,
        description="taxonomy file (relative to this mapping), an inline taxonomy, or none for "
        "the packaged default",
    )
    _source: str = PrivateAttr(default="<mapping>")
    _base: Path = PrivateAttr(default_factory=Path)
    _taxonomy: Taxonomy | None = PrivateAttr(default=None)

    @property
    def resolved_taxonomy(self) -> Taxonomy:
        """The taxonomy this mapping writes into (loaded once)."""
        if self._taxonomy is None:
            if self.taxonomy is None:
                self._taxonomy = load_taxonomy()
            elif isinstance(self.taxonomy, str):
                self._taxonomy = load_taxonomy(self._base / self.taxonomy)
            else:
                self._taxonomy = Taxonomy.from_dict(self.taxonomy, f"{self._source} 'taxonomy'")
        return self._taxonomy

    def with_taxonomy(self, taxonomy: Taxonomy) -> Self:
        """The same mapping bound to a given taxonomy, checked against it."""
        bound = self.model_copy(deep=True)
        bound._taxonomy = taxonomy
        bound._source, bound._base = self._source, self._base
        bound.check()
        return bound

    @abstractmethod
    def check(self) -> None:
        """Raise MappingError where the mapping does not fit its taxonomy."""

    @classmethod
    def load(cls, path: str | Path, taxonomy: Taxonomy | None = None) -> Self:
        """Read, validate and check a mapping file (against `taxonomy` if given, else its own)."""
        path = Path(path)
        data = read_yaml(path, MappingError, "mapping file", loader=_TextLoader)
        if not isinstance(data, dict):
            raise MappingError(
                f"{path}: expected a YAML mapping of fields, got {type(data).__name__}"
            )
        try:
            mapping = cls.model_validate(data)
        except ValidationError as e:
            raise MappingError(_explain(e, str(path))) from None
        mapping._source, mapping._base = str(path), path.parent
        if taxonomy is not None:
            return mapping.with_taxonomy(taxonomy)
        try:
            mapping.resolved_taxonomy  # noqa: B018  (load it now, so its errors name this field)
        except TaxonomyError as e:
            raise mapping._error("taxonomy", str(e)) from None
        mapping.check()
        return mapping

    def _error(self, field: str, message: str) -> MappingError:
        return MappingError(f"{self._source}: field '{field}': {message}")

    def _task(self, field: str, name: str) -> Task:
        if name in META_COLUMNS:
            raise self._error(field, f"'{name}' is a manifest column; give the task another name")
        try:
            return self.resolved_taxonomy.task(name)
        except TaxonomyError as e:
            raise self._error(field, str(e)) from None


class IngestMapping(_TaxonomyRef):
    """How a label table (CSV/Parquet) maps onto a taxonomy: which column is what."""

    image: str = Field(description="column with the image path (relative to the image root)")
    id: str | None = Field(default=None, description="column with a unique image id")
    group: str | None = Field(
        default=None, description="column of images that must stay together (e.g. sender_id)"
    )
    split: str | None = Field(default=None, description="column with train/val/test")
    tasks: dict[str, TaskMapping] = Field(min_length=1)

    @field_validator("tasks", mode="before")
    @classmethod
    def _column_shorthand(cls, v: object) -> object:
        """`label: label_column` is short for `label: {column: label_column}`."""
        if isinstance(v, dict):
            return {k: {"column": x} if isinstance(x, str) else x for k, x in v.items()}
        return v

    def check(self) -> None:
        for name, tm in self.tasks.items():
            task = self._task(f"tasks.{name}", name)
            if tm.columns is not None and not task.multilabel:
                raise self._error(
                    f"tasks.{name}.columns",
                    f"task '{name}' is multiclass; a group of yes/no columns needs a multilabel "
                    "task (for one yes/no column use 'column' and classes no/yes)",
                )
            if tm.separator is not None and not task.multilabel:
                raise self._error(
                    f"tasks.{name}.separator", f"task '{name}' is multiclass: one value per row"
                )

    def check_columns(self, columns: list[str], table: Path) -> None:
        """Raise MappingError naming the field whose column the table lacks."""
        wanted = [("image", self.image), ("id", self.id), ("group", self.group)]
        wanted += [("split", self.split)]
        for name, tm in self.tasks.items():
            field = f"tasks.{name}.column" if tm.column is not None else f"tasks.{name}.columns"
            wanted += [(field, c) for c in tm.source_columns()]
        have = set(columns)
        for field, col in wanted:
            if col is not None and col not in have:
                shown = ", ".join(columns[:20]) + (" ..." if len(columns) > 20 else "")
                raise self._error(field, f"column '{col}' is not in {table} (columns: {shown})")

    def to_yaml(self, header: str = "") -> str:
        """YAML text of this mapping (defaults left out), after an optional comment header."""
        data = self.model_dump(mode="json", exclude_none=True)
        for tm in data["tasks"].values():
            for key, default in (("yes", DEFAULT_YES), ("no", DEFAULT_NO), ("values", {})):
                if tuple(tm[key]) == default or tm[key] == default:
                    del tm[key]
        body = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100)
        return header + body


class FashionAITask(_Model):
    """One FashionAI attribute: which of our tasks it fills, and our class at each position."""

    task: str
    classes: tuple[str | None, ...] | None = Field(
        default=None,
        description="our class id for each position of the label string (null = no class); "
        "omitted: the task's classes in order",
    )
    _positions: tuple[str | None, ...] = PrivateAttr(default=())

    @property
    def positions(self) -> tuple[str | None, ...]:
        """Class id per label-string position, resolved against the taxonomy."""
        return self._positions


class FashionAIMapping(_TaxonomyRef):
    """How FashionAI attribute names and their y/m/n positions map onto a taxonomy."""

    tasks: dict[str, FashionAITask] = Field(min_length=1)

    @field_validator("tasks", mode="before")
    @classmethod
    def _task_shorthand(cls, v: object) -> object:
        """`sleeve_length_labels: sleeve_length` is short for `{task: sleeve_length}`."""
        if isinstance(v, dict):
            return {k: {"task": x} if isinstance(x, str) else x for k, x in v.items()}
        return v

    def check(self) -> None:
        for name, ft in self.tasks.items():
            task = self._task(f"tasks.{name}.task", ft.task)
            if task.multilabel:
                raise self._error(
                    f"tasks.{name}.task",
                    f"task '{task.name}' is multilabel; FashionAI label strings fill multiclass "
                    "tasks",
                )
            if ft.classes is None:
                ft._positions = tuple(task.class_ids)
                continue
            positions = []
            for i, cid in enumerate(ft.classes):
                if cid is None:
                    positions.append(None)
                    continue
                try:
                    positions.append(task.resolve(cid))
                except UnknownLabelError as e:
                    raise self._error(f"tasks.{name}.classes[{i}]", str(e)) from None
            ft._positions = tuple(positions)


def _norm(value: str) -> str:
    return str(value).strip().lower()


def _explain(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid mapping"]
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  field '{field}': {msg}" if field else f"  {msg}")
    return "\n".join(lines)
