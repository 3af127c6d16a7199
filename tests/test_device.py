"""optlib.device: device choice, its one-line descriptions, seeding, and the CPU defaults of optlib's entry points.

optlib follows PyTorch: data, models and helpers are created on the CPU unless a caller passes a device
(``device=optlib.get_device()`` for the GPU), and a run happens where its tensors are."""
import random

import numpy as np
import pytest
import torch

from optlib import (data, describe_device, describe_runtime, functions, geometry, get_device, losses, models, optim,
                    run, search, seed_everything, set_num_threads, tuning)

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


def test_describe_runtime_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert describe_runtime() == "No GPU found: everything runs on the CPU."


def test_describe_runtime_with_a_gpu_names_it_and_says_how_to_use_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "NVIDIA T4")
    text = describe_runtime()
    assert text.startswith("GPU found: NVIDIA T4. ")
    assert "stay on the CPU" in text and "device=optlib.get_device()" in text
    assert "\n" not in text


# ---------------------------------------------------------------- optlib's entry points default to the CPU

@pytest.fixture
def cuda_reported(monkeypatch):
    """torch.cuda.is_available() says True: the defaults must still be the CPU.

    On a machine without CUDA nothing can really be sent there, so a default that followed
    get_device() would fail here loudly; on a machine with CUDA it would land on the GPU.
    """
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device().type == "cuda"


def test_load_digits_and_models_default_to_the_cpu(cuda_reported):
    digits = data.load_digits()
    assert all(t.device.type == "cpu" for t in digits)
    for model in (models.LinearClassifier(64, 10), models.MLP((64, 8, 10))):
        assert all(p.device.type == "cpu" for p in model.parameters())


def test_minimize_runs_on_the_cpu_for_list_x0_and_on_x0s_device_for_a_tensor(cuda_reported):
    f = functions.Quadratic(condition_number=10.0)
    seen = []

    def fn(x):
        seen.append(x.device.type)
        return f(x)

    run.minimize(fn, [0.5, -0.5], optim.SGD, steps=2, lr=0.1)
    run.minimize(fn, np.array([0.5, -0.5]), optim.SGD, steps=2, lr=0.1)
    run.minimize(fn, f.start, optim.SGD, steps=2, lr=0.1)
    assert set(seen) == {"cpu"}


def test_geometry_and_search_helpers_default_to_the_cpu(cuda_reported):
    g = torch.Generator().manual_seed(0)
    assert geometry.goe_matrices(3, 4, generator=g).device.type == "cpu"
    assert geometry.random_symmetric_spectra(3, 4, generator=g).device.type == "cpu"
    assert geometry.grid_points(((-1, 1), (-1, 1)), 5).device.type == "cpu"
    assert geometry.sample_box(((-1, 1), (-1, 1)), 5, generator=g).device.type == "cpu"
    fraction, _ = geometry.fraction_positive_definite([2], 50, generator=g)
    assert fraction.device.type == "cpu"
    assert geometry.index_distribution(2, 50, generator=g).device.type == "cpu"
    result = search.random_search(lambda W: (W**2).sum(), (2, 3), trials=3, generator=g)
    assert result.best.device.type == "cpu"


def test_train_and_tuning_run_on_the_cpu_by_default(cuda_reported):
    digits = data.load_digits()
    small = data.Dataset(digits.X_train[:100], digits.y_train[:100], digits.X_test[:50], digits.y_test[:50])
    model = models.MLP((64, 8, 10), generator=torch.Generator().manual_seed(0))
    trace = run.train(model, losses.softmax_loss, small, optim.SGD, steps=3, lr=0.1)
    assert trace.steps == 3 and all(p.device.type == "cpu" for p in model.parameters())
    result = tuning.train_and_validate(lambda gen: models.MLP((64, 8, 10), generator=gen), losses.softmax_loss,
                                       small, optim.SGD, epochs=1, batch_size=50, lr=0.1)
    assert np.isfinite(result["val_loss"])


def test_explicit_devices_are_still_validated():
    if HAS_CUDA:
        pytest.skip("this machine has CUDA")
    for make in (lambda: data.load_digits(device="cuda"), lambda: models.MLP(device="cuda"),
                 lambda: models.LinearClassifier(4, 2, device="cuda"), lambda: geometry.grid_points(((0, 1), (0, 1)), 3, device="cuda"),
                 lambda: run.minimize(lambda x: (x**2).sum(), [1.0], optim.SGD, steps=1, lr=0.1, device="cuda")):
        with pytest.raises(RuntimeError, match="CUDA was requested"):
            make()


# ---------------------------------------------------------------- data on another device than the model

def test_dataset_to_moves_and_casts():
    digits = data.load_digits()
    same = digits.to()
    assert all(a is b for a, b in zip(same, digits))
    cast = digits.to("cpu", dtype=torch.float64)
    assert cast.X_train.dtype == cast.X_test.dtype == torch.float64
    assert cast.y_train.dtype == torch.long and torch.equal(cast.y_test, digits.y_test)
    torch.testing.assert_close(cast.X_train, digits.X_train.double())
    meta = digits.to("meta")
    assert all(t.device.type == "meta" for t in meta)


def test_train_says_clearly_when_data_and_model_are_on_different_devices():
    # the "meta" device stands for a GPU here: tensors there have shapes but no data
    digits = data.load_digits().to("meta")
    model = models.MLP((64, 8, 10))
    message = r"the data are on meta but the model's parameters are on cpu: move one of them, e\.g\. data\.to\('cpu'\)"
    with pytest.raises(ValueError, match=message):
        run.train(model, losses.softmax_loss, digits, optim.SGD, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="the data are on meta but the model's parameters are on cpu"):
        tuning.train_and_validate(lambda gen: models.MLP((64, 8, 10), generator=gen), losses.softmax_loss, digits,
                                  optim.SGD, epochs=1, batch_size=64, lr=0.1)


def test_set_num_threads_defaults_to_one_and_reads_the_environment(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OPTLIB_NUM_THREADS", raising=False)
        assert set_num_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OPTLIB_NUM_THREADS", "2")
        assert set_num_threads() == 2 and torch.get_num_threads() == 2
        assert set_num_threads(1) == 1 and torch.get_num_threads() == 1  # an explicit count wins
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_rejects_a_bad_count(bad):
    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="positive integer"):
        set_num_threads(bad)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("raw", ["two", "0", "1.5"])
def test_set_num_threads_rejects_a_bad_environment_value(monkeypatch, raw):
    monkeypatch.setenv("OPTLIB_NUM_THREADS", raw)
    with pytest.raises(ValueError, match="OPTLIB_NUM_THREADS|positive integer"):
        set_num_threads()
