"""optlib.search: random search and random local search."""
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
