"""The stochastic actors of the PPO family (IPPO, MAPPO, HAPPO): networks, sampling, log-probabilities and
entropies, with available-action masks and optional parameter sharing.

Agent i's policy pi_i(a_i | o_i) is an MLP on its local observation:

- Discrete and MultiDiscrete actions: categorical logits (multi-discrete log-probs and entropies summed
  over components). With an available-action mask (SMAX; ``EnvSpec.action_masks``), the logits of
  unavailable actions are replaced by a large negative number before anything else, so a masked action
  is never sampled nor chosen greedily, has probability exactly 0 (log-probability about -1e9) and adds
  nothing to the entropy (MAPPO's SMAC code masks the same way);
- Box actions: a Gaussian with a state-independent learned log-std per dimension
  (:class:`marlow.nn.distributions.DiagGaussian`), clipped to the bounds in the env.

Parameters of one actor are ``{"actor": <MLP params>, ["log_std": [d]]}`` (IPPO keeps its critic in the
same dict). With ``share=True`` agents of the same observation and action space form a group with one
set of parameters, and each member's input is its observation followed by the one-hot of its index in the
group (MAPPO's parameter sharing with agent ids, Yu et al. 2022, Sec. 4 / its code's ``use_agent_id``).
Groups are named by their first member; ``group[a]`` is agent ``a``'s.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from marlow.envs.api import EnvSpec
from marlow.envs.spaces import Box
from marlow.nn.distributions import DiagGaussian, make_dist
from marlow.nn.mlp import MLP, POLICY_HEAD_SCALE

MASKED_LOGIT = -1e9  # finite, so p * log p of a masked action is 0 * (-1e9) = 0, not NaN


def mask_logits(logits: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Logits with the unavailable actions (``mask`` False) set to :data:`MASKED_LOGIT`."""
    return logits if mask is None else jnp.where(mask, logits, MASKED_LOGIT)


class Actors:
    def __init__(self, spec: EnvSpec, hidden, activation: str, log_std_init: float, share: bool = False):
        self.spec, self.log_std_init = spec, log_std_init
        agents, spaces = spec.agents, dict(zip(spec.agents, spec.act_spaces, strict=True))
        self.box = {a: isinstance(spaces[a], Box) for a in agents}
        self.dists = {a: DiagGaussian(spaces[a]) if self.box[a] else make_dist(spaces[a]) for a in agents}
        self.group: dict[str, str] = {}
        self.members: dict[str, list[str]] = {}
        for a in agents:
            kind = (spec.obs_space(a), spaces[a])
            g = next((g for g, m in self.members.items() if share and self._kind(m[0]) == kind), a)
            self.group[a] = g
            self.members.setdefault(g, []).append(a)
        self.net = {
            g: MLP(tuple(hidden), self.dists[g].out_dim, activation, out_scale=POLICY_HEAD_SCALE)
            for g in self.members
        }

    def _kind(self, a: str):
        return (self.spec.obs_space(a), self.spec.act_space(a))

    @property
    def groups(self) -> list[str]:
        return list(self.members)

    def input_dim(self, a: str) -> int:
        n = len(self.members[self.group[a]])
        return self.spec.obs_dim(a) + (n if n > 1 else 0)

    def inputs(self, a: str, obs: jax.Array) -> jax.Array:
        """Agent ``a``'s network input: its observation, plus its one-hot index in a shared group."""
        members = self.members[self.group[a]]
        if len(members) == 1:
            return obs
        ids = jnp.broadcast_to(
            jax.nn.one_hot(members.index(a), len(members)), obs.shape[:-1] + (len(members),)
        )
        return jnp.concatenate([obs, ids], axis=-1)

    # ---- parameters -------------------------------------------------------------------------------
    def init_actor(self, g: str, key: jax.Array) -> dict[str, Any]:
        """``{"actor": ..., ["log_std"]}`` of group ``g`` (its network initialised with ``key``)."""
        p = {"actor": self.net[g].init(key, jnp.zeros((1, self.input_dim(g))))}
        if self.box[g]:
            p["log_std"] = jnp.full((self.dists[g].dim,), self.log_std_init, jnp.float32)
        return p

    def init(self, key: jax.Array) -> dict[str, dict]:
        keys = jax.random.split(key, len(self.members))
        return {g: self.init_actor(g, k) for g, k in zip(self.members, keys, strict=True)}

    # ---- the distribution ------------------------------------------------------------------------
    def out(self, p, a: str, obs, mask=None) -> jax.Array:
        """The network output of agent ``a`` (``p``: its group's parameters), masked logits for discrete
        actions."""
        out = self.net[self.group[a]].apply(p["actor"], self.inputs(a, obs))
        return out if self.box[a] else mask_logits(out, mask)

    def sample(self, p, a: str, obs, key, mask=None):
        """(env action, learning action, log-prob) of a sample of agent ``a``'s policy."""
        out, d = self.out(p, a, obs, mask), self.dists[a]
        if self.box[a]:
            raw = d.sample(out, p["log_std"], key)
            return d.to_env(raw), raw, d.log_prob(out, p["log_std"], raw)
        s = d.sample(out, key)
        return s.env, s.env, s.log_prob

    def log_prob_entropy(self, p, a: str, obs, action, mask=None):
        """log pi_a(action | obs) and the entropy of pi_a(. | obs)."""
        out, d = self.out(p, a, obs, mask), self.dists[a]
        if self.box[a]:
            return d.log_prob(out, p["log_std"], action), d.entropy(out, p["log_std"])
        return d.log_prob(out, action), d.entropy(out)

    def kl(self, p, q, a: str, obs, mask=None) -> jax.Array:
        """D_KL(pi_p(. | obs) || pi_q(. | obs)) of agent ``a`` under the parameters ``p`` and ``q`` (closed
        form: diagonal Gaussians, or categoricals summed over multi-discrete components; masked actions
        have probability 0 under both and add nothing)."""
        out_p, out_q, d = self.out(p, a, obs, mask), self.out(q, a, obs, mask), self.dists[a]
        if self.box[a]:
            return DiagGaussian.kl(out_p, p["log_std"], out_q, q["log_std"])
        split = getattr(d, "_parts", lambda o: [o])
        total = 0.0
        for lp, lq in zip(split(out_p), split(out_q), strict=True):
            lp, lq = jax.nn.log_softmax(lp, axis=-1), jax.nn.log_softmax(lq, axis=-1)
            total = total + jnp.sum(jnp.exp(lp) * (lp - lq), axis=-1)
        return total

    def mode(self, p, a: str, obs, mask=None):
        """The greedy env action: the Gaussian's mean clipped to the bounds, or the most likely available
        discrete action."""
        out, d = self.out(p, a, obs, mask), self.dists[a]
        return d.to_env(out) if self.box[a] else d.mode(out)[0]


def avail(info: dict | None, a: str):
    """Agent ``a``'s available-action mask in a rollout's env information (None: no masks)."""
    if info is None:
        return None
    return info.get("avail", {}).get(a)
