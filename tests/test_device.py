"""optlib.device: device choice, its one-line description, and seeding."""
import random

import numpy as np
import pytest
import torch

from optlib import describe_device, get_device, seed_everything

HAS_CUDA = torch.cuda.is_available()


def test_get_device_cpu():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")


def test_get_device_none_picks_cuda_only_when_available():
    assert get_device(None).type == ("cuda" if HAS_CUDA else "cpu")
    assert get_device().type == ("cuda" if HAS_CUDA else "cpu")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
def test_explicit_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA was requested but torch.cuda.is_available"):
        get_device("cuda")
    with pytest.raises(RuntimeError, match="CUDA was requested"):
        get_device("cuda:0")


@pytest.mark.parametrize("bad", ["gpu", "cpux", "not a device"])
def test_bad_device_strings_raise(bad):
    with pytest.raises(RuntimeError, match="device"):
        get_device(bad)


def test_describe_device():
    text = describe_device("cpu")
    assert isinstance(text, str)
    assert text.startswith("Using device: cpu")
    if not HAS_CUDA:
        assert text == "Using device: cpu (no GPU found)"
        assert describe_device() == text
    else:
        assert describe_device().startswith("Using device: cuda (")


def test_seed_everything_reproduces_python_numpy_and_torch():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3).tolist()

    g1 = seed_everything(123)
    first, from_g1 = draw(), torch.rand(4, generator=g1)
    g2 = seed_everything(123)
    second, from_g2 = draw(), torch.rand(4, generator=g2)
    assert first == second
    assert torch.equal(from_g1, from_g2)
    seed_everything(124)
    assert draw() != first


def test_seed_everything_returns_a_cpu_generator_seeded_with_seed():
    g = seed_everything(7)
    assert isinstance(g, torch.Generator)
    assert g.initial_seed() == 7
    assert torch.equal(torch.randn(5, generator=g), torch.randn(5, generator=torch.Generator().manual_seed(7)))


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True, None])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        seed_everything(bad)
