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
- Networks see actions rescaled to [-1, 1] (``to_unit``; ours, as in rommeo_ac: the games' [-10, 10]
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
from marlow.envs.spaces import Box
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


# ---- helpers shared with ddpg_om ------------------------------------------------------------------------
def to_unit(space, flat: jax.Array) -> jax.Array:
    """Flat actions -> network inputs: Box actions mapped from [low, high] to [-1, 1]; one-hots unchanged."""
    if not isinstance(space, Box):
        return flat
    low, high = space.low_array.reshape(-1), space.high_array.reshape(-1)
    return (flat - low) / ((high - low) / 2.0) - 1.0


def from_unit(space: Box, u: jax.Array) -> jax.Array:
    """Inverse of :func:`to_unit` for a Box: [-1, 1] -> [low, high]."""
    low, high = space.low_array.reshape(-1), space.high_array.reshape(-1)
    return low + (u + 1.0) * (high - low) / 2.0


def first_scalar(x: jax.Array) -> jax.Array:
    """The first component of a [1, ...] action as a float scalar (for diagnostics)."""
    return jnp.reshape(x, (-1,))[0].astype(jnp.float32)


class Algorithm:
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
        x = jnp.concatenate([obs, to_unit(self.spec.act_space(agent), flat_action)], axis=-1)
        return jnp.squeeze(self.critic.apply(params, x), -1)

    def update(self, state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        cfg, spec = self.cfg, self.spec
        obs, next_obs = batch["obs"], batch["next_obs"]
        own_flat = common.flat_actions(spec, batch["actions"])
        not_done = 1.0 - batch["done"]

        new = {k: {} for k in ("actor", "critic", "actor_opt", "critic_opt")}
        m = {k: {} for k in ("critic_loss", "actor_loss", "q")}
        for a, k in zip(spec.agents, jax.random.split(key, spec.num_agents), strict=True):
            k_next, k_pi = jax.random.split(k)
            dist = self.policies.dists[a]

            # y_i = r_i + gamma (1 - d) Qbar_i(o'_i, mubar_i(o'_i))
            next_act = common.critic_action(
                dist, self.policies.out(state.target_actor, a, next_obs[a]), k_next
            )
            q_next = self.q(state.target_critic[a], a, next_obs[a], next_act)
            y = jax.lax.stop_gradient(batch["rewards"][a] + cfg.gamma * not_done * q_next)

            def critic_loss(p, a=a, y=y):  # L(Q_i) = 1/2 E_D[(Q_i(o_i, a_i) - y_i)^2]
                q = self.q(p, a, obs[a], own_flat[a])
                return 0.5 * jnp.mean((q - y) ** 2), jnp.mean(q)

            (c_loss, q_mean), g = jax.value_and_grad(critic_loss, has_aux=True)(state.critic[a])
            critic_p, critic_o = common.opt_step(self.critic_opt, state.critic[a], state.critic_opt[a], g)

            def actor_loss(p, a=a, k_pi=k_pi, dist=dist, critic_p=critic_p):  # -E_D[Q_i(o_i, mu_i(o_i))]
                out = self.policies.nets[a].apply(p, obs[a])
                q = self.q(critic_p, a, obs[a], common.critic_action(dist, out, k_pi))
                return -jnp.mean(q) + cfg.policy_reg * jnp.mean(out**2)

            a_loss, g = jax.value_and_grad(actor_loss)(state.actor[a])
            actor_p, actor_o = common.opt_step(self.actor_opt, state.actor[a], state.actor_opt[a], g)

            new["actor"][a], new["critic"][a] = actor_p, critic_p
            new["actor_opt"][a], new["critic_opt"][a] = actor_o, critic_o
            m["critic_loss"][a], m["actor_loss"][a], m["q"][a] = c_loss, a_loss, q_mean

        state = State(
            target_actor=common.soft_update(state.target_actor, new["actor"], cfg.tau),
            target_critic=common.soft_update(state.target_critic, new["critic"], cfg.tau),
            steps=state.steps + 1,
            **new,
        )
        return state, {k: common.mean_over_agents(v) for k, v in m.items()}

    def diagnostics(self, state: State) -> dict:
        """Each agent's greedy action at the all-ones observation (the games' constant observation)."""
        out = {}
        for a in self.spec.agents:
            obs = jnp.ones((1, self.spec.obs_dim(a)))
            out[f"pi_mean/{a}"] = first_scalar(self.policies.mode(state.actor, a, obs)[0])
        return out
