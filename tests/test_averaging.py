"""optlib.averaging: parameter averages against torch.optim.swa_utils.AveragedModel, the noisy
least-squares problem, the many-seed SGD runner, and Schedule-Free's runs (against ScheduleFreeSGD)."""
import numpy as np
import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from optlib import averaging, schedules
from optlib import data as datasets
from optlib.averaging import (
    NoisyLeastSquares,
    ParameterAverage,
    running_average,
    sgd_excess_curves,
)
from optlib.optim import ScheduleFreeSGD

F64 = torch.float64


def small_model(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).to(F64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64))
    return model


def random_walk(model, steps, seed=1):
    """Yield after each of ``steps`` random in-place changes of the model's parameters."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=F64))
        yield


@pytest.mark.parametrize("kind", ["uniform", "ema"])
def test_matches_torch_averaged_model_over_50_updates(kind):
    model = small_model()
    ours = ParameterAverage(model.parameters(), kind=kind, decay=0.9)
    if kind == "uniform":
        theirs = AveragedModel(model)
    else:
        theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    for _ in random_walk(model, 50):
        ours.update()
        theirs.update_parameters(model)
        for a, b in zip(ours.averages, theirs.module.parameters()):
            torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-14)
    assert ours.count == 50
    # the average is not the last value: the comparison means something
    assert any((a - p).abs().max() > 0.1 for a, p in zip(ours.averages, model.parameters()))


def test_uniform_average_is_the_mean_and_copy_to_writes_it():
    x = torch.zeros(3, dtype=F64)
    average = ParameterAverage(x)
    values = torch.randn(20, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    for v in values:
        x.copy_(v)
        average.update()
    torch.testing.assert_close(average.averages[0], values.mean(0), rtol=1e-13, atol=1e-15)
    target = torch.empty(3, dtype=F64)
    average.copy_to(target)
    torch.testing.assert_close(target, values.mean(0), rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="expected 1 tensors"):
        average.copy_to([target, target])
    with pytest.raises(ValueError, match="shape mismatch"):
        average.copy_to(torch.empty(4, dtype=F64))


def test_running_average_of_a_path():
    path = np.random.default_rng(0).normal(size=(30, 2))
    expected = np.cumsum(path, axis=0) / np.arange(1, 31)[:, None]
    np.testing.assert_allclose(running_average(path), expected, rtol=1e-12, atol=1e-14)
    ema = running_average(path, kind="ema", decay=0.5)
    manual = [path[0]]
    for row in path[1:]:
        manual.append(0.5 * manual[-1] + 0.5 * row)
    np.testing.assert_allclose(ema, np.array(manual), rtol=1e-12, atol=1e-14)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="kind must be one of"):
        ParameterAverage(torch.zeros(2), kind="median")
    with pytest.raises(ValueError, match=r"decay must be in \[0(\.0)?, 1(\.0)?\]"):
        ParameterAverage(torch.zeros(2), kind="ema", decay=1.5)
    with pytest.raises(TypeError, match="params must be a tensor"):
        ParameterAverage([])
    with pytest.raises(ValueError, match="path must have at least one row"):
        running_average(np.zeros((0, 2)))


def test_noisy_least_squares_knows_its_minimizer():
    problem = NoisyLeastSquares.make(n=300, dim=5, noise_std=0.5, condition_number=20,
                                     generator=torch.Generator().manual_seed(0))
    X, y, w = problem.X, problem.y, problem.w_star
    gradient = X.T @ (X @ w - y) / len(y)
    assert gradient.abs().max() < 1e-12
    eigenvalues = torch.linalg.eigvalsh(problem.H)
    assert 5 < (eigenvalues[-1] / eigenvalues[0]).item() < 80  # about the condition number asked for
    # per-example gradients do not vanish at w*: the noise SGD has to live with
    per_example = X * (X @ w - y)[:, None]
    assert per_example.norm(dim=1).mean() > 0.1
    # excess(w) = F(w) - F(w*), for a vector and for the rows of a matrix
    W = w + torch.randn(4, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    full = lambda v: 0.5 * ((X @ v - y) ** 2).mean()  # noqa: E731
    expected = torch.stack([full(row) - full(w) for row in W])
    torch.testing.assert_close(problem.excess(W), expected, rtol=1e-10, atol=1e-12)
    assert problem.excess(w).item() == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="n >= dim"):
        NoisyLeastSquares.make(n=3, dim=5)


def test_minibatch_loss_gives_each_row_its_own_gradient():
    problem = NoisyLeastSquares.make(n=50, dim=3, generator=torch.Generator().manual_seed(0))
    W = torch.randn(2, 3, generator=torch.Generator().manual_seed(3), dtype=F64, requires_grad=True)
    index = torch.tensor([[0, 1, 2], [7, 7, 9]])
    problem.minibatch_loss(W, index).backward()
    for s in range(2):
        Xb, yb = problem.X[index[s]], problem.y[index[s]]
        torch.testing.assert_close(W.grad[s], Xb.T @ (Xb @ W[s].detach() - yb) / 3)


def test_sgd_excess_curves_last_iterate_floor_and_averaged_decay():
    problem = NoisyLeastSquares.make(n=400, dim=5, noise_std=1.0, condition_number=5,
                                     generator=torch.Generator().manual_seed(0))
    configs = {"constant": (0.05, schedules.constant()), "1/t": (0.5, schedules.inverse_time(20))}
    curves = sgd_excess_curves(problem, configs, steps=2000, seeds=8, record_at=[200, 2000],
                               generator=torch.Generator().manual_seed(1))
    assert set(curves) == {"constant", "1/t"}
    for c in curves.values():
        assert c["last"].shape == c["average"].shape == (2, 8)
        np.testing.assert_array_equal(c["steps"], [200, 2000])
    const = curves["constant"]
    # constant step: the last iterate sits at a floor, the average keeps falling below it
    floor_ratio = np.median(const["last"][1]) / np.median(const["last"][0])
    assert 0.3 < floor_ratio < 3
    assert np.median(const["average"][1]) < 0.2 * np.median(const["last"][1])
    # the same generator gives the same runs
    again = sgd_excess_curves(problem, configs, steps=2000, seeds=8, record_at=[200, 2000],
                              generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(again["1/t"]["average"], curves["1/t"]["average"])
    with pytest.raises(ValueError, match="record_at"):
        sgd_excess_curves(problem, configs, steps=10, record_at=[20])
    with pytest.raises(ValueError, match="configs"):
        sgd_excess_curves(problem, {}, steps=10)


def test_sgd_excess_curves_is_optlib_sgd_with_a_lambdalr():
    from optlib import optim

    problem = NoisyLeastSquares.make(n=60, dim=3, generator=torch.Generator().manual_seed(0))
    configs = {"a": (0.1, schedules.inverse_time(5)), "b": (0.03, schedules.constant())}
    curves = sgd_excess_curves(problem, configs, steps=30, seeds=2, batch_size=4, record_at=[10, 30],
                               generator=torch.Generator().manual_seed(7))
    # the same runs with optlib's SGD, one parameter group per configuration, and torch's LambdaLR
    gen = torch.Generator().manual_seed(7)
    weights = [torch.zeros(2, 3, dtype=F64, requires_grad=True) for _ in configs]
    opt = optim.SGD([dict(params=[w], lr=lr) for w, (lr, _) in zip(weights, configs.values())], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [s for _, s in configs.values()])
    averages = [ParameterAverage(w) for w in weights]
    recorded = []
    for t in range(1, 31):
        index = torch.randint(0, 60, (2, 2, 4), generator=gen)
        opt.zero_grad()
        sum(problem.minibatch_loss(w, index[k]) for k, w in enumerate(weights)).backward()
        opt.step()
        sched.step()
        for a in averages:
            a.update()
        if t in (10, 30):
            recorded.append([(problem.excess(w.detach()), problem.excess(a.averages[0]))
                             for w, a in zip(weights, averages)])
    for k, name in enumerate(configs):
        for row, step_values in enumerate(recorded):
            last, avg = step_values[k]
            np.testing.assert_allclose(curves[name]["last"][row], last.numpy(), rtol=1e-10)
            np.testing.assert_allclose(curves[name]["average"][row], avg.numpy(), rtol=1e-10)


def test_sgd_excess_curves_start_point():
    problem = NoisyLeastSquares.make(n=80, dim=4, generator=torch.Generator().manual_seed(0))
    configs = {"zero lr": (0.0, schedules.constant())}
    start = problem.w_star + 1.0
    curves = sgd_excess_curves(problem, configs, steps=5, seeds=3, record_at=[1, 5], start=start)
    # with lr 0 nothing moves: every record is the excess risk of the start
    expected = problem.excess(start).item()
    np.testing.assert_allclose(curves["zero lr"]["last"], expected, rtol=1e-12)
    np.testing.assert_allclose(curves["zero lr"]["average"], expected, rtol=1e-12)
    with pytest.raises(ValueError, match=r"start must have shape \(4,\)"):
        sgd_excess_curves(problem, configs, steps=5, start=torch.zeros(3))


def test_schedule_free_curves_match_schedule_free_sgd_for_one_run():
    problem = averaging.NoisyLeastSquares.make(n=50, dim=3, generator=torch.Generator().manual_seed(1))
    curves = averaging.schedule_free_curves(problem, lr=0.05, beta=0.7, steps=30, seeds=1,
                                           record_at=[30], generator=torch.Generator().manual_seed(2))
    # the same draws, through the optimizer
    gen = torch.Generator().manual_seed(2)
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = ScheduleFreeSGD([p], lr=0.05, momentum=0.7, weight_lr_power=0.0)
    for _ in range(30):
        i = torch.randint(0, 50, (1, 1), generator=gen)[0]
        opt.zero_grad()
        (0.5 * ((problem.X[i] @ p - problem.y[i]) ** 2).mean()).backward()
        opt.step()
    x = opt.averaged_parameters()[0]
    assert curves["x"][0, 0] == pytest.approx(problem.excess(x).item(), rel=1e-10)
    assert curves["z"][0, 0] == pytest.approx(problem.excess(opt.state[p]["z"]).item(), rel=1e-10)


def test_schedule_free_curves_accept_the_limits_and_reject_bad_arguments():
    problem = averaging.NoisyLeastSquares.make(n=50, dim=3, generator=torch.Generator().manual_seed(1))
    for beta in (0.0, 1.0):
        c = averaging.schedule_free_curves(problem, lr=0.05, beta=beta, steps=20, seeds=2,
                                           generator=torch.Generator().manual_seed(0))
        assert c["x"].shape == (len(c["steps"]), 2) and np.isfinite(c["x"]).all()
    c = averaging.schedule_free_curves(problem, lr=0.05, beta=0.0, steps=20, seeds=2, record_at=[20],
                                       generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(c["y"], c["z"])
    with pytest.raises(ValueError, match="beta"):
        averaging.schedule_free_curves(problem, lr=0.05, beta=1.5, steps=5)
    with pytest.raises(ValueError, match="record_at"):
        averaging.schedule_free_curves(problem, lr=0.05, beta=0.5, steps=5, record_at=[6])


def test_schedule_free_digits_reports_x_and_y_for_schedule_free_only():
    digits = datasets.load_digits(dtype=torch.float64)
    sf = averaging.schedule_free_digits(digits, "schedule_free", 0.03, seed=0, steps=20)
    assert set(sf) == {"train_loss", "test_acc", "train_loss_y", "test_acc_y"}
    assert sf["train_loss"] != sf["train_loss_y"]
    adamw = averaging.schedule_free_digits(digits, "adamw_cosine", 0.03, seed=0, steps=20)
    assert set(adamw) == {"train_loss", "test_acc"} and 0 < adamw["test_acc"] <= 1
    with pytest.raises(ValueError, match="method"):
        averaging.schedule_free_digits(digits, "sgd", 0.1, seed=0)
