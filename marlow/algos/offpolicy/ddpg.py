"""Independent DDPG (Lillicrap et al. 2015), the "DDPG" baseline of the ROMMEO paper (Sec. 5.2, Fig. 2).

Every agent i learns alone, treating the others as part of the environment: a deterministic policy
mu_i(o_i) and a *decentralised* critic Q_i(o_i, a_i) that never sees the other agents' actions, both
with Polyak target copies mubar_i, Qbar_i.

Critic (Lillicrap et al. Alg. 1):
    L(Q_i)  = 1/2 E_D[ (Q_i(o_i, a_i) - y_i)^2 ],
    y_i     = r_i + gamma (1 - d) Qbar_i(o'_i, mubar_i(o'_i))
Actor (deterministic policy gradient):
    grad J(mu_i) = E_D[ grad_a Q_i(o_i, a)|_{a = mu_i(o_i)} grad mu_i(o_i) ]
    i.e. minimise  -E_D[ Q_i(o_i, mu_i(o_i)) ] + policy_reg E_D[ mu_i^raw(o_i)^2 ]
Targets:  theta' <- tau theta + (1 - tau) theta'   after every update, for Q and mu.
Acting:   a_i = mu_i(o_i) + N(0, (exploration_noise x half range)^2), clipped to the Box (greedy: mu_i).

Choices the papers leave open (defaults in conf/algo/ddpg.yaml; "code" = the DDPG learner of the
PR2/ROMMEO authors' ``maci`` package, ``maci/learners/maddpg.py`` with ``joint=False``):
- Box actions: mu_i = tanh squashed onto [low, high] (code: tanh x u_range). Discrete and multi-discrete
  actions (ours, cheap): Gumbel-softmax straight-through samples of the policy logits, as in MADDPG.
- Networks see actions rescaled to [-1, 1] (``spaces.unit_flat``; ours, as in rommeo_ac: the games' [-10, 10]
  actions would otherwise dominate the inputs); one-hot actions enter as they are.
- Exploration: Gaussian noise of std 0.1 x half range, the MADDPG setting of this library (the code
  uses Ornstein-Uhlenbeck noise with a hand-made noise-level schedule; the ROMMEO paper notes that
  deterministic methods need tuning of the exploration noise: we do not tune it).
- Actor regulariser policy_reg x mean squared pre-tanh output, 1e-3 as in the MADDPG code and our
  maddpg (the maci DDPG has none; without it a policy can push tanh into float32 saturation, where the
  policy gradient is exactly zero, and freeze at an action bound). Gradient norms clipped at 0.5 (code).
- Critic loss 1/2 mean squared TD error (code); the actor is updated against the just-updated critic
  (as in MADDPG); targets are updated after every update (code: every ``td_target_update_interval``).
- The next action in the target is the target policy's noiseless action (Box) or a Gumbel-ST sample of
  its logits (discrete, as the MADDPG code does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from marlow.algos import common
from marlow.envs.api import EnvSpec
from marlow.envs.spaces import unit_flat
from marlow.nn.mlp import MLP
from marlow.schema.groups import ReplayKeys, TargetKeys
from marlow.schema.ranges import NonNegative, Positive, Widths

NAME = "ddpg"
KIND = "off_policy"
DESCRIPTION = "Independent DDPG, decentralised critics Q_i(o_i, a_i) (Lillicrap et al. 2015)"
SUPPORTED_ACTIONS = frozenset({"discrete", "multi_discrete", "box"})


@dataclass
class Config(ReplayKeys, TargetKeys):
    """Defaults in conf/algo/ddpg.yaml, each with its source."""

    hidden: Widths
    lr_actor: Positive
    lr_critic: Positive
    exploration_noise: NonNegative  # 0 = act greedily
    policy_reg: NonNegative
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

    def __init__(self, spec: EnvSpec, cfg: Config):
        self.spec, self.cfg = spec, cfg
        self.policies = common.Policies(
            spec,
            cfg.hidden,
            deterministic=True,
            temperature=cfg.gumbel_temperature,
            noise=cfg.exploration_noise,
        )
        self.critic = MLP(tuple(cfg.hidden), 1)
        self.actor_opt = common.make_optimizer(cfg.lr_actor, cfg.max_grad_norm)
        self.critic_opt = common.make_optimizer(cfg.lr_critic, cfg.max_grad_norm)

    def init(self, key: jax.Array) -> State:
        spec = self.spec
        k_pi, k_q = jax.random.split(key)
        actor = self.policies.init(k_pi)
        critic = {
            a: self.critic.init(k, jnp.zeros((1, spec.obs_dim(a) + spec.act_space(a).flat_dim)))
            for a, k in zip(spec.agents, jax.random.split(k_q, spec.num_agents), strict=True)
        }
        return State(
            actor=actor,
            critic=critic,
            target_actor=jax.tree.map(jnp.copy, actor),
            target_critic=jax.tree.map(jnp.copy, critic),
            actor_opt={a: self.actor_opt.init(actor[a]) for a in spec.agents},
            critic_opt={a: self.critic_opt.init(critic[a]) for a in spec.agents},
            steps=jnp.int32(0),
        )

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        return self.policies.act(state.actor, obs, key, explore)

    def q(self, params, agent: str, obs: jax.Array, flat_action: jax.Array) -> jax.Array:
        """Q_i(o_i, a_i): the agent's own observation and own (flat, env-scale) action only."""
        x = jnp.concatenate([obs, unit_flat(self.spec.act_space(agent), flat_action)], axis=-1)
        return jnp.squeeze(self.critic.apply(params, x), -1)

    def agent_update(self, state: State, a: str, batch: dict, key: jax.Array) -> tuple[dict, dict]:
        """Critic then actor step of agent ``a`` (the module docstring's equations)."""
        cfg = self.cfg
        obs, next_obs = batch["obs"][a], batch["next_obs"][a]
        own_flat = self.spec.act_space(a).to_flat(batch["actions"][a])
        k_next, k_pi = jax.random.split(key)
        dist = self.policies.dists[a]

        # y_i = r_i + gamma (1 - d) Qbar_i(o'_i, mubar_i(o'_i))
        next_act = common.critic_action(dist, self.policies.out(state.target_actor, a, next_obs), k_next)
        q_next = self.q(state.target_critic[a], a, next_obs, next_act)
        y = jax.lax.stop_gradient(batch["rewards"][a] + cfg.gamma * (1.0 - batch["done"]) * q_next)

        def critic_loss(p):  # L(Q_i) = 1/2 E_D[(Q_i(o_i, a_i) - y_i)^2]
            q = self.q(p, a, obs, own_flat)
            return 0.5 * jnp.mean((q - y) ** 2), jnp.mean(q)

        (c_loss, q_mean), g = jax.value_and_grad(critic_loss, has_aux=True)(state.critic[a])
        critic_p, critic_o = common.opt_step(self.critic_opt, state.critic[a], state.critic_opt[a], g)

        def actor_loss(p):  # -E_D[Q_i(o_i, mu_i(o_i))] + policy_reg E_D[mu_i^raw(o_i)^2]
            out = self.policies.nets[a].apply(p, obs)
            q = self.q(critic_p, a, obs, common.critic_action(dist, out, k_pi))
            return -jnp.mean(q) + cfg.policy_reg * jnp.mean(out**2)

        a_loss, g = jax.value_and_grad(actor_loss)(state.actor[a])
        actor_p, actor_o = common.opt_step(self.actor_opt, state.actor[a], state.actor_opt[a], g)
        new = {"actor": actor_p, "critic": critic_p, "actor_opt": actor_o, "critic_opt": critic_o}
        return new, {"critic_loss": c_loss, "actor_loss": a_loss, "q": q_mean}
