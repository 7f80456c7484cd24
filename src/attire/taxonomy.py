"""The attribute taxonomy: which tasks exist, their type and their ordered classes.

Everything downstream (manifests, heads, metrics, the service) speaks in class ids from here, so
the taxonomy is validated strictly and its errors name the file, the task and the value.
"""

from __future__ import annotations

import re
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from attire.errors import AttireError
from attire.yaml_file import read_yaml

DEFAULT_TAXONOMY = "womens_tops"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


class TaxonomyError(AttireError):
    """A taxonomy file or a label value that does not fit the taxonomy."""


class UnknownLabelError(TaxonomyError):
    """A raw label value that names no class of its task."""

    def __init__(self, task: str, value: object, known: list[str]):
        self.task, self.value = task, value
        shown = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
        super().__init__(f"task '{task}': unknown label {value!r} (known: {shown})")


class ClassDef(BaseModel):
    """One class of a task. `id` is the stable key stored in manifests."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    name: str = ""
    zh: str | None = None
    aliases: tuple[str, ...] = ()

    @field_validator("id")
    @classmethod
    def _id_is_slug(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError(f"class id {v!r} must be lower-case letters, digits, '_' or '-'")
        return v

    @model_validator(mode="after")
    def _default_name(self) -> ClassDef:
        if not self.name:
            object.__setattr__(self, "name", self.id.replace("_", " ").capitalize())
        return self


class Task(BaseModel):
    """One classification task: multiclass (one class) or multilabel (any subset)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    type: Literal["multiclass", "multilabel"] = "multiclass"
    classes: tuple[ClassDef, ...]
    zh: str | None = None
    description: str = ""
    invisible: str | None = Field(
        default=None, description="class id meaning 'hidden in this photo', if the task has one"
    )
    missing: tuple[str, ...] | None = Field(
        default=None, description="raw values meaning 'not labelled'; defaults to the taxonomy's"
    )

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, v: str) -> str:
        if not _ID_RE.match(v) or "__" in v:
            raise ValueError(f"task name {v!r} must be a lower-case slug without '__'")
        return v

    @model_validator(mode="after")
    def _check_classes(self) -> Task:
        if len(self.classes) < 2 and self.type == "multiclass":
            raise ValueError(f"task '{self.name}' needs at least 2 classes")
        ids = [c.id for c in self.classes]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"task '{self.name}': duplicate class ids {dup}")
        if self.invisible is not None and self.invisible not in ids:
            raise ValueError(
                f"task '{self.name}': invisible class {self.invisible!r} not in classes"
            )
        seen: dict[str, str] = {}
        for c in self.classes:
            for key in {c.id, c.name, *(c.aliases), *([c.zh] if c.zh else [])}:
                k = norm_value(key)
                if k in seen and seen[k] != c.id:
                    raise ValueError(
                        f"task '{self.name}': value {key!r} would mean both "
                        f"'{seen[k]}' and '{c.id}'"
                    )
                seen[k] = c.id
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_ids(self) -> list[str]:
        return [c.id for c in self.classes]

    @property
    def multilabel(self) -> bool:
        return self.type == "multilabel"

    @cached_property
    def _lookup(self) -> dict[str, str]:
        table: dict[str, str] = {}
        for c in self.classes:
            for key in (c.id, c.name, *c.aliases, *([c.zh] if c.zh else [])):
                table[norm_value(key)] = c.id
        return table

    @cached_property
    def _index(self) -> dict[str, int]:
        return {c.id: i for i, c in enumerate(self.classes)}

    def resolve(self, raw: object) -> str:
        """Map a raw value (id, English or Chinese name, alias; any case) to a class id."""
        cid = self._lookup.get(norm_value(str(raw)))
        if cid is None:
            raise UnknownLabelError(self.name, raw, self.class_ids)
        return cid

    def index(self, class_id: str) -> int:
        """Position of a class id in the task's ordered class list (the head's output index)."""
        try:
            return self._index[class_id]
        except KeyError:
            raise UnknownLabelError(self.name, class_id, self.class_ids) from None


class Taxonomy(BaseModel):
    """The ordered set of tasks a model predicts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    version: int = 1
    missing: tuple[str, ...] = ("", "Not sure", "Skip", "NaN", "nan")
    tasks: tuple[Task, ...]

    @model_validator(mode="after")
    def _unique_tasks(self) -> Taxonomy:
        names = [t.name for t in self.tasks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate task names {dup}")
        if not self.tasks:
            raise ValueError("a taxonomy needs at least one task")
        return self

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise TaxonomyError(
            f"no task '{name}' in taxonomy '{self.name}' (tasks: {self.task_names})"
        )

    def missing_values(self, task: str) -> frozenset[str]:
        return self._missing_sets[task]

    @cached_property
    def _missing_sets(self) -> dict[str, frozenset[str]]:
        return {
            t.name: frozenset(
                norm_value(v) for v in (t.missing if t.missing is not None else self.missing)
            )
            for t in self.tasks
        }

    def is_missing(self, task: str, raw: object) -> bool:
        """True when a raw value means 'not labelled' for this task (None, NaN, or a token)."""
        if raw is None or (isinstance(raw, float) and raw != raw):
            return True
        return norm_value(str(raw)) in self.missing_values(task)

    def subset(self, tasks: list[str]) -> Taxonomy:
        """The same taxonomy restricted to some tasks (e.g. to train a single-task model)."""
        return self.model_copy(update={"tasks": tuple(self.task(t) for t in tasks)})

    # -- files --------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: object, source: str = "<dict>") -> Taxonomy:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise TaxonomyError(_explain(e, data, source)) from None

    @classmethod
    def load(cls, path: str | Path) -> Taxonomy:
        """Read a taxonomy YAML; the error names the file, the task and the field."""
        path = Path(path)
        data = read_yaml(path, TaxonomyError, "taxonomy file")
        return cls.from_dict(data, str(path))

    def to_yaml(self) -> str:
        # libyaml's emitter where PyYAML has it: the same text in a quarter of the time (every
        # catalogue and run writes one)
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        return yaml.dump(
            self.to_dict(), Dumper=dumper, allow_unicode=True, sort_keys=False, width=100
        )

    def to_dict(self) -> dict:
        return self.model_dump(mode="json", exclude_defaults=True)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml(), encoding="utf-8")
        return path


def norm_value(value: str) -> str:
    """The form in which raw values are compared: case, '_' and spacing do not matter."""
    return " ".join(str(value).strip().lower().replace("_", " ").split())


def _explain(err: ValidationError, data: object, source: str) -> str:
    lines = [f"{source}: invalid taxonomy"]
    for e in err.errors():
        loc = list(e["loc"])
        where = []
        if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
            try:
                where.append(f"task '{data['tasks'][loc[1]]['name']}'")  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                where.append(f"task #{loc[1] + 1}")
            loc = loc[2:]
        field = ".".join(str(p) for p in loc)
        where.append(f"field '{field}'" if field else "")
        lines.append(f"  {' '.join(w for w in where if w)}: {e['msg']}")
    return "\n".join(lines)


def default_taxonomy_path() -> Path:
    return Path(str(resources.files("attire") / "taxonomies" / f"{DEFAULT_TAXONOMY}.yaml"))


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """A taxonomy from a file, or the packaged women's-tops taxonomy when no path is given."""
    return Taxonomy.load(path if path is not None else default_taxonomy_path())
