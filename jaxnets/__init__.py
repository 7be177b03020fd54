"""jaxnets: the neural networks of the lecture notes as pure JAX functions over pytrees.

``import jaxnets as jn``; layers live in ``jn.nn``, models in ``jn.models``, losses in
``jn.losses``, optimizers in ``jn.optim``, data in ``jn.data`` (augmentation in ``jn.augment``).
``jn.fit`` trains one network and ``jn.fit_seeds`` many at once, in one shared loop, on data in
memory or streamed from the host (``jn.streaming``) and on one device or a mesh (``jn.parallel``);
``jn.EarlyStopping`` and ``jn.ReduceOnPlateau`` are what that loop monitors; ``jn.evaluate``
scores a trained network. Models from other libraries train through ``jaxnets.interop``
(``LinenModel``, ``NNXModel``, ``EquinoxModel``).
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
from jaxnets import monitors as monitors
from jaxnets import nn as nn
from jaxnets import optim as optim
from jaxnets import parallel as parallel
from jaxnets import runtime as runtime
from jaxnets import seeds as seeds
from jaxnets import streaming as streaming
from jaxnets import train as train
from jaxnets import transfer as transfer
from jaxnets.checkpoint import CheckpointError as CheckpointError
from jaxnets.fit import FitResult as FitResult
from jaxnets.fit import fit as fit
from jaxnets.monitors import EarlyStopping as EarlyStopping
from jaxnets.monitors import ReduceOnPlateau as ReduceOnPlateau
from jaxnets.nn import LayerError as LayerError
from jaxnets.seeds import SeedsResult as SeedsResult
from jaxnets.seeds import fit_seeds as fit_seeds
from jaxnets.train import NonFiniteError as NonFiniteError
from jaxnets.train import TrainState as TrainState
from jaxnets.train import evaluate as evaluate

__version__ = "0.1.0"
