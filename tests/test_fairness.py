"""optlib.fairness, and training under a demographic-parity constraint (run.train's constraints=) against fairlearn."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from optlib import models, run
from optlib.constrained import AugmentedLagrangian, Constraints, PrimalDual, QuadraticPenalty
from optlib.data import Dataset
from optlib.fairness import biased_lending, parity_constraints, parity_gap
from optlib.optim.quasi_newton import LBFGS

F64 = torch.float64


def test_the_planted_bias_is_in_the_labels_and_the_proxy_reveals_the_group():
    data = biased_lending(seed=0)
    low, high = data.base_rates()
    assert high - low > 0.15
    assert data.X_train.shape == (2000, 4) and set(data.s_train.tolist()) == {0, 1}
    proxy = data.X_train[:, 1]
    assert torch.corrcoef(torch.stack([proxy, data.s_train.to(F64)]))[0, 1] > 0.6
    assert torch.corrcoef(torch.stack([data.X_train[:, 0], data.s_train.to(F64)]))[0, 1].abs() < 0.1
    again = biased_lending(seed=0)
    assert all(torch.equal(a, b) for a, b in zip(data, again))


def test_parity_gap_and_constraints():
    s = torch.tensor([0, 0, 1, 1])
    gap = parity_gap(torch.tensor([0.0, 1.0, 1.0, 1.0]), s)
    assert float(gap) == pytest.approx(0.5)
    torch.testing.assert_close(parity_constraints(gap, 0.1), torch.tensor([0.4, -0.6]))
    with pytest.raises(ValueError, match="both groups"):
        parity_gap(torch.ones(3), torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="vectors of one length"):
        parity_gap(torch.ones(3), torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match="slack must be"):
        parity_constraints(gap, -0.1)


def _classifier_and_constraint(data, slack):
    model = models.LinearClassifier(4, 2, dtype=F64)
    as_dataset = Dataset(data.X_train, data.y_train, data.X_test, data.y_test)

    def parity(m):
        q = torch.softmax(m(data.X_train), dim=1)[:, 1]
        return parity_constraints(parity_gap(q, data.s_train), slack)

    return model, as_dataset, parity


@pytest.mark.parametrize("formulation, method, options", [
    (lambda: AugmentedLagrangian(penalty=20.0), LBFGS, dict(max_iter=20, tolerance_grad=0.0, tolerance_change=0.0)),
    (lambda: PrimalDual(dual_lr=1.0), torch.optim.SGD, dict(lr=0.5)),
])
def test_training_under_a_parity_constraint_is_one_argument_of_run_train(formulation, method, options):
    data = biased_lending(seed=1)
    model, dataset, parity = _classifier_and_constraint(data, slack=0.05)
    free_model = models.LinearClassifier(4, 2, dtype=F64)
    free = run.train(free_model, F.cross_entropy, dataset, method,
                     steps=30 if method is LBFGS else 300, **options)
    assert free.stopped is None
    free_gap = float(parity_gap(torch.softmax(free_model(data.X_train), 1)[:, 1].detach(), data.s_train))
    assert free_gap > 0.08  # the unconstrained classifier learns the bias through the proxy
    constraints = Constraints(formulation(), ineq=parity)
    trace = run.train(model, F.cross_entropy, dataset, method, steps=30 if method is LBFGS else 300,
                      constraints=constraints, **options)
    gap = float(parity_gap(torch.softmax(model(data.X_train), 1)[:, 1].detach(), data.s_train))
    assert abs(gap) <= 0.05 + 2e-3
    steps, violation = trace.metric("violation")
    assert violation[-1] <= 2e-3 and len(steps) == trace.steps
    multipliers = trace.metrics["multipliers"][-1][1]
    assert multipliers[0] > 0.01 and multipliers[1] == 0.0  # the upper bound binds, the lower one does not



def test_run_train_refuses_a_constraint_that_is_not_a_constraints_object():
    data = biased_lending(seed=1, n_train=50, n_test=50)
    model, dataset, parity = _classifier_and_constraint(data, slack=0.05)
    with pytest.raises(TypeError, match="optlib.constrained.Constraints"):
        run.train(model, F.cross_entropy, dataset, torch.optim.SGD, steps=1, lr=0.1, constraints=parity)
    with pytest.raises(ValueError, match="give ineq, eq or both"):
        Constraints(PrimalDual())
    with pytest.raises(TypeError, match="formulation must be"):
        Constraints(object(), ineq=parity)


def _fit_constrained(data, slack):
    model, dataset, parity = _classifier_and_constraint(data, slack)
    constraints = Constraints(AugmentedLagrangian(penalty=20.0), ineq=parity)
    run.train(model, F.cross_entropy, dataset, LBFGS, steps=30, constraints=constraints, max_iter=20,
              tolerance_grad=0.0, tolerance_change=0.0)
    return model


@pytest.mark.filterwarnings("ignore:Setting a value on a Series:Warning")  # inside fairlearn 0.15 with pandas 3
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_constrained_classifier_agrees_with_fairlearns_exponentiated_gradient(seed):
    """fairlearn's DemographicParity(difference_bound=eps) bounds each group's rate against the overall rate,
    so with two groups of equal size the gap between the groups is at most about 2 eps: we compare at slack = 2 eps."""
    reductions = pytest.importorskip("fairlearn.reductions")
    from sklearn.linear_model import LogisticRegression

    data = biased_lending(seed=seed)
    eps = 0.02
    mitigator = reductions.ExponentiatedGradient(LogisticRegression(C=1e6, max_iter=1000),
                                                 reductions.DemographicParity(difference_bound=eps), eps=0.001)
    mitigator.fit(data.X_train.numpy(), data.y_train.numpy(), sensitive_features=data.s_train.numpy())
    model = _fit_constrained(data, slack=2 * eps)
    for X, y, s in [(data.X_train, data.y_train, data.s_train), (data.X_test, data.y_test, data.s_test)]:
        q = torch.tensor(mitigator._pmf_predict(X.numpy())[:, 1])  # the randomized classifier's P(yes)
        theirs_acc = float((q * (y == 1) + (1 - q) * (y == 0)).mean())
        theirs_gap = float(parity_gap(q, s))
        with torch.no_grad():
            decisions = model(X).argmax(1)
        ours_acc = float((decisions == y).to(F64).mean())
        ours_gap = float(parity_gap(decisions.to(F64), s))
        assert abs(ours_acc - theirs_acc) <= 0.015, (ours_acc, theirs_acc)
        assert abs(ours_gap - theirs_gap) <= 0.03, (ours_gap, theirs_gap)
    with torch.no_grad():
        smooth = float(parity_gap(torch.softmax(model(data.X_train), 1)[:, 1], data.s_train))
    assert abs(smooth) <= 2 * eps + 1e-3
    assert abs(float(parity_gap(torch.tensor(mitigator._pmf_predict(data.X_train.numpy())[:, 1]), data.s_train))) \
        <= 2 * eps + 0.01


def test_a_penalty_alone_misses_the_slack_that_the_augmented_lagrangian_meets():
    data = biased_lending(seed=0)
    gaps = {}
    for name, formulation in [("penalty", QuadraticPenalty(weight=10.0, growth=1.0)),
                              ("augmented Lagrangian", AugmentedLagrangian(penalty=10.0))]:
        model, dataset, parity = _classifier_and_constraint(data, slack=0.02)
        run.train(model, F.cross_entropy, dataset, LBFGS, steps=30, max_iter=20, tolerance_grad=0.0,
                  tolerance_change=0.0, constraints=Constraints(formulation, ineq=parity))
        gaps[name] = float(parity_gap(torch.softmax(model(data.X_train), 1)[:, 1].detach(), data.s_train))
    assert gaps["penalty"] > 0.02 + 5e-3 and abs(gaps["augmented Lagrangian"]) <= 0.02 + 1e-3, gaps
