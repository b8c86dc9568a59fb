"""On-device circular replay buffer: a pytree of arrays with a leading capacity axis.

Pure functions, jittable and vmappable over seeds. Transitions are pytrees (dicts keyed by agent for
obs/actions/rewards); ``add`` takes a batch of them (e.g. one per parallel env) at once.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ReplayBuffer:
    data: Any  # pytree, every leaf [capacity, ...]
    pos: jax.Array  # int32: next write index
    size: jax.Array  # int32: number of valid entries

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]


def init(example: Any, capacity: int) -> ReplayBuffer:
    """An empty buffer for transitions shaped like ``example`` (one transition, no batch axis)."""
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
    return ReplayBuffer(data, jnp.int32(0), jnp.int32(0))


def add(buf: ReplayBuffer, batch: Any) -> ReplayBuffer:
    """Write a batch of transitions (leading axis n <= capacity), wrapping around."""
    n = jax.tree.leaves(batch)[0].shape[0]
    cap = buf.capacity
    idx = (buf.pos + jnp.arange(n)) % cap
    data = jax.tree.map(lambda d, b: d.at[idx].set(b.astype(d.dtype)), buf.data, batch)
    return ReplayBuffer(data, (buf.pos + n) % cap, jnp.minimum(buf.size + n, cap))


def sample(buf: ReplayBuffer, key: jax.Array, batch_size: int) -> Any:
    """Uniform sample with replacement from the valid entries. From an empty buffer (which jitted code
    cannot refuse) every float entry is NaN and every integer entry -1, so a batch that is used by
    mistake shows up as a NaN loss (the runner stops with exit code 3) instead of plausible zeros."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buf.size, 1))
    empty = buf.size == 0

    def take(d):
        rows = d[idx]
        bad = (
            jnp.nan
            if jnp.issubdtype(d.dtype, jnp.floating)
            else (-1 if jnp.issubdtype(d.dtype, jnp.integer) else 0)
        )
        return jnp.where(empty, jnp.asarray(bad, d.dtype), rows)

    return jax.tree.map(take, buf.data)


def recent(buf: ReplayBuffer, n: int) -> Any:
    """The ``n`` most recently written entries, oldest first (``n`` static; entries before the first
    write are zeros, so callers check ``buf.size``)."""
    idx = (buf.pos - n + jnp.arange(n)) % buf.capacity
    return jax.tree.map(lambda d: d[idx], buf.data)


def add_masked(buf: ReplayBuffer, batch: Any, mask: jax.Array) -> ReplayBuffer:
    """Write only the rows of ``batch`` where ``mask`` is true (static shapes: e.g. model rollouts of a
    traced length k inside a scan of k_max steps). The kept rows are written contiguously from ``pos``
    in their order; rows that are not kept leave the buffer untouched, also when it is full. The batch
    must not be longer than the capacity (as for :func:`add`)."""
    n = jax.tree.leaves(batch)[0].shape[0]
    mask = mask.reshape(n)
    order = jnp.argsort(jnp.logical_not(mask), stable=True)  # kept rows first, in their order
    kept = jnp.sum(mask.astype(jnp.int32))
    write = jnp.arange(n) < kept
    cap = buf.capacity
    idx = (buf.pos + jnp.arange(n)) % cap

    def put(d, b):
        b = b[order].astype(d.dtype)
        w = write.reshape((n,) + (1,) * (b.ndim - 1))
        return d.at[idx].set(jnp.where(w, b, d[idx]))

    data = jax.tree.map(put, buf.data, batch)
    return ReplayBuffer(data, (buf.pos + kept) % cap, jnp.minimum(buf.size + kept, cap))


def example_transition(spec) -> dict[str, Any]:
    """One all-zero transition in the runner's replay format (obs, actions, rewards, next_obs, done) for
    the task ``spec``: flat observations, env-format actions of each agent's space (the template of a
    replay buffer: ``init(example_transition(spec), capacity)``)."""
    obs = {a: jnp.zeros((spec.obs_dim(a),), jnp.float32) for a in spec.agents}
    return {
        "obs": obs,
        "actions": {
            a: jnp.zeros(s.shape, s.dtype) for a, s in zip(spec.agents, spec.act_spaces, strict=True)
        },
        "rewards": {a: jnp.float32(0) for a in spec.agents},
        "next_obs": obs,
        "done": jnp.float32(0),
    }


def random_transitions(env, key: jax.Array, n: int) -> Any:
    """``n`` one-step transitions of uniformly random joint actions from fresh episodes of a JAX ``env``,
    in the runner's format (obs, actions, rewards, next_obs, done): data for tests and benchmarks of
    models and updates that need a filled buffer without a training run."""
    from marlow.envs.api import random_actions

    k_reset, k_act, k_step = jax.random.split(key, 3)
    obs, state = jax.vmap(env.reset)(jax.random.split(k_reset, n))
    acts = jax.vmap(lambda k: random_actions(env.spec, k))(jax.random.split(k_act, n))
    _, _, rewards, _, info = jax.vmap(env.step)(jax.random.split(k_step, n), state, acts)
    return {
        "obs": obs,
        "actions": acts,
        "rewards": rewards,
        "next_obs": info["terminal_obs"],
        "done": jnp.zeros(n),
    }
