"""Models from other libraries as jaxnets models: ``LinenModel`` (``flax.linen``), ``NNXModel``
(Flax NNX) and ``EquinoxModel`` (Equinox). Each gives its module the jaxnets contract
(``init(key, x) -> (params, state)``, ``apply(params, state, x, *, key=None, train=False)``, plain
nested dicts of arrays), so ``fit``, ``fit_seeds``, checkpoints, the gradient checks and
``inspect.summary`` work on it. Equinox is optional: ``EquinoxModel`` needs ``pip install equinox``."""

from jaxnets.interop.linen import LinenModel as LinenModel
from jaxnets.interop.nnx import NNXModel as NNXModel


def __getattr__(name: str):
    if name == "EquinoxModel":  # imported on first use: Equinox is an optional dependency
        from jaxnets.interop.equinox import EquinoxModel

        return EquinoxModel
    raise AttributeError(f"module 'jaxnets.interop' has no attribute {name!r}")
