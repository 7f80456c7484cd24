"""Long-tail task losses against hand formulas, their gradients' behaviour, masking, config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from attire.errors import AttireError
from attire.losses import (
    TASK_LOSSES,
    BalancedSoftmaxLoss,
    ClassBalancedCrossEntropy,
    ClassBalancedFocal,
    FocalLoss,
    LDAMDRWLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    LossError,
    MaskedCrossEntropy,
    RangeLoss,
    TaskLoss,
    WeightedCrossEntropy,
    adjust_logits,
    build_multitask_loss,
    class_balanced_weights,
    inverse_frequency_weights,
    ldam_margins,
)
from attire.taxonomy import Taxonomy

COUNTS3 = [1000, 100, 10]
COUNTS4 = [50, 5, 0, 500]  # class 2 never seen


@pytest.fixture
def counts() -> dict[str, np.ndarray]:
    return {
        "colour": np.array(COUNTS3),
        "elements": np.array(COUNTS4),
        "fit": np.array([30, 3]),
    }


def _logits(b: int, c: int, seed: int = 0, scale: float = 1.0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, generator=g) * scale).requires_grad_()


def _cb(counts: list[float], beta: float) -> Tensor:
    w = torch.tensor([(1 - beta) / (1 - beta ** max(n, 1)) for n in counts])
    return w * len(counts) / w.sum()


# -- class weights, margins, priors ------------------------------------------------------------


def test_inverse_frequency_weights() -> None:
    inv = torch.tensor([1 / 1000, 1 / 100, 1 / 10])
    torch.testing.assert_close(inverse_frequency_weights(COUNTS3), inv * 3 / inv.sum())
    sqrt = inv.sqrt()
    torch.testing.assert_close(inverse_frequency_weights(COUNTS3, 0.5), sqrt * 3 / sqrt.sum())
    torch.testing.assert_close(inverse_frequency_weights(COUNTS3, 0.0), torch.ones(3))


def test_class_balanced_weights_follow_the_effective_number() -> None:
    for beta in (0.9, 0.999, 0.9999):
        w = class_balanced_weights(COUNTS3, beta)
        torch.testing.assert_close(w, _cb(COUNTS3, beta))
        assert w.sum().item() == pytest.approx(3.0)
        assert w[0] < w[1] < w[2]
    torch.testing.assert_close(class_balanced_weights(COUNTS3, 0.0), torch.ones(3))
    # beta -> 1 approaches inverse frequency
    torch.testing.assert_close(
        class_balanced_weights(COUNTS3, 1 - 1e-9),
        inverse_frequency_weights(COUNTS3),
        rtol=1e-4,
        atol=0,
    )


def test_ldam_margins() -> None:
    # n^(-1/4) of 10000, 16, 1 is 0.1, 0.5, 1 -> scaled so the largest is max_m
    torch.testing.assert_close(ldam_margins([10000, 16, 1], 0.5), torch.tensor([0.05, 0.25, 0.5]))
    torch.testing.assert_close(ldam_margins([16, 16], 0.3), torch.tensor([0.3, 0.3]))


def test_zero_counts_are_clipped_at_one() -> None:
    for w in (class_balanced_weights(COUNTS4), inverse_frequency_weights(COUNTS4)):
        assert torch.isfinite(w).all()
    torch.testing.assert_close(class_balanced_weights([0, 5]), class_balanced_weights([1, 5]))
    torch.testing.assert_close(ldam_margins([0, 5]), ldam_margins([1, 5]))
    assert torch.isfinite(adjust_logits(torch.zeros(1, 4), COUNTS4)).all()


@pytest.mark.parametrize(
    ("counts", "message"),
    [([1, 2], "needs 3 values"), ([1, -1, 2], ">= 0"), ([1, float("nan"), 2], "finite")],
)
def test_bad_counts_raise(counts: list[float], message: str) -> None:
    with pytest.raises(LossError, match=message):
        WeightedCrossEntropy(3, class_counts=counts)


# -- re-weighted CE ----------------------------------------------------------------------------


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_weighted_ce_multiclass(power: float) -> None:
    logits = _logits(6, 3)
    target = torch.tensor([0, 2, -1, 1, 2, 0])
    loss, n = WeightedCrossEntropy(3, class_counts=COUNTS3, power=power)(logits, target)
    w = torch.tensor([1000**-power, 100**-power, 10**-power])
    w = w * 3 / w.sum()
    keep = target >= 0
    ref = F.cross_entropy(logits[keep], target[keep], weight=w, reduction="sum") / 5
    assert n == 5
    torch.testing.assert_close(loss, ref)


@pytest.mark.parametrize(
    ("cls", "weights"),
    [
        (WeightedCrossEntropy, inverse_frequency_weights(COUNTS4)),
        (ClassBalancedCrossEntropy, _cb(COUNTS4, 0.9999)),
    ],
)
def test_reweighted_ce_multilabel_weights_columns(cls: type[TaskLoss], weights: Tensor) -> None:
    logits = _logits(3, 4, seed=1)
    target = torch.tensor([[1, 0, -1, 0], [-1, -1, -1, -1], [0, 1, 1, 0]])
    loss, n = cls(4, class_counts=COUNTS4, multilabel=True)(logits, target)
    keep = target >= 0
    full = F.binary_cross_entropy_with_logits(
        logits, target.clamp(min=0).float(), weight=weights, reduction="none"
    )
    assert n == 7
    torch.testing.assert_close(loss, full[keep].sum() / 7)


def test_cb_ce_multiclass_with_smoothing() -> None:
    logits = _logits(5, 3, seed=2)
    target = torch.tensor([2, 2, 0, -1, 1])
    loss, _ = ClassBalancedCrossEntropy(3, class_counts=COUNTS3, beta=0.999, label_smoothing=0.1)(
        logits, target
    )
    keep = target >= 0
    ref = F.cross_entropy(
        logits[keep],
        target[keep],
        weight=_cb(COUNTS3, 0.999),
        label_smoothing=0.1,
        reduction="sum",
    )
    torch.testing.assert_close(loss, ref / 4)


# -- focal -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_softmax_focal_by_hand(gamma: float) -> None:
    logits = _logits(6, 3, seed=3)
    target = torch.tensor([0, -1, 2, 1, 1, -1])
    loss, n = FocalLoss(3, gamma=gamma)(logits, target)
    keep = target >= 0
    p = torch.softmax(logits[keep], 1).gather(1, target[keep][:, None]).squeeze(1)
    torch.testing.assert_close(loss, (-((1 - p) ** gamma) * p.log()).sum() / 4)
    assert n == 4
    if gamma == 0.0:
        torch.testing.assert_close(loss, F.cross_entropy(logits[keep], target[keep]))


@pytest.mark.parametrize("alpha", [None, 0.25])
def test_sigmoid_focal_equals_torchvision(alpha: float | None) -> None:
    logits = _logits(4, 4, seed=4, scale=3.0)
    target = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 1], [-1, -1, -1, -1], [1, 1, 0, -1]])
    loss, n = FocalLoss(4, gamma=2.0, alpha=alpha, multilabel=True)(logits, target)
    keep = target >= 0
    ref = sigmoid_focal_loss(
        logits[keep], target[keep].float(), alpha=-1 if alpha is None else alpha, gamma=2.0
    )
    assert n == int(keep.sum())
    torch.testing.assert_close(loss, ref.sum() / n)


def test_focal_down_weights_easy_examples() -> None:
    # item 0 is confidently right (p ~ 0.98), item 1 is wrong (p ~ 0.02)
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    target = torch.tensor([0, 0])
    grads = {}
    for name, loss_fn in (("ce", MaskedCrossEntropy(3)), ("focal", FocalLoss(3, gamma=2.0))):
        z = logits.clone().requires_grad_()
        loss_fn(z, target)[0].backward()
        assert z.grad is not None
        grads[name] = z.grad.norm(dim=1)
    ratio = grads["focal"] / grads["ce"]
    assert ratio[0] < 0.01  # the easy example barely counts
    assert ratio[1] > 0.9  # the hard one keeps about CE's gradient
    # multilabel: a confident correct entry too
    z = torch.tensor([[5.0]], requires_grad=True)
    FocalLoss(1, multilabel=True)(z, torch.tensor([[1]]))[0].backward()
    z_ce = torch.tensor([[5.0]], requires_grad=True)
    MaskedCrossEntropy(1, multilabel=True)(z_ce, torch.tensor([[1]]))[0].backward()
    assert z.grad is not None and z_ce.grad is not None
    assert z.grad.abs() < 0.01 * z_ce.grad.abs()


def test_focal_gradient_is_finite_when_confident_and_gamma_below_one() -> None:
    z = torch.tensor([[200.0, 0.0], [0.0, 0.0]], requires_grad=True)
    loss, _ = FocalLoss(2, gamma=0.5)(z, torch.tensor([0, 1]))
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


@pytest.mark.parametrize("multilabel", [False, True])
def test_cb_focal_is_focal_with_class_balanced_weights(multilabel: bool) -> None:
    logits = _logits(4, 4, seed=5)
    if multilabel:
        target = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 1], [-1, -1, -1, -1], [1, 1, 0, -1]])
    else:
        target = torch.tensor([3, -1, 0, 1])
    cb = ClassBalancedFocal(4, class_counts=COUNTS4, beta=0.99, gamma=1.5, multilabel=multilabel)
    plain = FocalLoss(4, gamma=1.5, multilabel=multilabel, class_weights=_cb(COUNTS4, 0.99))
    torch.testing.assert_close(cb(logits, target)[0], plain(logits, target)[0])
    # the rare class 1 outweighs the frequent class 3
    assert cb.class_weights is not None and cb.class_weights[1] > cb.class_weights[3]


def test_focal_options_are_checked() -> None:
    with pytest.raises(LossError, match="for a multiclass task use class_weights"):
        FocalLoss(3, alpha=0.25)
    with pytest.raises(LossError, match=r"alpha must be in \[0, 1\]"):
        FocalLoss(3, alpha=1.5, multilabel=True)
    with pytest.raises(LossError, match="gamma must be >= 0"):
        FocalLoss(3, gamma=-1.0)


# -- LDAM --------------------------------------------------------------------------------------


def _ldam_reference(logits: Tensor, label: int, margins: Tensor, s: float) -> Tensor:
    """The paper's hard-label LDAM loss of one item."""
    adjusted = logits.clone()
    adjusted[label] = adjusted[label] - margins[label]
    return F.cross_entropy(s * adjusted[None], torch.tensor([label]))


def test_ldam_hard_labels_by_hand() -> None:
    logits = _logits(5, 3, seed=6)
    target = torch.tensor([2, 0, -1, 1, 2])
    loss_fn = LDAMLoss(3, class_counts=COUNTS3, max_m=0.5, s=30.0)
    loss, n = loss_fn(logits, target)
    m = ldam_margins(COUNTS3, 0.5)
    ref = sum(_ldam_reference(logits[i], int(t), m, 30.0) for i, t in enumerate(target) if t >= 0)
    assert n == 4
    torch.testing.assert_close(loss, ref / 4)


def test_ldam_soft_target_is_the_expected_hard_label_loss() -> None:
    logits = _logits(2, 3, seed=7)
    soft = torch.tensor([[0.2, 0.5, 0.3], [float("nan")] * 3])
    target = torch.tensor([-1, 1])
    loss_fn = LDAMLoss(3, class_counts=COUNTS3, s=5.0, label_smoothing=0.1)
    loss, n = loss_fn(logits, target, soft)
    m = ldam_margins(COUNTS3)
    q0 = soft[0] * 0.9 + 0.1 / 3
    q1 = torch.tensor([0.0, 1.0, 0.0]) * 0.9 + 0.1 / 3
    ref = sum(
        q[c] * _ldam_reference(logits[i], c, m, 5.0)
        for i, q in enumerate((q0, q1))
        for c in range(3)
    )
    assert n == 2
    torch.testing.assert_close(loss, ref / 2)


def test_ldam_margin_raises_the_rare_class_loss_more() -> None:
    logits = torch.zeros(1, 3)
    ce = MaskedCrossEntropy(3)
    ldam = LDAMLoss(3, class_counts=COUNTS3, s=1.0)
    increase = [
        ldam(logits, torch.tensor([c]))[0] - ce(logits, torch.tensor([c]))[0] for c in range(3)
    ]
    assert 0 < increase[0] < increase[1] < increase[2]


def test_ldam_drw_switches_weights_at_the_epoch(tax: Taxonomy, counts: dict) -> None:
    cfg = {"tasks": {"colour": {"loss": {"name": "ldam-drw", "drw_epoch": 3, "beta": 0.999}}}}
    mtl = build_multitask_loss(tax, cfg, counts)
    drw = mtl.task_losses["colour"]
    assert isinstance(drw, LDAMDRWLoss)
    plain = LDAMLoss(3, class_counts=COUNTS3)
    logits = _logits(6, 3, seed=8)
    target = torch.tensor([0, 1, 2, 2, -1, 0])
    w = _cb(COUNTS3, 0.999)
    keep = target >= 0
    per_item = torch.stack(
        [
            _ldam_reference(logits[i], int(target[i]), ldam_margins(COUNTS3), 30.0)
            for i in range(6)
            if keep[i]
        ]
    )
    for epoch, weighted in ((0, False), (2, False), (3, True), (7, True)):
        mtl.set_epoch(epoch)
        assert drw.reweighting is weighted
        loss, _ = drw(logits, target)
        if weighted:
            torch.testing.assert_close(loss, (w[target[keep]] * per_item).sum() / 5)
        else:
            torch.testing.assert_close(loss, plain(logits, target)[0])
    mtl.set_epoch(1)  # e.g. a restarted schedule: weights off again
    assert not drw.reweighting


def test_ldam_drw_needs_its_epoch(tax: Taxonomy, counts: dict) -> None:
    with pytest.raises(AttireError, match="drw_epoch"):
        build_multitask_loss(tax, {"tasks": {"colour": {"loss": "ldam-drw"}}}, counts)
    with pytest.raises(AttireError, match="drw_epoch must be an epoch number"):
        LDAMDRWLoss(3, class_counts=COUNTS3, drw_epoch=-1)


# -- logit adjustment --------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.5, 1.0, 2.0])
def test_logit_adjusted_loss(tau: float) -> None:
    logits = _logits(5, 3, seed=9)
    target = torch.tensor([0, 2, 1, -1, 2])
    loss, _ = LogitAdjustedLoss(3, class_counts=COUNTS3, tau=tau)(logits, target)
    prior = torch.tensor(COUNTS3, dtype=torch.float32) / sum(COUNTS3)
    keep = target >= 0
    ref = F.cross_entropy(logits[keep] + tau * prior.log(), target[keep])
    torch.testing.assert_close(loss, ref)


def test_balanced_softmax_by_hand() -> None:
    logits = _logits(4, 3, seed=10)
    target = torch.tensor([2, 1, 0, -1])
    loss, _ = BalancedSoftmaxLoss(3, class_counts=COUNTS3)(logits, target)
    n = torch.tensor(COUNTS3, dtype=torch.float32)
    z = logits.detach()
    by_hand = [
        -torch.log(n[y] * z[i, y].exp() / (n * z[i].exp()).sum())
        for i, y in enumerate(target.tolist())
        if y >= 0
    ]
    torch.testing.assert_close(loss.detach(), torch.stack(by_hand).mean())
    same = LogitAdjustedLoss(3, class_counts=COUNTS3, tau=1.0)(logits, target)[0]
    torch.testing.assert_close(loss, same)


def test_post_hoc_adjustment_moves_predictions_to_rare_classes() -> None:
    logits = torch.randn(2000, 3, generator=torch.Generator().manual_seed(11))
    adjusted = adjust_logits(logits, COUNTS3, tau=1.0)
    prior = torch.tensor(COUNTS3, dtype=torch.float32) / sum(COUNTS3)
    torch.testing.assert_close(adjusted, logits - prior.log())
    before = torch.bincount(logits.argmax(1), minlength=3)
    after = torch.bincount(adjusted.argmax(1), minlength=3)
    assert after[2] > before[2] and after[0] < before[0]  # rare up, frequent down
    torch.testing.assert_close(adjust_logits(logits, COUNTS3, tau=0.0), logits)
    assert adjust_logits(torch.zeros(1, 3), COUNTS3).argmax().item() == 2
    with pytest.raises(LossError, match="needs 3 values"):
        adjust_logits(logits, [1, 2])


# -- every long-tail loss: masking, zero counts, multilabel support ---------------------------

LONG_TAIL = [
    "weighted-ce",
    "cb-ce",
    "cb-focal",
    "focal",
    "ldam",
    "ldam-drw",
    "logit-adjust",
    "balanced-softmax",
]
MULTICLASS_ONLY = {"ldam", "ldam-drw", "logit-adjust", "balanced-softmax"}


def _make(name: str, c: int, counts: list[float], multilabel: bool = False) -> TaskLoss:
    cls = TASK_LOSSES[name]
    kwargs: dict = {"multilabel": multilabel}
    if cls.needs_counts:
        kwargs["class_counts"] = counts
    if name == "ldam-drw":
        kwargs["drw_epoch"] = 0  # weights on: the weighted path is the one to check
    return cls(c, **kwargs)


def _cases() -> list[tuple[str, bool]]:
    return [(n, ml) for n in LONG_TAIL for ml in (False, True) if not (ml and n in MULTICLASS_ONLY)]


def test_all_long_tail_losses_are_registered() -> None:
    assert set(LONG_TAIL) <= set(TASK_LOSSES)
    assert {n for n in LONG_TAIL if TASK_LOSSES[n].needs_counts} == set(LONG_TAIL) - {"focal"}


@pytest.mark.parametrize(("name", "multilabel"), _cases())
def test_unlabelled_batch_is_exactly_zero_with_zero_gradient(name: str, multilabel: bool) -> None:
    loss_fn = _make(name, 4, COUNTS4, multilabel)
    logits = (torch.randn(3, 4) * 1e4).requires_grad_()
    target = torch.full((3, 4), -1) if multilabel else torch.full((3,), -1)
    loss, n = loss_fn(logits, target, torch.full((3, 4), float("nan")))
    loss.backward()
    assert n == 0 and loss.item() == 0.0
    assert logits.grad is not None and (logits.grad == 0).all()


@pytest.mark.parametrize(("name", "multilabel"), _cases())
def test_unlabelled_rows_get_zero_gradient_and_zero_counts_stay_finite(
    name: str, multilabel: bool
) -> None:
    loss_fn = _make(name, 4, COUNTS4, multilabel)
    logits = _logits(4, 4, seed=12)
    with torch.no_grad():
        logits[1] = torch.tensor([1e6, -1e6, 3e5, 0.0])
    if multilabel:
        target = torch.tensor([[1, 0, 1, 0], [-1, -1, -1, -1], [0, 0, 1, -1], [1, 1, 1, 1]])
    else:
        target = torch.tensor([2, -1, 2, 0])  # class 2 has count 0
    loss, _ = loss_fn(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert (logits.grad[1] == 0).all()
    assert (logits.grad[[0, 2, 3]] != 0).any(dim=1).all()


@pytest.mark.parametrize("name", sorted(MULTICLASS_ONLY))
def test_multiclass_only_losses_reject_multilabel_tasks(
    name: str, tax: Taxonomy, counts: dict
) -> None:
    with pytest.raises(LossError, match="does not support multilabel"):
        _make(name, 4, COUNTS4, multilabel=True)
    options = {"name": name, "drw_epoch": 1} if name == "ldam-drw" else name
    with pytest.raises(
        AttireError, match=f"'{name}' does not support multilabel tasks like 'elements'"
    ):
        build_multitask_loss(tax, {"loss": options}, counts)


# -- config and MultiTaskLoss plumbing ---------------------------------------------------------


def test_config_builds_long_tail_losses_with_counts(tax: Taxonomy, counts: dict) -> None:
    cfg = {
        "loss": "cb-focal",
        "label_smoothing": 0.05,
        "tasks": {
            "colour": {"loss": {"name": "weighted-ce", "power": 0.5}},
            "fit": {"loss": {"name": "logit-adjust", "tau": 1.5}},
        },
    }
    mtl = build_multitask_loss(tax, cfg, counts)
    colour, elements, fit = (mtl.task_losses[t] for t in ("colour", "elements", "fit"))
    assert isinstance(colour, WeightedCrossEntropy) and colour.label_smoothing == 0.05
    torch.testing.assert_close(colour.class_weights, inverse_frequency_weights(COUNTS3, 0.5))
    assert isinstance(elements, ClassBalancedFocal) and elements.multilabel
    torch.testing.assert_close(elements.class_weights, _cb(COUNTS4, 0.9999))
    assert isinstance(fit, LogitAdjustedLoss) and fit.tau == 1.5
    assert not mtl.needs_task_embeddings and not mtl.embedding_losses


@pytest.mark.parametrize(
    ("cfg", "class_counts", "message"),
    [
        ({"loss": "cb-ce"}, None, "loss 'cb-ce' is built from the training class counts"),
        (
            {"tasks": {"fit": {"loss": "ldam"}}},
            {"colour": [1, 2, 3]},
            "tasks.fit.loss: loss 'ldam' is built from the training class counts, and none "
            "were given for task 'fit'",
        ),
        (
            {"tasks": {"fit": {"loss": "cb-ce"}}},
            {"fit": [1, 2, 3]},
            "tasks.fit.loss: class_counts needs 2",
        ),
        (
            {"tasks": {"fit": {"loss": {"name": "cb-ce", "class_counts": [1, 2]}}}},
            {"fit": [1, 2]},
            "'class_counts' is set by attire",
        ),
        (
            {"tasks": {"fit": {"loss": {"name": "cb-ce", "beta": 1.0}}}},
            {"fit": [1, 2]},
            "beta must be in [0, 1)",
        ),
        (
            {"tasks": {"fit": {"loss": {"name": "cb-ce", "class_weights": [1, 2]}}}},
            {"fit": [1, 2]},
            "unknown option 'class_weights'",
        ),
        ({"tasks": {"fit": {"loss": {"name": "focal", "gamma": -2}}}}, None, "gamma must be >= 0"),
        (
            {"tasks": {"elements": {"range": {"lambda": 0.1}}}},
            None,
            "range loss needs a multiclass task",
        ),
        ({"tasks": {"fit": {"range": {"alpha": 1}}}}, None, "tasks.fit.range: needs 'lambda'"),
        (
            {"tasks": {"fit": {"range": {"lambda": 0.1, "kk": 2}}}},
            None,
            "tasks.fit.range: unknown key 'kk'",
        ),
        (
            {"tasks": {"fit": {"range": {"lambda": "x"}}}},
            None,
            "tasks.fit.range.lambda: expected a number",
        ),
        ({"tasks": {"fit": {"range": {"lambda": -1}}}}, None, "weight must be a number >= 0"),
        (
            {"tasks": {"fit": {"range": {"lambda": 1, "k": 0}}}},
            None,
            "tasks.fit.range: range loss: k must be",
        ),
        (
            {"tasks": {"fit": {"range": {"lambda": 1, "embedding": "head"}}}},
            None,
            "'task' or 'shared'",
        ),
    ],
)
def test_config_errors(tax: Taxonomy, cfg: dict, class_counts: dict | None, message: str) -> None:
    with pytest.raises(AttireError) as info:
        build_multitask_loss(tax, cfg, class_counts)
    assert message in str(info.value)


def _outputs(tax: Taxonomy, b: int = 6, d: int = 5, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    outputs: dict[str, Tensor] = {"embedding": torch.randn(b, d, generator=g).requires_grad_()}
    targets: dict[str, Tensor] = {}
    for task in tax.tasks:
        outputs[task.name] = torch.randn(b, task.num_classes, generator=g).requires_grad_()
        outputs[f"{task.name}__emb"] = torch.randn(b, d, generator=g).requires_grad_()
    targets["colour"] = torch.tensor([0, 0, 1, -1, 2, 1])
    targets["elements"] = torch.randint(-1, 2, (b, 4), generator=g)
    targets["fit"] = torch.tensor([1, 0, -1, 0, 1, 1])
    return outputs, targets


def test_range_loss_is_added_to_its_task_loss(tax: Taxonomy) -> None:
    cfg = {
        "tasks": {
            "colour": {
                "loss": "ce",
                "range": {"lambda": 0.1, "alpha": 1, "beta": 2, "margin": 3, "k": 2},
            },
            "fit": {"range": {"lambda": 0.5, "embedding": "shared"}},
        }
    }
    mtl = build_multitask_loss(tax, cfg)
    assert mtl.needs_task_embeddings
    outputs, targets = _outputs(tax)
    out = mtl(outputs, targets)
    colour_ce, _ = MaskedCrossEntropy(3)(outputs["colour"], targets["colour"])
    colour_range = RangeLoss(k=2, margin=3.0, alpha=1.0, beta=2.0)(
        outputs["colour__emb"], targets["colour"]
    )
    fit_ce, _ = MaskedCrossEntropy(2)(outputs["fit"], targets["fit"])
    fit_range = RangeLoss()(outputs["embedding"], targets["fit"])
    elements, _ = MaskedCrossEntropy(4, multilabel=True)(outputs["elements"], targets["elements"])
    assert colour_range.item() > 0 and fit_range.item() > 0
    torch.testing.assert_close(out.per_task["colour"], (colour_ce + 0.1 * colour_range).detach())
    torch.testing.assert_close(out.auxiliary["colour"], colour_range.detach())
    torch.testing.assert_close(out.auxiliary["fit"], fit_range.detach())
    assert set(out.auxiliary) == {"colour", "fit"}
    expected = colour_ce + 0.1 * colour_range + fit_ce + 0.5 * fit_range + elements
    torch.testing.assert_close(out.total, expected)
    out.total.backward()
    assert outputs["colour__emb"].grad is not None and outputs["fit__emb"].grad is None
    shared_only = build_multitask_loss(
        tax, {"tasks": {"fit": {"range": {"lambda": 0.5, "embedding": "shared"}}}}
    )
    assert not shared_only.needs_task_embeddings


def test_task_without_labels_gives_zero_with_range_loss(tax: Taxonomy, counts: dict) -> None:
    cfg = {
        "loss": "ldam",
        "tasks": {"colour": {"range": {"lambda": 1.0}}, "elements": {"loss": "cb-focal"}},
    }
    mtl = build_multitask_loss(tax, cfg, counts)
    outputs, targets = _outputs(tax)
    targets["colour"] = torch.full((6,), -1)
    out = mtl(outputs, targets)
    out.total.backward()
    assert out.counts["colour"] == 0 and out.per_task["colour"].item() == 0.0
    assert out.auxiliary["colour"].item() == 0.0
    for key in ("colour", "colour__emb"):
        grad = outputs[key].grad
        assert grad is not None and (grad == 0).all()


def test_missing_task_embedding_is_a_clear_error(tax: Taxonomy) -> None:
    mtl = build_multitask_loss(tax, {"tasks": {"colour": {"range": {"lambda": 0.1}}}})
    outputs, targets = _outputs(tax)
    del outputs["colour__emb"]
    with pytest.raises(LossError, match=r"task 'colour': .*'colour__emb'.*task_embeddings=True"):
        mtl(outputs, targets)


def test_set_epoch_reaches_every_task_loss(tax: Taxonomy, counts: dict) -> None:
    mtl = build_multitask_loss(
        tax, {"tasks": {"fit": {"loss": {"name": "ldam-drw", "drw_epoch": 2}}}}, counts
    )
    seen: list[int] = []
    mtl.task_losses["colour"].set_epoch = seen.append  # type: ignore[method-assign]
    mtl.set_epoch(2)
    assert seen == [2]
    assert mtl.task_losses["fit"].reweighting  # type: ignore[union-attr]
