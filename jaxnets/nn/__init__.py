"""Layers: frozen dataclasses of hyper-parameters with pure ``init``/``apply`` methods."""

from jaxnets.nn.core import Activation as Activation
from jaxnets.nn.core import Dense as Dense
from jaxnets.nn.core import Flatten as Flatten
from jaxnets.nn.core import Lambda as Lambda
from jaxnets.nn.core import Layer as Layer
from jaxnets.nn.core import LayerError as LayerError
from jaxnets.nn.core import Sequential as Sequential
from jaxnets.nn.core import iter_layers as iter_layers
from jaxnets.nn.conv import Conv1D as Conv1D
from jaxnets.nn.conv import Conv2D as Conv2D
from jaxnets.nn.conv import LocallyConnected2D as LocallyConnected2D
from jaxnets.nn.pool import AvgPool1D as AvgPool1D
from jaxnets.nn.pool import AvgPool2D as AvgPool2D
from jaxnets.nn.pool import GlobalAvgPool as GlobalAvgPool
from jaxnets.nn.pool import MaxPool1D as MaxPool1D
from jaxnets.nn.pool import MaxPool2D as MaxPool2D
from jaxnets.nn.dropout import Dropout as Dropout
from jaxnets.nn.norm import BatchNorm as BatchNorm
from jaxnets.nn.norm import LayerNorm as LayerNorm
from jaxnets.nn.attention import MultiHeadAttention as MultiHeadAttention
from jaxnets.nn.attention import PatchEmbedding as PatchEmbedding
from jaxnets.nn.residual import ResidualBlock as ResidualBlock
from jaxnets.nn.inception import Concatenate as Concatenate
from jaxnets.nn.inception import inception as inception
