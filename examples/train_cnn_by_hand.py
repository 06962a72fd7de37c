"""A CNN on scikit-learn's handwritten digits, with the training loop written out:
fastnn.nn layers, a fastnn.optim optimizer and scheduler, and nothing else
(fastnn.train.fit does the same in one call).

    pip install "fastnn[examples]"
    python examples/train_cnn_by_hand.py
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits  # installed with scikit-learn

import fastnn
from fastnn import nn, optim
from fastnn.data import Standardizer
from fastnn.optim.lr_scheduler import CosineAnnealingLR

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()
# Small matrices: a second BLAS thread gains little, and on a busy machine BLAS threads
# waiting for each other make a step many times slower.
threadpool_limits(1, user_api="blas")

# Data: (N, 1, 8, 8) images; test and validation splits held out; statistics from training only.
digits = load_digits()
x, y = digits.images.astype(np.float32)[:, None], digits.target.astype(np.int64)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=0.15, random_state=0,
                                                  stratify=y_train)
scaler = Standardizer(axis=(0, 2, 3)).fit(x_train)  # one mean and std per channel
x_train, x_val, x_test = scaler.transform(x_train), scaler.transform(x_val), scaler.transform(x_test)

fastnn.random.seed(0)  # initialization and dropout masks
model = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),   # 32 x 4 x 4
    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),  # 64 x 2 x 2
    nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 2 * 2, 10))
loss_fn = nn.CrossEntropyLoss()
opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
sched = CosineAnnealingLR(opt, T_max=args.epochs)
rng = np.random.default_rng(0)


def evaluate(x, y, batch_size=512):
    """Mean loss and accuracy in eval mode (running statistics, no dropout)."""
    model.eval()
    loss = correct = 0.0
    for i in range(0, len(x), batch_size):
        scores = model(x[i:i + batch_size])
        loss += float(loss_fn(scores, y[i:i + batch_size])) * len(scores)
        correct += np.sum(scores.argmax(1) == y[i:i + batch_size])
    return loss / len(x), correct / len(x)


best_loss, best_state = np.inf, None
for epoch in range(1, args.epochs + 1):
    start = time.perf_counter()
    model.train()
    order = rng.permutation(len(x_train))  # a new order every epoch
    for i in range(0, len(order), 64):
        batch = order[i:i + 64]
        opt.zero_grad()
        loss = loss_fn(model(x_train[batch]), y_train[batch])  # forward
        model.backward(loss_fn.backward(), input_grad=False)   # gradients into each .grad
        opt.step()
    sched.step()
    val_loss, val_acc = evaluate(x_val, y_val)
    if val_loss < best_loss:  # keep the best epoch's weights (copies: state_dict holds live arrays)
        best_loss, best_state = val_loss, {k: v.copy() for k, v in model.state_dict().items()}
    print(f"epoch {epoch:2d}  train loss {float(loss):.4f}  val loss {val_loss:.4f}  val accuracy {val_acc:.2%}  "
          f"{time.perf_counter() - start:.1f} s")

model.load_state_dict(best_state)
test_loss, test_acc = evaluate(x_test, y_test)
print(f"test accuracy {test_acc:.2%} (the weights of the best validation epoch)")
fastnn.save({"model": model.state_dict(), "scaler": scaler.state_dict()}, "digits_cnn.npz")
