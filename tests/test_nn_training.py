"""End to end: the same MLP and CNN in fastnn.nn and torch.nn (torch's initial weights
copied over), trained for 20 AdamW steps in float64 with dropout off, give the same loss
at every step (within 1e-8), the same gradients, and the same weights and running
statistics at the end."""

import numpy as np
import pytest

from fastnn import nn, optim

STEPS = 20


def mlp(lib):
    return lib.Sequential(lib.Linear(20, 32), lib.BatchNorm1d(32), lib.ReLU(), lib.Dropout(0.0),
                          lib.Linear(32, 32), lib.BatchNorm1d(32), lib.ReLU(), lib.Linear(32, 5))


def cnn(lib):
    return lib.Sequential(lib.Conv2d(3, 6, 3, padding=1), lib.BatchNorm2d(6), lib.ReLU(), lib.MaxPool2d(2),
                          lib.Conv2d(6, 8, 3, stride=1, padding=1), lib.BatchNorm2d(8), lib.ReLU(),
                          lib.AvgPool2d(2), lib.Flatten(), lib.Linear(8 * 2 * 2, 5))


@pytest.mark.parametrize("build,shape", [(mlp, (16, 20)), (cnn, (8, 3, 8, 8))], ids=["mlp", "cnn"])
def test_adamw_training_matches_torch(torch, build, shape):
    torch.manual_seed(0)
    theirs = build(torch.nn).double()
    ours = build(nn).double()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    t_opt = torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.05)
    f_opt = optim.AdamW(ours.parameters(), lr=1e-2, weight_decay=0.05)
    t_loss_fn, f_loss_fn = torch.nn.CrossEntropyLoss(), nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    data = rng.standard_normal((4, *shape))
    labels = rng.integers(0, 5, (4, shape[0]))
    t_params = dict(theirs.named_parameters())
    for step in range(STEPS):
        x, y = data[step % 4], labels[step % 4]
        t_opt.zero_grad()
        t_loss = t_loss_fn(theirs(torch.tensor(x)), torch.tensor(y))
        t_loss.backward()
        f_opt.zero_grad()
        f_loss = f_loss_fn(ours(x), y)
        ours.backward(f_loss_fn.backward(), input_grad=False)
        assert abs(float(f_loss) - t_loss.item()) <= 1e-8, step
        for name, p in ours.named_parameters():
            np.testing.assert_allclose(p.grad, t_params[name].grad.numpy(), rtol=1e-9, atol=1e-11,
                                       err_msg=f"step {step}: {name}")
        t_opt.step()
        f_opt.step()
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-8, atol=1e-10, err_msg=key)
    x = data[0]
    ours.eval()
    theirs.eval()
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-8, atol=1e-10)


def test_mlp_learns_in_float32():
    """A small float32 MLP with dropout fits a separable problem: the loss falls by 10x."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((256, 10)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)
    model = nn.Sequential(nn.Linear(10, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 4))
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(150):
        opt.zero_grad()
        losses.append(float(loss_fn(model(x), y)))
        model.backward(loss_fn.backward())
        opt.step()
    assert losses[-1] < losses[0] / 10
    model.eval()
    assert (model(x).argmax(1) == y).mean() > 0.95
