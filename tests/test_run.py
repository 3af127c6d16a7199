"""optlib.run: the minimize and train loops and the Trace they record."""
import math

import numpy as np
import pytest
import torch

from optlib import functions
from optlib.data import load_digits
from optlib.losses import softmax_loss
from optlib.models import LinearClassifier
from optlib.optim import SGD, Newton
from optlib.run import NonFiniteLossError, Trace, minimize, train


@pytest.fixture(scope="module")
def quad():
    return functions.Quadratic(condition_number=10.0)  # eigenvalues 1 and 10, axis-aligned


def test_minimize_records_steps_plus_one_entries(quad):
    trace = minimize(quad, quad.start, SGD, steps=25, lr=0.05)
    assert isinstance(trace, Trace)
    assert trace.steps == 25 and trace.stopped is None
    for key in ("loss", "grad_norm", "lr", "time", "params"):
        assert len(getattr(trace, key)) == 26, key
    assert trace.path().shape == (26, 2)
    assert trace.lr == [0.05] * 26
    assert trace.name == "SGD"
    assert trace.final_loss == trace.loss[-1]
    assert "steps=25" in repr(trace)


def test_minimize_records_what_the_loop_saw(quad):
    trace = minimize(quad, quad.start, SGD, steps=10, lr=0.05)
    path = torch.as_tensor(trace.path())
    np.testing.assert_allclose(trace.loss, quad(path).numpy(), rtol=1e-14)
    np.testing.assert_allclose(trace.grad_norm, quad.gradient(path).norm(dim=1).numpy(), rtol=1e-14)
    np.testing.assert_array_equal(trace.path()[0], quad.start.numpy())
    assert all(t2 >= t1 for t1, t2 in zip(trace.time, trace.time[1:]))


def test_gd_on_a_quadratic_follows_the_closed_form_and_converges(quad):
    lr, steps = 0.08, 200  # contraction factors 0.92 and 0.2 along the eigenvectors
    trace = minimize(quad, quad.start, SGD, steps=steps, lr=lr)
    # x_k = (I − lr A)^k x_0 along each eigen-direction
    factors = (1 - lr * quad.eigenvalues).numpy()
    expected = quad.start.numpy() * factors[None, :] ** np.arange(steps + 1)[:, None]
    np.testing.assert_allclose(trace.path(), expected, rtol=1e-9, atol=1e-300)
    assert trace.final_loss < 1e-12
    assert trace.grad_norm[-1] < 1e-6


def test_steps_to_time_to_and_path(quad):
    trace = minimize(quad, quad.start, SGD, steps=60, lr=0.1)
    target = 1e-3
    k = trace.steps_to(target)
    assert k is not None and trace.loss[k] <= target and all(v > target for v in trace.loss[:k])
    assert trace.time_to(target) == trace.time[k]
    assert trace.steps_to(0.0) is None and trace.time_to(0.0) is None
    assert trace.steps_to(math.inf) == 0
    no_params = minimize(quad, quad.start, SGD, steps=3, lr=0.1, record_params=False)
    assert no_params.params == []
    with pytest.raises(ValueError, match="recorded no parameters"):
        no_params.path()


def test_newton_through_minimize(quad):
    trace = minimize(quad, quad.start, Newton, steps=2, lr=1.0)
    assert trace.loss[1] < 1e-25
    assert trace.grad_norm[0] == pytest.approx(float(quad.gradient(quad.start).norm()), rel=1e-12)
    assert trace.name == "Newton"


def test_zero_steps_records_the_start(quad):
    trace = minimize(quad, quad.start, SGD, steps=0, lr=0.1)
    assert len(trace.loss) == 1 and trace.steps == 0
    assert trace.loss[0] == pytest.approx(quad(quad.start).item())


def test_divergence_raises_by_default(quad):
    with pytest.raises(NonFiniteLossError, match=r"loss became (inf|nan) at step \d+ \(last finite loss"):
        minimize(quad, quad.start, SGD, steps=500, lr=1e3)
    assert issubclass(NonFiniteLossError, FloatingPointError)


def test_divergence_stop_ends_the_run_with_a_message(quad):
    trace = minimize(quad, quad.start, SGD, steps=500, lr=1e3, on_nonfinite="stop")
    assert trace.stopped is not None and "lower the learning rate" in trace.stopped
    assert trace.steps < 500
    assert len(trace.loss) == trace.steps
    assert not math.isfinite(trace.loss[-1]) and all(math.isfinite(v) for v in trace.loss[:-1])
    assert f"at step {trace.steps - 1}" in trace.stopped
    assert "stopped=" in repr(trace)


def test_noise_is_deterministic_given_a_generator(quad):
    def noisy(seed, std=0.5):
        return minimize(quad, quad.start, SGD, steps=30, lr=0.05, noise_std=std,
                        generator=torch.Generator().manual_seed(seed))

    a, b, c = noisy(0), noisy(0), noisy(1)
    assert a.loss == b.loss and np.array_equal(a.path(), b.path())
    assert a.loss != c.loss
    clean = minimize(quad, quad.start, SGD, steps=30, lr=0.05)
    assert noisy(0, std=0.0).loss == clean.loss
    assert a.loss != clean.loss


def test_noise_has_the_requested_size():
    # on f = 0 the recorded gradient is pure noise: its norm² averages d * std²
    flat = lambda x: 0.0 * x.sum()  # noqa: E731
    trace = minimize(flat, torch.zeros(4), SGD, steps=400, lr=0.0, noise_std=0.3,
                     generator=torch.Generator().manual_seed(0))
    mean_sq = np.mean(np.square(trace.grad_norm[:-1]))
    assert mean_sq == pytest.approx(4 * 0.09, rel=0.1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_and_dtype(quad, dtype):
    seen = []

    def fn(x):
        seen.append((x.dtype, x.device.type))
        return quad(x)

    trace = minimize(fn, [0.5, -0.5], SGD, steps=3, lr=0.1, dtype=dtype, device="cpu")
    assert set(seen) == {(dtype, "cpu")}
    assert trace.path().dtype == (np.float32 if dtype == torch.float32 else np.float64)


def test_minimize_bad_arguments(quad):
    x0 = quad.start
    for steps in (-1, 2.5, True):
        with pytest.raises(ValueError, match="steps must be a non-negative integer"):
            minimize(quad, x0, SGD, steps=steps)
    with pytest.raises(ValueError, match="noise_std must be >= 0"):
        minimize(quad, x0, SGD, steps=1, noise_std=-1.0)
    with pytest.raises(ValueError, match="on_nonfinite must be one of"):
        minimize(quad, x0, SGD, steps=1, on_nonfinite="ignore")
    with pytest.raises(TypeError, match="method must be an optimizer"):
        minimize(quad, x0, "SGD", steps=1)
    with pytest.raises(TypeError, match="must return a torch.optim.Optimizer"):
        minimize(quad, x0, lambda params, **kw: object(), steps=1)
    with pytest.raises(ValueError, match="fn must return a scalar"):
        minimize(lambda x: x * 2, x0, SGD, steps=1)
    with pytest.raises(ValueError, match="noise_std and clip_grad_norm are not supported by Newton"):
        minimize(quad, x0, Newton, steps=1, noise_std=0.1)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        minimize(quad, x0, SGD, steps=1, lr=-1)


# --------------------------------------------------------------------- train

@pytest.fixture(scope="module")
def digits():
    return load_digits()


def linear(digits, seed=0):
    return LinearClassifier(digits.num_features, digits.num_classes, generator=torch.Generator().manual_seed(seed))


def test_train_linear_classifier_on_digits(digits):
    model = linear(digits)
    trace = train(model, softmax_loss, digits, SGD, steps=200, batch_size=64, eval_every=50, lr=0.1,
                  generator=torch.Generator().manual_seed(0))
    assert trace.steps == 200 and len(trace.loss) == 200 and trace.stopped is None
    steps, test_acc = trace.metric("test_acc")
    assert steps.tolist() == [0, 50, 100, 150, 200]
    assert test_acc[0] < 0.3 and test_acc[-1] > 0.8
    assert trace.metric("train_acc")[1][-1] > 0.8
    train_loss = trace.metric("train_loss")[1]
    assert train_loss[-1] < 0.5 * train_loss[0]
    assert train_loss[0] == pytest.approx(math.log(10), rel=0.01)  # tiny init: uniform predictions
    with pytest.raises(KeyError, match="no metric 'val_acc'"):
        trace.metric("val_acc")


def test_train_is_deterministic_given_generators(digits):
    def once():
        model = linear(digits)
        return train(model, softmax_loss, digits, SGD, steps=20, batch_size=32, lr=0.1,
                     generator=torch.Generator().manual_seed(4))

    a, b = once(), once()
    assert a.loss == b.loss and a.metrics == b.metrics


def test_train_full_batch_by_default_and_epochs(digits):
    trace = train(linear(digits), softmax_loss, digits, SGD, epochs=3, lr=0.5)
    assert trace.steps == 3
    assert all(l2 < l1 for l1, l2 in zip(trace.loss, trace.loss[1:]))  # full-batch GD, small lr: monotone
    trace = train(linear(digits), softmax_loss, digits, SGD, epochs=2, batch_size=500, lr=0.1,
                  generator=torch.Generator().manual_seed(0))
    assert trace.steps == 2 * math.ceil(1347 / 500)
    # without eval_every the final evaluation is still recorded
    assert trace.metric("test_acc")[0].tolist() == [trace.steps]


def test_train_scheduler_steps_the_lr(digits):
    trace = train(linear(digits), softmax_loss, digits, SGD, steps=30, batch_size=128, lr=0.4,
                  generator=torch.Generator().manual_seed(0),
                  scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5))
    assert trace.lr == pytest.approx([0.4] * 10 + [0.2] * 10 + [0.1] * 10)


def test_train_records_grad_norm_of_the_minibatch(digits):
    model = linear(digits)
    trace = train(model, softmax_loss, digits, SGD, steps=1, lr=0.0)
    model.zero_grad()
    softmax_loss(model(digits.X_train), digits.y_train).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).norm().item()
    assert trace.grad_norm[0] == pytest.approx(expected, rel=1e-5)


def test_train_nonfinite(digits):
    def exploding(scores, y):
        return (scores**2).mean() * 1e30

    with pytest.raises(NonFiniteLossError):
        train(linear(digits), exploding, digits, SGD, steps=50, lr=1.0)
    trace = train(linear(digits), exploding, digits, SGD, steps=50, lr=1.0, on_nonfinite="stop")
    assert trace.stopped and trace.steps < 50 and "test_acc" not in trace.metrics


@pytest.mark.parametrize("kwargs,error", [
    (dict(), "give exactly one of steps or epochs"),
    (dict(steps=5, epochs=1), "give exactly one of steps or epochs"),
    (dict(steps=0), "steps must be a positive integer"),
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(steps=5, batch_size=0), "batch_size must be a positive integer"),
    (dict(steps=5, eval_every=0), "eval_every must be a positive integer"),
    (dict(steps=5, on_nonfinite="warn"), "on_nonfinite must be one of"),
])
def test_train_bad_arguments(digits, kwargs, error):
    with pytest.raises(ValueError, match=error):
        train(linear(digits), softmax_loss, digits, SGD, lr=0.1, **kwargs)


def test_train_drop_last_skips_the_short_minibatch(digits):
    n = len(digits.X_train)
    batch = 64
    assert n % batch, "the test needs a short last batch"
    model = LinearClassifier(digits.num_features, digits.num_classes)
    kept = train(model, softmax_loss, digits, SGD, epochs=2, batch_size=batch, lr=0.01,
                 generator=torch.Generator().manual_seed(0))
    model = LinearClassifier(digits.num_features, digits.num_classes)
    dropped = train(model, softmax_loss, digits, SGD, epochs=2, batch_size=batch, lr=0.01, drop_last=True,
                    generator=torch.Generator().manual_seed(0))
    assert kept.steps == 2 * math.ceil(n / batch)
    assert dropped.steps == 2 * (n // batch)
    with pytest.raises(ValueError, match="leaves no minibatch"):
        train(model, softmax_loss, digits, SGD, epochs=1, batch_size=n + 1, drop_last=True, lr=0.01)


def test_minimize_scheduler_sets_the_lr_of_each_step():
    from optlib import schedules

    fn = functions.Quadratic(condition_number=4.0)
    trace = minimize(fn, fn.start, SGD, steps=10, lr=0.1,
                     scheduler=lambda opt: schedules.scheduler(opt, schedules.step_decay(4, 0.5)))
    assert trace.lr[:10] == pytest.approx([0.1] * 4 + [0.05] * 4 + [0.025] * 2)
    # the iterates are those of a hand-written loop with the same step sizes
    x = torch.as_tensor(fn.start, dtype=torch.float64).clone()
    for lr in trace.lr[:10]:
        x = x - lr * fn.gradient(x)
    np.testing.assert_allclose(trace.path()[-1], x.numpy(), rtol=1e-12)
