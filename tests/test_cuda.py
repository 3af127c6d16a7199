"""optlib on a GPU: every entry point works with CUDA tensors and agrees with the same run on the CPU.

Skipped where ``torch.cuda.is_available()`` is False. Runs are compared in float64 where the code
allows it (CPU and GPU then differ only by round-off, because cuBLAS and the CPU add in different
orders), and the float32 MLP run with a loose tolerance. Each test is small: a few steps of a
small problem, once on each device.
"""
import math
from functools import partial

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from optlib import (convergence, data, functions, geometry, grad, landscape, losses, models, monitoring,  # noqa: E402
                    optim, plot, preconditioning, run, schedules, search, stability, tuning)
from optlib.optim.accelerated import AcceleratedGradient  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CUDA = torch.device("cuda")
F64 = torch.float64


def close(gpu, cpu, rtol=1e-9, atol=1e-12):
    """``gpu`` lives on CUDA and equals ``cpu`` up to round-off."""
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=rtol, atol=atol)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def digits():
    return data.load_digits(dtype=F64)


# ------------------------------------------------------------------------------ optimizers

OPTIMIZERS = {
    "SGD": partial(optim.SGD, lr=0.05),
    "SGD momentum + weight decay": partial(optim.SGD, lr=0.05, momentum=0.9, weight_decay=0.01),
    "SGD Nesterov": partial(optim.SGD, lr=0.05, momentum=0.9, nesterov=True),
    "SGD classical": partial(optim.SGD, lr=0.05, momentum=0.9, formulation="classical"),
    "AdaGrad": partial(optim.AdaGrad, lr=0.1, lr_decay=0.01),
    "RMSProp centered + momentum": partial(optim.RMSProp, lr=0.01, momentum=0.5, centered=True),
    "Adam": partial(optim.Adam, lr=0.05),
    "Adam without bias correction": partial(optim.Adam, lr=0.05, bias_correction=False),
    "AdamW": partial(optim.AdamW, lr=0.05, weight_decay=0.1),
    "Newton": partial(optim.Newton, lr=0.5, damping=1e-3),
    "saddle-free Newton": partial(optim.Newton, mode="saddle_free", damping=1e-3),
    "AcceleratedGradient": partial(AcceleratedGradient, lr=0.05),
    "AcceleratedGradient constant": partial(AcceleratedGradient, lr=0.05, schedule="constant", momentum=0.8),
}


def _quadratic_steps(make, device, steps=8):
    """``steps`` steps of ``make([x])`` on f(x) = ½ xᵀAx − bᵀx in 5-D from a fixed start; returns (x, optimizer)."""
    g = torch.Generator().manual_seed(0)
    M = torch.randn(5, 5, generator=g, dtype=F64)
    A, b = (M @ M.T / 5 + torch.eye(5, dtype=F64)).to(device), torch.randn(5, generator=g, dtype=F64).to(device)
    x = torch.linspace(-1.0, 1.0, 5, dtype=F64).to(device).requires_grad_(True)
    optimizer = make([x])
    calls_backward = getattr(optimizer, "closure_calls_backward", True)

    def closure():
        optimizer.zero_grad()
        loss = 0.5 * x @ A @ x - b @ x
        if calls_backward:
            loss.backward()
        return loss

    for _ in range(steps):
        optimizer.step(closure)
    return x.detach(), optimizer


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_steps_on_cuda_like_on_the_cpu(name):
    x_gpu, opt = _quadratic_steps(OPTIMIZERS[name], CUDA)
    x_cpu, _ = _quadratic_steps(OPTIMIZERS[name], "cpu")
    close(x_gpu, x_cpu)
    state_tensors = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor) and v.ndim > 0]
    assert all(t.device.type == "cuda" for t in state_tensors), "optimizer state must live with the parameters"


@pytest.mark.parametrize("name", ["GD", "momentum (rho=0.9)", "Adam", "Newton"])
def test_minimize_on_cuda_matches_the_cpu(name):
    f = functions.Rosenbrock()
    lr = 0.5 if "Newton" in name else 1e-3
    on_gpu = run.minimize(f, f.start.to(CUDA), optim.OPTIMIZERS[name], steps=40, lr=lr)
    on_cpu = run.minimize(f, f.start, optim.OPTIMIZERS[name], steps=40, lr=lr)
    np.testing.assert_allclose(on_gpu.loss, on_cpu.loss, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(on_gpu.grad_norm, on_cpu.grad_norm, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(on_gpu.path(), on_cpu.path(), rtol=1e-9, atol=1e-12)


def test_minimize_device_argument_noise_clipping_and_scheduler():
    f = functions.Quadratic(condition_number=10.0, dim=4, seed=0)
    seen = []

    def fn(x):
        seen.append(x.device.type)
        return f(x)

    kwargs = dict(steps=30, lr=0.05, momentum=0.9, noise_std=0.1, clip_grad_norm=1.0,
                  scheduler=lambda opt: schedules.scheduler(opt, schedules.cosine(30)))
    on_gpu = run.minimize(fn, f.start.tolist(), optim.SGD, generator=torch.Generator().manual_seed(1),
                          device="cuda", **kwargs)
    assert set(seen) == {"cuda"}
    on_cpu = run.minimize(f, f.start.tolist(), optim.SGD, generator=torch.Generator().manual_seed(1), **kwargs)
    np.testing.assert_allclose(on_gpu.loss, on_cpu.loss, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(on_gpu.lr, on_cpu.lr)


# ------------------------------------------------------------------------------ data, models, train

def test_load_digits_and_models_on_cuda():
    d = data.load_digits(device="cuda")
    assert all(t.device.type == "cuda" for t in d)
    torch.testing.assert_close(d.X_train.cpu(), data.load_digits().X_train)
    assert "device=cuda" in repr(d)
    for model in (models.LinearClassifier(64, 10, device="cuda"), models.MLP((64, 32, 10), device="cuda")):
        assert all(p.device.type == "cuda" for p in model.parameters())
        assert model(d.X_test).device.type == "cuda"
        assert 0.0 <= models.accuracy(model, d.X_test, d.y_test) <= 1.0


def test_dataset_to_moves_every_tensor(digits):
    moved = digits.to("cuda")
    assert all(t.device.type == "cuda" for t in moved)
    assert moved.X_train.dtype == F64 and moved.y_train.dtype == torch.long
    back = moved.to("cpu", dtype=torch.float32)
    assert all(t.device.type == "cpu" for t in back) and back.X_train.dtype == torch.float32
    assert torch.equal(back.y_test, digits.y_test)


def _train(device, digits, dtype=F64, **kwargs):
    model = models.MLP((64, 16, 10), generator=torch.Generator().manual_seed(0), dtype=dtype, device=device)
    trace = run.train(model, losses.softmax_loss, digits.to(device, dtype=dtype), optim.SGD, steps=30, batch_size=64,
                      generator=torch.Generator().manual_seed(0), eval_every=10, lr=0.1, **kwargs)
    return trace, model


def test_train_on_cuda_matches_the_cpu_in_float64(digits):
    on_gpu, model = _train("cuda", digits, momentum=0.9)
    on_cpu, _ = _train("cpu", digits, momentum=0.9)
    assert all(p.device.type == "cuda" for p in model.parameters())
    np.testing.assert_allclose(on_gpu.loss, on_cpu.loss, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(on_gpu.metric("train_loss")[1], on_cpu.metric("train_loss")[1], rtol=1e-8, atol=1e-10)
    for name in ("train_acc", "test_acc"):  # a float32 mean of 0/1 values: summed in another order on the GPU
        np.testing.assert_allclose(on_gpu.metric(name)[1], on_cpu.metric(name)[1], rtol=1e-6)


def test_train_float32_mlp_on_cuda_is_close_to_the_cpu(digits):
    on_gpu, _ = _train("cuda", digits, dtype=torch.float32)
    on_cpu, _ = _train("cpu", digits, dtype=torch.float32)
    np.testing.assert_allclose(on_gpu.loss, on_cpu.loss, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(on_gpu.metric("test_acc")[1], on_cpu.metric("test_acc")[1], atol=0.02)


def test_train_with_schedule_and_clipping_on_cuda(digits):
    kwargs = dict(clip_grad_norm=0.5, scheduler=lambda opt: schedules.scheduler(opt, schedules.warmup_then(5, schedules.cosine(25))))
    on_gpu, _ = _train("cuda", digits, **kwargs)
    on_cpu, _ = _train("cpu", digits, **kwargs)
    np.testing.assert_allclose(on_gpu.lr, on_cpu.lr)
    np.testing.assert_allclose(on_gpu.grad_norm, on_cpu.grad_norm, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(on_gpu.loss, on_cpu.loss, rtol=1e-8, atol=1e-10)


def test_train_with_cpu_model_and_cuda_data_is_a_clear_error(digits):
    model = models.MLP((64, 16, 10), dtype=F64)
    with pytest.raises(ValueError, match=r"the data are on cuda:0 but the model's parameters are on cpu"):
        run.train(model, losses.softmax_loss, digits.to("cuda"), optim.SGD, steps=1, lr=0.1)
    with pytest.raises(ValueError, match=r"the data are on cpu but the model's parameters are on cuda:0"):
        run.train(model.to("cuda"), losses.softmax_loss, digits, optim.SGD, steps=1, lr=0.1)


# ------------------------------------------------------------------------------ gradients and curvature

def test_gradient_tools_on_cuda():
    g = torch.Generator().manual_seed(0)
    W, X = torch.randn(3, 5, generator=g, dtype=F64), torch.randn(8, 5, generator=g, dtype=F64)
    y = torch.randint(0, 3, (8,), generator=g)
    loss_cpu, grad_cpu = losses.softmax_loss_and_grad(W, X, y, reg=0.1)
    Wc, Xc, yc = W.to(CUDA), X.to(CUDA), y.to(CUDA)
    loss_gpu, grad_gpu = losses.softmax_loss_and_grad(Wc, Xc, yc, reg=0.1)
    close(loss_gpu, loss_cpu)
    close(grad_gpu, grad_cpu)
    close(losses.svm_loss_and_grad(Wc, Xc, yc)[1], losses.svm_loss_and_grad(W, X, y)[1])

    def f(w):
        return losses.softmax_loss_and_grad(w, Xc, yc, reg=0.1)[0]

    close(grad.numerical_gradient(f, Wc), grad_cpu, rtol=1e-6, atol=1e-9)
    check = grad.gradient_check(f, Wc, grad_gpu, num_checks=6, generator=torch.Generator().manual_seed(0))
    assert check.passed and check.max_rel_error < 1e-6
    rosen = functions.Rosenbrock()
    x = torch.tensor([0.3, -0.2], dtype=F64)
    close(grad.hessian(rosen, x.to(CUDA)), rosen.hessian(x))
    close(rosen.hessian(x.to(CUDA)), rosen.hessian(x))


def test_geometry_on_cuda():
    H = torch.tensor([[2.0, 0.5], [0.5, -1.0]], dtype=F64)
    values, vectors = geometry.hessian_spectrum(H.to(CUDA))
    close(values, geometry.hessian_spectrum(H)[0])
    close(vectors, geometry.hessian_spectrum(H)[1])
    assert geometry.classify_critical_point(H.to(CUDA)) == "saddle"
    assert geometry.condition_number(H.to(CUDA)) == pytest.approx(geometry.condition_number(H))
    goe = geometry.goe_matrices(4, 50, generator=torch.Generator().manual_seed(0), device="cuda", dtype=F64)
    close(goe, geometry.goe_matrices(4, 50, generator=torch.Generator().manual_seed(0), dtype=F64))
    fraction, counts = geometry.fraction_positive_definite([1, 2], 2000, generator=torch.Generator().manual_seed(0),
                                                           device="cuda", dtype=F64)
    ref_fraction, ref_counts = geometry.fraction_positive_definite([1, 2], 2000, dtype=F64,
                                                                   generator=torch.Generator().manual_seed(0))
    assert torch.equal(counts, ref_counts)
    index = geometry.index_distribution(3, 500, generator=torch.Generator().manual_seed(1), device="cuda", dtype=F64)
    torch.testing.assert_close(index, geometry.index_distribution(3, 500, generator=torch.Generator().manual_seed(1),
                                                                  dtype=F64))
    well = geometry.DoubleWell()
    starts = geometry.grid_points(well.bounds, 9, device="cuda")
    assert starts.device.type == "cuda"
    labels = geometry.basins_of_attraction(well, starts, lr=0.1, steps=200)
    assert torch.equal(labels.cpu(), geometry.basins_of_attraction(well, starts.cpu(), lr=0.1, steps=200))
    box = geometry.sample_box(well.bounds, 40, generator=torch.Generator().manual_seed(2), device="cuda")
    close(box, geometry.sample_box(well.bounds, 40, generator=torch.Generator().manual_seed(2)))
    check = geometry.jensen_check(well, box, pairs=300, generator=torch.Generator().manual_seed(3))
    ref = geometry.jensen_check(well, box.cpu(), pairs=300, generator=torch.Generator().manual_seed(3))
    assert check.max_violation == pytest.approx(ref.max_violation, rel=1e-9, abs=1e-15)
    close(geometry.min_hessian_eigenvalues(well, box), geometry.min_hessian_eigenvalues(well, box.cpu()))
    seg, chord = geometry.segment_and_chord(well, box[0], box[1], torch.linspace(0, 1, 5))
    ref_seg, ref_chord = geometry.segment_and_chord(well, box[0].cpu(), box[1].cpu(), torch.linspace(0, 1, 5))
    close(seg, ref_seg)
    close(chord, ref_chord)
    alphas = torch.linspace(0, 1, 5)
    losses_gpu = torch.tensor([1.0, 1.5, 1.2, 0.8, 0.5], dtype=F64, device=CUDA)
    assert geometry.loss_barrier(losses_gpu, alphas) == pytest.approx(geometry.loss_barrier(losses_gpu.cpu(), alphas))


def test_permutations_and_mode_connectivity_on_cuda():
    net = models.MLP((4, 6, 3), generator=torch.Generator().manual_seed(0), dtype=F64, device="cuda")
    twin = geometry.permute_hidden_units(net, [torch.randperm(6, generator=torch.Generator().manual_seed(1))])
    X = torch.randn(10, 4, dtype=F64, device=CUDA)
    torch.testing.assert_close(twin(X), net(X))
    perm = geometry.match_hidden_units(net, twin)
    torch.testing.assert_close(landscape.flatten_params(geometry.permute_hidden_units(twin, [perm])),
                               landscape.flatten_params(net))
    y = torch.randint(0, 3, (10,), device=CUDA)
    theta_a, theta_b = landscape.flatten_params(net), landscape.flatten_params(twin)
    path = landscape.interpolate_models(net, theta_a, theta_b, losses.softmax_loss, X, y, torch.linspace(0, 1, 5))
    assert path.shape == (5,) and torch.isfinite(path).all()
    direction = landscape.random_direction(theta_a, generator=torch.Generator().manual_seed(0))
    assert direction.device.type == "cuda"
    fn, theta = preconditioning.flat_loss(net, losses.softmax_loss, X, y)
    values = landscape.slice_2d(fn, theta, direction, direction.flip(0), [-0.1, 0.0, 0.1], [-0.1, 0.1])
    assert values.shape == (2, 3) and values.device.type == "cuda"


def test_monitoring_on_cuda(digits):
    X, y = digits.X_train[:200], digits.y_train[:200]
    results = []
    for device in (CUDA, torch.device("cpu")):
        net = models.MLP((64, 16, 10), generator=torch.Generator().manual_seed(0), dtype=F64, device=device)
        monitoring.init_normal_(net, generator=torch.Generator().manual_seed(1))
        Xd, yd = X.to(device), y.to(device)
        losses.softmax_loss(net(Xd), yd).backward()
        norms = monitoring.layer_grad_norms(net)
        total = stability.global_grad_norm(net.parameters()).item()
        sharp = monitoring.sharpness(net, losses.softmax_loss, Xd, yd, iters=10,
                                     generator=torch.Generator().manual_seed(2))
        W = monitoring.fit_softmax_regression(Xd[:, :8], yd, 10, weight_decay=0.1)
        H = monitoring.softmax_regression_hessian(W, Xd[:, :8], yd, weight_decay=0.1)
        results.append((norms, total, sharp, W, H))
    (n_gpu, t_gpu, s_gpu, W_gpu, H_gpu), (n_cpu, t_cpu, s_cpu, W_cpu, H_cpu) = results
    assert n_gpu.keys() == n_cpu.keys()
    np.testing.assert_allclose(list(n_gpu.values()), list(n_cpu.values()), rtol=1e-9)
    assert t_gpu == pytest.approx(t_cpu, rel=1e-9)
    assert s_gpu == pytest.approx(s_cpu, rel=1e-6)
    close(W_gpu, W_cpu, rtol=1e-7, atol=1e-9)
    close(H_gpu, H_cpu, rtol=1e-7, atol=1e-9)


def test_clipping_on_cuda():
    p = torch.nn.Parameter(torch.zeros(5, dtype=F64, device=CUDA))
    p.grad = torch.arange(5, dtype=F64, device=CUDA)
    before = stability.clip_grad_norm_([p], 1.0)
    assert before.item() == pytest.approx(math.sqrt(30))
    assert p.grad.device.type == "cuda" and p.grad.norm().item() == pytest.approx(1.0, rel=1e-5)


def test_preconditioning_on_cuda():
    X = torch.randn(12, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    y = torch.arange(12) % 3
    out = []
    for device in (CUDA, torch.device("cpu")):
        net = models.MLP((5, 4, 3), activation="tanh", generator=torch.Generator().manual_seed(0), dtype=F64,
                         device=device)
        fn, theta = preconditioning.flat_loss(net, losses.softmax_loss, X.to(device), y.to(device))
        exact = preconditioning.hessian_diagonal(fn, theta)
        probes = preconditioning.hutchinson_diagonal(fn, theta, 8, generator=torch.Generator().manual_seed(3))
        fisher, mean = preconditioning.empirical_fisher_diagonal(net, losses.softmax_loss, X.to(device), y.to(device),
                                                                 return_mean_gradient=True)
        out.append((exact, probes, fisher, mean))
    for gpu, cpu in zip(*out):
        close(gpu, cpu, rtol=1e-8, atol=1e-10)
    f = functions.Rosenbrock()
    rec_gpu, rec_cpu = preconditioning.StateRecorder(optim.Adam), preconditioning.StateRecorder(optim.Adam)
    run.minimize(f, f.start.to(CUDA), rec_gpu, steps=5, lr=1e-2)
    run.minimize(f, f.start, rec_cpu, steps=5, lr=1e-2)
    close(rec_gpu.stacked(), rec_cpu.stacked())
    close(preconditioning.second_moment(rec_gpu.optimizer), preconditioning.second_moment(rec_cpu.optimizer))
    grads = torch.ones(4, 3, dtype=F64, device=CUDA)
    path, records = preconditioning.replay_gradients(optim.AdaGrad, grads, lr=0.1)
    ref_path, ref_records = preconditioning.replay_gradients(optim.AdaGrad, grads.cpu(), lr=0.1)
    close(path, ref_path)
    close(records, ref_records)


# ------------------------------------------------------------------------------ search, convergence, tuning

def test_search_on_cuda():
    target = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    on_gpu = search.random_search(lambda W: ((W - target.to(W.device)) ** 2).sum(), (3, 4), trials=30, dtype=F64,
                                  generator=torch.Generator().manual_seed(1), device="cuda")
    on_cpu = search.random_search(lambda W: ((W - target) ** 2).sum(), (3, 4), trials=30, dtype=F64,
                                  generator=torch.Generator().manual_seed(1))
    close(on_gpu.best, on_cpu.best)
    local = search.random_local_search(lambda W: ((W - target.to(W.device)) ** 2).sum(), torch.zeros(3, 4, dtype=F64,
                                       device=CUDA), trials=30, step_size=0.1, generator=torch.Generator().manual_seed(2))
    ref = search.random_local_search(lambda W: ((W - target) ** 2).sum(), torch.zeros(3, 4, dtype=F64), trials=30,
                                     step_size=0.1, generator=torch.Generator().manual_seed(2))
    close(local.best, ref.best)
    assert local.accepted == ref.accepted


def test_convergence_helpers_on_cuda():
    q = convergence.ConvexQuadratic(torch.tensor([1.0, 4.0, 10.0]), [1.0, -1.0, 0.5])
    x = torch.tensor([0.3, 0.2, -0.4], dtype=F64)
    close(q.gap(x.to(CUDA)), q.gap(x))
    close(q.gradient(x.to(CUDA)), q.gradient(x))
    assert q.distance_sq(x.to(CUDA)) == pytest.approx(q.distance_sq(x))
    hard = convergence.nesterov_hard_quadratic(11)
    x0 = torch.zeros(11, dtype=F64)
    gaps_gpu = convergence.optimality_gaps(hard, x0.to(CUDA), AcceleratedGradient, 20, lr=1 / hard.L)
    gaps_cpu = convergence.optimality_gaps(hard, x0, AcceleratedGradient, 20, lr=1 / hard.L)
    np.testing.assert_allclose(gaps_gpu, gaps_cpu, rtol=1e-9, atol=1e-14)


def test_tuning_on_cuda(digits):
    split = tuning.validation_split(digits.to("cuda"), 0.2, generator=torch.Generator().manual_seed(0))
    assert all(t.device.type == "cuda" for t in split)
    ref_split = tuning.validation_split(digits, 0.2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(split.y_test.cpu(), ref_split.y_test)

    def make(device):
        return lambda gen: models.MLP((64, 16, 10), generator=gen, dtype=F64, device=device)

    on_gpu = tuning.train_and_validate(make("cuda"), losses.softmax_loss, split, optim.SGD, epochs=1, batch_size=128,
                                       lr=0.1)
    on_cpu = tuning.train_and_validate(make("cpu"), losses.softmax_loss, ref_split, optim.SGD, epochs=1,
                                       batch_size=128, lr=0.1)
    assert on_gpu["val_loss"] == pytest.approx(on_cpu["val_loss"], rel=1e-8)
    assert on_gpu["val_acc"] == pytest.approx(on_cpu["val_acc"])
    with pytest.raises(ValueError, match="the data are on cuda:0 but the model's parameters are on cpu"):
        tuning.train_and_validate(make("cpu"), losses.softmax_loss, split, optim.SGD, epochs=1, batch_size=128, lr=0.1)
    net = models.MLP((64, 16, 10), generator=torch.Generator().manual_seed(0), dtype=F64, device="cuda")
    log = tuning.count_evaluations(net, losses.softmax_loss, split.X_train, split.y_train,
                                   partial(torch.optim.LBFGS, max_iter=5), steps=1)
    assert log.iterations >= 1 and log.evaluations >= 2 and math.isfinite(log.final_loss)


# ------------------------------------------------------------------------------ plots

def test_plots_accept_cuda_traces_and_tensors():
    f = functions.Rosenbrock()
    trace = run.minimize(f, f.start.to(CUDA), optim.Adam, steps=20, lr=1e-2)
    assert trace.path().shape == (21, 2)
    ax = plot.contour(f, paths={"adam": trace, "tensor path": torch.stack([f.start, f.start + 0.1]).to(CUDA)})
    np.testing.assert_allclose(ax.lines[0].get_xydata(), trace.path())
    plot.surface(f, path=trace)
    plot.loss_curves({"adam": trace})
    plot.lines(torch.arange(5, device=CUDA), {"a": torch.linspace(0, 1, 5, device=CUDA), "b": [0.1, 0.2, 0.3, 0.4, 0.5]})
    plot.histogram({"goe": geometry.random_symmetric_spectra(5, 20, device="cuda")})
    plot.images(data.load_digits(standardize=False, device="cuda").X_train[:5].reshape(5, 8, 8))
    plot.arrows(torch.zeros(2, device=CUDA), torch.eye(2, device=CUDA), labels=["e1", "e2"])
    points = geometry.sample_box(f.bounds, 30, device="cuda")
    plot.scatter(points, (points[:, 0] > 0).long())
    Z = torch.rand(3, 4, device=CUDA)
    plot.contour_grid(torch.arange(4, device=CUDA), torch.arange(3, device=CUDA), Z, mark=(1, 1))
    assert geometry.distances_to(trace, torch.ones(2, device=CUDA)).shape == (21,)
