"""Masked per-task losses, the multi-task loss and its config factory, against torch references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attire.errors import AttireError
from attire.losses import (
    TASK_LOSSES,
    GradNorm,
    LossError,
    MaskedCrossEntropy,
    MultiTaskLoss,
    StaticWeighting,
    TaskLoss,
    UncertaintyWeighting,
    build_multitask_loss,
    register_task_loss,
)
from attire.taxonomy import Taxonomy, load_taxonomy

NAN = float("nan")


def _logits(b: int, c: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, generator=g).requires_grad_()


# -- multiclass --------------------------------------------------------------------------------


def test_masked_ce_equals_torch_on_labelled_rows() -> None:
    logits = _logits(6, 3)
    target = torch.tensor([0, -1, 2, 1, -1, 2])
    loss, n = MaskedCrossEntropy(3)(logits, target)
    keep = target >= 0
    assert n == 4
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], target[keep]))


def test_class_weights_scale_items_without_renormalising() -> None:
    logits = _logits(5, 3, seed=1)
    target = torch.tensor([0, 2, -1, 2, 1])
    w = torch.tensor([1.0, 3.0, 0.5])
    loss, n = MaskedCrossEntropy(3, class_weights=w)(logits, target)
    keep = target >= 0
    ref = F.cross_entropy(logits[keep], target[keep], weight=w, reduction="sum") / 4
    assert n == 4
    torch.testing.assert_close(loss, ref)


def test_soft_targets_replace_hard_ones_even_when_hard_is_missing() -> None:
    logits = _logits(4, 3, seed=2)
    target = torch.tensor([0, -1, 2, -1])
    soft = torch.tensor(
        [[NAN, NAN, NAN], [0.0, 0.5, 0.5], [0.8, 0.2, 0.0], [NAN, NAN, NAN]]
    )  # row 0: hard only; row 1: soft only; row 2: soft wins over hard 2; row 3: unlabelled
    loss, n = MaskedCrossEntropy(3)(logits, target, soft)
    logp = torch.log_softmax(logits.detach(), dim=1)
    by_hand = (
        -logp[0, 0] - (0.5 * logp[1, 1] + 0.5 * logp[1, 2]) - (0.8 * logp[2, 0] + 0.2 * logp[2, 1])
    ) / 3
    assert n == 3
    torch.testing.assert_close(loss.detach(), by_hand)


@pytest.mark.parametrize("weighted", [False, True])
def test_label_smoothing_equals_torch(weighted: bool) -> None:
    logits = _logits(6, 4, seed=3)
    target = torch.tensor([3, 0, -1, 1, 1, -1])
    w = torch.tensor([0.5, 2.0, 1.0, 4.0]) if weighted else None
    loss, n = MaskedCrossEntropy(4, class_weights=w, label_smoothing=0.2)(logits, target)
    keep = target >= 0
    ref = F.cross_entropy(
        logits[keep], target[keep], weight=w, label_smoothing=0.2, reduction="sum"
    )
    torch.testing.assert_close(loss, ref / n)


def test_label_smoothing_applies_to_soft_rows_like_torch() -> None:
    logits = _logits(2, 3, seed=4)
    soft = torch.tensor([[0.1, 0.6, 0.3], [0.0, 0.0, 1.0]])
    loss, _ = MaskedCrossEntropy(3, label_smoothing=0.1)(logits, torch.tensor([-1, -1]), soft)
    torch.testing.assert_close(loss, F.cross_entropy(logits, soft, label_smoothing=0.1))


@pytest.mark.parametrize("multilabel", [False, True])
def test_unlabelled_batch_gives_zero_loss_and_zero_finite_gradient(multilabel: bool) -> None:
    logits = (torch.randn(3, 4) * 1e4).requires_grad_()
    target = torch.full((3, 4), -1) if multilabel else torch.full((3,), -1)
    soft = torch.full((3, 4), NAN)
    loss, n = MaskedCrossEntropy(4, multilabel=multilabel, label_smoothing=0.1)(
        logits, target, soft
    )
    loss.backward()
    assert n == 0
    assert loss.item() == 0.0
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert (logits.grad == 0).all()


def test_unlabelled_rows_get_exactly_zero_gradient() -> None:
    logits = _logits(4, 3, seed=5)
    with torch.no_grad():
        logits[1] = torch.tensor([1e6, -1e6, 3e5])  # garbage in an unlabelled row
    loss, _ = MaskedCrossEntropy(3)(logits, torch.tensor([0, -1, 2, 1]))
    loss.backward()
    assert logits.grad is not None
    assert (logits.grad[1] == 0).all()
    assert (logits.grad[[0, 2, 3]] != 0).any(dim=1).all()


# -- multilabel --------------------------------------------------------------------------------


def test_multilabel_bce_equals_torch_on_kept_entries() -> None:
    logits = _logits(4, 3, seed=6)
    target = torch.tensor([[1, 0, -1], [-1, -1, -1], [0, 1, 1], [-1, 1, 0]])
    loss, n = MaskedCrossEntropy(3, multilabel=True)(logits, target)
    keep = target >= 0
    ref = F.binary_cross_entropy_with_logits(logits[keep], target[keep].float())
    assert n == 7
    torch.testing.assert_close(loss, ref)


def test_multilabel_float_targets_class_weights_and_smoothing() -> None:
    logits = _logits(3, 3, seed=7)
    target = torch.tensor([[1.0, 0.0, -1.0], [0.0, -1.0, 1.0], [1.0, 1.0, 0.0]])
    w = torch.tensor([2.0, 1.0, 0.5])
    loss, n = MaskedCrossEntropy(3, multilabel=True, class_weights=w, label_smoothing=0.2)(
        logits, target
    )
    keep = target >= 0
    smoothed = target * 0.8 + 0.1
    full = F.binary_cross_entropy_with_logits(logits, smoothed, weight=w, reduction="none")
    assert n == 7
    torch.testing.assert_close(loss, full[keep].sum() / 7)


def test_multilabel_soft_entries_override_hard_ones() -> None:
    logits = _logits(2, 3, seed=8)
    target = torch.tensor([[1, -1, 0], [-1, -1, -1]])
    soft = torch.tensor([[NAN, 0.7, NAN], [NAN, NAN, 0.4]])
    loss, n = MaskedCrossEntropy(3, multilabel=True)(logits, target, soft)
    z = logits.detach()
    bce = F.binary_cross_entropy_with_logits
    by_hand = (
        bce(z[0, 0], torch.tensor(1.0))
        + bce(z[0, 1], torch.tensor(0.7))
        + bce(z[0, 2], torch.tensor(0.0))
        + bce(z[1, 2], torch.tensor(0.4))
    ) / 4
    assert n == 4
    torch.testing.assert_close(loss.detach(), by_hand)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loss", "logits", "target", "soft", "message"),
    [
        (MaskedCrossEntropy(3), torch.zeros(2, 3), torch.tensor([0, 3]), None, "outside -1..2"),
        (MaskedCrossEntropy(3), torch.zeros(2, 3), torch.tensor([0, -2]), None, "[-2]"),
        (MaskedCrossEntropy(3), torch.zeros(2, 4), torch.tensor([0, 1]), None, "[batch, 3]"),
        (MaskedCrossEntropy(3), torch.zeros(2, 3), torch.tensor([0.0, 1.0]), None, "integer"),
        (MaskedCrossEntropy(3), torch.zeros(2, 3), torch.tensor([0, 1, 1]), None, "shape [2]"),
        (
            MaskedCrossEntropy(3),
            torch.zeros(2, 3),
            torch.tensor([0, 1]),
            torch.tensor([[NAN, 0.5, 0.5], [NAN, NAN, NAN]]),
            "partly NaN",
        ),
        (
            MaskedCrossEntropy(2, multilabel=True),
            torch.zeros(1, 2),
            torch.tensor([[1, 2]]),
            None,
            "1, 0 or -1, got [2]",
        ),
    ],
)
def test_bad_batches_raise_clear_errors(
    loss: TaskLoss, logits: Tensor, target: Tensor, soft: Tensor | None, message: str
) -> None:
    with pytest.raises(LossError) as info:
        loss(logits, target, soft)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_weights": [1.0, 2.0]}, "needs 3 values"),
        ({"class_weights": [1.0, -1.0, 1.0]}, ">= 0"),
        ({"label_smoothing": 1.0}, "[0, 1)"),
    ],
)
def test_bad_loss_options_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(AttireError) as info:
        MaskedCrossEntropy(3, **kwargs)
    assert message in str(info.value)


# -- extension point ---------------------------------------------------------------------------


class _Focal(TaskLoss):
    """A focal loss written the way the long-tail toolkit will: elementwise only."""

    supports = frozenset({"multiclass"})

    def __init__(self, num_classes: int, *, gamma: float = 2.0, **kwargs: object) -> None:
        super().__init__(num_classes, **kwargs)  # type: ignore[arg-type]
        self.gamma = gamma

    def elementwise(self, logits: Tensor, target: Tensor) -> Tensor:
        logp = torch.log_softmax(logits, dim=1)
        return -target * (1 - logp.exp()) ** self.gamma * logp


def test_subclass_inherits_masking_weights_and_zero_for_unlabelled() -> None:
    logits = _logits(5, 3, seed=9)
    target = torch.tensor([2, -1, 0, 0, -1])
    w = torch.tensor([1.0, 1.0, 3.0])
    loss, n = _Focal(3, gamma=2.0, class_weights=w)(logits, target)
    keep = target >= 0
    p = torch.softmax(logits[keep], dim=1).gather(1, target[keep][:, None]).squeeze(1)
    by_hand = (w[target[keep]] * -((1 - p) ** 2) * p.log()).sum() / 3
    assert n == 3
    torch.testing.assert_close(loss, by_hand)
    empty, n0 = _Focal(3)(logits, torch.full((5,), -1))
    assert n0 == 0 and empty.item() == 0.0
    with pytest.raises(LossError, match="does not support multilabel"):
        _Focal(3, multilabel=True)


def test_registered_loss_is_selectable_from_config(tax: Taxonomy) -> None:
    register_task_loss("test_focal")(_Focal)
    try:
        with pytest.raises(ValueError, match="already taken"):
            register_task_loss("test_focal")(MaskedCrossEntropy)
        mtl = build_multitask_loss(
            tax, {"tasks": {"colour": {"loss": {"name": "test_focal", "gamma": 3.0}}}}
        )
        assert isinstance(mtl.task_losses["colour"], _Focal)
        assert mtl.task_losses["colour"].gamma == 3.0
        with pytest.raises(AttireError, match="'test_focal' does not support multilabel"):
            build_multitask_loss(tax, {"loss": "test_focal"})
    finally:
        TASK_LOSSES.pop("test_focal")


# -- MultiTaskLoss -----------------------------------------------------------------------------


def _batch(tax: Taxonomy, b: int = 4, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    outputs: dict[str, Tensor] = {"embedding": torch.randn(b, 8, generator=g)}
    targets: dict[str, Tensor] = {}
    for task in tax.tasks:
        c = task.num_classes
        outputs[task.name] = torch.randn(b, c, generator=g).requires_grad_()
        if task.multilabel:
            targets[task.name] = torch.randint(-1, 2, (b, c), generator=g)
        else:
            targets[task.name] = torch.randint(-1, c, (b,), generator=g)
    targets["colour"][0] = 1  # at least one label per task
    targets["elements"][0, 0] = 1
    targets["fit"][0] = 0
    return outputs, targets


def test_total_is_the_sum_of_masked_task_losses(tax: Taxonomy) -> None:
    outputs, targets = _batch(tax)
    out = MultiTaskLoss(tax, label_smoothing=0.1)(outputs, targets)
    expected = 0.0
    for task in tax.tasks:
        loss, n = MaskedCrossEntropy(
            task.num_classes, multilabel=task.multilabel, label_smoothing=0.1
        )(outputs[task.name], targets[task.name])
        torch.testing.assert_close(out.per_task[task.name], loss.detach())
        assert out.counts[task.name] == n
        expected = expected + loss
    torch.testing.assert_close(out.total, expected)
    assert all(not v.requires_grad for v in out.per_task.values())
    assert out.total.requires_grad


@pytest.mark.parametrize("weighting", ["static", "uncertainty", "dwa", "gradnorm"])
def test_a_task_without_labels_changes_nothing(tax: Taxonomy, weighting: str) -> None:
    outputs, targets = _batch(tax)
    targets["fit"] = torch.full_like(targets["fit"], -1)
    totals, grads = [], []
    for fit_logits in (torch.zeros(4, 2), torch.randn(4, 2) * 1e6):
        mtl = build_multitask_loss(tax, {"weighting": weighting})
        torch.manual_seed(0)
        shared = torch.nn.Linear(3, 3)
        outs = {k: v.detach().clone().requires_grad_() for k, v in outputs.items()}
        outs["colour"] = shared(outs["colour"])
        outs["fit"] = fit_logits.requires_grad_()
        out = mtl(outs, targets, shared_params=shared.parameters())
        out.total.backward()
        assert out.counts["fit"] == 0 and out.per_task["fit"].item() == 0.0
        assert outs["fit"].grad is not None and (outs["fit"].grad == 0).all()
        totals.append(out.total.detach())
        grads.append(shared.weight.grad)
    torch.testing.assert_close(totals[0], totals[1])
    torch.testing.assert_close(grads[0], grads[1])
    assert torch.isfinite(totals[0])


def test_soft_targets_flow_through_to_task_losses(tax: Taxonomy) -> None:
    outputs, targets = _batch(tax)
    targets["fit"] = torch.full_like(targets["fit"], -1)
    soft = {"fit": torch.tensor([[0.3, 0.7], [NAN, NAN], [NAN, NAN], [NAN, NAN]])}
    out = MultiTaskLoss(tax)(outputs, targets, soft)
    logp = torch.log_softmax(outputs["fit"].detach()[0], dim=0)
    assert out.counts["fit"] == 1
    torch.testing.assert_close(out.per_task["fit"], -(0.3 * logp[0] + 0.7 * logp[1]))


def test_missing_task_and_bad_batch_errors_name_the_task(tax: Taxonomy) -> None:
    outputs, targets = _batch(tax)
    mtl = MultiTaskLoss(tax)
    with pytest.raises(LossError, match="model outputs have no entry for task 'fit'"):
        mtl({k: v for k, v in outputs.items() if k != "fit"}, targets)
    with pytest.raises(LossError, match="targets have no entry for task 'colour'"):
        mtl(outputs, {k: v for k, v in targets.items() if k != "colour"})
    targets["colour"][1] = 7
    with pytest.raises(LossError, match=r"task 'colour': class index outside -1\.\.2"):
        mtl(outputs, targets)
    targets["colour"][1] = 0
    targets["not_in_taxonomy"] = torch.zeros(4, dtype=torch.long)  # ignored, like "embedding"
    assert torch.isfinite(mtl(outputs, targets).total)


def test_gradnorm_needs_shared_params_in_training_only(tax: Taxonomy) -> None:
    outputs, targets = _batch(tax)
    mtl = MultiTaskLoss(tax, weighting=GradNorm(tax.task_names))
    with pytest.raises(LossError, match="needs shared_params"):
        mtl(outputs, targets)
    mtl.eval()
    assert torch.isfinite(mtl(outputs, targets).total)


def test_constructor_checks_losses_and_weighting_against_taxonomy(tax: Taxonomy) -> None:
    with pytest.raises(LossError, match=r"task 'colour'.*multiclass with 4 classes"):
        MultiTaskLoss(tax, {"colour": MaskedCrossEntropy(4)})
    with pytest.raises(LossError, match="not in taxonomy"):
        MultiTaskLoss(tax, {"sleeve": MaskedCrossEntropy(4)})
    with pytest.raises(LossError, match="weighting covers tasks"):
        MultiTaskLoss(tax, weighting=StaticWeighting(["colour", "fit"]))


# -- config factory ----------------------------------------------------------------------------


def test_build_from_config_on_the_packaged_taxonomy() -> None:
    tax = load_taxonomy()
    cfg = {
        "weighting": {"name": "uncertainty"},
        "label_smoothing": 0.1,
        "tasks": {
            "collar": {"weight": 2.0},
            "fabric": {"loss": {"name": "ce", "label_smoothing": 0.0}},
        },
    }
    mtl = build_multitask_loss(tax, cfg)
    assert isinstance(mtl.weighting, UncertaintyWeighting)
    assert mtl.weighting.task_weights()["collar"] == 2.0
    assert mtl.weighting.task_weights()["fit"] == 1.0
    assert mtl.task_losses["collar"].label_smoothing == 0.1
    assert mtl.task_losses["fabric"].label_smoothing == 0.0
    assert mtl.task_losses["trend_elements"].multilabel
    assert set(mtl.task_losses) == set(tax.task_names)


def test_config_class_weights_reach_the_task_loss(tax: Taxonomy) -> None:
    cfg = {"tasks": {"colour": {"loss": {"name": "ce", "class_weights": [1, 2, 3]}}}}
    mtl = build_multitask_loss(tax, cfg)
    torch.testing.assert_close(
        mtl.task_losses["colour"].class_weights, torch.tensor([1.0, 2.0, 3.0])
    )
    assert build_multitask_loss(tax, None).task_losses["colour"].class_weights is None


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"weigthing": "dwa"}, "unknown key 'weigthing'"),
        ({"tasks": {"sleeve": {"weight": 2}}}, "tasks.sleeve: no such task"),
        ({"tasks": {"fit": {"wieght": 2}}}, "tasks.fit: unknown key 'wieght'"),
        ({"tasks": {"fit": {"weight": "high"}}}, "tasks.fit.weight: expected a number"),
        ({"tasks": {"fit": {"weight": -1.0}}}, "weight of task 'fit' must be a number >= 0"),
        ({"loss": "focal_typo"}, "unknown task loss 'focal_typo'"),
        ({"loss": {"gamma": 2}}, "loss: needs a 'name'"),
        ({"tasks": {"fit": {"loss": {"name": "ce", "gamma": 2}}}}, "unknown option 'gamma'"),
        ({"loss": {"name": "ce", "num_classes": 9}}, "'num_classes' is set by attire"),
        ({"weighting": "softmax"}, "unknown weighting 'softmax'"),
        ({"weighting": {"name": "dwa", "temp": 2}}, "unknown option 'temp'"),
        ({"weighting": {"name": "dwa", "temperature": 0}}, "temperature must be > 0"),
        ({"weighting": {"name": "gradnorm", "alpha": "x"}}, "weighting: bad option value"),
        ({"weighting": {"name": "static", "tasks": ["a"]}}, "'tasks' is set by attire"),
        ({"label_smoothing": 1.5}, "label_smoothing must be in [0, 1)"),
        ({"tasks": {"fit": {"loss": {"name": "ce", "class_weights": [1]}}}}, "needs 2 values"),
        ({"tasks": ["fit"]}, "tasks: expected a mapping"),
    ],
)
def test_config_errors_name_the_bad_key_or_value(tax: Taxonomy, cfg: dict, message: str) -> None:
    with pytest.raises(AttireError) as info:
        build_multitask_loss(tax, cfg)
    assert message in str(info.value)
