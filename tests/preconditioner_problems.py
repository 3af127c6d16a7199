"""A small float64 problem shared by the Shampoo and SOAP tests: parameters of every order (a matrix,
a vector, another matrix, a 3-D tensor and a scalar) coupled in one loss, minibatches of fixed data."""
import torch

F64 = torch.float64
SHAPES = [(5, 4), (4,), (3, 4), (2, 3, 4), ()]
X = torch.randn(24, 5, generator=torch.Generator().manual_seed(10), dtype=F64)


def make_params():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(s, generator=g, dtype=F64, requires_grad=True) for s in SHAPES]


def loss_fn(params, k):
    """A small network (5 -> 4 -> 3), a 3-D tensor coupled to it and a scalar; minibatch k of X."""
    W1, b1, W2, T, s = params
    h = torch.tanh(X[k % 4 * 4:k % 4 * 4 + 12] @ W1 + b1)
    out = h @ W2.T
    coupling = (T.sum(0) * out[:2, :3].T[:, :2].sum()).sum() * 0.01
    return (out ** 2).mean() + 0.1 * (1 + k % 3) * (T ** 2).sum() + coupling + (s - 1) ** 2 * (1 + torch.tanh(h.sum()))


def two_groups(cls, params, lr, **kwargs):
    return cls([{"params": params[:2]}, {"params": params[2:], "lr": lr / 2}], lr=lr, **kwargs)


def run(optimizer, params, steps, start=0):
    for k in range(start, start + steps):
        optimizer.zero_grad()
        loss_fn(params, k).backward()
        optimizer.step()
