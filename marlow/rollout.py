"""The rollout engine: the one "choose actions, step the env" loop of marlow.

Training collection, greedy evaluation, cross-play, AORPO's branched model rollouts, the compounding-error
measurement and Teammate Lookahead's rounds in its learned team model are all calls of :func:`collect`.
MAMBA's and MAG's imagination is not (:meth:`marlow.algos.model_based.mamba.Algorithm.imagine`, a scan of
its own): it steps the world model's latent state (an RSSM state per agent, whose features the actor
reads), not observations, so there is no env behind the protocol to reset and no episode end inside its
fixed horizon, and what each step keeps (latent features, logits, available actions, predicted reward
and continuation) comes from the latent model, not from an env step. The engine depends on the env
protocol only (:mod:`marlow.envs.api`): a real JAX env, a learned model behind the same protocol
(:class:`marlow.world.model_env.ModelEnv`, whose state is opaque to the engine) or any other env.

A *policy* is a pure function

    policy(pstate, obs, t, key) -> (pstate, actions, extras)

of an opaque policy state ``pstate`` (a recurrent state, or ``None``; ``collect``'s ``reset_pstate``
resets it where an episode ended), the batched joint observation
``obs`` (agent -> ``[B, ...]``), the step index ``t`` (int32, 0-based, traced) and a key. ``actions`` are
env-format actions (agent -> ``[B, ...]``); ``extras`` is any pytree of per-step outputs the learner
wants to keep (the behaviour policy's log-probabilities and values for PPO), stored in
:attr:`Trajectory.extras`.

The result is a :class:`Trajectory` with leaves ``[T, B, ...]``. ``terminated`` and ``truncated`` are
kept apart: a value target bootstraps from ``next_obs`` where an episode was truncated by its time limit
and not where it terminated. ``next_obs`` is the observation each step reached, i.e. the finished
episode's last observation where an episode ended (the env auto-resets; ``obs`` of the next step is then
the new episode's first).

Env information. With ``Options(env_info=True)`` the policy is called as ``policy(pstate, obs, t, key, info)``
with ``info = {"avail": agent -> bool [B, n], "global_state": [B, D]}``: the available-action masks of the
current states (``env.avail_actions``) and, for tasks with a global state (``spec.global_state_dim``), the
global state (``env.global_state``). The trajectory keeps them in :attr:`Trajectory.info`, with
``"next_global_state"``, the global state each step reached (of ``infos["terminal_state"]`` where an
episode ended), so a centralised critic bootstraps a truncated episode from its last state.

Keys. By default the key is carried through the scan and split as ``key, k_act, k_env = split(key, 3)``
at every step (``k_env`` split over the B envs); the final key is returned so the caller can continue
the stream. ``Options(step_keys=True)`` instead takes ``key`` as ``[T]`` per-step keys, each split as
``k_act, k_env = split(key_t)`` (the evaluation stream, whose keys do not depend on anything before).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

Policy = Callable[[Any, dict, jax.Array, jax.Array], tuple[Any, dict, Any]]
"""``policy(pstate, obs, t, key) -> (pstate, actions, extras)`` (module docstring)."""


@struct.dataclass
class EnvCarry:
    """The part of a rollout that continues across :func:`collect` calls: ``B`` env states, their current
    observations (agent -> ``[B, ...]``) and the policy state."""

    env_state: Any
    obs: dict
    pstate: Any = None


@struct.dataclass
class Trajectory:
    """``T`` steps of ``B`` envs; every leaf ``[T, B, ...]``.

    obs, actions, rewards, next_obs: dicts keyed by agent (actions in the env's format).
    terminated: bool, the episode reached a true terminal state at this step (no bootstrap).
    truncated: bool, the episode ended by its time limit at this step (bootstrap from ``next_obs``).
    valid: bool, the step belongs to the requested horizon (``collect``'s ``horizon``; all true otherwise).
    extras: the policy's per-step extras.
    events: the task's episode events (``spec.episode_events``, e.g. SMAX's ``won``): info key -> bool
        ``[T, B]``, set on the step the event happened (empty dict for tasks without events).
    info: with ``Options(env_info=True)``: ``avail`` (agent -> bool ``[T, B, n]``) and, for tasks
        with a global state, ``global_state`` and ``next_global_state`` (``[T, B, D]``); else None.
    states: the env states *before* each step (only with ``record_states``; else None).
    """

    obs: dict
    actions: dict
    rewards: dict
    next_obs: dict
    terminated: jax.Array
    truncated: jax.Array
    valid: jax.Array
    extras: Any = None
    states: Any = None
    info: Any = None
    events: Any = None

    @property
    def done(self) -> jax.Array:
        """The episode ended at this step (terminated or truncated)."""
        return self.terminated | self.truncated

    @property
    def length(self) -> int:
        return self.valid.shape[0]

    @property
    def num_envs(self) -> int:
        return self.valid.shape[1]


def reset(env, key: jax.Array, num_envs: int, pstate: Any = None) -> EnvCarry:
    """``num_envs`` fresh episodes of a JAX env, reset with ``split(key, num_envs)``. Weakly typed leaves
    of the env state (SMAX's step counter, say) are made strongly typed: after a step they are strong, so
    a jitted chunk would otherwise compile twice, once for the state ``reset`` made and once for its own."""
    obs, state = jax.vmap(env.reset)(jax.random.split(key, num_envs))
    state = jax.tree.map(lambda x: jax.lax.convert_element_type(x, jnp.asarray(x).dtype), state)
    return EnvCarry(state, obs, pstate)


def from_states(env, states: Any, pstate: Any = None) -> EnvCarry:
    """Start from stored env states ``[B]`` (``env.reset_to``; a batched ModelEnv takes the batch)."""
    if getattr(env, "batched", False):
        obs, states = env.reset_to(states)
    else:
        obs, states = jax.vmap(env.reset_to)(states)
    return EnvCarry(states, obs, pstate)


def num_envs_of(carry: EnvCarry) -> int:
    return jax.tree.leaves(carry.obs)[0].shape[0]


def _env_step(env, key, state, actions, num_envs: int, auto_reset: bool):
    """One step of all ``num_envs`` envs: vmapped over them, or one call of a batched env."""
    step = env.step if auto_reset else env.step_env
    if getattr(env, "batched", False):
        return step(key, state, actions)
    return jax.vmap(step)(jax.random.split(key, num_envs), state, actions)


def env_info_at(env, states: Any) -> dict:
    """The policy's env information at ``states`` ``[B]`` (module docstring): masks and global state."""
    if getattr(env, "batched", False):
        raise ValueError("env information (masks, global state) is not defined for batched model envs")
    info = {"avail": jax.vmap(env.avail_actions)(states)}
    if env.spec.global_state_dim is not None:
        info["global_state"] = jax.vmap(env.global_state)(states)
    return info


class Options(NamedTuple):
    """How :func:`collect` runs (all static but ``t0`` and ``horizon``); the defaults are a training
    collection's.

    - ``t0``: the step index of the first step (``t`` passed to the policy is ``t0 + i``).
    - ``horizon``: steps ``t >= horizon`` (relative to ``t0``) are computed but marked invalid (a traced
      rollout length inside a static scan, e.g. AORPO's k <= k_max); None: all valid.
    - ``step_keys``: ``key`` holds one key per step (module docstring).
    - ``auto_reset``: step with ``env.step`` (auto-reset at episode ends); False uses ``env.step_env``.
    - ``record_states``: keep the env state before every step in :attr:`Trajectory.states`.
    - ``env_info``: pass the masks and global state to the policy and keep them (module docstring).
    - ``reset_pstate``: ``reset_pstate(pstate, done) -> pstate`` after every step (``done``: bool ``[B]``,
      the episode ended), so a recurrent policy starts each new episode from its initial state.
    """

    t0: int | jax.Array = 0
    horizon: int | jax.Array | None = None
    step_keys: bool = False
    auto_reset: bool = True
    record_states: bool = False
    env_info: bool = False
    reset_pstate: Callable[[Any, jax.Array], Any] | None = None


TRAINING = Options()
"""A training collection's options (:class:`Options`' defaults)."""


def collect(
    env, policy: Policy, carry: EnvCarry, key: jax.Array, steps: int, opts: Options = TRAINING
) -> tuple[EnvCarry, jax.Array, Trajectory]:
    """Run ``policy`` in ``env`` for ``steps`` (static) steps from ``carry``, as ``opts`` say.

    Args:
        env: an env with the marlow protocol (``step``/``step_env``; ``batched`` envs step all B at once).
        policy: ``policy(pstate, obs, t, key) -> (pstate, actions, extras)`` (module docstring).
        carry: the env states, observations and policy state to start from (:func:`reset`,
            :func:`from_states`, or the carry a previous call returned).
        key: a key, carried and split per step; ``[steps]`` per-step keys with ``opts.step_keys``.
        steps: the scan length T.
        opts: :class:`Options`.

    Returns ``(carry, key, trajectory)``: the carry after the last step, the next key of the carried
    stream (``key`` unchanged with ``step_keys``) and the :class:`Trajectory` ``[T, B, ...]``.
    """
    t0, horizon, step_keys, auto_reset, record_states, env_info, reset_pstate = opts
    b = num_envs_of(carry)

    def body(inner, xs):
        c, key = inner
        t, k_step = xs
        if step_keys:
            k_act, k_env = jax.random.split(k_step)
        else:
            key, k_act, k_env = jax.random.split(key, 3)
        if env_info:
            info = env_info_at(env, c.env_state)
            pstate, actions, extras = policy(c.pstate, c.obs, t, k_act, info)
        else:
            pstate, actions, extras = policy(c.pstate, c.obs, t, k_act)
        obs, state, rewards, dones, infos = _env_step(env, k_env, c.env_state, actions, b, auto_reset)
        done = jnp.broadcast_to(jnp.asarray(dones["__all__"], jnp.bool_), (b,))
        truncated = jnp.broadcast_to(jnp.asarray(infos.get("truncated", False), jnp.bool_), (b,))
        next_obs = infos["terminal_obs"] if auto_reset else obs
        if reset_pstate is not None:
            pstate = reset_pstate(pstate, done)
        out = {
            "obs": c.obs,
            "actions": actions,
            "rewards": rewards,
            "next_obs": next_obs,
            "terminated": done & ~truncated,
            "truncated": done & truncated,
            "extras": extras,
            "events": {
                k: jnp.broadcast_to(jnp.asarray(infos.get(k, False), jnp.bool_), (b,))
                for k, _ in getattr(getattr(env, "spec", None), "episode_events", ())
            },
        }
        if record_states:
            out["states"] = c.env_state
        if env_info:
            if "global_state" in info:
                reached = infos["terminal_state"] if auto_reset else state
                info = dict(info, next_global_state=jax.vmap(env.global_state)(reached))
            out["info"] = info
        return (EnvCarry(state, obs, pstate), key), out

    ts = jnp.asarray(t0, jnp.int32) + jnp.arange(steps, dtype=jnp.int32)
    per_step = key if step_keys else jnp.zeros((steps,), jnp.int32)
    (carry, key_out), out = jax.lax.scan(body, (carry, key), (ts, per_step))
    rel = jnp.arange(steps)
    valid = rel < (steps if horizon is None else jnp.asarray(horizon, jnp.int32))
    traj = Trajectory(
        obs=out["obs"],
        actions=out["actions"],
        rewards=out["rewards"],
        next_obs=out["next_obs"],
        terminated=out["terminated"],
        truncated=out["truncated"],
        valid=jnp.broadcast_to(valid[:, None], (steps, b)),
        extras=out["extras"],
        states=out.get("states"),
        info=out.get("info"),
        events=out["events"],
    )
    return carry, key_out, traj


def stateless(act: Callable[..., dict], env_info: bool = False) -> Policy:
    """A :data:`Policy` from ``act(obs, key) -> actions`` (no policy state, no extras); with ``env_info``
    from ``act(obs, key, info)``, for ``collect(..., Options(env_info=True))``."""
    if env_info:
        return lambda pstate, obs, t, key, info: (pstate, act(obs, key, info), None)
    return lambda pstate, obs, t, key: (pstate, act(obs, key), None)


def episode_mask(traj: Trajectory) -> jax.Array:
    """float ``[T, B]``: 1 while the episode that was running at step 0 has not ended before step t (the
    steps of each env's first episode; an evaluation's episodes start at step 0)."""
    ended_before = jnp.cumsum(traj.done.astype(jnp.int32), axis=0) - traj.done.astype(jnp.int32)
    return (ended_before == 0).astype(jnp.float32)


def transitions(traj: Trajectory, flat: bool = True) -> dict[str, Any]:
    """The replay format of off-policy learners: obs, actions, rewards, next_obs and ``done`` = terminated
    (float; truncation bootstraps), flattened time-major to ``[T * B, ...]`` (``flat``) or ``[T, B, ...]``."""
    trans = {
        "obs": traj.obs,
        "actions": traj.actions,
        "rewards": traj.rewards,
        "next_obs": traj.next_obs,
        "done": traj.terminated.astype(jnp.float32),
    }
    return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), trans) if flat else trans


__all__ = [
    "EnvCarry",
    "Policy",
    "Trajectory",
    "collect",
    "env_info_at",
    "episode_mask",
    "from_states",
    "num_envs_of",
    "reset",
    "stateless",
    "transitions",
]
