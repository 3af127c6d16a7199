"""optlib.optim adaptive methods (AdaGrad, RMSProp, Adadelta, Adam, AdamW, AMSGrad) against torch.optim, float64;
Adam without bias correction against the formula; state_dict round trips and hyperparameter checks
for every optimizer."""
import math
from functools import partial

import pytest
import torch

from optlib.optim import SGD, AdaGrad, Adadelta, Adam, AdamW, AMSGrad, RMSProp
from test_optim import MATCH, assert_matches_torch, assert_resumes_bit_identically

F64 = torch.float64

# name: (optlib class, torch class, spec); a spec is one group's hyperparameters or
# [(parameter indices, hyperparameters), ...] for several groups with different settings
CASES = {
    "Adagrad": (AdaGrad, torch.optim.Adagrad, dict(lr=0.1)),
    "Adagrad everything": (AdaGrad, torch.optim.Adagrad,
                           dict(lr=0.1, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.1, eps=1e-6)),
    "Adagrad groups": (AdaGrad, torch.optim.Adagrad,
                       [([0, 1], dict(lr=0.2, weight_decay=0.1)), ([2, 3, 4], dict(lr=0.05, lr_decay=0.05))]),
    "RMSprop": (RMSProp, torch.optim.RMSprop, dict(lr=0.01)),
    "RMSprop centered": (RMSProp, torch.optim.RMSprop, dict(lr=0.01, centered=True, alpha=0.9)),
    "RMSprop momentum": (RMSProp, torch.optim.RMSprop, dict(lr=0.005, momentum=0.9, weight_decay=0.01)),
    "RMSprop centered momentum": (RMSProp, torch.optim.RMSprop,
                                  dict(lr=0.005, momentum=0.8, centered=True, weight_decay=0.05, eps=1e-6)),
    "RMSprop groups": (RMSProp, torch.optim.RMSprop,
                       [([0, 1], dict(lr=0.01, centered=True)), ([2, 3], dict(lr=0.005, momentum=0.9, alpha=0.95)),
                        ([4], dict(lr=0.02, weight_decay=0.1, centered=True, momentum=0.5))]),
    "Adam": (Adam, torch.optim.Adam, dict(lr=0.01)),
    "Adam L2": (Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    "Adam groups": (Adam, torch.optim.Adam,
                    [([0, 1], dict(lr=0.02, betas=(0.5, 0.9))), ([2, 3, 4], dict(lr=0.005, weight_decay=0.1))]),
    "AdamW": (AdamW, torch.optim.AdamW, dict(lr=0.01)),
    "AdamW strong decay": (AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.5, betas=(0.85, 0.995))),
    "AdamW groups": (AdamW, torch.optim.AdamW,
                     [([0, 2], dict(lr=0.02, weight_decay=0.0)), ([1, 3, 4], dict(lr=0.01, weight_decay=0.2))]),
    "Adadelta": (Adadelta, torch.optim.Adadelta, dict()),
    "Adadelta everything": (Adadelta, torch.optim.Adadelta, dict(lr=0.5, rho=0.95, eps=1e-4, weight_decay=0.05)),
    "Adadelta groups": (Adadelta, torch.optim.Adadelta,
                        [([0, 1], dict(lr=2.0, rho=0.8)), ([2, 3, 4], dict(eps=1e-5, weight_decay=0.1))]),
    "Adam amsgrad": (Adam, torch.optim.Adam, dict(lr=0.01, amsgrad=True, betas=(0.8, 0.99))),
    "AMSGrad": (AMSGrad, partial(torch.optim.Adam, amsgrad=True), dict(lr=0.01, weight_decay=0.05, eps=1e-6)),
    "AMSGrad groups": (AMSGrad, partial(torch.optim.Adam, amsgrad=True),
                       [([0, 1], dict(lr=0.02, betas=(0.5, 0.9))), ([2, 3, 4], dict(lr=0.005, weight_decay=0.1))]),
    "AdamW amsgrad": (AdamW, torch.optim.AdamW, dict(lr=0.01, weight_decay=0.2, amsgrad=True)),
    "Adam groups amsgrad in one": (Adam, torch.optim.Adam,
                                   [([0, 1], dict(lr=0.02, amsgrad=True)), ([2, 3, 4], dict(lr=0.01, amsgrad=False))]),
}
NEW_CASES = [name for name in CASES if name.startswith(("Adadelta", "AMSGrad")) or "amsgrad" in name]


@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch_on_a_multi_tensor_problem_over_60_steps(case):
    ours, theirs, spec = CASES[case]
    assert_matches_torch(ours, theirs, spec, steps=60)


@pytest.mark.parametrize("case", NEW_CASES)
def test_adadelta_and_amsgrad_match_torch_over_300_steps(case):
    # the running maximum of AMSGrad and Adadelta's growing steps matter only on longer runs
    ours, theirs, spec = CASES[case]
    assert_matches_torch(ours, theirs, spec, steps=300, seed=1)


def test_amsgrad_denominator_never_shrinks_and_differs_from_adam():
    # gradients that shrink after a burst: Adam's v falls back, AMSGrad keeps the maximum
    grads = torch.cat([torch.full((20, 2), 10.0, dtype=F64), torch.full((1000, 2), 0.1, dtype=F64)])
    paths, maxima = {}, []
    for cls in (Adam, AMSGrad):
        x = torch.zeros(2, dtype=F64, requires_grad=True)
        opt = cls([x], lr=0.01, betas=(0.9, 0.99))
        path = []
        for g in grads:
            x.grad = g.clone()
            opt.step()
            path.append(x.detach().clone())
            if cls is AMSGrad:
                state = opt.state[x]
                assert torch.equal(state["max_exp_avg_sq"], torch.maximum(state["max_exp_avg_sq"], state["exp_avg_sq"]))
                maxima.append(state["max_exp_avg_sq"].clone())
        paths[cls.__name__] = torch.stack(path)
    maxima = torch.stack(maxima)
    assert (maxima[1:] >= maxima[:-1]).all()
    # after the burst Adam's steps recover to about lr, AMSGrad's stay about 100 times smaller
    last_adam = (paths["Adam"][-1] - paths["Adam"][-2]).abs().max().item()
    last_ams = (paths["AMSGrad"][-1] - paths["AMSGrad"][-2]).abs().max().item()
    assert last_adam > 0.5 * 0.01
    assert last_ams < 0.05 * last_adam


def test_adadelta_first_step_and_constant_gradient_law():
    # u_0 = 0: the first step is sqrt(eps / (1 - rho)) * sign(g) whatever |g| (up to eps in v)
    rho, eps = 0.9, 1e-6
    grads = torch.tensor([1e2, -3.0, 1.0], dtype=F64)
    x = torch.zeros(3, dtype=F64, requires_grad=True)
    opt = Adadelta([x], rho=rho, eps=eps)
    steps = []
    for _ in range(2000):
        before = x.detach().clone()
        x.grad = grads.clone()
        opt.step()
        steps.append((x.detach() - before).abs())
    steps = torch.stack(steps)
    torch.testing.assert_close(steps[0], torch.full((3,), math.sqrt(eps / (1 - rho)), dtype=F64), rtol=1e-5, atol=0)
    # once v has converged to g^2, the squared step grows by (1 - rho) eps per step, so the step
    # grows like sqrt((1 - rho) eps t)
    growth = (steps[1:] ** 2 - steps[:-1] ** 2) / ((1 - rho) * eps)
    torch.testing.assert_close(growth[500:], torch.ones_like(growth[500:]), rtol=1e-3, atol=0)
    ratio = steps[-1] / math.sqrt((1 - rho) * eps * 2000)
    assert ((ratio > 1.0) & (ratio < 1.05)).all()
    # and lr is only a multiplier on top
    y = torch.zeros(3, dtype=F64, requires_grad=True)
    scaled = Adadelta([y], lr=0.5, rho=rho, eps=eps)
    y.grad = grads.clone()
    scaled.step()
    torch.testing.assert_close(y.detach(), 0.5 * (-steps[0] * grads.sign()), rtol=1e-12, atol=0)


def test_adamw_decay_is_decoupled_and_adam_decay_is_not():
    # zero gradient: AdamW shrinks x by (1 - lr*wd) per step; Adam's L2 term goes through the
    # adaptive scale, so x moves by about lr per step whatever wd is
    def run(cls):
        x = torch.ones(1, dtype=F64, requires_grad=True)
        opt = cls([x], lr=0.01, weight_decay=0.1)
        for _ in range(3):
            x.grad = torch.zeros_like(x)
            opt.step()
        return x.item()
    assert run(AdamW) == pytest.approx((1 - 0.01 * 0.1) ** 3, rel=1e-14)
    assert run(Adam) == pytest.approx(1 - 0.03, abs=1e-4)  # ~lr per step, not 0.001 * x


# ----------------------------------------------------------------- Adam without bias correction

def uncorrected_adam_reference(x0, grads, lr, beta1, beta2, eps, weight_decay=0.0):
    """The textbook update without the hats, written out with plain tensor arithmetic."""
    x, m, v = x0.clone(), torch.zeros_like(x0), torch.zeros_like(x0)
    path = []
    for g in grads:
        g = g + weight_decay * x
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        x = x - lr * m / (torch.sqrt(v) + eps)
        path.append(x)
    return path


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_without_bias_correction_matches_the_uncorrected_formula(weight_decay):
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(4, 3, generator=g, dtype=F64)
    grads = [torch.randn(4, 3, generator=g, dtype=F64) for _ in range(50)]
    expected = uncorrected_adam_reference(x0, grads, lr=0.01, beta1=0.8, beta2=0.99, eps=1e-8,
                                          weight_decay=weight_decay)
    x = x0.clone().requires_grad_(True)
    opt = Adam([x], lr=0.01, betas=(0.8, 0.99), eps=1e-8, weight_decay=weight_decay, bias_correction=False)
    for k, grad in enumerate(grads):
        x.grad = grad.clone()
        opt.step()
        torch.testing.assert_close(x.detach(), expected[k], **MATCH)
    # and it is not Adam: with the hats the path is different
    y = x0.clone().requires_grad_(True)
    corrected = Adam([y], lr=0.01, betas=(0.8, 0.99), eps=1e-8, weight_decay=weight_decay)
    for grad in grads:
        y.grad = grad.clone()
        corrected.step()
    assert (x - y).abs().max() > 1e-3


@pytest.mark.parametrize("cls", [Adam, AdamW])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9)])
def test_uncorrected_step_on_a_constant_gradient_is_the_factor_times_the_corrected_one(cls, betas):
    # eps = 0 so that the ratio is exact: step_t(uncorrected) / step_t(Adam) = (1 - b1^t) / sqrt(1 - b2^t)
    beta1, beta2 = betas
    grad = torch.tensor([0.3, -2.0, 5e-3], dtype=F64)

    def steps(bias_correction, n=10):
        x = torch.zeros(3, dtype=F64, requires_grad=True)
        opt = cls([x], lr=0.1, betas=betas, eps=0.0, weight_decay=0.0, bias_correction=bias_correction)
        out = []
        for _ in range(n):
            before = x.detach().clone()
            x.grad = grad.clone()
            opt.step()
            out.append(x.detach() - before)
        return out

    corrected, uncorrected = steps(True), steps(False)
    torch.testing.assert_close(corrected[0], -0.1 * grad.sign(), **MATCH)  # Adam's first step: lr * sign(g)
    torch.testing.assert_close(uncorrected[0], (1 - beta1) / math.sqrt(1 - beta2) * corrected[0], **MATCH)
    for t, (c, u) in enumerate(zip(corrected, uncorrected), start=1):
        torch.testing.assert_close(u, (1 - beta1**t) / math.sqrt(1 - beta2**t) * c, **MATCH)
    if betas == (0.9, 0.999):  # the figure quoted in Adam's docstring
        assert (uncorrected[0] / corrected[0])[0].item() == pytest.approx(3.16, abs=0.01)


# ----------------------------------------------------------------- state_dict round trips

STATE_CASES = {
    "AdaGrad": (AdaGrad, dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
    "RMSProp": (RMSProp, dict(lr=0.01)),
    "RMSProp centered momentum": (RMSProp, dict(lr=0.005, momentum=0.9, centered=True)),
    "Adam": (Adam, dict(lr=0.01, weight_decay=0.01)),
    "Adam uncorrected": (Adam, dict(lr=0.01, bias_correction=False)),
    "Adadelta": (Adadelta, dict(lr=1.0, weight_decay=0.01)),
    "AMSGrad": (AMSGrad, dict(lr=0.01)),
    "AMSGrad uncorrected": (AMSGrad, dict(lr=0.01, bias_correction=False, weight_decay=0.01)),
    "AdamW amsgrad groups": (AdamW, [([0, 1], dict(lr=0.02, amsgrad=True)), ([2, 3, 4], dict(lr=0.01))]),
    "AdamW groups": (AdamW, [([0, 1], dict(lr=0.02, weight_decay=0.1)), ([2, 3, 4], dict(lr=0.01, betas=(0.8, 0.9)))]),
}


@pytest.mark.parametrize("case", list(STATE_CASES))
def test_state_dict_mid_run_resumes_bit_identically(case):
    assert_resumes_bit_identically(*STATE_CASES[case])


# ----------------------------------------------------------------- hyperparameter validation

ALL = {"SGD": SGD, "AdaGrad": AdaGrad, "RMSProp": RMSProp, "Adadelta": Adadelta, "Adam": Adam, "AdamW": AdamW,
       "AMSGrad": AMSGrad}
NAN = float("nan")
COMMON_BAD = [  # every optimizer: (kwargs, error, message)
    (dict(lr=-1.0), ValueError, r"lr must be >= 0(\.0)?, got -1"),
    (dict(lr=NAN), ValueError, r"lr must not be NaN"),
    (dict(weight_decay=-0.1), ValueError, r"weight_decay must be >= 0(\.0)?, got -0.1"),
    (dict(weight_decay=NAN), ValueError, r"weight_decay must not be NaN"),
    (dict(lr=True), TypeError, r"lr must be a real number, got True"),
    (dict(weight_decay=True), TypeError, r"weight_decay must be a real number, got True"),
    (dict(lr=None), TypeError, r"lr must be a real number, got None"),
]
SPECIFIC_BAD = {
    "SGD": [
        (dict(momentum=1.0), ValueError, r"momentum must be in \[0(\.0)?, 1(\.0)?\), got 1"),
        (dict(momentum=-0.5), ValueError, r"momentum must be in \[0(\.0)?, 1(\.0)?\), got -0.5"),
        (dict(momentum=0.9, dampening=1.1), ValueError, r"dampening must be in \[0(\.0)?, 1(\.0)?\]"),
        (dict(nesterov=True), ValueError, r"nesterov requires momentum > 0 and dampening = 0"),
        (dict(momentum=0.9, nesterov=True, dampening=0.5), ValueError, r"nesterov requires momentum > 0"),
        (dict(momentum=0.9, dampening=0.5, formulation="classical"), ValueError, r"classical formulation has no dampening"),
        (dict(formulation="polyak"), ValueError, r"formulation must be one of"),
        (dict(momentum=True), TypeError, r"momentum must be a real number, got True"),
    ],
    "AdaGrad": [
        (dict(eps=-1e-10), ValueError, r"eps must be >= 0(\.0)?, got -1e-10"),
        (dict(lr_decay=-0.1), ValueError, r"lr_decay must be >= 0(\.0)?, got -0.1"),
        (dict(initial_accumulator_value=-1.0), ValueError, r"initial_accumulator_value must be >= 0"),
        (dict(eps=NAN), ValueError, r"eps must not be NaN"),
        (dict(lr_decay=False), TypeError, r"lr_decay must be a real number, got False"),
    ],
    "RMSProp": [
        (dict(alpha=1.0), ValueError, r"alpha must be in \[0(\.0)?, 1(\.0)?\), got 1"),
        (dict(alpha=-0.1), ValueError, r"alpha must be in \[0(\.0)?, 1(\.0)?\), got -0.1"),
        (dict(alpha=NAN), ValueError, r"alpha must not be NaN"),
        (dict(momentum=1.0), ValueError, r"momentum must be in \[0(\.0)?, 1(\.0)?\), got 1"),
        (dict(eps=-1e-8), ValueError, r"eps must be >= 0(\.0)?, got -1e-08"),
        (dict(alpha=True), TypeError, r"alpha must be a real number, got True"),
        (dict(centered=1), TypeError, r"centered must be True or False, got 1"),
    ],
}
ADAM_BAD = [
    (dict(betas=(1.0, 0.999)), ValueError, r"beta1 must be in \[0(\.0)?, 1(\.0)?\), got 1"),
    (dict(betas=(-0.1, 0.999)), ValueError, r"beta1 must be in \[0(\.0)?, 1(\.0)?\), got -0.1"),
    (dict(betas=(0.9, 1.0)), ValueError, r"beta2 must be in \[0(\.0)?, 1(\.0)?\), got 1"),
    (dict(betas=(0.9, 1.5)), ValueError, r"beta2 must be in \[0(\.0)?, 1(\.0)?\), got 1.5"),
    (dict(betas=(0.9, NAN)), ValueError, r"beta2 must not be NaN"),
    (dict(betas=0.9), ValueError, r"betas must be a pair \(beta1, beta2\), got 0.9"),
    (dict(betas=(0.9,)), ValueError, r"betas must be a pair"),
    (dict(betas=(0.9, 0.99, 0.999)), ValueError, r"betas must be a pair"),
    (dict(eps=-1e-8), ValueError, r"eps must be >= 0(\.0)?, got -1e-08"),
    (dict(betas=(True, 0.999)), TypeError, r"beta1 must be a real number, got True"),
    (dict(bias_correction=1), TypeError, r"bias_correction must be True or False, got 1"),
]
SPECIFIC_BAD["Adam"] = SPECIFIC_BAD["AdamW"] = ADAM_BAD + [
    (dict(amsgrad=1), TypeError, r"amsgrad must be True or False, got 1"),
]
SPECIFIC_BAD["AMSGrad"] = ADAM_BAD
SPECIFIC_BAD["Adadelta"] = [
    (dict(rho=1.0), ValueError, r"rho must be in \[0(\.0)?, 1(\.0)?\), got 1"),
    (dict(rho=-0.1), ValueError, r"rho must be in \[0(\.0)?, 1(\.0)?\), got -0.1"),
    (dict(rho=NAN), ValueError, r"rho must not be NaN"),
    (dict(eps=0.0), ValueError, r"eps must be a finite number > 0, got 0"),
    (dict(eps=-1e-6), ValueError, r"eps must be a finite number > 0, got -1e-06"),
    (dict(rho=True), TypeError, r"rho must be a real number, got True"),
]
BAD = [pytest.param(name, kwargs, error, message, id=f"{name}-{'-'.join(f'{k}={v!r}' for k, v in kwargs.items())}")
       for name in ALL for kwargs, error, message in COMMON_BAD + SPECIFIC_BAD[name]]


@pytest.mark.parametrize("name,kwargs,error,message", BAD)
def test_invalid_hyperparameters_raise_a_clear_error(name, kwargs, error, message):
    with pytest.raises(error, match=message):
        ALL[name]([torch.zeros(2, requires_grad=True)], **kwargs)


@pytest.mark.parametrize("name", list(ALL))
def test_boundary_values_are_accepted(name):
    kwargs = dict(lr=0.0, weight_decay=0.0)
    if name in ("Adam", "AdamW", "AMSGrad"):
        kwargs.update(betas=[0.0, 0.0], eps=0.0)  # a list is a pair too
    if name == "Adadelta":
        kwargs.update(rho=0.0, eps=1e-300)
    if name == "RMSProp":
        kwargs.update(alpha=0.0, momentum=0.0, eps=0.0)
    if name == "SGD":
        kwargs.update(momentum=0.0, dampening=1.0)
    opt = ALL[name]([torch.zeros(2, requires_grad=True)], **kwargs)
    if "betas" in kwargs:
        assert opt.param_groups[0]["betas"] == (0.0, 0.0)


@pytest.mark.parametrize("name", ["AdaGrad", "RMSProp", "Adadelta", "Adam", "AdamW", "AMSGrad"])
def test_sparse_gradients_are_refused(name):
    x = torch.zeros(3, dtype=F64, requires_grad=True)
    opt = ALL[name]([x], lr=0.1)
    x.grad = torch.sparse_coo_tensor([[0]], [1.0], (3,), dtype=F64, check_invariants=True)
    with pytest.raises(RuntimeError, match=f"{name} does not support sparse gradients"):
        opt.step()
