"""The functional multi-agent env protocol, compatible with JaxMARL's.

An env is a Python object holding only static configuration; all dynamic data lives in an explicit
``state`` pytree, so ``reset`` and ``step`` are pure and can be jitted and vmapped:

    obs, state = env.reset(key)
    obs, state, rewards, dones, infos = env.step(key, state, actions)

``obs``, ``actions``, ``rewards`` and ``dones`` are dicts keyed by agent name (``dones`` also holds
``"__all__"``). ``step`` auto-resets: when ``dones["__all__"]`` is true, the returned ``obs``/``state`` are
those of a fresh episode, and the last observation of the finished episode is in
``infos["terminal_obs"]`` (and its env state in ``infos["terminal_state"]``, from which centralised
critics take the global state a truncated episode bootstraps from). ``infos["truncated"]`` says whether
the episode ended by its time limit (so a learner still bootstraps) rather than by a true terminal state.

Starting from a stored state (used by model rollouts): ``obs, state = env.reset_to(state)``.

Beyond JaxMARL's API every env carries an :class:`EnvSpec` with typed per-agent spaces and the team
structure (who is a teammate, who is an opponent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from marlow.envs.spaces import Box, Discrete, MultiDiscrete, Space
from marlow.errors import ConfigError

Obs = dict[str, jax.Array]
Actions = dict[str, jax.Array]


@dataclass(frozen=True)
class EnvSpec:
    """Static description of a multi-agent task.

    ``teams`` maps a team name to its agents; agents in one team are teammates (real communication
    allowed), agents in other teams are opponents. ``shared_reward`` says whether the env gives every
    member of a team the same reward (cooperative tasks). ``episode_length`` is the time limit.
    ``num_states`` is set for tasks with a small finite state space that tabular algorithms can index:
    every agent's observation is then the one-hot of the state (a single-state game may observe a
    constant), so the state index is its argmax; ``None`` for continuous observations.

    ``action_masks``: whether the env's ``avail_actions(state)`` can rule actions out (SMAX-style
    available actions); False: every action is always available (the default ``avail_actions`` is all
    ones). ``global_state_dim``: the width of ``global_state(state)``, the input of centralised critics
    (MAPPO, HAPPO); ``None``: the task has no global state and says so (``global_state`` raises).
    ``episode_events``: ``(info key, metric name)`` pairs of per-step bool flags the env puts in its
    ``infos`` (SMAX's ``("won", "win_rate")``); the fraction of episodes in which the flag was set on
    some step is logged as ``eval/<metric name>`` (greedy evaluations) and ``train/<metric name>``
    (training episodes that ended in the chunk).
    """

    name: str
    agents: tuple[str, ...]
    obs_spaces: tuple[Space, ...]
    act_spaces: tuple[Space, ...]
    teams: tuple[tuple[str, tuple[str, ...]], ...]
    episode_length: int
    shared_reward: bool = False
    description: str = ""
    extra: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    num_states: int | None = None
    action_masks: bool = False
    global_state_dim: int | None = None
    episode_events: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        if not (len(self.agents) == len(self.obs_spaces) == len(self.act_spaces)):
            raise ValueError("agents, obs_spaces and act_spaces must have the same length")
        members = [a for _, team in self.teams for a in team]
        if sorted(members) != sorted(self.agents):
            raise ValueError(f"teams {self.teams} must partition the agents {self.agents}")
        if self.num_states is not None:
            dims = {s.flat_dim for s in self.obs_spaces}
            if self.num_states < 1 or not dims <= {self.num_states, 1}:
                raise ValueError(f"num_states={self.num_states} needs one-hot observations of that size")

    def state_index(self, obs: dict) -> jax.Array:
        """Index of the finite state behind a batch of observations (``num_states`` tasks only)."""
        if self.num_states is None:
            raise ValueError(f"task {self.name!r} has no finite state space")
        return jnp.argmax(obs[self.agents[0]], axis=-1).astype(jnp.int32)

    def state_obs(self, s: int) -> dict:
        """Every agent's observation ``[1, obs_dim]`` of finite state ``s`` (``num_states`` tasks only):
        the one-hot of ``s``, or the constant one of a one-wide observation."""
        if self.num_states is None:
            raise ValueError(f"task {self.name!r} has no finite state space")
        one_hot = jax.nn.one_hot(jnp.array([s]), self.num_states)
        return {
            a: one_hot if sp.flat_dim == self.num_states else jnp.ones((1, 1))
            for a, sp in zip(self.agents, self.obs_spaces, strict=True)
        }

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    def index(self, agent: str) -> int:
        return self.agents.index(agent)

    def obs_space(self, agent: str) -> Space:
        return self.obs_spaces[self.index(agent)]

    def act_space(self, agent: str) -> Space:
        return self.act_spaces[self.index(agent)]

    def obs_dim(self, agent: str) -> int:
        return self.obs_space(agent).flat_dim

    def team_of(self, agent: str) -> str:
        for name, team in self.teams:
            if agent in team:
                return name
        raise KeyError(agent)

    def teammates(self, agent: str) -> tuple[str, ...]:
        """Other agents of ``agent``'s team (excluding itself)."""
        team = dict(self.teams)[self.team_of(agent)]
        return tuple(a for a in team if a != agent)

    def opponents(self, agent: str) -> tuple[str, ...]:
        """Agents of other teams."""
        mine = self.team_of(agent)
        return tuple(a for name, team in self.teams if name != mine for a in team)

    @property
    def competitive(self) -> bool:
        return len(self.teams) > 1

    @property
    def action_kinds(self) -> frozenset[str]:
        return frozenset(s.kind for s in self.act_spaces)


class SpecSurface:
    """The JaxMARL-style accessors every env (JAX or host-side) derives from its ``spec``.

    A JaxMARL env assigns ``self.agents`` and ``self.num_agents`` in ``__init__``; that is allowed: the
    assigned values are read until ``spec`` is set (they must agree with it, which
    :mod:`marlow.envs.user` checks when it builds a user's env)."""

    spec: EnvSpec
    host_callbacks = False  # True: jitted steps call back into Python (their programs are not cached)

    def _from_spec(self, name: str):
        assigned = self.__dict__.get("_assigned", {})
        if name in assigned and getattr(self, "spec", None) is None:
            return assigned[name]
        return getattr(self.spec, name)

    def _assign(self, name: str, value) -> None:
        self.__dict__.setdefault("_assigned", {})[name] = value

    @property
    def agents(self) -> list[str]:
        return list(self._from_spec("agents"))

    @agents.setter
    def agents(self, value) -> None:
        self._assign("agents", list(value))

    @property
    def num_agents(self) -> int:
        return self._from_spec("num_agents")

    @num_agents.setter
    def num_agents(self, value) -> None:
        self._assign("num_agents", value)

    def observation_space(self, agent: str) -> Space:
        return self.spec.obs_space(agent)

    def action_space(self, agent: str) -> Space:
        return self.spec.act_space(agent)


class MultiAgentEnv(SpecSurface):
    """Base class of JAX envs. Subclasses set ``self.spec`` and implement ``reset``, ``step_env`` and
    ``get_obs``. ``step_env`` must not reset; it returns ``infos["truncated"]`` (bool scalar)."""

    is_jax = True

    # ---- to implement ---------------------------------------------------------------------------
    def reset(self, key: jax.Array) -> tuple[Obs, Any]:
        raise NotImplementedError

    def step_env(self, key: jax.Array, state: Any, actions: Actions):
        raise NotImplementedError

    def get_obs(self, state: Any) -> Obs:
        raise NotImplementedError

    # ---- optional (tasks that have them override; the spec says which) ----------------------------
    def avail_actions(self, state: Any) -> dict[str, jax.Array]:
        """Per agent, a bool mask of the actions available in ``state`` (``[n]`` for Discrete(n), the
        concatenated component masks ``[sum nvec]`` for MultiDiscrete; Box agents are not listed). The
        default: all available (``spec.action_masks`` False)."""
        return {
            a: jnp.ones((s.flat_dim,), jnp.bool_)
            for a, s in zip(self.spec.agents, self.spec.act_spaces, strict=True)
            if s.kind != "box"
        }

    def global_state(self, state: Any) -> jax.Array:
        """The global state ``[spec.global_state_dim]`` for centralised critics."""
        raise ConfigError(
            f"task {self.spec.name!r} has no global state (its spec's global_state_dim is None); a "
            "centralised critic can use the concatenated observations instead"
        )

    # ---- provided -------------------------------------------------------------------------------
    def reset_to(self, state: Any) -> tuple[Obs, Any]:
        """Start from a stored state (e.g. one sampled from a replay buffer for a model rollout)."""
        return self.get_obs(state), state

    def step(self, key: jax.Array, state: Any, actions: Actions):
        """One step with auto-reset (see module docstring)."""
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, rewards, dones, infos = self.step_env(key_step, state, actions)
        obs_re, state_re = self.reset(key_reset)
        done = dones["__all__"]
        state = jax.tree.map(lambda r, s: jnp.where(done, r, s), state_re, state_st)
        obs = jax.tree.map(lambda r, s: jnp.where(done, r, s), obs_re, obs_st)
        infos = dict(infos)
        infos["terminal_obs"] = obs_st
        infos["terminal_state"] = state_st
        infos.setdefault("truncated", jnp.asarray(False))
        return obs, state, rewards, dones, infos


def random_actions(spec: EnvSpec, key: jax.Array) -> Actions:
    keys = jax.random.split(key, spec.num_agents)
    return {a: s.sample(k) for a, s, k in zip(spec.agents, spec.act_spaces, keys, strict=True)}


def flat_actions(spec: EnvSpec, actions: dict) -> dict[str, jax.Array]:
    """Env-format actions -> flat (one-hot / float) actions, per agent."""
    return {a: s.to_flat(actions[a]) for a, s in zip(spec.agents, spec.act_spaces, strict=True)}


def share_team_rewards(spec: EnvSpec, rewards: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Every agent of a team receives the sum of its team's rewards (the AORPO/MADDPG code's
    ``shared_reward`` convention for cooperative MPE tasks)."""
    out = {}
    for _, team in spec.teams:
        total = sum(rewards[a] for a in team)
        for a in team:
            out[a] = total
    return out


__all__ = [
    "Box",
    "Discrete",
    "MultiDiscrete",
    "Space",
    "EnvSpec",
    "MultiAgentEnv",
    "flat_actions",
    "random_actions",
    "share_team_rewards",
]
