"""Long-tail recipes: named combinations of a task loss, an embedding loss, a sampler and a
post-training step, chosen per task in the training config (docs/LONG_TAIL.md).

    recipe: cb-focal                  # every task the recipe supports
    recipes:                          # per task; replaces `recipe` for the tasks it names
      collar: [ldam-drw, tau-norm]
      main_colour: ce

Each recipe sets one *part* of a task's training: its loss (`loss.tasks.<task>.loss`), its
embedding loss (`loss.tasks.<task>.range`), the sampler, or a post-training step (a
`PostTrainingStep` run on the trained checkpoint). A task may take a list of recipes, at most one
per part. `resolve_plan` expands the recipes into the loss config, sampler config and
post-training steps that training actually runs (`TrainingPlan`); errors name the recipe and the
config field.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

from attire.errors import AttireError
from attire.sampling.samplers import SQRT_POWER, SamplerConfig
from attire.taxonomy import Taxonomy

Part = Literal["loss", "embedding", "sampler", "post"]
PARTS: tuple[str, ...] = Part.__args__  # type: ignore[attr-defined]
PostMethod = Literal[
    "crt",
    "smote",
    "adasyn",
    "borderline-smote",
    "nearmiss",
    "tomek",
    "enn",
    "cluster-centroids",
    "tau-norm",
    "logit-adjust",
]
POST_METHODS: tuple[str, ...] = PostMethod.__args__  # type: ignore[attr-defined]
RecipeNames: TypeAlias = str | list[str]
DRW_AT = 0.8  # LDAM-DRW switches to re-weighting after this share of the epochs (Cao et al.)


class RecipeError(AttireError):
    """A recipe name or combination that cannot be expanded into a training plan."""


# -- post-training steps -----------------------------------------------------------------------

_RETRAIN = frozenset({"epochs", "weight_decay"})
_RESAMPLE = _RETRAIN | {"seed"}
_STEP_OPTIONS: dict[str, frozenset[str]] = {
    "crt": _RETRAIN,
    "smote": _RESAMPLE | {"k_neighbors"},
    "adasyn": _RESAMPLE | {"k_neighbors"},
    "borderline-smote": _RESAMPLE | {"k_neighbors"},
    "nearmiss": _RESAMPLE | {"k_neighbors"},
    "tomek": _RESAMPLE,
    "enn": _RESAMPLE | {"k_neighbors"},
    "cluster-centroids": _RESAMPLE,
    "tau-norm": frozenset({"tau"}),
    "logit-adjust": frozenset({"tau"}),
}


class PostTrainingStep(BaseModel):
    """One classifier-rebalancing step on a trained checkpoint (`attire.training.rebalance`).

    Options left out take the defaults of `rebalance.RETRAIN_DEFAULTS` (cRT) and imbalanced-
    learn (neighbours); an option the method does not use is refused.
    """

    model_config = ConfigDict(extra="forbid")
    method: PostMethod
    tasks: list[str] | None = Field(default=None, description="default: every multiclass task")
    tau: float | None = Field(
        default=None, ge=0, le=10, description="tau-norm / logit-adjust; default: best on val"
    )
    epochs: int | None = Field(
        default=None, ge=1, description="classifier re-training: full-batch L-BFGS passes"
    )
    weight_decay: float | None = Field(default=None, ge=0, description="re-training L2 strength")
    k_neighbors: int | None = Field(default=None, ge=1, description="neighbours of the resampler")
    seed: int | None = Field(default=None, description="resampling seed; default: the run's")

    @model_validator(mode="after")
    def _fits_method(self) -> PostTrainingStep:
        allowed = _STEP_OPTIONS[self.method]
        for option in ("tau", "epochs", "weight_decay", "k_neighbors", "seed"):
            if getattr(self, option) is not None and option not in allowed:
                raise ValueError(
                    f"post-training method '{self.method}' takes no `{option}` "
                    f"(it takes {', '.join(sorted(allowed))})"
                )
        if self.tasks is not None and not self.tasks:
            raise ValueError("`tasks` is empty; leave it out for every multiclass task")
        return self


# -- the recipes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """A named setting of one part of a task's training; `does`/`reference`/`when` document it."""

    name: str
    part: Part
    does: str
    reference: str
    when: str
    loss: Mapping[str, Any] | None = None  # the task's loss spec
    range: Mapping[str, Any] | None = None  # the task's range-loss section
    sampler: str | None = None  # a single-task sampler name
    post: str | None = None  # a PostTrainingStep method
    multiclass_only: bool = False

    def loss_spec(self, epochs: int) -> dict[str, Any]:
        spec = dict(self.loss or {})
        if spec.get("name") == "ldam-drw":
            spec["drw_epoch"] = math.floor(DRW_AT * epochs)
        return spec


def _loss(
    name: str, does: str, reference: str, when: str, spec: dict[str, Any], multiclass_only: bool
) -> Recipe:
    return Recipe(name, "loss", does, reference, when, loss=spec, multiclass_only=multiclass_only)


def _post(name: str, method: str, does: str, reference: str, when: str) -> Recipe:
    return Recipe(name, "post", does, reference, when, post=method, multiclass_only=True)


_ALL: tuple[Recipe, ...] = (
    _loss(
        "ce",
        "plain cross-entropy (sigmoid BCE for a multilabel task): the baseline, and the "
        "first stage of the decoupled recipes",
        "none: the baseline the long-tail papers compare with",
        "a task that is not long-tailed, or to undo `recipe:` for one task",
        {"name": "ce"},
        False,
    ),
    _loss(
        "focal",
        "focal loss, gamma 2: easy (mostly head-class) examples count less",
        "Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
        "many easy examples, moderate imbalance",
        {"name": "focal", "gamma": 2.0},
        False,
    ),
    _loss(
        "cb-ce",
        "cross-entropy weighted by 1 / effective number of samples (beta 0.9999)",
        "Cui et al., Class-Balanced Loss Based on Effective Number of Samples, CVPR 2019",
        "strong imbalance, when plain inverse-frequency weights over-weight the rarest classes",
        {"name": "cb-ce", "beta": 0.9999},
        False,
    ),
    _loss(
        "cb-focal",
        "focal loss (gamma 2) weighted by 1 / effective number of samples (beta 0.9999)",
        "Cui et al., Class-Balanced Loss Based on Effective Number of Samples, CVPR 2019",
        "strong imbalance with many easy head-class examples; works on multilabel tasks",
        {"name": "cb-focal", "beta": 0.9999, "gamma": 2.0},
        False,
    ),
    _loss(
        "ldam-drw",
        "label-distribution-aware margins (rare classes must win by more: up to 1 logit, "
        "scale s 1) and class-balanced re-weighting switched on after 80% of the epochs",
        "Cao et al., Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss, "
        "NeurIPS 2019",
        "long runs (DRW needs enough epochs before and after the switch); multiclass only",
        {"name": "ldam-drw", "s": 1.0, "max_m": 1.0},
        True,
    ),
    _loss(
        "logit-adjust",
        "cross-entropy on logits + log prior (tau 1): the raw logits come out balanced",
        "Menon et al., Long-Tail Learning via Logit Adjustment, ICLR 2021",
        "the default first try for a long-tailed multiclass task; no extra hyper-parameter",
        {"name": "logit-adjust", "tau": 1.0},
        True,
    ),
    _loss(
        "balanced-softmax",
        "softmax with each class's exponent multiplied by its count (logit-adjust, tau 1)",
        "Ren et al., Balanced Meta-Softmax for Long-Tailed Visual Recognition, NeurIPS 2020",
        "as logit-adjust, under the name the literature uses",
        {"name": "balanced-softmax"},
        True,
    ),
    Recipe(
        "range",
        "embedding",
        "adds 0.1 x Range loss on the task head's L2-normalised embedding: tight classes, "
        "separated centres, so rare classes still shape the embedding",
        "Zhang et al., Range Loss for Deep Face Recognition with Long-Tailed Training Data, "
        "ICCV 2017",
        "many classes with few examples each; combine with a loss recipe, e.g. [cb-focal, range]",
        range={"lambda": 0.1, "normalize": True},
        multiclass_only=True,
    ),
    Recipe(
        "sqrt-sampler",
        "sampler",
        "draws class c with probability proportional to sqrt(n_c), then one of its images",
        "Mahajan et al., Exploring the Limits of Weakly Supervised Pretraining, ECCV 2018",
        "a gentle rebalancing that keeps most head-class images in every epoch",
        sampler="sqrt",
    ),
    Recipe(
        "class-balanced-sampler",
        "sampler",
        "draws every class equally often, then one of its images (with replacement)",
        "Shen et al., Relay Backpropagation, ECCV 2016; Kang et al., Decoupling "
        "Representation and Classifier for Long-Tailed Recognition, ICLR 2020",
        "the one task whose rare classes matter most; rare images repeat many times per epoch",
        sampler="class-balanced",
    ),
    Recipe(
        "progressive-sampler",
        "sampler",
        "moves linearly from instance sampling (first epoch) to class-balanced (last epoch)",
        "Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, "
        "ICLR 2020",
        "features learnt on the natural distribution first, balanced classifier at the end; "
        "one task only",
        sampler="progressive",
    ),
    _post(
        "crt",
        "crt",
        "after training, re-trains the head's last linear layer on the frozen embeddings of the "
        "training images with class-balanced weights",
        "Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, "
        "ICLR 2020",
        "a cheap fix of a head biased to frequent classes, with the backbone kept",
    ),
    _post(
        "crt-smote",
        "smote",
        "cRT on embeddings over-sampled with SMOTE: new rare-class embeddings interpolated "
        "between neighbours, every class up to the largest",
        "Chawla et al., SMOTE: Synthetic Minority Over-sampling Technique, JAIR 2002",
        "rare classes whose embeddings form compact clusters",
    ),
    _post(
        "crt-adasyn",
        "adasyn",
        "cRT on embeddings over-sampled with ADASYN: more synthetic points where a rare class "
        "is hard to learn (many neighbours of other classes)",
        "He et al., ADASYN: Adaptive Synthetic Sampling Approach, IJCNN 2008",
        "rare classes that overlap the frequent ones",
    ),
    _post(
        "crt-borderline-smote",
        "borderline-smote",
        "cRT on embeddings over-sampled with Borderline-SMOTE: only the rare embeddings near "
        "the class boundary are interpolated",
        "Han et al., Borderline-SMOTE, ICIC 2005",
        "rare classes with a clean core and a contested border",
    ),
    _post(
        "crt-nearmiss",
        "nearmiss",
        "cRT on embeddings under-sampled with NearMiss-1: every class cut to the smallest "
        "one's size, keeping the embeddings closest to the rarest class",
        "Mani & Zhang, kNN Approach to Unbalanced Data Distributions, ICML workshop 2003",
        "many examples in every class; it discards most of the data",
    ),
    _post(
        "crt-tomek",
        "tomek",
        "cRT on embeddings cleaned of Tomek links: pairs of mutual nearest neighbours of "
        "different classes lose their members outside the smallest class",
        "Tomek, Two Modifications of CNN, IEEE Trans. SMC 1976",
        "noisy boundaries; it removes few points and does not balance counts",
    ),
    _post(
        "crt-enn",
        "enn",
        "cRT on embeddings cleaned by Edited Nearest Neighbours: non-minority embeddings whose "
        "neighbours disagree with their label are removed",
        "Wilson, Asymptotic Properties of Nearest Neighbor Rules Using Edited Data, 1972",
        "label noise in frequent classes spilling over rare ones",
    ),
    _post(
        "crt-cluster-centroids",
        "cluster-centroids",
        "cRT on embeddings under-sampled by k-means: every class replaced by as many centroids "
        "as the smallest class has embeddings",
        "Yen & Lee, Cluster-based under-sampling approaches, Expert Syst. Appl. 2009",
        "very large head classes with much redundancy",
    ),
    _post(
        "tau-norm",
        "tau-norm",
        "divides each class's weight row (and bias) of the head's last layer by its norm^tau, "
        "tau chosen on val by balanced accuracy",
        "Kang et al., Decoupling Representation and Classifier for Long-Tailed Recognition, "
        "ICLR 2020",
        "no retraining at all; frequent classes ended with larger weight norms",
    ),
    _post(
        "posthoc-logit-adjust",
        "logit-adjust",
        "at prediction, subtracts tau x log prior from the logits (tau chosen on val by "
        "balanced accuracy); stored in the checkpoint, applied by the predictor",
        "Menon et al., Long-Tail Learning via Logit Adjustment, ICLR 2021",
        "a model trained with plain losses; never after logit-adjust or balanced-softmax",
    ),
)
RECIPES: dict[str, Recipe] = {r.name: r for r in _ALL}


# -- resolution --------------------------------------------------------------------------------


@dataclass
class TrainingPlan:
    """What a run trains with once its recipes are expanded."""

    loss: dict[str, Any]
    sampler: SamplerConfig
    post_training: list[PostTrainingStep]
    recipes: dict[str, list[str]] = field(default_factory=dict)  # task -> recipes applied
    notes: list[str] = field(default_factory=list)  # recipes left out, and why

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for the checkpoint's attire.json."""
        return {
            "recipes": self.recipes,
            "loss": self.loss,
            "sampler": self.sampler.model_dump(exclude_none=True),
            "post_training": [s.model_dump(exclude_none=True) for s in self.post_training],
            "notes": self.notes,
        }


def as_list(names: RecipeNames | None) -> list[str]:
    if names is None:
        return []
    return [names] if isinstance(names, str) else list(names)


_DOCUMENTATION = ("name", "does", "reference", "when")


def recipe_settings(
    recipe: RecipeNames | None, recipes: dict[str, RecipeNames], epochs: int
) -> dict[str, dict[str, Any]]:
    """What each named recipe sets (every field but its documentation, the loss as resolved for
    `epochs`): part of a run's fingerprint, so a run trained under an earlier definition of a
    recipe is not reused as if current."""
    names = as_list(recipe) + [n for v in recipes.values() for n in as_list(v)]
    return {
        name: {f.name: getattr(r, f.name) for f in fields(r) if f.name not in _DOCUMENTATION}
        | {"loss": r.loss_spec(epochs)}
        for name in sorted(set(names))
        if (r := RECIPES.get(name)) is not None
    }


def recipe_problems(
    recipe: RecipeNames | None,
    recipes: Mapping[str, RecipeNames],
    loss: Mapping[str, Any],
    sampler: SamplerConfig,
) -> list[tuple[str, str]]:
    """What is wrong with the recipe fields alone (no taxonomy needed), as (field, message)."""
    out: list[tuple[str, str]] = []
    entries = [("recipe", as_list(recipe))]
    entries += [(f"recipes.{task}", as_list(names)) for task, names in recipes.items()]
    for where, names in entries:
        unknown = [n for n in names if n not in RECIPES]
        if unknown:
            out.append((where, f"unknown recipe {unknown[0]!r} (known: {', '.join(RECIPES)})"))
            continue
        by_part: dict[str, str] = {}
        for name in names:
            part = RECIPES[name].part
            if part in by_part:
                out.append(
                    (
                        where,
                        f"recipes {by_part[part]!r} and {name!r} both set the {part}; a task "
                        f"takes at most one recipe of each part ({', '.join(PARTS)})",
                    )
                )
            by_part[part] = name
    known = [n for _, names in entries for n in names if n in RECIPES]
    global_loss = [n for n in as_list(recipe) if n in RECIPES and RECIPES[n].part == "loss"]
    if global_loss and isinstance(loss, Mapping) and "loss" in loss:
        out.append(
            (
                "recipe",
                f"recipe {global_loss[0]!r} sets every task's loss, and so does `loss.loss`; "
                "keep one",
            )
        )
    sampler_recipes = [n for n in known if RECIPES[n].part == "sampler"]
    if sampler_recipes and not sampler.is_default:
        out.append(
            (
                "sampler",
                f"recipe {sampler_recipes[0]!r} sets the sampler, and so does `sampler:`; keep one",
            )
        )
    return out


def resolve_plan(
    *,
    recipe: RecipeNames | None,
    recipes: Mapping[str, RecipeNames],
    loss: Mapping[str, Any],
    sampler: SamplerConfig,
    post_training: list[PostTrainingStep],
    taxonomy: Taxonomy,
    epochs: int,
    missing: Mapping[str, float] | None = None,
) -> TrainingPlan:
    """Expand the recipes for `taxonomy` into the loss config, sampler and post-training steps.

    A task named in `recipes` gets exactly those recipes, every other task `recipe`. A recipe
    that needs a multiclass task skips multilabel tasks when it comes from `recipe` (noted in
    the plan) and is an error when named for one. A recipe's loss or range section may not
    replace one written for the same task under `loss.tasks` (an error), except that `recipe`
    leaves such a task's own section in place. Sampler recipes resolve to one sampler: on one
    task, that task's sampler, with `missing_share` = the task's share of training rows without
    its label (`missing`), so the other tasks keep seeing those images as often as before; on
    several tasks, the multi-task balanced sampler over them (power 0 for class-balanced, 0.5
    for sqrt); different sampler recipes, or progressive on several tasks, are an error.
    Post-training recipes become one step per method, before the explicit `post_training`.
    """
    problems = recipe_problems(recipe, recipes, loss, sampler)
    if problems:
        raise RecipeError("; ".join(f"field '{f}': {m}" for f, m in problems))
    names = taxonomy.task_names
    unknown = sorted(set(recipes) - set(names))
    if unknown:
        raise RecipeError(
            f"field 'recipes.{unknown[0]}': no such task in taxonomy '{taxonomy.name}' "
            f"(tasks: {', '.join(names)})"
        )
    plan_loss = copy.deepcopy(dict(loss))
    tasks_cfg = {t: dict(v or {}) for t, v in (plan_loss.get("tasks") or {}).items()}
    applied: dict[str, list[str]] = {}
    notes: list[str] = []
    samplers: dict[str, str] = {}  # task -> recipe
    posts: dict[str, list[str]] = {}  # method -> tasks
    touched_loss = False
    for task in taxonomy.tasks:
        explicit = task.name in recipes
        where = f"recipes.{task.name}" if explicit else "recipe"
        for name in as_list(recipes[task.name] if explicit else recipe):
            r = RECIPES[name]
            if r.multiclass_only and task.multilabel:
                if explicit:
                    raise RecipeError(
                        f"field '{where}': recipe {name!r} needs a multiclass task; "
                        f"'{task.name}' is multilabel"
                    )
                notes.append(f"recipe {name!r} left out on multilabel task '{task.name}'")
                continue
            if r.part in ("loss", "embedding"):
                key = "loss" if r.part == "loss" else "range"
                own = tasks_cfg.get(task.name, {})
                if key in own:
                    if explicit:
                        raise RecipeError(
                            f"field '{where}': recipe {name!r} sets the {key} of task "
                            f"'{task.name}', and so does loss.tasks.{task.name}.{key}; keep one"
                        )
                    notes.append(
                        f"recipe {name!r} left out on task '{task.name}': "
                        f"loss.tasks.{task.name}.{key} is set"
                    )
                    continue
                value = r.loss_spec(epochs) if r.part == "loss" else dict(r.range or {})
                tasks_cfg.setdefault(task.name, {})[key] = value
                touched_loss = True
            elif r.part == "sampler":
                samplers[task.name] = name
            else:
                assert r.post is not None
                posts.setdefault(r.post, []).append(task.name)
            applied.setdefault(task.name, []).append(name)
    if touched_loss:
        plan_loss["tasks"] = tasks_cfg
    steps = [PostTrainingStep(method=m, tasks=ts) for m, ts in posts.items()]  # type: ignore[arg-type]
    return TrainingPlan(
        loss=plan_loss,
        sampler=_resolve_sampler(samplers, sampler, missing or {}),
        post_training=steps + list(post_training),
        recipes=applied,
        notes=notes,
    )


def _resolve_sampler(
    chosen: Mapping[str, str], configured: SamplerConfig, missing: Mapping[str, float]
) -> SamplerConfig:
    """One sampler from the tasks' sampler recipes (see `resolve_plan`)."""
    if not chosen:
        return configured
    kinds = sorted(set(chosen.values()))
    if len(kinds) > 1:
        shown = ", ".join(f"{t}: {n}" for t, n in chosen.items())
        raise RecipeError(
            f"field 'recipes': a run has one sampler, and the recipes ask for {kinds} ({shown}); "
            "give the tasks the same sampler recipe"
        )
    name = kinds[0]
    kind = RECIPES[name].sampler
    tasks = list(chosen)
    if len(tasks) == 1:
        share = missing.get(tasks[0], 0.0)
        return SamplerConfig(
            name=kind,  # type: ignore[arg-type]
            task=tasks[0],
            missing_share=share if 0.0 < share < 1.0 else None,
        )
    if kind == "progressive":
        raise RecipeError(
            f"field 'recipes': recipe 'progressive-sampler' balances one task and is set for "
            f"{tasks}; name it for one task under `recipes:`"
        )
    power = 0.0 if kind == "class-balanced" else SQRT_POWER
    return SamplerConfig(name="multitask-balanced", tasks=tasks, power=power)
