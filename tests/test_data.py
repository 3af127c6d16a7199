"""optlib.data: the digits split, its standardization, and minibatches."""
import pytest
import torch

from optlib.data import Dataset, load_digits, minibatches


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_shapes_and_split(digits):
    assert isinstance(digits, Dataset)
    assert digits.X_train.shape == (1347, 64) and digits.y_train.shape == (1347,)
    assert digits.X_test.shape == (450, 64) and digits.y_test.shape == (450,)
    assert digits.num_features == 64 and digits.num_classes == 10
    assert digits.X_train.dtype == torch.float32 and digits.y_train.dtype == torch.long
    assert "train=(1347, 64)" in repr(digits)


def test_split_is_stratified(digits):
    train_counts = torch.bincount(digits.y_train, minlength=10).double()
    test_counts = torch.bincount(digits.y_test, minlength=10).double()
    assert (train_counts > 0).all() and (test_counts > 0).all()
    ratio = test_counts / (train_counts + test_counts)
    assert ratio.min().item() > 0.23 and ratio.max().item() < 0.27


def test_standardized_with_training_statistics(digits):
    mean, std = digits.X_train.double().mean(0), digits.X_train.double().std(0, unbiased=False)
    assert mean.abs().max().item() < 1e-5
    # pixels that are never on in the training set stay at exactly 0 (std is replaced by 1)
    constant = std < 1e-6
    assert 0 < int(constant.sum()) < 10
    assert torch.all(digits.X_train[:, constant] == 0)
    torch.testing.assert_close(std[~constant], torch.ones_like(std[~constant]), rtol=0, atol=1e-5)
    # the test set is not re-standardized with its own statistics
    assert digits.X_test.double().mean(0).abs().max().item() > 1e-3


def test_raw_pixels_lie_in_unit_interval():
    raw = load_digits(standardize=False, dtype=torch.float64)
    assert raw.X_train.min().item() == 0.0 and raw.X_train.max().item() == 1.0
    std = load_digits(dtype=torch.float64)
    # same split: standardization is an affine map per pixel of the same rows
    mean, sd = raw.X_train.mean(0), raw.X_train.std(0, unbiased=False)
    sd[sd == 0] = 1.0
    torch.testing.assert_close(std.X_test, (raw.X_test - mean) / sd)


def test_split_is_deterministic_by_seed_and_seeds_differ():
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a.y_train, c.y_train)
    assert not torch.equal(a.X_test, c.X_test)


def test_test_fraction():
    d = load_digits(test_fraction=0.5)
    assert len(d.X_train) + len(d.X_test) == 1797
    assert abs(len(d.X_test) - 1797 * 0.5) <= 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device(dtype):
    d = load_digits(dtype=dtype, device="cpu")
    assert d.X_train.dtype == dtype and d.X_test.dtype == dtype
    assert d.y_train.dtype == torch.long
    assert all(t.device.type == "cpu" for t in d)


def test_bias_column():
    d = load_digits(bias_column=True)
    plain = load_digits()
    assert d.X_train.shape == (1347, 65) and d.X_test.shape == (450, 65)
    assert torch.all(d.X_train[:, -1] == 1) and torch.all(d.X_test[:, -1] == 1)
    assert torch.equal(d.X_train[:, :-1], plain.X_train)


@pytest.mark.parametrize("bad", [0, 0.0, 1.0, -0.1, 1.5])
def test_bad_test_fraction_raises(bad):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=bad)


# ---------------------------------------------------------------- minibatches

def _toy(n=23):
    X = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
    y = torch.arange(n)
    return X, y


@pytest.mark.parametrize("batch_size", [1, 5, 23, 64])
def test_minibatches_cover_every_sample_exactly_once(batch_size):
    X, y = _toy()
    batches = list(minibatches(X, y, batch_size, generator=torch.Generator().manual_seed(0)))
    seen = torch.cat([yb for _, yb in batches])
    assert sorted(seen.tolist()) == list(range(23))
    sizes = [len(yb) for _, yb in batches]
    assert sizes == [batch_size] * (23 // batch_size) + ([23 % batch_size] if 23 % batch_size else [])
    for Xb, yb in batches:  # rows stay paired with their labels
        assert torch.equal(Xb[:, 0], 2 * yb.float())


def test_drop_last():
    X, y = _toy()
    batches = list(minibatches(X, y, 5, drop_last=True, generator=torch.Generator().manual_seed(0)))
    assert [len(yb) for _, yb in batches] == [5, 5, 5, 5]
    assert len(set(torch.cat([yb for _, yb in batches]).tolist())) == 20


def test_shuffling_is_reproducible_with_a_generator_and_varies_between_epochs():
    X, y = _toy()

    def order(gen):
        return torch.cat([yb for _, yb in minibatches(X, y, 4, generator=gen)]).tolist()

    assert order(torch.Generator().manual_seed(3)) == order(torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    first, second = order(g), order(g)
    assert first != second  # each epoch draws a new permutation
    assert first != list(range(23))


def test_no_shuffle_keeps_order():
    X, y = _toy()
    assert torch.cat([yb for _, yb in minibatches(X, y, 4, shuffle=False)]).tolist() == list(range(23))


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, None])
def test_bad_batch_size_raises(batch_size):
    X, y = _toy()
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        minibatches(X, y, batch_size)  # raises on the call, before any batch is drawn


def test_mismatched_lengths_raise():
    X, y = _toy()
    with pytest.raises(ValueError, match="same length"):
        minibatches(X, y[:-1], 4)
