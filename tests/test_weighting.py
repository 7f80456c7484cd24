"""Loss weighting strategies against hand computations, with partially labelled batches."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from attire.losses import (
    WEIGHTINGS,
    DynamicWeightAverage,
    GradNorm,
    LossError,
    MultiTaskLoss,
    StaticWeighting,
    UncertaintyWeighting,
    register_weighting,
)
from attire.taxonomy import Taxonomy


def _losses(**values: float) -> dict[str, Tensor]:
    return {k: torch.tensor(v, requires_grad=True) for k, v in values.items()}


# -- static ------------------------------------------------------------------------------------


def test_static_is_the_weighted_sum_of_present_tasks() -> None:
    w = StaticWeighting(["a", "b", "c"], weights={"a": 2.0})
    losses = _losses(a=1.5, b=0.5, c=123.0)  # c: absent, its value must not count
    total = w(losses, {"a": True, "b": True, "c": False})
    assert total.item() == pytest.approx(2.0 * 1.5 + 0.5)
    total.backward()
    assert losses["c"].grad is not None and losses["c"].grad.item() == 0.0
    assert losses["a"].grad.item() == 2.0
    assert w.task_weights() == {"a": 2.0, "b": 1.0, "c": 1.0}


@pytest.mark.parametrize("name", ["static", "uncertainty", "dwa", "gradnorm"])
def test_batch_without_any_label_gives_zero_and_a_usable_graph(name: str) -> None:
    w = WEIGHTINGS[name](["a", "b"])
    w.train()
    losses = {"a": torch.zeros((), requires_grad=True), "b": torch.zeros((), requires_grad=True)}
    present = {"a": False, "b": False}
    if name == "gradnorm":
        total = w.update(losses, present, [nn.Parameter(torch.ones(2))])
    else:
        total = w(losses, present)
    total.backward()
    assert total.item() == 0.0
    assert all(p.grad is None for p in w.parameters())
    assert all(torch.isfinite(b).all() or b.isnan().all() for b in w.buffers())
    assert w.task_weights() == {"a": 1.0, "b": 1.0}


def test_weighting_checks_task_names() -> None:
    with pytest.raises(LossError, match=r"unknown tasks \['z'\]"):
        StaticWeighting(["a"], weights={"z": 1.0})
    with pytest.raises(LossError, match="duplicate"):
        StaticWeighting(["a", "a"])
    w = StaticWeighting(["a", "b"])
    with pytest.raises(LossError, match=r"missing \['b'\]"):
        w(_losses(a=1.0), {"a": True, "b": True})
    with pytest.raises(ValueError, match="already taken"):
        register_weighting("static")(UncertaintyWeighting)


# -- uncertainty -------------------------------------------------------------------------------


def test_uncertainty_value_and_log_variance_gradient_by_hand() -> None:
    w = UncertaintyWeighting(["a", "b"], weights={"b": 3.0})
    with torch.no_grad():
        w.log_vars["a"].fill_(0.5)
        w.log_vars["b"].fill_(-1.0)
    la, lb = 2.0, 0.25
    total = w(_losses(a=la, b=lb), {"a": True, "b": True})
    by_hand = math.exp(-0.5) * la + 0.25 + 3.0 * (math.exp(1.0) * lb - 0.5)
    assert total.item() == pytest.approx(by_hand, rel=1e-6)
    total.backward()
    # d/ds [exp(-s) L + s/2] = -exp(-s) L + 1/2, times the prior.
    assert w.log_vars["a"].grad.item() == pytest.approx(-math.exp(-0.5) * la + 0.5, rel=1e-6)
    assert w.log_vars["b"].grad.item() == pytest.approx(3.0 * (-math.exp(1.0) * lb + 0.5))
    assert w.task_weights()["b"] == pytest.approx(3.0 * math.exp(1.0))


def test_uncertainty_absent_task_keeps_its_log_variance_under_adam() -> None:
    w = UncertaintyWeighting(["a", "b"])
    opt = torch.optim.Adam(w.parameters(), lr=0.1)
    for present_b in (True, False, False):  # Adam has momentum for b after the first step
        opt.zero_grad()
        before = w.log_vars["b"].item()
        w(_losses(a=3.0, b=2.0), {"a": True, "b": present_b}).backward()
        assert (w.log_vars["b"].grad is None) is not present_b
        opt.step()
        assert (w.log_vars["b"].item() == before) is not present_b
    assert w.log_vars["a"].item() != 0.0


# -- DWA ---------------------------------------------------------------------------------------


def test_dwa_weights_from_loss_history_by_hand() -> None:
    w = DynamicWeightAverage(["a", "b", "c"], temperature=2.0)
    w.train()
    all_present = {"a": True, "b": True, "c": True}

    def epoch(batches: list[dict[str, float]], present: list[dict[str, bool]]) -> None:
        for values, p in zip(batches, present, strict=True):
            w(_losses(**values), p)
        w.on_epoch_end()

    epoch([{"a": 1.0, "b": 4.0, "c": 1.0}, {"a": 3.0, "b": 4.0, "c": 1.0}], [all_present] * 2)
    assert w.task_weights() == {"a": 1.0, "b": 1.0, "c": 1.0}  # one epoch: no ratio yet
    # Epoch 2: c has no labelled batch; a's average is 1.0 (2.0 before), b's 3.6 (4.0 before).
    c_absent = {"a": True, "b": True, "c": False}
    epoch([{"a": 0.5, "b": 3.2, "c": 9.0}, {"a": 1.5, "b": 4.0, "c": 9.0}], [c_absent] * 2)
    r = [1.0 / 2.0, 3.6 / 4.0, (0.5 + 0.9) / 2]  # c: one recorded epoch -> the others' mean
    e = [math.exp(x / 2.0) for x in r]
    expected = [3 * x / sum(e) for x in e]
    got = w.task_weights()
    assert [got["a"], got["b"], got["c"]] == pytest.approx(expected, rel=1e-6)
    assert got["b"] > got["c"] > got["a"]  # the slowest-improving task weighs most
    # Epoch 3: c is back; its ratio is now its own (0.5 / 1.0).
    epoch([{"a": 1.0, "b": 3.6, "c": 0.5}], [all_present])
    r = [1.0, 1.0, 0.5]
    e = [math.exp(x / 2.0) for x in r]
    got = w.task_weights()
    expected = [3 * x / sum(e) for x in e]
    assert [got["a"], got["b"], got["c"]] == pytest.approx(expected, rel=1e-6)
    total = w(_losses(a=1.0, b=2.0, c=4.0), c_absent)
    assert total.item() == pytest.approx(expected[0] * 1.0 + expected[1] * 2.0, rel=1e-6)


def test_dwa_records_only_in_training_mode() -> None:
    w = DynamicWeightAverage(["a", "b"])
    w.eval()
    for _ in range(3):
        w(_losses(a=1.0, b=1.0), {"a": True, "b": True})
        w.on_epoch_end()
    assert torch.isnan(w.history).all()
    assert w.task_weights() == {"a": 1.0, "b": 1.0}


# -- GradNorm ----------------------------------------------------------------------------------


def _adam(grad: float, m: float, v: float, step: int, lr: float) -> tuple[float, float, float]:
    m = 0.9 * m + 0.1 * grad
    v = 0.999 * v + 0.001 * grad * grad
    delta = lr * (m / (1 - 0.9**step)) / (math.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return delta, m, v


def test_gradnorm_two_steps_by_hand() -> None:
    lr = 0.05
    gn = GradNorm(["a", "b"], alpha=1.5, lr=lr)
    shared = nn.Parameter(torch.tensor([1.0, 2.0]))

    def losses(ka: float, oa: float, kb: float, ob: float) -> dict[str, Tensor]:
        # L = k * sum(W) + offset: ||dL/dW|| = k * sqrt(2), value set by the offset.
        return {"a": ka * shared.sum() + oa, "b": kb * shared.sum() + ob}

    present = {"a": True, "b": True}
    gn.update(losses(1.0, 0.0, 2.0, 0.0), present, [shared])  # L(0) = (3, 6)
    g = [math.sqrt(2), 2 * math.sqrt(2)]
    # Step 1: equal rates -> target = mean(G); a's G is below it (grad -g_a), b's above.
    da, ma, va = _adam(-g[0], 0.0, 0.0, 1, lr)
    db, mb, vb = _adam(+g[1], 0.0, 0.0, 1, lr)
    w = [1.0 - da, 1.0 - db]
    assert gn.loss_weights.tolist() == pytest.approx(w, rel=1e-6)
    assert w[0] == pytest.approx(1.0 + lr, rel=1e-5)

    # Step 2: a trains fast (loss 3 -> 1.5), b is stuck (6 -> 6): b's target rises above its G.
    total = gn.update(losses(1.0, -1.5, 2.0, 0.0), present, [shared])
    assert total.item() == pytest.approx(w[0] * 1.5 + w[1] * 6.0, rel=1e-6)
    big_g = [w[0] * g[0], w[1] * g[1]]
    rates = [1.5 / 3.0, 6.0 / 6.0]
    r = [x / (sum(rates) / 2) for x in rates]
    target = [sum(big_g) / 2 * x**1.5 for x in r]
    grads = [math.copysign(g[i], big_g[i] - target[i]) for i in range(2)]
    assert grads[1] < 0  # b, the slower task, is pushed up
    da, _, _ = _adam(grads[0], ma, va, 2, lr)
    db, _, _ = _adam(grads[1], mb, vb, 2, lr)
    new = [w[0] - da, w[1] - db]
    new = [x * sum(w) / sum(new) for x in new]
    assert gn.loss_weights.tolist() == pytest.approx(new, rel=1e-5)
    assert sum(gn.loss_weights.tolist()) == pytest.approx(2.0)
    assert gn.initial_losses.tolist() == pytest.approx([3.0, 6.0])


def test_gradnorm_favours_the_slower_task_on_a_toy_linear_model() -> None:
    """Task 'easy' is a linear function of x; 'noise' has random labels and cannot improve."""
    tax = Taxonomy.from_dict(
        {
            "name": "toy",
            "tasks": [
                {"name": "easy", "classes": [{"id": "neg"}, {"id": "pos"}]},
                {"name": "noise", "classes": [{"id": "neg"}, {"id": "pos"}]},
            ],
        }
    )
    torch.manual_seed(0)
    shared, heads = nn.Linear(6, 6), nn.ModuleDict({t: nn.Linear(6, 2) for t in tax.task_names})
    gn = GradNorm(tax.task_names, alpha=1.5, lr=0.02)
    mtl = MultiTaskLoss(tax, weighting=gn)
    opt = torch.optim.SGD([*shared.parameters(), *heads.parameters()], lr=0.5)
    direction = torch.randn(6)
    for _ in range(60):
        x = torch.randn(64, 6)
        h = torch.relu(shared(x))
        outputs = {t: head(h) for t, head in heads.items()}
        targets = {"easy": (x @ direction > 0).long(), "noise": torch.randint(0, 2, (64,))}
        opt.zero_grad()
        out = mtl(outputs, targets, shared_params=shared.parameters())
        out.total.backward()
        opt.step()
    w = gn.task_weights()
    assert out.per_task["easy"] < 0.5 * gn.initial_losses[0]  # easy really trained faster
    assert w["noise"] > 1.2 > 0.8 > w["easy"]
    assert w["noise"] + w["easy"] == pytest.approx(2.0)


def test_gradnorm_leaves_an_absent_task_untouched() -> None:
    gn = GradNorm(["a", "b", "c"], lr=0.1)
    shared = nn.Parameter(torch.tensor([1.0, -1.0]))

    def losses(ka: float, kb: float, kc: float) -> dict[str, Tensor]:
        return {k: v * (shared**2).sum() for k, v in {"a": ka, "b": kb, "c": kc}.items()}

    gn.update(losses(1.0, 2.0, 4.0), {"a": True, "b": True, "c": True}, [shared])
    state = {k: getattr(gn, k)[2].item() for k in ("loss_weights", "initial_losses", "exp_avg")}
    weights_before = gn.loss_weights.clone()
    for _ in range(3):
        gn.update(losses(0.5, 2.0, 0.0), {"a": True, "b": True, "c": False}, [shared])
    assert {k: getattr(gn, k)[2].item() for k in state} == state
    assert gn.steps.tolist() == [4.0, 4.0, 1.0]
    assert not torch.equal(gn.loss_weights[:2], weights_before[:2])
    assert gn.loss_weights.sum().item() == pytest.approx(3.0)
    # One present task: nothing to balance, nothing moves.
    before = gn.loss_weights.clone()
    gn.update(losses(1.0, 0.0, 0.0), {"a": True, "b": False, "c": False}, [shared])
    assert torch.equal(gn.loss_weights, before)


def test_gradnorm_needs_shared_parameters() -> None:
    gn = GradNorm(["a", "b"])
    with pytest.raises(LossError, match="shared layer's parameters"):
        gn.update(_losses(a=1.0, b=1.0), {"a": True, "b": True}, [])
