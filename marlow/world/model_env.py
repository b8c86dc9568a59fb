"""A learned (or any) transition function behind marlow's env API, so model rollouts run the same code as
real envs (AORPO paper Algorithm 1 lines 10-19; mbrl-lib's ``ModelEnv`` made multi-agent).

The env state is the joint observation plus a step counter (:class:`ModelState`); one step is

    next_obs, rewards = predict(key, obs, actions)          # s_{t+1} ~ T_hat(. | s_t, a_t^i, a_t^{-i})

where ``obs``/``actions``/``next_obs``/``rewards`` are dicts keyed by agent for **one** env (no batch
axis; the rollout engine vmaps ``step`` over the M start states, as the runner vmaps a real env). A
learned ensemble that draws one member per call then draws one per start state.

How learned parameters reach the env (no retracing per model update)
--------------------------------------------------------------------
``predict`` closes over the parameters, and the :class:`ModelEnv` is built *inside* the jitted function
that receives them, e.g. in an algorithm's ``update(state, batch, key)``::

    env = ModelEnv(spec, functools.partial(dynamics.step, state.dynamics_params))
    rollout = branched_rollout(key, env, env.start(start_obs), ...)

``state.dynamics_params`` is then a tracer of ``update``: the env object is rebuilt at trace time only,
so new parameters after each model update reuse the compiled program (``tests/test_model_env.py`` checks
that one trace serves two parameter sets). The env's state stays a plain per-env pytree that vmaps with
``in_axes=0`` like a real env's. Do not pass a ``ModelEnv`` holding concrete parameters as a *static*
argument of ``jax.jit``: that would compile once per parameter set.

Episode ends
------------
``predict`` may also return a third value, ``terminated`` (bool, one per env; a learned termination or
continuation head, e.g. MAMBA's): the step's ``dones`` are then true with ``infos["truncated"]`` false,
so a value target does not bootstrap there. Without it the model predicts no terminal states (MPE tasks
have none, and branched rollouts are much shorter than an episode), so ``dones`` only signal the time
limit: after ``spec.episode_length`` steps counted from :meth:`ModelEnv.start`, every done is true and
``infos["truncated"]`` is true. A learned model has no start-state distribution, so the auto-reset of the
env protocol starts the new episode *at the last predicted observation* (the counter goes back to 0, the
observation is kept; ``infos["terminal_obs"]`` holds it too). :meth:`ModelEnv.reset` therefore raises;
start rollouts with ``env.reset_to(env.start(obs))`` from stored observations.

An opaque model state
---------------------
A model with a state of its own beyond the observations (a recurrent latent, say) is built with
``stateful=True``: ``predict(key, latent, obs, actions) -> (latent, next_obs, rewards[, terminated])``,
and the latent lives in :attr:`ModelState.latent` (start it with ``env.start(obs, latent=...)``). The
rollout engine never looks inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from marlow.envs.api import Actions, EnvSpec, Obs, SpecSurface
from marlow.errors import ConfigError

Predict = Callable[[jax.Array, Obs, Actions], tuple[Obs, dict[str, jax.Array]]]
"""``predict(key, obs, actions) -> (next_obs, rewards)`` for one env (dicts keyed by agent)."""


@struct.dataclass
class ModelState:
    """State of a :class:`ModelEnv`: the joint observation and the steps taken in the current episode."""

    obs: dict[str, jax.Array]
    step: jax.Array  # int32
    latent: Any = None  # the model's own state (``stateful`` models), opaque to the env and the engine


class ModelEnv(SpecSurface):
    """A transition function ``predict`` exposed through the env API (see the module docstring).

    Args:
        spec: the real task's :class:`~marlow.envs.api.EnvSpec` (agents, spaces, teams, time limit).
        predict: ``predict(key, obs, actions) -> (next_obs, rewards)`` for one env; learned parameters
            are closed over (build the env inside the jitted function that receives them).
        batched: ``predict`` takes a whole batch (leading axis M on every obs/action/reward) and one key,
            and so do ``step``/``step_env`` (their arithmetic is elementwise); rollouts then call ``step``
            once per time step instead of vmapping it over the M envs. A learned ensemble needs this: its
            per-row member choice costs one member's forward pass per row only on a batch.
    """

    is_jax = True

    def __init__(self, spec: EnvSpec, predict: Predict, batched: bool = False, stateful: bool = False):
        if not callable(predict):
            raise ConfigError(f"ModelEnv needs a callable predict(key, obs, actions), got {predict!r}")
        self.spec = spec
        self.predict = predict
        self.batched = bool(batched)
        self.stateful = bool(stateful)

    # ---- starting ---------------------------------------------------------------------------------
    def start(self, obs: Obs, step: int | jax.Array = 0, latent: Any = None) -> ModelState:
        """A state at the stored joint observation ``obs`` (dict keyed by agent, with or without leading
        batch axes, e.g. ``[M, d_j]`` for M start states sampled from the real buffer). ``step`` is the
        number of steps already taken in the episode (0: the model's time limit counts from here)."""
        missing = set(self.spec.agents) - set(obs)
        if missing:
            raise ConfigError(f"start obs lacks agents {sorted(missing)}")
        first = self.spec.agents[0]
        nd = jnp.ndim(obs[first]) - len(self.spec.obs_space(first).shape)
        batch = jnp.shape(obs[first])[:nd]
        obs = {a: jnp.asarray(obs[a]) for a in self.spec.agents}
        if self.stateful and latent is None:
            raise ConfigError("a stateful ModelEnv starts from a latent: env.start(obs, latent=...)")
        return ModelState(obs=obs, step=jnp.broadcast_to(jnp.asarray(step, jnp.int32), batch), latent=latent)

    def reset(self, key: jax.Array):
        """Not available: a learned model has no start-state distribution."""
        raise ConfigError(
            "a ModelEnv cannot reset(key): it has no start states; use env.reset_to(env.start(stored_obs))"
        )

    def reset_to(self, state: ModelState) -> tuple[Obs, ModelState]:
        """Start from a stored state (build it with :meth:`start`)."""
        return state.obs, state

    def get_obs(self, state: ModelState) -> Obs:
        return state.obs

    # ---- stepping ---------------------------------------------------------------------------------
    def step_env(self, key: jax.Array, state: ModelState, actions: Actions):
        """One model step without the episode restart: ``(obs, state, rewards, dones, infos)``."""
        latent = state.latent
        if self.stateful:
            latent, *out = self.predict(key, state.latent, state.obs, actions)
        else:
            out = self.predict(key, state.obs, actions)
        if len(out) not in (2, 3):
            raise ValueError("predict must return (next_obs, rewards) or (next_obs, rewards, terminated)")
        next_obs, rewards = out[0], out[1]
        if set(next_obs) != set(self.spec.agents) or set(rewards) != set(self.spec.agents):
            raise ValueError(
                f"predict must return next_obs and rewards for agents {self.spec.agents}, got "
                f"{sorted(next_obs)} and {sorted(rewards)}"
            )
        # Keep the input dtypes so the state is a fixed-type scan carry.
        next_obs = {a: jnp.asarray(next_obs[a], state.obs[a].dtype) for a in self.spec.agents}
        rewards = {a: jnp.asarray(rewards[a], jnp.float32) for a in self.spec.agents}
        step = state.step + 1
        truncated = step >= self.spec.episode_length  # the time limit
        terminated = jnp.broadcast_to(jnp.asarray(out[2], jnp.bool_), step.shape) if len(out) == 3 else False
        done = truncated | terminated
        dones = {a: done for a in self.spec.agents}
        dones["__all__"] = done
        infos = {"truncated": truncated & ~jnp.asarray(terminated)}
        return next_obs, ModelState(obs=next_obs, step=step, latent=latent), rewards, dones, infos

    def step(self, key: jax.Array, state: ModelState, actions: Actions):
        """One step with the protocol's episode restart: at the time limit the counter restarts at 0 from
        the last predicted observation (also in ``infos["terminal_obs"]``)."""
        obs, new_state, rewards, dones, infos = self.step_env(key, state, actions)
        new_state = new_state.replace(step=jnp.where(dones["__all__"], 0, new_state.step))
        infos = dict(infos, terminal_obs=obs)
        return obs, new_state, rewards, dones, infos


__all__ = ["ModelEnv", "ModelState", "Predict"]
