"""Host-side adapter: train marlow's algorithms on any PettingZoo Parallel env.

:class:`PettingZooEnv` wraps a PettingZoo ``ParallelEnv`` behind the same *semantics* as marlow's JAX
API (see :mod:`marlow.envs.api`), but it runs on the host with numpy and is stateful, so it cannot be
jitted or vmapped (``is_jax = False``); algorithms drive it from a Python loop::

    env = make("pettingzoo:mpe2.simple_spread_v3", N=3, shared_reward=True)
    obs = env.reset(seed=0)
    obs, rewards, dones, infos = env.step(actions)

- ``obs`` maps every agent of the fixed ``spec.agents`` (PettingZoo's ``possible_agents``) to a flat
  float32 vector (Box observations are flattened; Discrete / MultiDiscrete observations are one-hot
  encoded). ``rewards`` maps every agent to a float32 scalar, ``dones`` every agent plus ``"__all__"``
  to a bool.
- ``step`` auto-resets: when the episode is over (every agent terminated or truncated, or the adapter's
  own ``episode_length`` limit is hit) the returned ``obs`` are the first observations of a fresh episode,
  reset with the next seed drawn from a numpy ``Generator`` seeded by :meth:`PettingZooEnv.reset`;
  ``infos["terminal_obs"]`` holds the last observations of the finished episode and
  ``infos["truncated"]`` is True when it ended by truncation rather than termination (some agent still in
  play was truncated, not terminated, on the last step, or the adapter's own time limit was hit). Both
  keys are present on every step (``terminal_obs`` equals ``obs`` and ``truncated`` is False mid-episode).
  PettingZoo's own per-agent infos are in ``infos["agent_infos"]``.
- Agents that leave before the episode ends (PettingZoo allows it): on the step an agent terminates
  or is truncated it gets its real last observation, its reward and ``dones[agent] = True``; from then
  until the episode ends its observation is zeros, its reward 0 and its done flag True, and no action is
  forwarded for it (actions given for it are ignored). An agent in ``possible_agents`` that is not
  (yet) in the env's ``agents`` is treated the same way.
- Teams are given explicitly or inferred from agent-name prefixes (the text before the last ``"_"``:
  ``adversary_0`` -> ``adversary``). ``team_reward`` says how rewards relate to teams: ``"individual"``
  (the default; each agent keeps its own reward, ``spec.shared_reward`` False), ``"sum"`` (every agent
  receives the sum of its team's rewards; ``shared_reward=True`` is the older spelling of this) or
  ``"given"`` (the env already hands every member of a team the same reward, as MA-MuJoCo does; the adapter
  passes it on unchanged, not multiplied by the team size, and raises :class:`~marlow.errors.ConfigError`
  if the members of a team ever get different rewards; agents that have left get their team's reward
  too). With ``"sum"`` or ``"given"`` ``spec.shared_reward`` is True.
- Global state: when the env implements PettingZoo's ``state()`` (a ``state_space``, or a ``state()`` that
  answers, before or after a first reset), ``spec.global_state_dim`` is its flat size,
  :meth:`PettingZooEnv.global_state` returns the current state as float32 ``[D]`` (after an auto-reset:
  the first state of the new episode) and every step's ``infos["terminal_global_state"]`` is the state the
  step reached, before any auto-reset (equal to ``global_state()`` mid-episode). Envs without ``state()``
  (PettingZoo's base class raises ``NotImplementedError``) have ``global_state_dim`` None, no
  ``terminal_global_state`` and a ``global_state()`` that raises ConfigError; so do envs whose ``state()``
  raises anything else before and after a first reset, with a warning that says so.
- Available actions: :meth:`PettingZooEnv.avail_actions` gives every non-Box agent an all-True bool mask
  ``[flat_dim]`` (``spec.action_masks`` False). PettingZoo's action masks (an ``"action_mask"`` entry of
  dict observations or of the infos) are not read; dict observations are rejected as unsupported spaces.

Spaces map as: ``Discrete(n)`` -> :class:`Discrete` (a nonzero ``start`` is rejected),
``MultiDiscrete`` (1-D, zero start) -> :class:`MultiDiscrete`, ``Box`` -> :class:`Box` (action boxes keep
their bounds and shape; observations become ``Box(-inf, inf, (d,))``). Any other space raises
:class:`UnsupportedSpaceError` (a ``ValueError`` and a :class:`~marlow.errors.ConfigError`).

Task strings: ``pettingzoo:module.path:factory`` imports ``module.path`` and calls ``factory(**kwargs)``;
``pettingzoo:module.path`` calls ``module.path.parallel_env(**kwargs)``. The adapter's own keyword
arguments (``teams``, ``shared_reward``, ``team_reward``, ``episode_length``) are taken out of ``kwargs``
first; use ``env_kwargs={...}`` to pass a factory argument with one of those names. An option neither
takes is refused. The env is reset and stepped once when built (:func:`check_pettingzoo_env`), so that
outputs the adapter cannot read (the old four-value ``step``, a missing truncation) fail at once.

The registered task ``pettingzoo/mpe2_simple_spread`` wraps mpe2's ``simple_spread_v3`` (N=3,
local_ratio=0.5, max_cycles=25, discrete actions, one team with a shared reward). It is the host-side
counterpart of the JAX task ``mpe/simple_spread``: the two have the same observation layout, physics
(including integration order and contact forces), collision counting, reward mixing and summing over the
team, and 25-step episodes, so from the same state and actions they give the same observations and
rewards (``tests/test_envs_pettingzoo.py`` checks whole episodes, with and without collisions). The only
differences: mpe2 keeps float64 state where the JAX version uses float32 (they agree to ~1e-6 over an
episode), and the two draw initial positions from different random generators, so equal seeds do not
give equal episodes. mpe2's ``state()`` (all agents' observations, concatenated: 54 numbers) is the global
state, as in the JAX task.

The MA-MuJoCo tasks (``mamujoco/...``, :mod:`marlow.envs.mamujoco`) are also built on this adapter.

Importing this module is cheap: pettingzoo, gymnasium and mpe2 are imported on first use.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from marlow.envs.api import EnvSpec, SpecSurface
from marlow.envs.registry import accepted_options, check_options, register, register_prefix
from marlow.envs.spaces import Box, Discrete, MultiDiscrete, Space
from marlow.envs.user import load_factory, split_task
from marlow.errors import ConfigError
from marlow.schema import ranges

_ADAPTER_KWARGS = ("teams", "shared_reward", "team_reward", "episode_length")
TEAM_REWARDS = ("individual", "sum", "given")
_EPISODE_LENGTH_ATTRS = ("max_cycles", "max_steps", "max_episode_steps", "episode_length")


class UnsupportedSpaceError(ConfigError, ValueError):
    """A PettingZoo space marlow cannot represent (e.g. Dict, Tuple, Graph)."""


# ---- spaces -------------------------------------------------------------------------------------


def _space_error(agent: str, which: str, space, why: str = "") -> UnsupportedSpaceError:
    why = f" ({why})" if why else " (supported: Discrete, MultiDiscrete, Box)"
    return UnsupportedSpaceError(f"agent {agent!r}: unsupported {which} space {space!r}{why}")


def _check_discrete_start(agent: str, which: str, space) -> None:
    start = np.asarray(getattr(space, "start", 0))
    if np.any(start != 0):
        raise _space_error(agent, which, space, f"nonzero start {start.tolist()} is not supported")


def convert_action_space(agent: str, space) -> Space:
    """gymnasium action space -> marlow space."""
    from gymnasium import spaces as gs

    if isinstance(space, gs.Discrete):
        _check_discrete_start(agent, "action", space)
        return Discrete(int(space.n))
    if isinstance(space, gs.MultiDiscrete):
        _check_discrete_start(agent, "action", space)
        if np.ndim(space.nvec) != 1:
            raise _space_error(agent, "action", space, "only 1-D nvec is supported")
        return MultiDiscrete(tuple(int(n) for n in space.nvec))
    if isinstance(space, gs.Box):
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        if np.all(low == low.flat[0]) and np.all(high == high.flat[0]):
            return Box(float(low.flat[0]), float(high.flat[0]), tuple(space.shape))
        return Box(tuple(low.reshape(-1).tolist()), tuple(high.reshape(-1).tolist()), tuple(space.shape))
    raise _space_error(agent, "action", space)


def _obs_converter(agent: str, space) -> tuple[Space, Callable[[Any], np.ndarray]]:
    """gymnasium observation space -> (flat marlow Box, function env obs -> flat float32 vector)."""
    from gymnasium import spaces as gs

    if isinstance(space, gs.Box):
        d = int(np.prod(space.shape, dtype=np.int64))
        return Box(-np.inf, np.inf, (d,)), lambda o: np.asarray(o, np.float32).reshape(d)
    if isinstance(space, gs.Discrete):
        _check_discrete_start(agent, "observation", space)
        n = int(space.n)
        eye = np.eye(n, dtype=np.float32)
        return Box(0.0, 1.0, (n,)), lambda o: eye[int(np.asarray(o).reshape(()))].copy()
    if isinstance(space, gs.MultiDiscrete):
        _check_discrete_start(agent, "observation", space)
        nvec = [int(n) for n in np.asarray(space.nvec).reshape(-1)]
        offsets = np.cumsum([0] + nvec[:-1])
        total = sum(nvec)

        def one_hot(o):
            v = np.zeros(total, np.float32)
            v[offsets + np.asarray(o, np.int64).reshape(-1)] = 1.0
            return v

        return Box(0.0, 1.0, (total,)), one_hot
    raise _space_error(agent, "observation", space)


def _action_converter(gym_space, space: Space) -> Callable[[Any], Any]:
    """marlow env-format action (numpy / jax / python) -> what the PettingZoo env expects."""
    if isinstance(space, Discrete):
        return lambda a: int(np.asarray(a).reshape(()))
    if isinstance(space, MultiDiscrete):
        shape = space.shape
        return lambda a: np.asarray(a, np.int64).reshape(shape)
    dtype = gym_space.dtype if gym_space.dtype is not None else np.float32
    shape = space.shape
    return lambda a: np.asarray(a, dtype).reshape(shape)


# ---- teams and rewards --------------------------------------------------------------------------


def infer_teams(agents) -> dict[str, list[str]]:
    """Group agents by name prefix: the text before the last ``"_"`` (the whole name if none)."""
    teams: dict[str, list[str]] = {}
    for a in agents:
        teams.setdefault(a.rsplit("_", 1)[0] if "_" in a else a, []).append(a)
    return teams


def share_team_rewards_np(spec: EnvSpec, rewards: dict[str, np.floating]) -> dict[str, np.float32]:
    """numpy version of :func:`marlow.envs.api.share_team_rewards`: each agent gets its team's sum."""
    out = {}
    for _, team in spec.teams:
        total = np.float32(sum(float(rewards[a]) for a in team))
        for a in team:
            out[a] = total
    return out


def given_team_rewards_np(spec: EnvSpec, rewards: dict[str, np.floating], active) -> dict[str, np.float32]:
    """``team_reward="given"``: the reward the env gave the ``active`` members of each team (they must all
    have got the same), handed to every member of the team (0 when none was active)."""
    out = {}
    for name, team in spec.teams:
        given = {float(rewards[a]) for a in team if a in active}
        if len(given) > 1:
            raise ConfigError(
                f"{spec.name}: team_reward='given' but the members of team {name!r} got different rewards "
                f"{sorted(given)}; use team_reward='individual' or 'sum'"
            )
        r = np.float32(given.pop() if given else 0.0)
        for a in team:
            out[a] = r
    return out


# ---- the adapter --------------------------------------------------------------------------------


def _is_parallel_env(env) -> bool:
    from pettingzoo import AECEnv, ParallelEnv

    if isinstance(env, AECEnv):
        return False
    if isinstance(env, ParallelEnv):
        return True
    methods = ("reset", "step", "observation_space", "action_space")
    return all(callable(getattr(env, m, None)) for m in methods)


def _state_dim(pz_env) -> int | None:
    """Flat size of the env's PettingZoo ``state()``; None when it has none (see the module docstring)."""
    from pettingzoo import ParallelEnv

    fn = getattr(pz_env, "state", None)
    if not callable(fn) or getattr(type(pz_env), "state", None) is ParallelEnv.state:
        return None
    try:
        space = pz_env.state_space
    except (AttributeError, NotImplementedError):
        space = None
    shape = getattr(space, "shape", None)
    if shape is not None:
        return int(np.prod(shape, dtype=np.int64))
    for first_reset in (False, True):
        try:
            if first_reset:
                pz_env.reset(seed=0)
            return int(np.asarray(fn()).size)
        except NotImplementedError:
            return None
        except Exception as e:  # some envs only answer after a first reset: try once more
            if first_reset:  # said, not swallowed: a centralised critic then sees the joint observation
                warnings.warn(
                    f"{type(pz_env).__name__}.state() raised {type(e).__name__}: {e}; marlow runs the env "
                    "without a global state (centralised critics use the joint observation)",
                    stacklevel=3,
                )
                return None
    return None


def _infer_episode_length(pz_env) -> int | None:
    for obj in (pz_env, getattr(pz_env, "unwrapped", None), getattr(pz_env, "aec_env", None)):
        for attr in _EPISODE_LENGTH_ATTRS:
            v = getattr(obj, attr, None) if obj is not None else None
            if isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0:
                return int(v)
    return None


class PettingZooEnv(SpecSurface):
    """Host-side (numpy, non-jitted) adapter around a PettingZoo Parallel env; see the module docstring.

    ``episode_length``: the spec's time limit. When given, the adapter also enforces it (truncating the
    episode after that many steps); when omitted it is read from the env's ``max_cycles`` /
    ``max_steps`` / ``max_episode_steps`` / ``episode_length`` attribute and the env is trusted to end
    its episodes itself.

    ``team_reward``: ``"individual"``, ``"sum"`` or ``"given"`` (module docstring); None: ``"sum"`` when
    ``shared_reward`` is True, else ``"individual"``. ``shared_reward=True`` with another ``team_reward``
    is refused. ``description``: the spec's (default: the env's PettingZoo name).
    """

    is_jax = False

    def __init__(
        self,
        pz_env,
        *,
        name: str,
        teams: dict[str, list[str]] | None = None,
        shared_reward: bool = False,
        team_reward: str | None = None,
        episode_length: int | None = None,
        description: str | None = None,
    ):
        if not _is_parallel_env(pz_env):
            raise ConfigError(
                f"{name}: expected a PettingZoo ParallelEnv, got {type(pz_env).__name__} "
                "(wrap AEC envs with pettingzoo.utils.conversions.aec_to_parallel)"
            )
        try:
            agents = tuple(pz_env.possible_agents)
        except AttributeError:
            raise ConfigError(f"{name}: the env has no possible_agents") from None
        if not agents:
            raise ConfigError(f"{name}: the env has no agents")
        self.pz_env = pz_env

        obs_spaces, act_spaces = [], []
        self._obs_fns: dict[str, Callable] = {}
        self._act_fns: dict[str, Callable] = {}
        for a in agents:
            obs_space, self._obs_fns[a] = _obs_converter(a, pz_env.observation_space(a))
            gym_act = pz_env.action_space(a)
            act_space = convert_action_space(a, gym_act)
            self._act_fns[a] = _action_converter(gym_act, act_space)
            obs_spaces.append(obs_space)
            act_spaces.append(act_space)

        if team_reward is None:
            team_reward = "sum" if shared_reward else "individual"
        ranges.check_choice("task.team_reward", team_reward, TEAM_REWARDS)
        if shared_reward and team_reward != "sum":
            raise ConfigError(
                f"{name}: shared_reward=True sums the team's rewards; it conflicts with "
                f"team_reward={team_reward!r}"
            )
        self.team_reward = team_reward
        if teams is None:
            teams = infer_teams(agents)
        self._time_limit = int(episode_length) if episode_length is not None else None
        if episode_length is None:
            episode_length = _infer_episode_length(pz_env)
            if episode_length is None:
                raise ConfigError(
                    f"{name}: cannot read the episode length from the env; pass episode_length=<steps>"
                )
        try:
            self.spec = EnvSpec(
                name=name,
                agents=agents,
                obs_spaces=tuple(obs_spaces),
                act_spaces=tuple(act_spaces),
                teams=tuple((t, tuple(members)) for t, members in teams.items()),
                episode_length=int(episode_length),
                shared_reward=team_reward != "individual",
                global_state_dim=_state_dim(pz_env),
                description=description
                or f"PettingZoo {getattr(pz_env, 'metadata', {}).get('name', type(pz_env).__name__)}"
                " (host-side adapter)",
            )
        except ValueError as e:
            raise ConfigError(f"{name}: {e}") from None
        self._zeros = {a: np.zeros(s.flat_dim, np.float32) for a, s in zip(agents, obs_spaces, strict=True)}
        self._masks = {
            a: np.ones(s.flat_dim, np.bool_)
            for a, s in zip(agents, act_spaces, strict=True)
            if s.kind != "box"
        }
        self._rng: np.random.Generator | None = None
        self._active: set[str] = set()
        self._t = 0

    # ---- helpers ----------------------------------------------------------------------------------
    def _next_seed(self) -> int:
        return int(self._rng.integers(0, 2**31 - 1))

    def _flat_obs(self, raw: dict) -> dict[str, np.ndarray]:
        return {
            a: self._obs_fns[a](raw[a]) if a in raw and a in self._active else self._zeros[a].copy()
            for a in self.spec.agents
        }

    def _state(self) -> np.ndarray:
        return np.asarray(self.pz_env.state(), np.float32).reshape(self.spec.global_state_dim)

    def _reset_pz(self) -> dict[str, np.ndarray]:
        out = self.pz_env.reset(seed=self._next_seed())
        raw = out[0] if isinstance(out, tuple) else out
        live = getattr(self.pz_env, "agents", None)
        self._active = set(live if live is not None else raw) & set(self.spec.agents)
        self._t = 0
        return self._flat_obs(raw)

    # ---- API --------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Start a new episode. ``seed`` seeds the generator of this and all later auto-reset seeds."""
        self._rng = np.random.default_rng(seed)
        return self._reset_pz()

    def step(self, actions: dict[str, Any]):
        """One step with auto-reset; returns ``(obs, rewards, dones, infos)`` (see the module docstring)."""
        if self._rng is None:
            raise RuntimeError("call reset() before step()")
        pz_actions = {}
        for a in self.spec.agents:
            if a in self._active:
                if a not in actions:
                    raise KeyError(f"no action for agent {a!r}")
                pz_actions[a] = self._act_fns[a](actions[a])
        raw_obs, raw_rew, term, trunc, raw_infos = self.pz_env.step(pz_actions)
        self._t += 1

        ended_term = {a for a in self._active if term.get(a, False)}
        ended_trunc = {a for a in self._active if trunc.get(a, False) and a not in ended_term}
        was_active = self._active
        # agents that joined this step (in the output, not done) become active
        new = set(raw_obs) & set(self._zeros) - was_active
        joined = {a for a in new if not (term.get(a) or trunc.get(a))}
        seen = was_active | joined
        obs = {
            a: self._obs_fns[a](raw_obs[a]) if a in raw_obs and a in seen else self._zeros[a].copy()
            for a in self.spec.agents
        }
        rewards = {a: np.float32(raw_rew.get(a, 0.0) if a in was_active else 0.0) for a in self.spec.agents}
        self._active = (was_active - ended_term - ended_trunc) | joined
        live = getattr(self.pz_env, "agents", None)
        if live is not None and not live:
            self._active = set()

        truncated = bool(ended_trunc)
        over = not self._active
        if not over and self._time_limit is not None and self._t >= self._time_limit:
            over, truncated = True, True
        if self.team_reward == "sum":
            rewards = share_team_rewards_np(self.spec, rewards)
        elif self.team_reward == "given":
            rewards = given_team_rewards_np(self.spec, rewards, was_active)

        dones = {a: over or a not in self._active for a in self.spec.agents}
        dones["__all__"] = over
        infos: dict[str, Any] = {"agent_infos": dict(raw_infos) if raw_infos else {}}
        infos["terminal_obs"] = obs
        infos["truncated"] = truncated if over else False
        if self.spec.global_state_dim is not None:
            infos["terminal_global_state"] = self._state()
        if over:
            obs = self._reset_pz()
        else:
            obs = {a: v.copy() for a, v in obs.items()}
        return obs, rewards, dones, infos

    def global_state(self) -> np.ndarray:
        """The env's current global state, float32 ``[spec.global_state_dim]`` (module docstring)."""
        if self.spec.global_state_dim is None:
            raise ConfigError(
                f"task {self.spec.name!r} has no global state (its PettingZoo env implements no state()); a "
                "centralised critic can use the concatenated observations instead"
            )
        return self._state()

    def avail_actions(self) -> dict[str, np.ndarray]:
        """Per non-Box agent, an all-True bool mask ``[flat_dim]`` (PettingZoo masks are not read)."""
        return {a: m.copy() for a, m in self._masks.items()}

    def render(self):
        return self.pz_env.render()

    def close(self):
        self.pz_env.close()


# ---- construction from a task string ------------------------------------------------------------


def make_pettingzoo(task: str, **kwargs) -> PettingZooEnv:
    """Build the adapter for ``pettingzoo:module.path[:factory]``; see the module docstring."""
    module_name, factory_name = split_task(task, "pettingzoo:", "parallel_env", "PettingZoo")
    adapter_kwargs = {k: kwargs.pop(k) for k in _ADAPTER_KWARGS if k in kwargs}
    env_kwargs = dict(kwargs.pop("env_kwargs", None) or {})
    env_kwargs.update(kwargs)
    factory = load_factory(task, module_name, factory_name)
    accepted = accepted_options(factory)
    if accepted is not None:
        check_options(task, env_kwargs, (*accepted, *_ADAPTER_KWARGS, "env_kwargs"))
    try:
        pz_env = factory(**env_kwargs)
    except TypeError as e:
        raise ConfigError(f"{task}: bad arguments for {module_name}.{factory_name}: {e}") from None
    if not _is_parallel_env(pz_env):
        raise ConfigError(
            f"{task}: {module_name}.{factory_name}() returned {type(pz_env).__name__}, not a PettingZoo "
            "ParallelEnv"
        )
    env = PettingZooEnv(pz_env, name=task, **adapter_kwargs)
    check_pettingzoo_env(task, pz_env)
    return env


def check_pettingzoo_env(task: str, pz_env) -> None:
    """Reset a user's PettingZoo env and step it once (sampled actions) on the host, and check what the
    adapter reads: the Parallel API's five step outputs, a reward, termination and truncation for every
    agent that acted, and observations of their spaces' sizes. The first problem is a one-line ConfigError."""

    def fail(what: str, fix: str):
        raise ConfigError(f"{task}: user env {what}: {fix}")

    out = pz_env.reset(seed=0)
    obs = out[0] if isinstance(out, tuple) else out
    acting = list(getattr(pz_env, "agents", None) or obs)
    out = pz_env.step({a: pz_env.action_space(a).sample() for a in acting})
    if not (isinstance(out, tuple) and len(out) == 5):
        fail(
            "step() does not return 5 values",
            "return (observations, rewards, terminations, truncations, infos), PettingZoo's Parallel API",
        )
    for what, d in zip(("rewards", "terminations", "truncations"), out[1:4], strict=True):
        missing = [a for a in acting if not isinstance(d, dict) or a not in d]
        if missing:
            why = " so time-limit ends are bootstrapped" if what == "truncations" else ""
            fail(f"step() {what} has no entry for {missing[0]!r}", f"return one per agent that acted{why}")
    for when, d in (("reset()", obs), ("step()", out[0])):
        if not isinstance(d, dict):
            fail(f"{when} observations are a {type(d).__name__}", "return a dict keyed by agent")
        for a in set(d) & set(acting):
            shape = pz_env.observation_space(a).shape
            if np.size(d[a]) != np.prod(shape):
                fail(f"{when} observation of {a!r} has shape {np.shape(d[a])}", f"its space's is {shape}")


register_prefix("pettingzoo:", make_pettingzoo)


@register("pettingzoo/mpe2_simple_spread")
def mpe2_simple_spread(
    N: int = 3, local_ratio: float = 0.5, max_cycles: int = 25, continuous_actions: bool = False
) -> PettingZooEnv:
    """Example PettingZoo task: mpe2 simple_spread_v3 (host-side, one team, shared reward)."""
    try:
        from mpe2 import simple_spread_v3
    except ImportError as e:
        raise ConfigError(f"pettingzoo/mpe2_simple_spread needs the mpe2 package ({e})") from None
    pz_env = simple_spread_v3.parallel_env(
        N=N, local_ratio=local_ratio, max_cycles=max_cycles, continuous_actions=continuous_actions
    )
    return PettingZooEnv(
        pz_env,
        name="pettingzoo/mpe2_simple_spread",
        teams={"team": list(pz_env.possible_agents)},
        team_reward="sum",
        episode_length=max_cycles,
    )


__all__ = [
    "PettingZooEnv",
    "UnsupportedSpaceError",
    "TEAM_REWARDS",
    "check_pettingzoo_env",
    "convert_action_space",
    "given_team_rewards_np",
    "infer_teams",
    "make_pettingzoo",
    "mpe2_simple_spread",
    "share_team_rewards_np",
]
