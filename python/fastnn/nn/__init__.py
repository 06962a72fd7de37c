"""Layers with torch.nn's names, defaults and semantics, and explicit backward passes.

``y = layer(x)`` runs the forward and keeps what the backward needs;
``dx = layer.backward(dy)`` returns the input's gradient and adds the parameters'
gradients to their ``.grad``. A model is usually a ``Sequential``; a loss's
``backward()`` starts the chain::

    model = nn.Sequential(nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 10))
    loss = criterion(model(x), labels)
    model.backward(criterion.backward())
    optimizer.step()

Layers compute with the array library of their input (NumPy now; CuPy once fastnn's
CUDA kernels cover them).
"""

from .parameter import Parameter
from .module import Module
from .linear import Linear, Maxout
from .conv import Conv2d
from .pooling import AvgPool2d, Flatten, MaxPool2d
from .normalization import BatchNorm1d, BatchNorm2d
from .sync_batchnorm import SyncBatchNorm
from .activation import ELU, GELU, LeakyReLU, PReLU, ReLU, SELU, SiLU, Sigmoid, Softplus, Tanh
from .dropout import Dropout
from .container import Sequential
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss

__all__ = ["Parameter", "Module", "Linear", "Maxout", "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten",
           "BatchNorm1d", "BatchNorm2d", "SyncBatchNorm", "ReLU", "LeakyReLU", "PReLU", "ELU", "SELU", "GELU",
           "Sigmoid", "Tanh", "SiLU", "Softplus", "Dropout", "Sequential", "CrossEntropyLoss",
           "MSELoss", "BCEWithLogitsLoss"]
