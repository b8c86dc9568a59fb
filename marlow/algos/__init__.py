"""Algorithms. Each module defines ``NAME``, ``DESCRIPTION``, ``SUPPORTED_ACTIONS``, a ``Config``
dataclass (defaults in conf/algo/<name>.yaml) and an ``Algorithm(spec, cfg)`` class whose ``init``,
``act`` and ``update`` are pure functions over an explicit state pytree.

Optional parts of the protocol, used by the runner when an algorithm defines them:
- module constant ``TABULAR = True``: the algorithm needs a finite state space (``EnvSpec.num_states``);
- ``Algorithm.observe(state, trans) -> state``: sees every batch of transitions as it is stored (e.g. to
  keep empirical action counts), also during warm-up;
- ``Algorithm.diagnostics(state) -> dict`` of scalars, logged as ``diag/<name>`` at every evaluation;
- ``Algorithm.prepare(state, buffer, key, step) -> (state, metrics)``: called before each round of
  ``updates_per_step`` updates with the whole real replay buffer and the (unbatched) env-step count, e.g.
  to train world and opponent models and to fill a model buffer with rollouts;
- ``Algorithm.communications(state) -> scalar``: real-agent queries made outside the env (e.g. inside
  model rollouts), counted into the logged ``agent_interactions``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from marlow.errors import ConfigError

ALGORITHMS = (
    # model-free actor-critics (AORPO paper's bases)
    "masac",
    "maddpg",
    # AORPO paper (model-based, opponent models)
    "aorpo",
    "aordpg",
    # ROMMEO paper (tabular, Fig. 1)
    "rommeo_q",
    "rommeo_q_emp",
    "iql",
    "jal",
    "wolf_phc",
    "fmq",
    "pr2_q",
    # ROMMEO paper (continuous, Fig. 2)
    "rommeo_ac",
    "ddpg",
    "ddpg_om",
    "masql",
    "pr2_ac",
)


def get_algo(name: str) -> ModuleType:
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {name!r}; known algorithms: {', '.join(ALGORITHMS)}")
    return importlib.import_module(f"marlow.algos.{name}")


def unsupported(algo: ModuleType, spec) -> str | None:
    """Why ``algo`` cannot run on the task ``spec`` (None when it can)."""
    missing = sorted(spec.action_kinds - algo.SUPPORTED_ACTIONS)
    if missing:
        return (
            f"algorithm {algo.NAME!r} does not support {', '.join(missing)} action spaces "
            f"of task {spec.name!r} "
            f"(it supports: {', '.join(sorted(algo.SUPPORTED_ACTIONS))})"
        )
    if getattr(algo, "TABULAR", False) and spec.num_states is None:
        return (
            f"algorithm {algo.NAME!r} is tabular and needs a task with a finite state space; "
            f"task {spec.name!r} has continuous observations"
        )
    return None


def check_supports(algo: ModuleType, spec) -> None:
    """One-line error when an algorithm cannot handle the task (action spaces, state space)."""
    reason = unsupported(algo, spec)
    if reason:
        raise ConfigError(reason)
