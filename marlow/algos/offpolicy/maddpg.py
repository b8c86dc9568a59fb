"""MADDPG (Lowe et al. 2017): centralised critic, decentralised deterministic policies.

Every agent i has a policy mu_i(o_i) and a critic Q_i(o_1..o_n, a_1..a_n), both with Polyak targets.
Discrete and multi-discrete actions use Gumbel-softmax straight-through samples of the policy logits
(as the MADDPG and AORPO code do); boxes use tanh(mu) with Gaussian exploration noise.

Critic:  L(Q_i) = E_D[(Q_i(s, a) - y_i)^2],
         y_i = c r_i + gamma (1 - d) Qbar_i(s', mubar_1(o'_1), ..., mubar_n(o'_n))
Actor:   grad J(mu_i) = E_D[ grad_{a_i} Q_i(s, a_1..a_n)|_{a_i = mu_i(o_i)} grad mu_i(o_i) ],  a_{-i} from D,
         plus 1e-3 x mean squared policy output (the MADDPG code's regulariser on logits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from marlow.algos import common
from marlow.envs.api import EnvSpec
from marlow.nn.mlp import MLP
from marlow.schema.groups import ReplayKeys, TargetKeys
from marlow.schema.ranges import NonNegative, Positive, Widths

NAME = "maddpg"
KIND = "off_policy"
DESCRIPTION = "Multi-agent DDPG, centralised critic (Lowe et al. 2017)"
SUPPORTED_ACTIONS = frozenset({"discrete", "multi_discrete", "box"})


@dataclass
class Config(ReplayKeys, TargetKeys):
    """Defaults in conf/algo/maddpg.yaml, each with its source."""

    hidden: Widths
    lr_actor: Positive
    lr_critic: Positive
    exploration_noise: NonNegative  # 0 = act greedily
    policy_reg: NonNegative
    reward_scale: Positive
    gumbel_temperature: Positive


@struct.dataclass
class State:
    actor: dict[str, Any]
    critic: dict[str, Any]
    target_actor: dict[str, Any]
    target_critic: dict[str, Any]
    actor_opt: dict[str, Any]
    critic_opt: dict[str, Any]
    steps: jax.Array


class Algorithm(common.AgentwiseUpdate):
    TARGETS = {"target_actor": "actor", "target_critic": "critic"}

    def __init__(self, spec: EnvSpec, cfg: Config, extra_inputs: dict[str, int] | None = None):
        """``extra_inputs``: agent -> width of extra policy inputs after the observation (AORDPG's opponent
        predictions)."""
        self.spec, self.cfg = spec, cfg
        self.policies = common.Policies(
            spec,
            cfg.hidden,
            deterministic=True,
            temperature=cfg.gumbel_temperature,
            noise=cfg.exploration_noise,
            extra_inputs=extra_inputs,
        )
        self.critic = MLP(tuple(cfg.hidden), 1)
        self.actor_opt = common.make_optimizer(cfg.lr_actor, cfg.max_grad_norm)
        self.critic_opt = common.make_optimizer(cfg.lr_critic, cfg.max_grad_norm)

    def init(self, key: jax.Array) -> State:
        k_pi, k_q = jax.random.split(key)
        actor = self.policies.init(k_pi)
        q_in = jnp.zeros((1, common.joint_dim(self.spec)))
        critic = {
            a: self.critic.init(k, q_in)
            for a, k in zip(self.spec.agents, jax.random.split(k_q, self.spec.num_agents), strict=True)
        }
        return State(
            actor=actor,
            critic=critic,
            target_actor=jax.tree.map(jnp.copy, actor),
            target_critic=jax.tree.map(jnp.copy, critic),
            actor_opt={a: self.actor_opt.init(actor[a]) for a in self.spec.agents},
            critic_opt={a: self.critic_opt.init(critic[a]) for a in self.spec.agents},
            steps=jnp.int32(0),
        )

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        return self.policies.act(state.actor, obs, key, explore)

    def _q(self, params, x):
        return jnp.squeeze(self.critic.apply(params, x), -1)

    def policy_action(self, agent, out, key):
        """mu(o) as fed to a critic (:func:`marlow.algos.common.critic_action`)."""
        return common.critic_action(self.policies.dists[agent], out, key)

    def update(self, state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        spec = self.spec
        k_next, k_pi = jax.random.split(key)
        next_obs = batch["next_obs"]
        next_flat = {
            a: self.policy_action(a, self.policies.out(state.target_actor, a, next_obs[a]), k)
            for a, k in zip(spec.agents, jax.random.split(k_next, spec.num_agents), strict=True)
        }
        q_next_in = common.joint(spec, next_obs, next_flat)
        parts = [
            self.agent_update(state, a, batch, q_next_in, batch["obs"][a], k)
            for a, k in zip(spec.agents, jax.random.split(k_pi, spec.num_agents), strict=True)
        ]
        return self.combine(state, parts)

    def agent_update(self, state: State, a: str, batch: dict, q_next_in, policy_in, key):
        """Critic and actor steps of agent ``a`` on ``batch``: ``q_next_in`` is the critic input at s' with
        every agent's next action, ``policy_in`` agent a's policy input at s (its observation; AORDPG adds
        opponent predictions). Returns (new per-agent fields, metrics)."""
        cfg, spec = self.cfg, self.spec
        obs = batch["obs"]
        buf_flat = common.flat_actions(spec, batch["actions"])
        q_in = common.joint(spec, obs, buf_flat)
        not_done = 1.0 - batch["done"]
        y = cfg.reward_scale * batch["rewards"][a] + cfg.gamma * not_done * self._q(
            state.target_critic[a], q_next_in
        )
        y = jax.lax.stop_gradient(y)

        def critic_loss(p):
            # the MADDPG code's loss, mean((q - y)^2), without the 1/2 of the other critics here: its
            # gradient is twice theirs at the same TD error, and the gradient clip (max_grad_norm 0.5, the
            # MADDPG code's) acts on that gradient
            q = self._q(p, q_in)
            return jnp.mean((q - y) ** 2), jnp.mean(q)

        (c_loss, q_mean), g = jax.value_and_grad(critic_loss, has_aux=True)(state.critic[a])
        critic_p, critic_o = common.opt_step(self.critic_opt, state.critic[a], state.critic_opt[a], g)

        def actor_loss(p):
            out = self.policies.nets[a].apply(p, policy_in)
            flats = dict(buf_flat)
            flats[a] = self.policy_action(a, out, key)
            q = self._q(critic_p, common.joint(spec, obs, flats))
            return -jnp.mean(q) + cfg.policy_reg * jnp.mean(out**2)

        a_loss, g = jax.value_and_grad(actor_loss)(state.actor[a])
        actor_p, actor_o = common.opt_step(self.actor_opt, state.actor[a], state.actor_opt[a], g)
        new = {"actor": actor_p, "critic": critic_p, "actor_opt": actor_o, "critic_opt": critic_o}
        return new, {"critic_loss": c_loss, "actor_loss": a_loss, "q": q_mean}
