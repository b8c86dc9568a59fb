"""marlow: Multi-Agent Reinforcement Learning with Opponent and World models.

Importing marlow changes nothing in the process: the command line (``marlow.cli.main``) asks XLA for one
host device per core (:func:`marlow.devices.configure_host_devices`) before JAX starts; a script or
notebook that wants the same seed sharding calls it itself, first. The Python API (:mod:`marlow.api`):
``marlow.train``, ``marlow.evaluate``, ``marlow.config``, ``marlow.build``, ``marlow.make_env``,
``marlow.run_config``, ``marlow.metrics``. The subpackages
(``marlow.devices``, ``marlow.algos``, ``marlow.envs``, ...) are imported when first used, so that
``import marlow`` does not import JAX."""

import importlib

from marlow.api import build, config, evaluate, make_env, metrics, run_config, train

__version__ = "0.1.0"
__all__ = ["build", "config", "evaluate", "make_env", "metrics", "run_config", "train", "__version__"]

_SUBMODULES = set(
    "algos analysis buffers devices envs errors experiment nn rollout runtime sweep world".split()
)


def __getattr__(name: str):
    """``marlow.devices`` and the other subpackages without importing them first."""
    if name in _SUBMODULES:
        return importlib.import_module(f"marlow.{name}")
    raise AttributeError(f"module 'marlow' has no attribute {name!r}")
