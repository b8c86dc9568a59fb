"""MASAC: multi-agent soft actor-critic with centralised twin critics (AORPO paper Sec. 5, Eqs. 4-5).

Every agent i has
- a decentralised stochastic policy pi_i(a_i | o_i): Gumbel-softmax straight-through for discrete and
  multi-discrete actions, a tanh-Gaussian for boxes (``marlow.nn.distributions``);
- twin centralised critics Q_i^{1,2}(o_1..o_n, a_1..a_n) with Polyak-averaged targets (no target policy,
  as in the AORPO code);
- a temperature alpha_i, fixed or tuned toward a target entropy.

Eq. (5), critic:  J(Q_i) = E_D[ 1/2 (Q_i(s, a) - y_i)^2 ],
                  y_i = c r_i + gamma (1 - d) [ min_k Qbar_i^k(s', a') + alpha_i H_i(s') ],
                  a'_j ~ pi_j(.|o'_j)
  where H_i is the exact categorical entropy (discrete) or -log pi_i(a'_i|o'_i) (continuous).
Eq. (4), actor:   J(pi_i) = E_D[ -alpha_i H_i(s) - min_k Q_i^k(s, f(eps; o_i), a_{-i}) ],  a_{-i} from D.
Temperature:      J(alpha_i) = E[ log alpha_i (H_i - H_target) ]  (Haarnoja et al. 2018b).

Each agent learns from its own reward r_i (cooperative tasks give every agent the team reward), so the
same code handles competitive teams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from marlow.algos import common
from marlow.envs.api import EnvSpec
from marlow.envs.spaces import Box, Discrete, MultiDiscrete
from marlow.nn.mlp import TwinQ
from marlow.schema.groups import ReplayKeys, TargetKeys
from marlow.schema.ranges import AnyFloat, Positive, Widths

NAME = "masac"
KIND = "off_policy"
DESCRIPTION = "Multi-agent soft actor-critic, centralised twin critics (AORPO paper's model-free base)"
SUPPORTED_ACTIONS = frozenset({"discrete", "multi_discrete", "box"})


@dataclass
class Config(ReplayKeys, TargetKeys):
    """Defaults in conf/algo/masac.yaml, each with its source."""

    hidden: Widths
    lr_actor: Positive
    lr_critic: Positive
    lr_alpha: Positive
    alpha: Positive  # the initial temperature: log_alpha starts at log(alpha)
    autotune_alpha: bool
    # any sign: a target below every reachable entropy (the code's -|A|) only drives alpha to 0
    target_entropy_scale: AnyFloat
    reward_scale: Positive
    gumbel_temperature: Positive


@struct.dataclass
class State:
    actor: dict[str, Any]
    critic: dict[str, Any]
    target_critic: dict[str, Any]
    log_alpha: dict[str, jax.Array]
    actor_opt: dict[str, Any]
    critic_opt: dict[str, Any]
    alpha_opt: dict[str, Any]
    steps: jax.Array


def target_entropy(space, scale: float) -> float:
    """Discrete: ``scale`` x log(n) summed over components (the AORPO code's -|A| drives alpha to 0;
    0.98 log n (Christodoulou 2019) keeps policies near uniform: ``scale`` trades the two, our default
    in masac.yaml). Box: -scale x dim (Haarnoja et al. 2018b use -dim)."""
    if isinstance(space, Discrete):
        return scale * math.log(space.n)
    if isinstance(space, MultiDiscrete):
        return scale * sum(math.log(n) for n in space.nvec)
    if isinstance(space, Box):
        return -scale * space.flat_dim
    raise TypeError(space)


class Algorithm(common.AgentwiseUpdate):
    """Pure functions over an explicit :class:`State`; the object holds only static structure."""

    TARGETS = {"target_critic": "critic"}

    def __init__(self, spec: EnvSpec, cfg: Config, extra_inputs: dict[str, int] | None = None):
        """``extra_inputs``: agent -> width of extra policy inputs after the observation (AORPO's opponent
        predictions)."""
        self.spec, self.cfg = spec, cfg
        self.policies = common.Policies(
            spec,
            cfg.hidden,
            deterministic=False,
            temperature=cfg.gumbel_temperature,
            extra_inputs=extra_inputs,
        )
        self.critic = TwinQ(tuple(cfg.hidden))
        self.actor_opt = common.make_optimizer(cfg.lr_actor, cfg.max_grad_norm)
        self.critic_opt = common.make_optimizer(cfg.lr_critic, cfg.max_grad_norm)
        self.alpha_opt = common.make_optimizer(cfg.lr_alpha, 0.0)
        self.target_entropy = {
            a: target_entropy(s, cfg.target_entropy_scale)
            for a, s in zip(spec.agents, spec.act_spaces, strict=True)
        }

    # ------------------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> State:
        k_pi, k_q = jax.random.split(key)
        actor = self.policies.init(k_pi)
        q_in = jnp.zeros((1, common.joint_dim(self.spec)))
        critic = {
            a: self.critic.init(k, q_in)
            for a, k in zip(self.spec.agents, jax.random.split(k_q, self.spec.num_agents), strict=True)
        }
        log_alpha = {a: jnp.log(jnp.float32(self.cfg.alpha)) for a in self.spec.agents}
        return State(
            actor=actor,
            critic=critic,
            target_critic=jax.tree.map(jnp.copy, critic),
            log_alpha=log_alpha,
            actor_opt={a: self.actor_opt.init(actor[a]) for a in self.spec.agents},
            critic_opt={a: self.critic_opt.init(critic[a]) for a in self.spec.agents},
            alpha_opt={a: self.alpha_opt.init(log_alpha[a]) for a in self.spec.agents},
            steps=jnp.int32(0),
        )

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        return self.policies.act(state.actor, obs, key, explore)

    # ------------------------------------------------------------------------------------------------
    def update(self, state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        spec = self.spec
        k_next, k_pi = jax.random.split(key)
        next_obs = batch["next_obs"]
        # a'_j ~ pi_j(.|o'_j) for every agent, shared by all critics' targets (Eq. 5)
        next_samples = {
            a: self.policies.sample(state.actor, a, next_obs[a], k)
            for a, k in zip(spec.agents, jax.random.split(k_next, spec.num_agents), strict=True)
        }
        q_next_in = common.joint(spec, next_obs, {a: s.flat for a, s in next_samples.items()})
        parts = [
            self.agent_update(state, a, batch, q_next_in, next_samples[a].entropy, batch["obs"][a], k)
            for a, k in zip(spec.agents, jax.random.split(k_pi, spec.num_agents), strict=True)
        ]
        return self.combine(state, parts)

    def agent_update(self, state: State, a: str, batch: dict, q_next_in, next_entropy, policy_in, key):
        """Eqs. (4)-(5) and the temperature step for agent ``a`` on ``batch``: ``q_next_in`` is the critic
        input at s' with every agent's next action, ``next_entropy`` agent a's entropy term at s', and
        ``policy_in`` agent a's policy input at s (its observation; AORPO adds opponent predictions).
        Returns (new per-agent fields, metrics)."""
        cfg, spec = self.cfg, self.spec
        buf_flat = common.flat_actions(spec, batch["actions"])
        q_in = common.joint(spec, batch["obs"], buf_flat)
        not_done = 1.0 - batch["done"]
        alpha = jnp.exp(state.log_alpha[a])
        q_targ = jnp.min(self.critic.apply(state.target_critic[a], q_next_in), axis=0)
        y = cfg.reward_scale * batch["rewards"][a] + cfg.gamma * not_done * (q_targ + alpha * next_entropy)
        y = jax.lax.stop_gradient(y)

        def critic_loss(p):
            q = self.critic.apply(p, q_in)  # [2, B]
            return 0.5 * jnp.mean(jnp.sum((q - y) ** 2, axis=0)), jnp.mean(q)

        (c_loss, q_mean), g = jax.value_and_grad(critic_loss, has_aux=True)(state.critic[a])
        critic_p, critic_o = common.opt_step(self.critic_opt, state.critic[a], state.critic_opt[a], g)

        def actor_loss(p):
            s = self.policies.dists[a].sample(self.policies.nets[a].apply(p, policy_in), key)
            flats = dict(buf_flat)
            flats[a] = s.flat  # Eq. (4): own action reparameterised, others' from D
            q = jnp.min(self.critic.apply(critic_p, common.joint(spec, batch["obs"], flats)), axis=0)
            return jnp.mean(-alpha * s.entropy - q), jnp.mean(s.entropy)

        (a_loss, ent), g = jax.value_and_grad(actor_loss, has_aux=True)(state.actor[a])
        actor_p, actor_o = common.opt_step(self.actor_opt, state.actor[a], state.actor_opt[a], g)

        if cfg.autotune_alpha:
            ent_gap = jax.lax.stop_gradient(ent - self.target_entropy[a])
            g_alpha = jax.grad(lambda la: la * ent_gap)(state.log_alpha[a])
            log_alpha, alpha_o = common.opt_step(
                self.alpha_opt, state.log_alpha[a], state.alpha_opt[a], g_alpha
            )
        else:
            log_alpha, alpha_o = state.log_alpha[a], state.alpha_opt[a]
        new = {
            "actor": actor_p,
            "critic": critic_p,
            "log_alpha": log_alpha,
            "actor_opt": actor_o,
            "critic_opt": critic_o,
            "alpha_opt": alpha_o,
        }
        metrics = {"critic_loss": c_loss, "actor_loss": a_loss, "alpha": alpha, "entropy": ent, "q": q_mean}
        return new, metrics
