"""Sequence replay for world models (MAMBA, MAG): whole episodes kept in order, sampled as fixed-length
windows.

The store is :class:`marlow.buffers.replay.ReplayBuffer` with a leading *time* axis: every row is one
vectorised step of the ``E`` parallel envs (leaves ``[capacity, E, ...]``), written in order, so each env's
column is its stream of consecutive episodes (episode ends are flagged by the stored ``done``; a window
that spans an end is reset there by the model, as in MAMBA's ``DreamerMemory``). :func:`sample` draws
windows of ``length`` consecutive rows of one env column, uniformly over the columns and over the start
rows whose window lies inside the written data and does not cross the write position (the oldest and
newest rows are never joined).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from marlow.buffers import replay


def init(example: Any, capacity: int) -> replay.ReplayBuffer:
    """An empty buffer of ``capacity`` rows for steps shaped like ``example`` (leaves ``[E, ...]``)."""
    return replay.init(example, capacity)


def add(buf: replay.ReplayBuffer, steps: Any) -> replay.ReplayBuffer:
    """Append ``T`` rows (leaves ``[T, E, ...]``, in time order)."""
    return replay.add(buf, steps)


def sample(buf: replay.ReplayBuffer, key: jax.Array, batch: int, length: int) -> Any:
    """``batch`` windows of ``length`` consecutive rows, time-major: leaves ``[length, batch, ...]``.

    Requires ``buf.size >= length`` (the learners' warm-up guarantees it)."""
    k_env, k_start = jax.random.split(key)
    num_envs = jax.tree.leaves(buf.data)[0].shape[1]
    cap = buf.capacity
    env = jax.random.randint(k_env, (batch,), 0, num_envs)
    start = jax.random.randint(k_start, (batch,), 0, jnp.maximum(buf.size - length + 1, 1))
    oldest = jnp.where(buf.size == cap, buf.pos, 0)  # the row after the newest once the buffer is full
    rows = (oldest + start[None, :] + jnp.arange(length)[:, None]) % cap  # [length, batch]
    return jax.tree.map(lambda x: x[rows, env[None, :]], buf.data)


__all__ = ["add", "init", "sample"]
