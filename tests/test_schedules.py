"""optlib.schedules: every schedule against torch.optim.lr_scheduler step by step, argument checks,
values() and plot.schedules."""
import math
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.optim import lr_scheduler as L  # noqa: E402

from optlib import plot, schedules  # noqa: E402
from optlib.schedules import (constant, cosine, exponential, inverse_sqrt, inverse_time, linear,  # noqa: E402
                              linear_warmup, multistep, scaled_lr, scheduler, step_decay, values, warmup_then)

BASE_LR = 0.4
# torch's CosineAnnealingLR and LinearLR update the lr recursively (lr_t from lr_{t-1}), which
# adds a few roundings per step; optlib uses the closed form
CLOSE = dict(rtol=1e-12, atol=1e-14)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def torch_lrs(make_scheduler, steps, base_lrs=(BASE_LR,)):
    """The lr of every group at steps 0..steps-1 under a torch scheduler (stepped after each step)."""
    params = [torch.zeros(1, requires_grad=True) for _ in base_lrs]
    opt = torch.optim.SGD([dict(params=[p], lr=lr) for p, lr in zip(params, base_lrs)], lr=base_lrs[0])
    sched = make_scheduler(opt)
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return np.array(out)


def assert_schedule_matches(schedule, make_scheduler, steps):
    expected = torch_lrs(make_scheduler, steps)[:, 0]
    np.testing.assert_allclose(values(schedule, steps, BASE_LR), expected, **CLOSE)


CASES = {
    # name: (optlib schedule, torch scheduler factory, steps: enough to pass every milestone)
    "StepLR": (step_decay(7, 0.5), lambda o: L.StepLR(o, step_size=7, gamma=0.5), 40),
    "StepLR gamma 0.1": (step_decay(3), lambda o: L.StepLR(o, step_size=3), 13),
    "MultiStepLR": (multistep([5, 12, 30], 0.3), lambda o: L.MultiStepLR(o, milestones=[5, 12, 30], gamma=0.3), 40),
    "MultiStepLR unsorted, repeated": (multistep([20, 4, 4], 0.5),
                                       lambda o: L.MultiStepLR(o, milestones=[20, 4, 4], gamma=0.5), 30),
    # CosineAnnealingLR is periodic after T_max; optlib's cosine stays at its minimum (tested below)
    "CosineAnnealingLR": (cosine(50), lambda o: L.CosineAnnealingLR(o, T_max=50), 51),
    "CosineAnnealingLR eta_min": (cosine(30, min_factor=0.1),
                                  lambda o: L.CosineAnnealingLR(o, T_max=30, eta_min=0.1 * BASE_LR), 31),
    "LinearLR decay": (linear(20), lambda o: L.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=20), 30),
    "LinearLR": (linear(25, 0.5, 0.1), lambda o: L.LinearLR(o, start_factor=0.5, end_factor=0.1, total_iters=25), 35),
    "LinearLR warmup": (linear_warmup(10), lambda o: L.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=10),
                        20),
    "LinearLR warmup from 0.25": (linear_warmup(8, 0.25),
                                  lambda o: L.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=8), 15),
    "SequentialLR warmup + cosine": (
        warmup_then(10, cosine(40)),
        lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=10),
                                     L.CosineAnnealingLR(o, T_max=40)], milestones=[10]),
        51),
    "SequentialLR warmup + cosine, eta_min, start 0.2": (
        warmup_then(5, cosine(20, 0.05), start_factor=0.2),
        lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=0.2, end_factor=1.0, total_iters=5),
                                     L.CosineAnnealingLR(o, T_max=20, eta_min=0.05 * BASE_LR)], milestones=[5]),
        26),
    "SequentialLR warmup + step decay": (
        warmup_then(6, step_decay(10, 0.5)),
        lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=1 / 6, end_factor=1.0, total_iters=6),
                                     L.StepLR(o, step_size=10, gamma=0.5)], milestones=[6]),
        50),
    "ExponentialLR": (exponential(0.9), lambda o: L.ExponentialLR(o, gamma=0.9), 60),
    "ExponentialLR slow": (exponential(0.999), lambda o: L.ExponentialLR(o, gamma=0.999), 500),
    # 1/t decay has no scheduler of its own in torch: it is a LambdaLR with the formula written out
    "LambdaLR 1/t": (inverse_time(25), lambda o: L.LambdaLR(o, lambda t: 1.0 / (1.0 + t / 25.0)), 300),
    "LambdaLR 1/sqrt(t)": (inverse_time(7.5, power=0.5),
                           lambda o: L.LambdaLR(o, lambda t: 1.0 / math.sqrt(1.0 + t / 7.5)), 300),
    "SequentialLR warmup + exponential": (
        warmup_then(5, exponential(0.95)),
        lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=0.2, end_factor=1.0, total_iters=5),
                                     L.ExponentialLR(o, gamma=0.95)], milestones=[5]),
        40),
    "SequentialLR warmup + multistep": (
        warmup_then(4, multistep([10, 20], 0.1)),
        lambda o: L.SequentialLR(o, [L.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=4),
                                     L.MultiStepLR(o, milestones=[10, 20], gamma=0.1)], milestones=[4]),
        30),
}


@pytest.mark.parametrize("case", list(CASES))
def test_schedule_matches_torch_scheduler_step_by_step(case):
    schedule, make_scheduler, steps = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # SequentialLR's deprecation chatter, not ours
        assert_schedule_matches(schedule, make_scheduler, steps)


def test_the_comparison_can_fail():
    with pytest.raises(AssertionError):
        assert_schedule_matches(step_decay(7, 0.5), lambda o: L.StepLR(o, step_size=8, gamma=0.5), 10)


def test_cosine_stays_at_its_minimum_after_total_steps():
    f = cosine(10, min_factor=0.2)
    assert f(0) == 1.0 and f(5) == pytest.approx(0.6, rel=1e-15)
    assert [f(t) for t in (10, 11, 25, 1000)] == [pytest.approx(0.2, rel=1e-15)] * 4
    assert linear(10, 1.0, 0.3)(50) == pytest.approx(0.3)
    assert step_decay(2, 0.5)(5) == 0.25 and multistep([2, 4])(3) == pytest.approx(0.1)


def test_exponential_and_inverse_time_shapes():
    # gamma^t halves the rate after ln 2 / -ln gamma steps
    f = exponential(0.999)
    half = math.log(2) / -math.log(0.999)
    assert f(int(half)) > 0.5 > f(int(half) + 1)
    assert exponential(1.0)(1000) == 1.0
    # (1 + t/tau)^-p: 1/2 at t = tau for p = 1, 1/sqrt(2) for p = 1/2; then like (tau/t)^p
    g, h = inverse_time(50), inverse_time(50, power=0.5)
    assert g(0) == 1.0 and g(50) == pytest.approx(0.5, rel=1e-15) and h(50) == pytest.approx(2**-0.5, rel=1e-15)
    t = np.array([1e4, 1e5])
    slopes = np.diff(np.log([[g(int(v)) for v in t], [h(int(v)) for v in t]]), axis=1)[:, 0] / np.log(10)
    np.testing.assert_allclose(slopes, [-1.0, -0.5], atol=0.01)
    # Robbins-Monro: the partial sums of 1/t grow without bound, those of its square settle
    partial = np.cumsum(values(g, 100_000))
    squares = np.cumsum(values(g, 100_000) ** 2)
    assert partial[-1] > 1.2 * partial[10_000] and squares[-1] < 1.001 * squares[50_000]


def test_inverse_sqrt_and_constant():
    f = inverse_sqrt(4)
    assert [f(t) for t in (0, 3, 4)] == [1.0, 1.0, 1.0]
    assert f(16) == pytest.approx(0.5) and f(100) == pytest.approx(0.2)
    assert inverse_sqrt()(9) == pytest.approx(1 / 3)
    assert [constant()(t) for t in (0, 1, 10**6)] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("schedule", [inverse_sqrt(10), warmup_then(5, cosine(30)), multistep([3, 9], 0.5),
                                      lambda t: 1 / (1 + 0.1 * t)])
def test_scheduler_is_a_lambdalr_that_follows_the_schedule_in_every_group(schedule):
    base_lrs = (BASE_LR, 0.03)
    ours = torch_lrs(lambda o: scheduler(o, schedule), 40, base_lrs)
    theirs = torch_lrs(lambda o: L.LambdaLR(o, schedule), 40, base_lrs)
    np.testing.assert_array_equal(ours, theirs)
    for j, base in enumerate(base_lrs):
        np.testing.assert_allclose(ours[:, j], values(schedule, 40, base), rtol=1e-15)
    params = [torch.zeros(1, requires_grad=True)]
    assert isinstance(scheduler(torch.optim.SGD(params, lr=0.1), schedule), L.LambdaLR)


def test_scheduler_drives_an_optlib_optimizer_and_survives_a_state_dict():
    from optlib.optim import Adam

    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = Adam([x], lr=0.1)
    sched = scheduler(opt, warmup_then(3, step_decay(4, 0.5)))
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        x.grad = torch.ones_like(x)
        opt.step()
        sched.step()
    state = sched.state_dict()
    fresh = scheduler(opt, warmup_then(3, step_decay(4, 0.5)))
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 6
    np.testing.assert_allclose(lrs, values(warmup_then(3, step_decay(4, 0.5)), 6, 0.1), rtol=1e-15)


def test_values():
    v = values(cosine(4), 6, base_lr=2.0)
    assert isinstance(v, np.ndarray) and v.dtype == np.float64 and v.shape == (6,)
    np.testing.assert_allclose(v, [2.0, 2 * (1 + math.cos(math.pi / 4)) / 2, 1.0, 2 * (1 - math.cos(math.pi / 4)) / 2,
                                   0.0, 0.0], atol=1e-15)
    np.testing.assert_array_equal(values(step_decay(2, 0.5), 5), [1.0, 1.0, 0.5, 0.5, 0.25])
    np.testing.assert_array_equal(values(lambda t: t, 3, 0.5), [0.0, 0.5, 1.0])


def test_schedule_names_describe_them():
    assert step_decay(30, 0.1).__name__ == "step_decay(30, 0.1)"
    assert cosine(100).__name__ == "cosine(100)"
    assert warmup_then(10, cosine(90)).__name__ == "warmup(10) + cosine(90)"
    assert warmup_then(10, lambda t: 1.0).__name__ == "warmup(10) + <lambda>"
    assert exponential(0.99).__name__ == "exponential(0.99)"
    assert inverse_time(100).__name__ == "inverse_time(100)"
    assert inverse_time(100, power=0.5).__name__ == "inverse_time(100, power=0.5)"


@pytest.mark.parametrize("call,error,message", [
    (lambda: step_decay(0), ValueError, r"step_size must be a positive integer, got 0"),
    (lambda: step_decay(2.5), ValueError, r"step_size must be a positive integer, got 2.5"),
    (lambda: step_decay(True), ValueError, r"step_size must be a positive integer, got True"),
    (lambda: step_decay(10, gamma=0.0), ValueError, r"gamma must be a finite number > 0, got 0"),
    (lambda: step_decay(10, gamma=-0.5), ValueError, r"gamma must be a finite number > 0, got -0.5"),
    (lambda: step_decay(10, gamma=float("nan")), ValueError, r"gamma must not be NaN"),
    (lambda: step_decay(10, gamma=True), TypeError, r"gamma must be a real number, got True"),
    (lambda: multistep([]), ValueError, r"milestones must be a non-empty list of positive integers"),
    (lambda: multistep([0, 5]), ValueError, r"milestones must be a non-empty list of positive integers"),
    (lambda: multistep([5, 7.5]), ValueError, r"milestones must be a non-empty list of positive integers"),
    (lambda: multistep([True]), ValueError, r"milestones must be a non-empty list of positive integers"),
    (lambda: multistep(5), TypeError, r"milestones must be a non-empty list of positive integers, got 5"),
    (lambda: multistep([3, "6"]), TypeError, r"milestones must be a non-empty list of positive integers"),
    (lambda: multistep([5], gamma=0), ValueError, r"gamma must be a finite number > 0"),
    (lambda: cosine(0), ValueError, r"total_steps must be a positive integer, got 0"),
    (lambda: cosine(10, min_factor=1.5), ValueError, r"min_factor must be in \[0(\.0)?, 1(\.0)?\], got 1.5"),
    (lambda: cosine(10, min_factor=-0.1), ValueError, r"min_factor must be in \[0(\.0)?, 1(\.0)?\], got -0.1"),
    (lambda: linear(-3), ValueError, r"total_steps must be a positive integer, got -3"),
    (lambda: linear(10, start_factor=-1.0), ValueError, r"start_factor must be >= 0(\.0)?, got -1"),
    (lambda: linear(10, end_factor=float("nan")), ValueError, r"end_factor must not be NaN"),
    (lambda: inverse_sqrt(0), ValueError, r"warmup_steps must be a positive integer, got 0"),
    (lambda: exponential(1.5), ValueError, r"gamma must be in \[0(\.0)?, 1(\.0)?\], got 1.5"),
    (lambda: exponential(0.0), ValueError, r"gamma must be > 0: gamma = 0 sets every lr after the first to 0"),
    (lambda: exponential(-0.5), ValueError, r"gamma must be in \[0(\.0)?, 1(\.0)?\], got -0.5"),
    (lambda: exponential(True), TypeError, r"gamma must be a real number, got True"),
    (lambda: inverse_time(0), ValueError, r"tau must be a finite number > 0, got 0"),
    (lambda: inverse_time(10, power=-1), ValueError, r"power must be a finite number > 0, got -1"),
    (lambda: inverse_time(float("nan")), ValueError, r"tau must not be NaN"),
    (lambda: inverse_time(10)(-1), ValueError, r"a schedule is called with a step t >= 0"),
    (lambda: linear_warmup(0), ValueError, r"warmup_steps must be a positive integer, got 0"),
    (lambda: linear_warmup(10, start_factor=1.5), ValueError, r"start_factor must be in \[0(\.0)?, 1(\.0)?\]"),
    (lambda: warmup_then(0, cosine(10)), ValueError, r"warmup_steps must be a positive integer, got 0"),
    (lambda: warmup_then(5, "cosine"), TypeError, r"schedule must be a callable step -> factor, got 'cosine'"),
    (lambda: scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), 0.5), TypeError,
     r"schedule must be a callable step -> factor, got 0.5"),
    (lambda: values(cosine(10), 0), ValueError, r"steps must be a positive integer, got 0"),
    (lambda: values(cosine(10), 5.0), ValueError, r"steps must be a positive integer, got 5.0"),
    (lambda: cosine(10)(-1), ValueError, r"a schedule is called with a step t >= 0 \(an integer\), got -1"),
    (lambda: step_decay(3)(1.5), ValueError, r"a schedule is called with a step t >= 0 \(an integer\), got 1.5"),
    (lambda: warmup_then(3, cosine(5))(True), ValueError, r"got True"),
    (lambda: constant()(-2), ValueError, r"got -2"),
    (lambda: scaled_lr(0.1, 32, 64, rule="cubic"), ValueError, r"rule must be one of \['linear', 'sqrt'\]"),
    (lambda: scaled_lr(-0.1, 32, 64), ValueError, r"base_lr must be a finite number > 0"),
    (lambda: scaled_lr(0.1, 0, 64), ValueError, r"base_batch_size must be a positive integer, got 0"),
])
def test_invalid_arguments_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_schedules_accept_numpy_integers():
    assert multistep(np.array([2, 4]), 0.5).__name__ == "multistep([2, 4], 0.5)"
    assert multistep(np.array([2, 4]), 0.5)(np.int64(4)) == 0.25
    assert cosine(10)(np.int64(5)) == pytest.approx(0.5)
    np.testing.assert_allclose([warmup_then(4, cosine(8))(t) for t in np.arange(3)], [0.25, 0.4375, 0.625])


def test_scaled_lr():
    assert scaled_lr(0.1, 256, 1024) == pytest.approx(0.4)
    assert scaled_lr(0.1, 256, 1024, rule="sqrt") == pytest.approx(0.2)
    assert scaled_lr(0.1, 256, 64) == pytest.approx(0.025)


def test_plot_schedules_draws_every_schedule():
    named = {"step": step_decay(10, 0.5), "warmup + cosine": warmup_then(5, cosine(25))}
    ax = plot.schedules(named, 30, base_lr=0.1)
    assert [line.get_label() for line in ax.lines] == list(named)
    for line, schedule in zip(ax.lines, named.values()):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(30))
        np.testing.assert_allclose(line.get_ydata(), values(schedule, 30, 0.1))
    single = plot.schedules(schedules.inverse_sqrt(5), 20, logy=True)
    assert len(single.lines) == 1 and single.get_yscale() == "log"
    with pytest.raises(TypeError):
        plot.schedules({}, 10)
