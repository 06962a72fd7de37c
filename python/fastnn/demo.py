"""``fastnn demo``: train a small CNN and an MLP on scikit-learn's handwritten digits.

The workflow the lectures teach, end to end: hold out a test split, standardize with
the training split's statistics, check the initial loss, train with AdamW and a cosine
schedule, watch the validation curve, stop early and keep the best weights, then score
the test split once. The pieces are separate functions (``load_digits_data``,
``build_cnn``, ``build_mlp``, ``make_loaders``, ``train_model``) so other front ends
(another device, several processes) can reuse them.
"""

import argparse
import contextlib
import datetime
import json
import os
import sys
import time

import numpy as np

import fastnn
from fastnn import nn, optim
from fastnn.data import DataLoader, Standardizer
from fastnn.optim.lr_scheduler import CosineAnnealingLR
from fastnn.train import EarlyStopping, accuracy, check_initial_loss, fit, plot_history, predict

__all__ = ["load_digits_data", "build_cnn", "build_mlp", "make_loaders", "train_model", "main"]

EPOCHS = 30  # at most, per model

MISSING_EXAMPLES = ("fastnn demo needs scikit-learn (the digits data), matplotlib (the plot) and tqdm "
                    "(progress bars): pip install \"fastnn[examples]\" (from a checkout: "
                    "pip install \".[examples]\")")


def load_digits_data(test_fraction=0.2, val_fraction=0.15, seed=0, dtype=np.float32):
    """scikit-learn's 1,797 handwritten digits as (N, 1, 8, 8) images, split (stratified,
    seeded) into test (``test_fraction`` of all), validation (``val_fraction`` of the
    rest) and training, and standardized with the training split's mean and std (one
    channel). Returns a dict: x_train, y_train, x_val, y_val, x_test, y_test (labels
    int64) and ``standardizer`` (the fitted Standardizer)."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ImportError(MISSING_EXAMPLES) from None
    digits = load_digits()
    x = digits.images.astype(dtype)[:, None]  # (1797, 1, 8, 8), values 0..16
    y = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed,
                                                      stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=val_fraction,
                                                      random_state=seed, stratify=y_rest)
    scaler = Standardizer(axis=(0, 2, 3)).fit(x_train)  # the training split's statistics only
    return {"x_train": scaler.transform(x_train), "y_train": y_train,
            "x_val": scaler.transform(x_val), "y_val": y_val,
            "x_test": scaler.transform(x_test), "y_test": y_test, "standardizer": scaler}


def _conv_block(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]


def build_cnn(dropout=0.3):
    """(N, 1, 8, 8) -> 10 scores: two Conv(3x3)-BatchNorm-ReLU-MaxPool blocks (32 and 64
    channels), dropout, a linear layer."""
    return nn.Sequential(*_conv_block(1, 32), *_conv_block(32, 64), nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(64 * 2 * 2, 10))


def build_mlp(dropout=0.2):
    """(N, 1, 8, 8) -> 10 scores: flatten, two Linear-BatchNorm-ReLU-Dropout blocks (256
    and 128 units), a linear layer."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(256, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(128, 10))


def make_loaders(data, batch_size=64, seed=0):
    """Training batches (reshuffled every epoch from ``seed``) and validation batches."""
    train = DataLoader(data["x_train"], data["y_train"], batch_size, generator=seed)
    val = DataLoader(data["x_val"], data["y_val"], 512, shuffle=False)
    return train, val


def train_model(model, train_loader, val_loader, *, epochs=30, lr=3e-3, weight_decay=1e-2, patience=8,
                progress=True):
    """AdamW, a cosine schedule over ``epochs``, early stopping on the validation loss
    (the best epoch's weights restored). Returns the History."""
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return fit(model, nn.CrossEntropyLoss(), opt, train_loader, val_loader, epochs,
               scheduler=CosineAnnealingLR(opt, epochs), early_stopping=EarlyStopping(patience),
               progress=progress)


def _blas_threads(n):
    """Limit NumPy's BLAS threads for the block (threadpoolctl comes with scikit-learn).
    The matrices here are small: a second BLAS thread gains little and, on a busy
    machine, BLAS threads waiting on each other cost far more."""
    if n is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(n, user_api="blas")


def _new_folder(base):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(base, f"fastnn-demo-{stamp}")
    candidate, i = path, 1
    while os.path.exists(candidate):
        i += 1
        candidate = f"{path}-{i}"
    return candidate


def _count(model):
    return sum(p.numel() for p in model.parameters())


class DeviceError(RuntimeError):
    """The device asked for can't train (no CuPy, no GPU, no CUDA module)."""


def _check_device(device):
    """Fail before any work if the device can't train."""
    if device == "cpu":
        return
    try:
        import cupy
    except ImportError:
        raise DeviceError("--device cuda needs CuPy: pip install \"fastnn[cuda]\"") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver: CuPy raises its own error type
        raise DeviceError(f"--device cuda: CuPy sees no GPU ({exc})") from None
    built = fastnn.info()["cuda_built"]
    if count == 0 or not built:
        raise DeviceError("--device cuda needs a GPU and fastnn's CUDA module (built when nvcc is found); "
                          f"here: {count} GPU(s), the CUDA module {'built' if built else 'not built'}")


def _to_device(device, model, data):
    if device == "cpu":
        return data
    import cupy

    model.to(device)
    return {k: (cupy.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in data.items()}


def run(out=None, epochs=EPOCHS, seed=0, device="cpu", blas_threads=1, progress=True):
    """The demo: returns the metrics dict it writes to ``out``/metrics.json."""
    started = time.perf_counter()
    try:
        import matplotlib  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        raise ImportError(MISSING_EXAMPLES) from None
    _check_device(device)
    info = fastnn.info()
    print(f"fastnn {info['version']} demo: scikit-learn's handwritten digits (8x8 images), {device}, "
          f"SIMD {info['simd']}, {info['threads']} threads"
          + (f", NumPy's BLAS {blas_threads} thread(s)" if blas_threads else ""))
    data = load_digits_data(seed=seed)
    print(f"data: {len(data['y_train'])} training, {len(data['y_val'])} validation, {len(data['y_test'])} test "
          "images, standardized with the training split's mean and std")
    out = out or _new_folder(os.getcwd())
    os.makedirs(out, exist_ok=True)

    fastnn.random.seed(seed)
    models = {"CNN": build_cnn(), "MLP": build_mlp()}
    histories, results = {}, {}
    with _blas_threads(blas_threads):
        for name, model in models.items():
            arrays = _to_device(device, model, data)
            print(f"\n{name}: {_count(model):,} parameters")
            check = check_initial_loss(model, nn.CrossEntropyLoss(), arrays["x_train"][:512],
                                       arrays["y_train"][:512])
            print(f"  {check}")
            t0 = time.perf_counter()
            train_loader, val_loader = make_loaders(arrays, seed=seed)
            history = train_model(model, train_loader, val_loader, epochs=epochs, progress=progress)
            seconds = time.perf_counter() - t0
            scores = predict(model, arrays["x_test"])
            test_acc = accuracy(scores, arrays["y_test"])
            correct = round(test_acc * len(data["y_test"]))
            print(f"{name} test accuracy {test_acc:.2%} ({correct}/{len(data['y_test'])}), trained in "
                  f"{seconds:.1f} s ({history.epochs} epochs, weights of epoch {history.best_epoch})")
            histories[name] = history
            results[name.lower()] = {
                "test_accuracy": test_acc, "epochs": history.epochs, "best_epoch": history.best_epoch,
                "seconds": seconds, "parameters": int(_count(model)), "initial_loss": check.loss,
                "val_loss": history["val_loss"][history.best_epoch - 1] if history.best_epoch else None,
                "history": history.to_dict()["history"]}

    plot_history(histories, os.path.join(out, "learning_curves.png"), log_loss=True,
                 title="fastnn demo: handwritten digits (dotted: the epoch whose weights were kept)")
    fastnn.save({"model": models["CNN"].state_dict(), "standardizer": data["standardizer"].state_dict()},
                os.path.join(out, "cnn.npz"))
    total = time.perf_counter() - started
    metrics = {"test_accuracy": results["cnn"]["test_accuracy"], "epochs": results["cnn"]["epochs"],
               "seconds": total, "models": results, "device": device, "seed": seed,
               "threads": info["threads"], "simd": info["simd"], "version": info["version"]}
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"\nCNN test accuracy {results['cnn']['test_accuracy']:.2%}, MLP {results['mlp']['test_accuracy']:.2%}; "
          f"{total:.1f} s in all")
    print(f"wrote learning_curves.png, metrics.json and cnn.npz (the CNN's weights and the standardizer) "
          f"to {out}")
    return metrics


def add_arguments(parser):
    parser.add_argument("--out", help="folder for learning_curves.png, metrics.json and cnn.npz "
                        "(default: a new fastnn-demo-<date>-<time> folder here)")
    parser.add_argument("--epochs", type=int, default=None, help=f"most epochs per model (default {EPOCHS}; "
                        "early stopping usually ends sooner)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initialization, shuffling "
                        "and dropout (default 0)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where to train (cuda: CuPy arrays on the current GPU)")
    parser.add_argument("--blas-threads", type=int, default=1, metavar="N",
                        help="NumPy's BLAS threads while training (default 1: the matrices are small; "
                        "0 leaves BLAS alone)")


def main(args):
    epochs = EPOCHS if args.epochs is None else args.epochs
    if epochs < 1:
        print("fastnn demo: --epochs must be >= 1", file=sys.stderr)
        return 2
    try:
        run(args.out, epochs, args.seed, args.device, args.blas_threads or None)
    except (ImportError, DeviceError) as exc:
        print(f"fastnn demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m fastnn.demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
