"""Pieces shared by the tabular algorithms of the ROMMEO paper's Fig. 1 (ROMMEO-Q and its baselines).

Tabular algorithms run on tasks with a finite state space (``EnvSpec.num_states``: the state index is
the argmax of the one-hot observation) and discrete actions. Every agent ``i`` indexes the joint action
of the *other* agents ``-i`` (in spec order) by one integer ``o`` in ``[0, prod_j |A_j|)`` (row-major,
like ``numpy.ravel_multi_index``), so tables are ``[S, |A_i|]`` (independent learners) or
``[S, |A_i|, |A_-i|]`` (joint-action learners).

Updates from a replay mini-batch are applied per table cell: every cell hit by the batch moves by
``lr x mean(target - value)`` over the samples that hit it, so the result does not depend on the batch
order, and with one sample per cell it is the textbook update ``Q <- Q + lr (y - Q)``.
"""

from __future__ import annotations

import math
from typing import Annotated

import jax
import jax.numpy as jnp

from marlow.envs.api import EnvSpec
from marlow.envs.spaces import Discrete
from marlow.schema.ranges import Range

# A table's learning rate: the weight of the target in Q <- (1 - lr) Q + lr y (``cell_update``), in (0, 1]
# (above 1 every update would overshoot its target).
StepSize = Annotated[float, Range(0, 1, lo_open=True)]


class Indexing:
    """State and joint-action indices of a tabular task."""

    def __init__(self, spec: EnvSpec):
        if spec.num_states is None or not all(isinstance(s, Discrete) for s in spec.act_spaces):
            raise ValueError("tabular algorithms need a finite state space and Discrete actions")
        self.spec = spec
        self.agents = spec.agents
        self.num_states = spec.num_states
        self.n = {a: s.n for a, s in zip(spec.agents, spec.act_spaces, strict=True)}
        self.others = {a: tuple(b for b in spec.agents if b != a) for a in spec.agents}
        self.n_others = {a: math.prod(self.n[b] for b in self.others[a]) for a in spec.agents}

    def state(self, obs: dict) -> jax.Array:
        """``[B]`` state indices of a batch of observations."""
        return self.spec.state_index(obs)

    def others_index(self, agent: str, actions: dict) -> jax.Array:
        """``[B]`` joint index of the other agents' actions (row-major over ``self.others[agent]``)."""
        idx = jnp.zeros_like(jnp.asarray(actions[self.others[agent][0]]), dtype=jnp.int32)
        for b in self.others[agent]:
            idx = idx * self.n[b] + jnp.asarray(actions[b]).astype(jnp.int32)
        return idx

    def others_marginal(self, agent: str, joint_probs: jax.Array, other: str) -> jax.Array:
        """Marginal ``[..., |A_other|]`` of agent ``other`` from a distribution ``[..., |A_-i|]`` over the
        joint action of ``agent``'s others."""
        shape = joint_probs.shape[:-1] + tuple(self.n[b] for b in self.others[agent])
        axes = tuple(joint_probs.ndim - 1 + k for k, b in enumerate(self.others[agent]) if b != other)
        return jnp.sum(joint_probs.reshape(shape), axis=axes)


def harmonic(t: jax.Array, c: float) -> jax.Array:
    """``c / (c + t)``: the ROMMEO reference code's schedule for the learning rate and alpha (c = 1e4)."""
    return c / (c + jnp.asarray(t, jnp.float32))


def epsilon_mix(probs: jax.Array, eps: float | jax.Array) -> jax.Array:
    """``(1 - eps) probs + eps uniform``: the distribution of epsilon-exploration around ``probs``."""
    return (1.0 - eps) * probs + eps / probs.shape[-1]


def sample(key: jax.Array, probs: jax.Array) -> jax.Array:
    """One categorical sample per row of ``probs`` (``[..., n]``) as int32."""
    return jax.random.categorical(key, jnp.log(jnp.maximum(probs, 1e-30))).astype(jnp.int32)


def decayed(value: float, decay: float, t: jax.Array) -> jax.Array:
    """``value x c / (c + t)`` with ``c = decay`` (the ROMMEO reference code's schedule for learning rates
    and temperatures); constant when ``decay <= 0``."""
    if decay <= 0:
        return jnp.float32(value)
    return value * harmonic(t, decay)


def argmax_set(values: jax.Array) -> jax.Array:
    """The maximal entries of each row (the last axis) as a boolean mask, never empty. XLA may compute
    ``values`` twice, once for the max and once for the comparison, rounded differently (a multiply-add
    fused in one copy and not in the other); then no entry equals the max, and the mask alone would give
    an all-NaN greedy policy. Seen on the CPU back end at optimisation level 0 with its older fusion
    emitters (``--xla_cpu_use_fusion_emitters=false``): FMQ's greedy evaluation played at random. Such a row
    keeps its argmax alone; every other row is unchanged."""
    best = values == jnp.max(values, axis=-1, keepdims=True)
    top = jax.nn.one_hot(jnp.argmax(values, axis=-1), values.shape[-1], dtype=jnp.bool_)
    return best | (top & ~jnp.any(best, axis=-1, keepdims=True))


def greedy_probs(values: jax.Array) -> jax.Array:
    """The greedy policy over the last axis with ties shared equally: uniform over the argmax set."""
    best = argmax_set(values)
    return best / jnp.sum(best, axis=-1, keepdims=True)


def greedy_sample(key: jax.Array, values: jax.Array) -> jax.Array:
    """An argmax of each row of ``values``, ties broken uniformly at random (int32): ``jnp.argmax`` would
    always pick action 0, which on the climbing game is the optimum A, so an untrained table would look
    converged."""
    return sample(key, greedy_probs(values))


def cell_update(table: jax.Array, index: tuple, target: jax.Array, lr: jax.Array | float) -> jax.Array:
    """Move every cell hit by the batch toward the mean of its targets: ``table[index] += lr x
    mean(target - table[index])`` (``index``: a tuple of ``[B]`` integer arrays, one per table axis)."""
    err = target - table[index]
    flat = jnp.ravel_multi_index(index, table.shape, mode="clip")
    total = jnp.zeros(table.size, table.dtype).at[flat].add(err)
    count = jnp.zeros(table.size, table.dtype).at[flat].add(1.0)
    step = jnp.where(count > 0, total / jnp.maximum(count, 1.0), 0.0)
    return table + lr * step.reshape(table.shape)


def count_update(counts: jax.Array, index: tuple) -> jax.Array:
    """Add one to ``counts[index]`` for every sample of the batch (duplicates accumulate)."""
    return counts.at[index].add(1.0)


def normalise(counts: jax.Array) -> jax.Array:
    """Empirical distribution over the last axis (uniform where nothing was counted)."""
    total = jnp.sum(counts, axis=-1, keepdims=True)
    return jnp.where(total > 0, counts / jnp.maximum(total, 1e-30), 1.0 / counts.shape[-1])


def act(ix, key: jax.Array, obs: dict, explore: bool, explore_probs, greedy_values) -> dict:
    """Every agent's action in the state behind ``obs``: a sample of ``explore_probs(agent, s)`` when
    ``explore`` (static), otherwise an argmax of ``greedy_values(agent, s)`` with random tie-breaking.
    ``ix`` is the algorithm's :class:`Indexing`; one key per agent, split from ``key`` in agent order."""
    s = ix.state(obs)
    out = {}
    for a, k in zip(ix.agents, jax.random.split(key, len(ix.agents)), strict=True):
        out[a] = sample(k, explore_probs(a, s)) if explore else greedy_sample(k, greedy_values(a, s))
    return out
