"""Random search for an MLP's hyperparameters on scikit-learn's handwritten digits, coarse
then fine: learning rate and weight decay on a log scale, dropout and width too; then
the best setting retrained and scored on the test split once.

    pip install "fastnn[examples]"
    python examples/hyperparameter_search.py
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits  # installed with scikit-learn

import fastnn
from fastnn import nn, optim
from fastnn.data import DataLoader, Standardizer
from fastnn.train import Choice, EarlyStopping, LogUniform, Uniform, accuracy, fit, predict, random_search, refine

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--trials", type=int, default=16, help="trials per round (two rounds)")
parser.add_argument("--epochs", type=int, default=15, help="most epochs per trial")
args = parser.parse_args()
# Small matrices: a second BLAS thread gains little, and on a busy machine BLAS threads
# waiting for each other make a step many times slower.
threadpool_limits(1, user_api="blas")

digits = load_digits()
x, y = digits.data.astype(np.float32), digits.target.astype(np.int64)  # (N, 64) pixels
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=0.2, random_state=0,
                                                  stratify=y_train)
scaler = Standardizer(axis=None).fit(x_train)  # one mean and std for all pixels, from training only
x_train, x_val, x_test = map(scaler.transform, (x_train, x_val, x_test))


def train(lr, weight_decay, dropout, width, epochs=args.epochs):
    """One trial: returns the History (random_search reads its best val_accuracy) and the model."""
    fastnn.random.seed(0)  # every trial starts from the same seed: differences come from the settings
    model = nn.Sequential(nn.Linear(64, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout),
                          nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout),
                          nn.Linear(width, 10))
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = fit(model, nn.CrossEntropyLoss(), opt, DataLoader(x_train, y_train, 64, generator=0),
                  DataLoader(x_val, y_val, 512, shuffle=False), epochs,
                  early_stopping=EarlyStopping(5, monitor="val_accuracy"), progress=False)
    return history, model


space = {"lr": LogUniform(1e-5, 1e-1), "weight_decay": LogUniform(1e-6, 1e-1),
         "dropout": Uniform(0.0, 0.6), "width": Choice([64, 128, 256])}
coarse = random_search(lambda **p: train(**p)[0], space, trials=args.trials, seed=0)
print("coarse search, best first:\n" + coarse.table())

space = refine(space, coarse)  # narrower ranges around the best trials
print("\nrefined space:", space)
fine = random_search(lambda **p: train(**p)[0], space, trials=args.trials, seed=1)
print("fine search, best first:\n" + fine.table())

best = max(coarse.best, fine.best, key=lambda t: t["val_accuracy"])
settings = {k: best[k] for k in ("lr", "weight_decay", "dropout", "width")}
_, model = train(**settings)
print(f"\nbest {settings}: validation accuracy {best['val_accuracy']:.2%}, "
      f"test accuracy {accuracy(predict(model, x_test), y_test):.2%}")
