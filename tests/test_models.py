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
