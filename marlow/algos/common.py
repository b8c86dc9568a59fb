"""Pieces shared by the actor-critic algorithms: per-agent policy networks, centralised critic inputs,
optimiser steps, and the off-policy update scaffold (:class:`AgentwiseUpdate`: per-agent steps, then
the new state with its Polyak-averaged targets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp

from marlow.envs.api import EnvSpec, flat_actions  # noqa: F401  (used as common.flat_actions)
from marlow.nn.distributions import DeterministicTanh, make_dist
from marlow.nn.mlp import MLP, POLICY_HEAD_SCALE
from marlow.nn.optim import make_optimizer, opt_step, soft_update  # noqa: F401  (used as common.*)
from marlow.schema.ranges import Count, NonNegative


class Policies:
    """One policy network and action distribution per agent (heterogeneous spaces allowed)."""

    def __init__(
        self,
        spec: EnvSpec,
        hidden,
        *,
        deterministic: bool,
        temperature: float = 1.0,
        noise: float = 0.1,
        extra_inputs: dict[str, int] | None = None,
    ):
        self.spec = spec
        self.dists = {
            a: make_dist(s, deterministic=deterministic, temperature=temperature, noise=noise)
            for a, s in zip(spec.agents, spec.act_spaces, strict=True)
        }
        self.nets = {
            a: MLP(tuple(hidden), self.dists[a].out_dim, out_scale=POLICY_HEAD_SCALE) for a in spec.agents
        }
        self.in_dims = {a: spec.obs_dim(a) + (extra_inputs or {}).get(a, 0) for a in spec.agents}

    def init(self, key: jax.Array) -> dict[str, Any]:
        keys = jax.random.split(key, self.spec.num_agents)
        return {
            a: self.nets[a].init(k, jnp.zeros((1, self.in_dims[a])))
            for a, k in zip(self.spec.agents, keys, strict=True)
        }

    def out(self, params, agent: str, obs: jax.Array) -> jax.Array:
        return self.nets[agent].apply(params[agent], obs)

    def sample(self, params, agent: str, obs: jax.Array, key: jax.Array):
        return self.dists[agent].sample(self.out(params, agent, obs), key)

    def mode(self, params, agent: str, obs: jax.Array):
        return self.dists[agent].mode(self.out(params, agent, obs))

    def act(self, params, obs: dict, key: jax.Array, explore: bool) -> dict:
        """Env-format actions for every agent (sampled when ``explore``, greedy otherwise)."""
        keys = jax.random.split(key, self.spec.num_agents)
        out = {}
        for a, k in zip(self.spec.agents, keys, strict=True):
            out[a] = self.sample(params, a, obs[a], k).env if explore else self.mode(params, a, obs[a])[0]
        return out


def critic_action(dist, out: jax.Array, key: jax.Array) -> jax.Array:
    """mu(o) as fed to a critic by a deterministic-policy learner (DDPG, MADDPG, AORDPG): the noiseless tanh
    action for a Box, a Gumbel-ST sample for discrete parts (differentiable w.r.t. the policy output in both
    cases)."""
    return dist.mode(out)[1] if isinstance(dist, DeterministicTanh) else dist.sample(out, key).flat


@dataclass
class AnnealKeys:
    """The temperature schedule of a maximum-entropy learner (MASQL, ROMMEO-AC), beside its ``alpha``:
    ``constant`` keeps ``alpha``; ``anneal`` uses
    ``alpha + anneal_scale exp(-anneal_rate max(t - anneal_start, 0))`` after t updates (maci's
    ``run_rommeo.py``). :func:`alpha_at` computes it."""

    alpha_schedule: Literal["constant", "anneal"]
    anneal_scale: NonNegative  # 0 = alpha stays constant
    anneal_rate: NonNegative  # 0 = alpha + anneal_scale for ever
    anneal_start: Count  # updates before the decay starts


def alpha_at(cfg: AnnealKeys, steps: jax.Array) -> jax.Array:
    """The temperature after ``steps`` updates (:class:`AnnealKeys`); ``cfg`` also has ``alpha``."""
    if cfg.alpha_schedule == "constant":
        return jnp.float32(cfg.alpha)
    t = jnp.maximum(steps.astype(jnp.float32) - cfg.anneal_start, 0.0)
    return cfg.alpha + cfg.anneal_scale * jnp.exp(-cfg.anneal_rate * t)


def joint(spec: EnvSpec, obs: dict, flat_acts: dict) -> jax.Array:
    """Centralised critic input: all agents' observations then all agents' flat actions, in spec order."""
    return jnp.concatenate([obs[a] for a in spec.agents] + [flat_acts[a] for a in spec.agents], axis=-1)


def joint_dim(spec: EnvSpec) -> int:
    return sum(s.flat_dim for s in spec.obs_spaces) + sum(s.flat_dim for s in spec.act_spaces)


def mean_over_agents(per_agent: dict[str, jax.Array]) -> jax.Array:
    return jnp.mean(jnp.stack(list(per_agent.values())))


class AgentwiseUpdate:
    """The off-policy update scaffold. ``update`` runs ``agent_update(state, agent, batch, key) ->
    (new fields, metrics)`` for every agent in spec order, each with its own key split from ``key``, and
    :meth:`combine` applies the new fields: each target network named in ``TARGETS`` (target field ->
    the online field it tracks) is moved by Polyak averaging, ``steps`` grows by one, and the metrics are
    averaged over agents. Algorithms whose agents share inputs computed once per update (MASAC's and
    MADDPG's next joint action) write their own ``update`` and end it with :meth:`combine`."""

    TARGETS: ClassVar[dict[str, str]] = {}

    def update(self, state, batch: dict, key: jax.Array):
        keys = jax.random.split(key, self.spec.num_agents)
        parts = [self.agent_update(state, a, batch, k) for a, k in zip(self.spec.agents, keys, strict=True)]
        return self.combine(state, parts)

    def combine(self, state, parts: list):
        """The state after an update from every agent's ``(new fields, metrics)`` (in spec order)."""
        new, metrics = gather_parts(self.spec, parts)
        targets = {name: new[online] for name, online in self.TARGETS.items()}
        return apply_update(state, new, self.cfg.tau, **targets), metrics


def apply_update(state, new: dict, tau: float, **targets):
    """The state after one update, with the ``new`` fields, every target network (``targets``: target
    field -> the online parameters it tracks, as updated) moved by Polyak averaging
    theta' <- tau theta + (1 - tau) theta' (Lillicrap et al. 2015, Alg. 1), and ``steps`` + 1."""
    moved = {name: soft_update(getattr(state, name), online, tau) for name, online in targets.items()}
    return state.replace(**new, **moved, steps=state.steps + 1)


def gather_parts(spec: EnvSpec, parts: list) -> tuple[dict, dict]:
    """Per-agent results ``[(new_fields, metrics), ...]`` in spec order -> ({field: {agent: value}},
    {metric: mean over agents})."""
    new = {k: {a: p[0][k] for a, p in zip(spec.agents, parts, strict=True)} for k in parts[0][0]}
    metrics = {
        k: mean_over_agents({a: p[1][k] for a, p in zip(spec.agents, parts, strict=True)})
        for k in parts[0][1]
    }
    return new, metrics
