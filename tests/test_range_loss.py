"""Range loss against an independent brute-force reference, by hand, and by gradcheck."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor

from attire.losses import LossError, RangeLoss


def brute_force_range(
    x: list[list[float]],
    y: list[int],
    k: int,
    margin: float,
    alpha: float,
    beta: float,
    squared: bool = False,
) -> tuple[float, float, float]:
    """(intra, inter, alpha * intra + beta * inter) with plain loops, from the paper's text."""

    def dist(a: list[float], b: list[float]) -> float:
        d2 = sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=True))
        return d2 if squared else math.sqrt(d2)

    by_class: dict[int, list[list[float]]] = {}
    for row, label in zip(x, y, strict=True):
        if label >= 0:
            by_class.setdefault(label, []).append(row)
    intra = 0.0
    for rows in by_class.values():
        pairs = [dist(rows[i], rows[j]) for i in range(len(rows)) for j in range(i + 1, len(rows))]
        largest = sorted(pairs, reverse=True)[:k]
        if largest:
            intra += len(largest) / sum(1.0 / d for d in largest)
    centres = [
        [sum(col) / len(rows) for col in zip(*rows, strict=True)] for rows in by_class.values()
    ]
    inter = 0.0
    if len(centres) >= 2:
        closest = min(dist(a, b) for a, b in itertools.combinations(centres, 2))
        inter = max(margin - closest, 0.0)
    return intra, inter, alpha * intra + beta * inter


LABELS = {
    # every shape the brief asks for, mixed: a one-sample class, a two-sample class, a larger
    # class, missing rows
    "mixed": [0, 0, 0, 0, 1, 1, 2, -1, 0, -1],
    "singletons_and_pair": [3, 1, 1, 0, -1, 2],
    "one_class": [1, 1, 1, 1, -1, 1],
    "one_class_two_samples": [-1, 2, 2, -1],
    "one_sample_only": [-1, -1, 4, -1],
    "many_pairs": [0, 1, 0, 1, 0, 1, 0, 1, 2, 2, 2],
}


@pytest.mark.parametrize("labels", list(LABELS))
@pytest.mark.parametrize(("k", "squared"), [(2, False), (1, False), (3, False), (2, True)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(labels: str, k: int, squared: bool, seed: int) -> None:
    y = LABELS[labels]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(y), 5, generator=g, dtype=torch.float64)
    margin, alpha, beta = 4.0, 0.3, 2.0  # alpha != beta: a swap would show
    loss = RangeLoss(k=k, margin=margin, alpha=alpha, beta=beta, squared=squared)
    intra, inter = loss.terms(x, torch.tensor(y))
    total = loss(x, torch.tensor(y))
    ref = brute_force_range(x.tolist(), y, k, margin, alpha, beta, squared)
    assert intra.item() == pytest.approx(ref[0], rel=1e-12, abs=1e-12)
    assert inter.item() == pytest.approx(ref[1], rel=1e-12, abs=1e-12)
    assert total.item() == pytest.approx(ref[2], rel=1e-12, abs=1e-12)


def test_hand_computed_values() -> None:
    # class 0: a 3-4-5 right triangle; top-2 distances 5 and 4 -> harmonic mean 2/(1/5+1/4)
    # = 40/9 (not the arithmetic 4.5, and counting each pair twice would double it).
    # class 1: a single sample -> no pairs, adds 0. Centres: (1, 4/3) and (1, 0.5), distance
    # 5/6, so with margin 1 the inter term is 1/6.
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [1.0, 0.5]])
    y = torch.tensor([0, 0, 0, 1])
    intra, inter = RangeLoss(k=2, margin=1.0).terms(x, y)
    torch.testing.assert_close(intra, torch.tensor(40.0 / 9.0))
    torch.testing.assert_close(inter, torch.tensor(1.0 / 6.0))
    torch.testing.assert_close(
        RangeLoss(k=2, margin=1.0, alpha=2.0, beta=3.0)(x, y), torch.tensor(80 / 9 + 0.5)
    )
    # fewer pairs than k: the two-sample class is just its one distance
    pair = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    intra, inter = RangeLoss(k=2).terms(pair, torch.tensor([5, 5]))
    assert intra.item() == pytest.approx(2.0) and inter.item() == 0.0
    # far-apart centres: the hinge is inactive
    _, inter = RangeLoss(margin=1.0).terms(torch.tensor([[0.0], [3.0]]), torch.tensor([0, 1]))
    assert inter.item() == 0.0


def test_normalized_measures_on_the_unit_sphere_so_shrinking_cannot_lower_it() -> None:
    # Unnormalised, scaling every embedding down scales L_intra down: the collapse seen with a
    # pretrained backbone. Normalised, the loss is the brute force on unit rows, whatever the scale.
    y = LABELS["mixed"]
    x = torch.randn(len(y), 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    unit = (x / x.norm(dim=1, keepdim=True)).tolist()
    loss = RangeLoss(k=2, margin=1.5, alpha=0.3, beta=2.0, normalize=True)
    ref = brute_force_range(unit, y, 2, 1.5, 0.3, 2.0)
    for scale in (1.0, 0.01, 100.0):
        assert loss(scale * x, torch.tensor(y)).item() == pytest.approx(ref[2], rel=1e-12)
    raw = RangeLoss(k=2, margin=1.5, alpha=0.3, beta=2.0)
    assert raw.terms(0.01 * x, torch.tensor(y))[0] < 0.02 * raw.terms(x, torch.tensor(y))[0]


def test_gradcheck_float64() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 0, 1, 1, 2, -1, 0, 1])
    loss = RangeLoss(k=2, margin=10.0, alpha=0.7, beta=1.3)  # margin large: hinge active
    assert loss.terms(x, y)[1].item() > 0
    assert torch.autograd.gradcheck(lambda e: loss(e, y), (x,))
    squared = RangeLoss(k=3, margin=50.0, squared=True)
    assert torch.autograd.gradcheck(lambda e: squared(e, y), (x,))


def test_missing_rows_get_zero_gradient_and_change_nothing() -> None:
    g = torch.Generator().manual_seed(4)
    base = torch.randn(6, 3, generator=g)
    y = torch.tensor([0, -1, 0, 1, -1, 1])
    values = []
    for garbage in (0.0, 1e6):
        x = base.clone()
        x[y < 0] = garbage
        x.requires_grad_()
        value = RangeLoss(margin=5.0)(x, y)
        value.backward()
        assert x.grad is not None
        assert (x.grad[y < 0] == 0).all()
        assert (x.grad[y >= 0] != 0).any(dim=1).all()
        values.append(value.detach())
    torch.testing.assert_close(values[0], values[1])


def test_unlabelled_batch_is_zero_with_zero_gradient() -> None:
    x = (torch.randn(4, 3) * 1e4).requires_grad_()
    value = RangeLoss()(x, torch.full((4,), -1))
    value.backward()
    assert value.item() == 0.0
    assert x.grad is not None and (x.grad == 0).all()


def test_identical_samples_give_finite_loss_and_gradient() -> None:
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [5.0, 5.0], [5.0, 5.0]], requires_grad=True)
    value = RangeLoss(margin=100.0)(x, torch.tensor([0, 0, 1, 1]))
    value.backward()
    assert torch.isfinite(value) and value.item() == pytest.approx(100.0 - 5.0, abs=1e-5)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_half_precision_embeddings_are_computed_in_float32() -> None:
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    value = RangeLoss(margin=3.0)(x.to(torch.bfloat16), y)
    assert value.dtype == torch.float32
    ref = RangeLoss(margin=3.0)(x.to(torch.bfloat16).double(), y)
    assert value.item() == pytest.approx(ref.item(), rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "embeddings", "target", "message"),
    [
        ({"k": 0}, None, None, "k must be an integer >= 1"),
        ({"k": 2.0}, None, None, "k must be an integer >= 1"),
        ({"margin": -1.0}, None, None, "margin must be a number >= 0"),
        ({"alpha": float("nan")}, None, None, "alpha must be a number >= 0"),
        ({}, torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), "class indices [batch]"),
        ({}, torch.zeros(2, 3), torch.tensor([0.0, 1.0]), "class indices [batch]"),
        ({}, torch.zeros(2, 3), torch.tensor([0, 1, 1]), "3 targets for 2 embeddings"),
        ({}, torch.zeros(2), torch.tensor([0, 1]), "[batch, dim]"),
    ],
)
def test_bad_options_and_inputs_raise(
    kwargs: dict, embeddings: Tensor | None, target: Tensor | None, message: str
) -> None:
    with pytest.raises(LossError) as info:
        RangeLoss(**kwargs)(embeddings, target)
    assert message in str(info.value)
