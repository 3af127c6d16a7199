"""optlib.models: shapes, parameter counts, determinism, accuracy."""
import pytest
import torch

from optlib.models import MLP, LinearClassifier, accuracy, num_parameters


def test_linear_classifier_shapes_and_count():
    m = LinearClassifier(64, 10)
    assert m(torch.zeros(5, 64)).shape == (5, 10)
    assert num_parameters(m) == 64 * 10 + 10
    nb = LinearClassifier(65, 10, bias=False)
    assert nb.b is None and num_parameters(nb) == 650
    assert nb(torch.zeros(2, 65)).shape == (2, 10)


def test_linear_classifier_computes_Wx_plus_b():
    m = LinearClassifier(3, 2, dtype=torch.float64)
    with torch.no_grad():
        m.W.copy_(torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]]))
        m.b.copy_(torch.tensor([0.5, -0.5]))
    X = torch.tensor([[1.0, 1.0, 1.0], [0.0, 2.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(m(X), torch.tensor([[6.5, -0.5], [1.5, -1.5]], dtype=torch.float64))


def test_linear_classifier_init_scale_and_generator():
    a = LinearClassifier(20, 5, init_scale=0.01, generator=torch.Generator().manual_seed(0))
    b = LinearClassifier(20, 5, init_scale=0.01, generator=torch.Generator().manual_seed(0))
    c = LinearClassifier(20, 5, init_scale=0.01, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.W, b.W) and not torch.equal(a.W, c.W)
    assert 0.005 < a.W.std().item() < 0.02
    assert torch.all(a.b == 0)
    assert torch.all(LinearClassifier(4, 3, init_scale=0.0).W == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device(dtype):
    for m in (LinearClassifier(8, 3, dtype=dtype, device="cpu"), MLP((8, 4, 3), dtype=dtype, device="cpu")):
        assert all(p.dtype == dtype and p.device.type == "cpu" for p in m.parameters())
        assert m(torch.zeros(2, 8, dtype=dtype)).dtype == dtype


@pytest.mark.parametrize("sizes,count", [((64, 10), 650), ((64, 32, 10), 64 * 32 + 32 + 32 * 10 + 10),
                                         ((5, 7, 7, 2), 5 * 7 + 7 + 7 * 7 + 7 + 7 * 2 + 2)])
def test_mlp_shapes_and_count(sizes, count):
    m = MLP(sizes)
    assert m(torch.zeros(3, sizes[0])).shape == (3, sizes[-1])
    assert num_parameters(m) == count
    n_linear = sum(isinstance(layer, torch.nn.Linear) for layer in m.net)
    n_act = sum(isinstance(layer, torch.nn.ReLU) for layer in m.net)
    assert n_linear == len(sizes) - 1 and n_act == len(sizes) - 2


@pytest.mark.parametrize("activation,cls", [("relu", torch.nn.ReLU), ("tanh", torch.nn.Tanh), ("gelu", torch.nn.GELU)])
def test_mlp_activation(activation, cls):
    m = MLP((4, 6, 2), activation=activation)
    assert isinstance(m.net[1], cls)


def test_mlp_deterministic_given_generator_and_independent_of_global_rng():
    torch.manual_seed(0)
    a = MLP((10, 8, 3), generator=torch.Generator().manual_seed(5))
    torch.manual_seed(99)
    b = MLP((10, 8, 3), generator=torch.Generator().manual_seed(5))
    c = MLP((10, 8, 3), generator=torch.Generator().manual_seed(6))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    bound = 10 ** -0.5
    assert a.net[0].weight.abs().max().item() <= bound


def test_accuracy_hand_made_example():
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 5.0], [4.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 0, 2])  # rows 0 and 1 right, 2 and 3 wrong
    assert accuracy(scores, y) == 0.5
    assert accuracy(scores, torch.tensor([0, 1, 2, 0])) == 1.0

    m = LinearClassifier(3, 3, bias=False)
    with torch.no_grad():
        m.W.copy_(torch.eye(3))  # predicts the index of the largest feature
    X = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 3.0, 1.0]])
    assert accuracy(m, X, torch.tensor([0, 2, 0])) == pytest.approx(2 / 3)


def test_accuracy_shape_errors():
    with pytest.raises(ValueError, match="scores must be"):
        accuracy(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="scores must be"):
        accuracy(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))


@pytest.mark.parametrize("build", [
    lambda: LinearClassifier(0, 3),
    lambda: LinearClassifier(3, 0),
    lambda: LinearClassifier(3, 2, init_scale=-1.0),
    lambda: MLP((10,)),
    lambda: MLP((10, 0, 2)),
    lambda: MLP((10, 5, 2), activation="sigmoidish"),
])
def test_bad_arguments_raise(build):
    with pytest.raises(ValueError):
        build()


def test_wrong_input_shape_raises():
    with pytest.raises(ValueError, match=r"expected inputs of shape \(n, 8\)"):
        LinearClassifier(8, 2)(torch.zeros(3, 7))
    with pytest.raises(ValueError, match=r"expected inputs of shape \(n, 8\)"):
        MLP((8, 4, 2))(torch.zeros(8))


# ------------------------------------------------------------------ DeepMLP (chapter 4)

from optlib.models import DeepMLP  # noqa: E402


def test_deep_mlp_shapes_layers_and_parameter_count():
    net = DeepMLP(64, 32, 12, 10, dtype=torch.float64)
    assert net(torch.randn(5, 64, dtype=torch.float64)).shape == (5, 10)
    layers = net.linear_layers()
    assert len(layers) == 13 and layers[0].in_features == 64 and layers[-1].out_features == 10
    assert num_parameters(net) == 64 * 32 + 32 + 11 * (32 * 32 + 32) + 32 * 10 + 10
    normed = DeepMLP(64, 32, 12, 10, norm="layer")
    assert num_parameters(normed) == num_parameters(net) + 12 * 2 * 32
    assert all(p.dtype == torch.float64 for p in net.parameters())


def test_deep_mlp_forward_is_the_documented_recursion():
    gen = torch.Generator().manual_seed(3)
    X = torch.randn(7, 5, generator=gen, dtype=torch.float64)
    for residual in (False, True):
        net = DeepMLP(5, 4, 3, 2, residual=residual, generator=torch.Generator().manual_seed(1),
                      dtype=torch.float64)
        h = torch.relu(X @ net.hidden[0].weight.T + net.hidden[0].bias)
        for layer in net.hidden[1:]:
            z = torch.relu(h @ layer.weight.T + layer.bias)
            h = h + z if residual else z
        torch.testing.assert_close(net(X), h @ net.output.weight.T + net.output.bias)


def test_deep_mlp_normalizations():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(20, 6, generator=gen, dtype=torch.float64)
    batch = DeepMLP(6, 8, 2, 3, norm="batch", generator=gen, dtype=torch.float64)
    layer = DeepMLP(6, 8, 2, 3, norm="layer", generator=gen, dtype=torch.float64)
    with torch.no_grad():
        # BatchNorm (training mode): every unit has mean 0 and variance 1 over the batch before the ReLU
        pre = batch.norms[0](batch.hidden[0](X))
        torch.testing.assert_close(pre.mean(0), torch.zeros(8, dtype=torch.float64), atol=1e-12, rtol=0)
        torch.testing.assert_close(pre.var(0, unbiased=False), torch.ones(8, dtype=torch.float64), atol=1e-4,
                                   rtol=0)
        # LayerNorm: every example has mean 0 over its units
        pre = layer.norms[0](layer.hidden[0](X))
        torch.testing.assert_close(pre.mean(1), torch.zeros(20, dtype=torch.float64), atol=1e-12, rtol=0)
        # BatchNorm makes an example's scores depend on the rest of the batch; LayerNorm does not
        assert not torch.allclose(batch(X)[:5], batch(X[:5]))
        torch.testing.assert_close(layer(X)[:5], layer(X[:5]))


def test_deep_mlp_initializations_are_seeded_and_scaled():
    a = DeepMLP(64, 32, 4, 10, generator=torch.Generator().manual_seed(0))
    b = DeepMLP(64, 32, 4, 10, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a.hidden[1].weight.abs().max().item() <= 32 ** -0.5
    he = DeepMLP(64, 256, 3, 10, init="he", generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert he.hidden[1].weight.std().item() == pytest.approx((2 / 256) ** 0.5, rel=0.02)
    assert torch.count_nonzero(he.hidden[1].bias) == 0
    # the first layer of MLP draws from the generator exactly as before (its outputs are unchanged)
    mlp = MLP((64, 32, 10), generator=torch.Generator().manual_seed(0))
    bound = 64 ** -0.5
    expected = torch.empty(32, 64).uniform_(-bound, bound, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mlp.net[0].weight.detach(), expected)


@pytest.mark.parametrize("kwargs, error", [
    (dict(depth=0), ValueError), (dict(width=2.5), ValueError), (dict(norm="group"), ValueError),
    (dict(init="xavier"), ValueError), (dict(activation="sigmoid"), ValueError), (dict(residual=1), TypeError),
])
def test_deep_mlp_rejects_bad_arguments(kwargs, error):
    args = dict(num_features=4, width=3, depth=2, num_classes=2) | kwargs
    with pytest.raises(error):
        DeepMLP(**args)
    with pytest.raises(ValueError, match="expected inputs"):
        DeepMLP(4, 3, 2, 2)(torch.randn(2, 5))
