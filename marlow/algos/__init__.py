"""Algorithms, grouped by how they learn; names on the command line are flat (``algo=masac``).

- ``offpolicy/``: model-free replay learners (MASAC, MADDPG, DDPG, DDPG-OM, MASQL, PR2-AC, ROMMEO-AC);
- ``model_based/``: AORPO and AORDPG (world and opponent models, branched rollouts), MAMBA and MAG
  (policies learned in a world model's imagination, ``KIND = "world_model"``);
- ``tabular/``: ROMMEO-Q and the tabular baselines of ROMMEO Fig. 1 (finite-state tasks);
- ``onpolicy/``: the PPO family (IPPO, MAPPO, HAPPO; the PPO pieces in ``onpolicy/ppo.py``, the actors in
  ``onpolicy/actors.py``, MAPPO's and HAPPO's centralised critic in ``onpolicy/centralised.py``), Teammate
  Lookahead's learners, and the MAG paper's communicating baselines (Attention-PPO, G2A and CommNet: one
  learner, three networks).

Every algorithm meets the runner through the learner protocol of :mod:`marlow.algos.learner`. An
off-policy, model-based or tabular module defines ``NAME``, ``DESCRIPTION``, ``SUPPORTED_ACTIONS``, a
``Config`` dataclass (defaults in conf/algo/<name>.yaml) and an ``Algorithm(spec, cfg)`` class whose
``init``, ``act`` and ``update`` are pure functions over an explicit state pytree;
:class:`~marlow.algos.learner.OffPolicyLearner` gives it a replay buffer and its update schedule.
Optional parts of that protocol:

- module constant ``TABULAR = True``: the algorithm needs a finite state space (``EnvSpec.num_states``);
- module constant ``SUPPORTS_MASKS = True``: the algorithm respects available-action masks, so it may run
  on tasks with ``EnvSpec.action_masks`` (others are refused there);
- module constant ``COOPERATIVE = True``: the algorithm needs a cooperative task (one team);
- module constant ``HOMOGENEOUS = True``: the algorithm shares its networks across agents stacked on one
  axis and needs agents of one observation and action space (MAMBA, MAG, Attention-PPO);
- ``Algorithm.observe(state, trans) -> state``: sees every batch of transitions as it is stored (e.g. to
  keep empirical action counts), also during warm-up;
- ``Algorithm.diagnostics(state) -> dict`` of scalars, logged as ``diag/<name>`` at every evaluation;
- ``Algorithm.probe(state, obs) -> dict`` of scalars read from its models at ``obs`` (opponent models,
  priors); logged as ``diag/<name>`` on single-state tasks, at their one observation, beside every
  agent's greedy action (``diag/pi_mean/<agent>``, for any learner: :func:`marlow.experiment.loop.probe`);
- ``Algorithm.prepare(state, buffer, key, step) -> (state, metrics)``: called before each round of
  ``updates_per_step`` updates with the whole real replay buffer and the (unbatched) env-step count, e.g.
  to train world and opponent models and to fill a model buffer with rollouts;
- ``Algorithm.full_round(step) -> bool`` and ``Algorithm.REDUCED_UPDATES``: rounds with fewer updates
  (a real branch on the unbatched ``step``; AORPO before its world model is trained);
- ``Algorithm.communications(state) -> scalar``: real-agent queries made outside the env (e.g. inside
  model rollouts), counted into the logged ``agent_interactions``.

Every module sets ``KIND``: ``"off_policy"`` (the above, tabular and model-based ones included),
``"on_policy"`` or ``"world_model"`` (an ``Algorithm`` that is itself a learner). The protocol of each kind
is a typed :class:`~typing.Protocol` in :mod:`marlow.algos.learner` (``OffPolicyAlgorithm``, ``Learner``),
checked once when a learner is made: a missing piece, a misspelled optional hook or a missing ``KIND`` is
a one-line ConfigError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from marlow.errors import ConfigError, did_you_mean

GROUPS: dict[str, tuple[str, ...]] = {
    # model-free actor-critics (AORPO paper's bases) and ROMMEO Fig. 2's continuous learners
    "offpolicy": ("masac", "maddpg", "rommeo_ac", "ddpg", "ddpg_om", "masql", "pr2_ac"),
    # AORPO paper (model-based, opponent models); MAG paper (MAMBA and MAG: imagination in a world model)
    "model_based": ("aorpo", "aordpg", "mamba", "mag"),
    # ROMMEO paper (tabular, Fig. 1)
    "tabular": ("rommeo_q", "rommeo_q_emp", "iql", "jal", "wolf_phc", "fmq", "pr2_q"),
    # the PPO family (Teammate Lookahead and MAG build on it)
    "onpolicy": (
        "ippo",
        "mappo",
        "happo",
        "la_happo",
        "la_mappo",
        "tappo",
        "attention_ppo",
        "commnet",
        "g2a",
    ),
}
MODULES = {name: f"marlow.algos.{group}.{name}" for group, names in GROUPS.items() for name in names}
ALGORITHMS = tuple(MODULES)


def get_algo(name: str) -> ModuleType:
    if name not in ALGORITHMS:
        hint = did_you_mean(name, ALGORITHMS) or f"; known algorithms: {', '.join(ALGORITHMS)}"
        raise ConfigError(f"unknown algorithm {name!r}{hint}")
    return importlib.import_module(MODULES[name])


def unsupported(algo: ModuleType, spec) -> str | None:
    """Why ``algo`` cannot run on the task ``spec`` (None when it can)."""
    missing = sorted(spec.action_kinds - algo.SUPPORTED_ACTIONS)
    if missing:
        return (
            f"algorithm {algo.NAME!r} does not support {', '.join(missing)} action spaces "
            f"of task {spec.name!r} "
            f"(it supports: {', '.join(sorted(algo.SUPPORTED_ACTIONS))})"
        )
    if spec.action_masks and not getattr(algo, "SUPPORTS_MASKS", False):
        able = [a for a in ALGORITHMS if getattr(get_algo(a), "SUPPORTS_MASKS", False)]
        return (
            f"algorithm {algo.NAME!r} cannot respect the available-action masks of task {spec.name!r} "
            f"(algorithms that can: {', '.join(able)})"
        )
    kinds = set(zip(spec.obs_spaces, spec.act_spaces, strict=True))
    if getattr(algo, "HOMOGENEOUS", False) and len(kinds) > 1:
        return (
            f"algorithm {algo.NAME!r} shares its networks across agents and needs agents of one observation "
            f"and action space; task {spec.name!r} has agents of different spaces"
        )
    if getattr(algo, "COOPERATIVE", False) and spec.competitive:
        return (
            f"algorithm {algo.NAME!r} is for cooperative tasks (one team); task {spec.name!r} has teams "
            f"{', '.join(n for n, _ in spec.teams)}"
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
