"""jaxnets: the neural networks of the lecture notes as pure JAX functions over pytrees.

``import jaxnets as jn``; layers live in ``jn.nn``, models in ``jn.models``, losses in
``jn.losses``, optimizers in ``jn.optim``, data in ``jn.data`` (augmentation in ``jn.augment``); ``jn.fit`` trains one network and
``jn.fit_seeds`` many at once. The Flax adapter is imported explicitly:
``from jaxnets.flax_adapter import FlaxModel``.
"""

from jaxnets import activations as activations
from jaxnets import augment as augment
from jaxnets import backprop as backprop
from jaxnets import checkpoint as checkpoint
from jaxnets import data as data
from jaxnets import gradcheck as gradcheck
from jaxnets import initializers as initializers
from jaxnets import inspect as inspect
from jaxnets import losses as losses
from jaxnets import models as models
from jaxnets import nn as nn
from jaxnets import optim as optim
from jaxnets import runtime as runtime
from jaxnets import seeds as seeds
from jaxnets import train as train
from jaxnets import transfer as transfer
from jaxnets.loop import EarlyStopping as EarlyStopping
from jaxnets.loop import FitResult as FitResult
from jaxnets.loop import fit as fit
from jaxnets.seeds import fit_seeds as fit_seeds
from jaxnets.train import NonFiniteError as NonFiniteError
from jaxnets.train import TrainState as TrainState

__version__ = "0.1.0"
