"""optlib.search: random search and random local search."""
import math

import pytest
import torch

from optlib.search import SearchResult, random_local_search, random_search


def sphere(w):
    return ((w - 0.5) ** 2).sum()


def run_rs(seed, trials=200):
    return random_search(sphere, (3, 2), trials=trials, scale=1.0, generator=torch.Generator().manual_seed(seed))


def run_rls(seed, trials=300):
    start = torch.full((4,), 3.0, dtype=torch.float64)
    return random_local_search(sphere, start, trials=trials, step_size=0.1,
                               generator=torch.Generator().manual_seed(seed))


def test_random_search_is_deterministic_given_a_generator():
    a, b, c = run_rs(0), run_rs(0), run_rs(1)
    assert a.losses == b.losses and torch.equal(a.best, b.best)
    assert a.losses != c.losses


def test_random_local_search_is_deterministic_given_a_generator():
    a, b, c = run_rls(0), run_rls(0), run_rls(1)
    assert a.losses == b.losses and torch.equal(a.best, b.best)
    assert a.losses != c.losses


@pytest.mark.parametrize("runner", [run_rs, run_rls])
def test_bookkeeping(runner):
    r = runner(2)
    assert isinstance(r, SearchResult)
    n = len(r.losses)
    assert len(r.best_so_far) == n
    assert all(b2 <= b1 for b1, b2 in zip(r.best_so_far, r.best_so_far[1:]))
    assert r.best_loss == r.best_so_far[-1]
    assert r.best_loss == pytest.approx(float(sphere(r.best)), rel=1e-6)
    # each acceptance lowers the running minimum
    assert 0 < r.accepted <= n


def test_random_search_best_is_the_minimum_of_all_candidates():
    r = run_rs(3)
    assert r.best_loss == min(r.losses)
    assert r.best_so_far == [min(r.losses[:k + 1]) for k in range(len(r.losses))]
    drops = sum(1 for k in range(len(r.losses)) if r.losses[k] < min([float("inf")] + r.losses[:k]))
    assert r.accepted == drops
    assert r.best.shape == (3, 2) and r.best.dtype == torch.float32


def test_random_search_scale():
    r = random_search(lambda w: w.sum(), (1000,), trials=3, scale=0.01, generator=torch.Generator().manual_seed(0))
    assert 0.008 < r.best.std().item() < 0.012


def test_random_local_search_improves_a_quadratic():
    r = run_rls(0)
    start_loss = float(sphere(torch.full((4,), 3.0, dtype=torch.float64)))
    assert r.best_loss < 0.1 * start_loss
    assert r.best.dtype == torch.float64
    # the incumbent is never worse than any candidate tried
    assert r.best_loss <= min(r.losses)


def test_random_local_search_does_not_modify_start():
    start = torch.ones(3, dtype=torch.float64)
    r = random_local_search(sphere, start, trials=20, step_size=0.1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(start, torch.ones(3, dtype=torch.float64))
    assert r.best is not start


def test_random_local_search_never_accepts_a_worse_point():
    start = torch.zeros(2, dtype=torch.float64) + 0.5  # already the minimum
    r = random_local_search(sphere, start, trials=50, step_size=0.1, generator=torch.Generator().manual_seed(0))
    assert r.accepted == 0 and torch.equal(r.best, start) and r.best_loss == 0.0
    assert min(r.losses) > 0


def test_random_search_dtype_and_device():
    r = random_search(sphere, (2,), trials=5, generator=torch.Generator().manual_seed(0), dtype=torch.float64,
                      device="cpu")
    assert r.best.dtype == torch.float64 and r.best.device.type == "cpu"


@pytest.mark.parametrize("kwargs", [dict(trials=0), dict(trials=2.5), dict(scale=0.0), dict(scale=-1.0)])
def test_random_search_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        random_search(sphere, (2,), **kwargs)


@pytest.mark.parametrize("kwargs", [dict(trials=0), dict(step_size=0.0), dict(step_size=float("inf"))])
def test_random_local_search_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        random_local_search(sphere, torch.zeros(2), **kwargs)


# the measurements of chapter 1 --------------------------------------------------------------
from optlib import functions  # noqa: E402
from optlib.landscape import random_directions  # noqa: E402
from optlib.search import (  # noqa: E402
    accuracy_at_cosine,
    expected_max_normal,
    finite_difference_descent,
    random_guess_accuracies,
    step_success_rate,
)


def test_evaluations_to_counts_candidates_until_the_target():
    r = run_rs(4)
    for target in (r.best_so_far[0], r.best_so_far[len(r.losses) // 2], r.best_loss):
        k = r.evaluations_to(target)
        assert r.best_so_far[k - 1] <= target and (k == 1 or r.best_so_far[k - 2] > target)
    assert r.evaluations_to(r.best_loss - 1e-9) is None
    assert r.evaluations_to(float("inf")) == 1
    with pytest.raises(TypeError):
        r.evaluations_to("low")


def _blobs(seed=0, n=300, d=4, C=3):
    """Three well separated classes with a bias column: a good linear classifier exists."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (n,), generator=g)
    centres = 4 * torch.eye(C, d - 1, dtype=torch.float64)
    X = centres[y] + torch.randn(n, d - 1, generator=g, dtype=torch.float64)
    return torch.cat([X, torch.ones(n, 1, dtype=torch.float64)], 1), y


def test_random_guess_accuracies_average_chance_and_match_a_loop():
    X, y = _blobs()
    accs = random_guess_accuracies(X, y, 3, 2000, generator=torch.Generator().manual_seed(1))
    assert accs.shape == (2000,) and accs.dtype == torch.float64
    assert accs.mean().item() == pytest.approx(1 / 3, abs=0.02)  # symmetry: chance on average
    Ws = torch.randn(2000, 3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for k in (0, 7, 1999):
        assert accs[k].item() == ((X @ Ws[k].T).argmax(1) == y).double().mean().item()
    with pytest.raises(ValueError, match="count must be a positive integer"):
        random_guess_accuracies(X, y, 3, 0)
    with pytest.raises(ValueError, match="expected X of shape"):
        random_guess_accuracies(X, y[:-1], 3, 5)


def test_accuracy_at_cosine_rises_from_chance_to_the_direction_itself():
    X, y = _blobs()
    direction = torch.cat([4 * torch.eye(3, 3, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64)], 1)
    accs = accuracy_at_cosine(direction, X, y, [0.0, 0.5, 1.0], draws=200, generator=torch.Generator().manual_seed(2))
    exact = ((X @ direction.T).argmax(1) == y).double().mean().item()
    assert accs[2].item() == pytest.approx(exact, abs=1e-12)  # cosine 1 is the direction itself
    assert accs[0].item() == pytest.approx(1 / 3, abs=0.05) and accs[0] < accs[1] < accs[2]
    with pytest.raises(ValueError, match="cosines must lie in"):
        accuracy_at_cosine(direction, X, y, [1.5])
    with pytest.raises(ValueError, match="direction must have shape"):
        accuracy_at_cosine(direction[:, :2], X, y, [0.5])


def test_accuracy_at_cosine_builds_classifiers_at_the_asked_cosine():
    # with one example per class and the classifier's rows as columns, check the construction itself
    direction = torch.randn(3, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    R = torch.randn(1, 3, 5, generator=g1, dtype=torch.float64)
    g_hat = direction / direction.norm()
    r = R[0] - (R[0] * g_hat).sum() * g_hat
    r = r / r.norm()
    W = 0.3 * g_hat + (1 - 0.09) ** 0.5 * r
    assert (W * g_hat).sum().item() == pytest.approx(0.3, abs=1e-12) and W.norm().item() == pytest.approx(1.0)
    X = torch.randn(50, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y = (X @ W.T).argmax(1)  # labels that W classifies perfectly
    assert accuracy_at_cosine(direction, X, y, [0.3], draws=1, generator=g2).item() == 1.0


def test_expected_max_normal_matches_known_values():
    g = torch.Generator().manual_seed(0)
    assert expected_max_normal(1, 20000, generator=g) == pytest.approx(0.0, abs=0.03)
    assert expected_max_normal(2, 20000, generator=g) == pytest.approx(1 / math.sqrt(math.pi), abs=0.03)
    assert expected_max_normal(1000, 4000, generator=g) == pytest.approx(3.24, abs=0.03)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        expected_max_normal(0)


def test_step_success_rate_on_the_sphere_follows_the_normal_approximation():
    d = 400
    f = functions.Sphere(d)
    x = torch.zeros(d, dtype=torch.float64)
    x[0] = 1.0
    E = random_directions(20000, d, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    for step in (0.05, 0.2):
        expected = 0.5 * math.erfc(step * math.sqrt(d) / (2 * math.sqrt(2)))  # Phi(-step sqrt(d) / 2)
        assert step_success_rate(f, x, step, E) == pytest.approx(expected, abs=0.015)
    # a step longer than the diameter 2|x| never lowers f
    assert step_success_rate(f, x, 2.5, E) == 0.0
    with pytest.raises(ValueError, match="directions of shape"):
        step_success_rate(f, x, 0.1, E[:, :3])
    with pytest.raises(ValueError, match="step must be"):
        step_success_rate(f, x, 0.0, E)


def test_finite_difference_descent_counts_d_plus_one_evaluations_per_step():
    d = 7
    f = functions.Sphere(d)
    x0 = torch.ones(d, dtype=torch.float64)
    # on 0.5 ||x||^2 a step of 0.5 along the gradient halves x: f falls fourfold per step (up to
    # the forward difference's error of h / 2 per coordinate)
    run = finite_difference_descent(f, x0, lr=0.5, target=0.01 * float(f(x0)))
    assert run.steps == 4 and run.evaluations == run.steps * (d + 1)
    assert run.loss <= 0.01 * float(f(x0)) and run.loss == pytest.approx(float(f(x0)) / 4**4, rel=1e-3)
    assert torch.equal(x0, torch.ones(d, dtype=torch.float64))  # the start is not modified
    with pytest.raises(RuntimeError, match="after 2 steps"):
        finite_difference_descent(f, x0, lr=0.5, target=0.0, max_steps=2)
    with pytest.raises(ValueError, match="lr must be"):
        finite_difference_descent(f, x0, lr=-1.0, target=0.1)
