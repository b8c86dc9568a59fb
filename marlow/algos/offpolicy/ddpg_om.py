"""DDPG-OM: DDPG with an opponent module trained online by supervision (ROMMEO paper Sec. 5.2, Fig. 2,
"similar to [Rabinowitz et al., 2018; He et al., 2016]").

Every agent i has (o_i its observation, a_-i the joint action of the other agents):
- an opponent model OM_i(o_i) -> ahat_-i, a deterministic prediction of the others' latest actions;
- a joint critic Q_i(o_i, a_i, a_-i), trained on the real joint actions, with a Polyak target Qbar_i;
- a policy mu_i(o_i, ahat_-i) conditioned on the predicted opponent action (He et al. 2016's DRON
  feeds the opponent module's output to the policy), with a Polyak target mubar_i.

Opponent model (online supervision on the most recent transitions W, the window kept by ``observe``):
    L(OM_i) = 1/2 mean_{(o_i, a_-i) in W} || OM_i(o_i) - a_-i ||^2        (in [-1, 1] action units)
Critic:
    L(Q_i)  = 1/2 E_D[ (Q_i(o_i, a_i, a_-i) - y_i)^2 ],
    y_i     = r_i + gamma (1 - d) Qbar_i(o'_i, mubar_i(o'_i, ahat'_-i), ahat'_-i),  ahat'_-i = OM_i(o'_i)
Actor (deterministic policy gradient against the predicted opponent action):
    minimise  -E_D[ Q_i(o_i, mu_i(o_i, ahat_-i), ahat_-i) ] + policy_reg E_D[ mu_i^raw^2 ],
    ahat_-i = OM_i(o_i)  (not differentiated)
Acting:   ahat_-i = OM_i(o_i),  a_i = mu_i(o_i, ahat_-i) + Gaussian noise (greedy: no noise).
Targets:  Polyak averaging of Q and mu after every update (the OM has no target copy).

Choices the papers leave open (defaults in conf/algo/ddpg_om.yaml; "code" = the DDPG-OM learner of the
PR2/ROMMEO authors' ``maci`` package, ``maci/learners/maddpg.py`` with ``joint=True,
opponent_modelling=True``):
- The OM is a deterministic tanh network regressed with 1/2 MSE (code); we regress in [-1, 1] action
  units (the code in env units: a constant factor, absorbed by Adam up to gradient clipping).
- "Online" = one OM gradient step per update on the ``om_window`` most recent transitions (code: the
  last ``batch_size`` transitions of the buffer). ``observe`` keeps that window in the state (a small
  circular buffer fed with every freshly collected batch, also during warm-up); rows not yet written
  are masked out (the code's window wraps onto empty rows early in training: a bug we avoid).
- Order inside an update: OM step first, then critic and actor use the updated OM (the code runs all
  three steps on the old parameters at once).
- The policy takes the OM prediction as input and the actor's critic evaluation uses that prediction
  as the others' action (ours, following the brief's mu_i(o_i, OM_i(o_i)); the code's actor ignores
  the OM and evaluates Q at the others' *buffer* actions, which makes the OM affect only the critic
  target).
- Networks see actions rescaled to [-1, 1]; Box actions only (an OM for discrete opponents would need
  a categorical head and a cross-entropy loss). Everything else as in ddpg.py (exploration noise 0.1 x
  half range, policy_reg 1e-3 on the pre-tanh output, gradient clipping 0.5, 1/2 MSE critic loss,
  targets every update, actor against the just-updated critic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from marlow.algos import common
from marlow.buffers import replay
from marlow.envs.api import EnvSpec
from marlow.envs.spaces import flat_bounds, from_unit, unit_flat
from marlow.nn.mlp import MLP, POLICY_HEAD_SCALE
from marlow.schema.groups import ReplayKeys, TargetKeys
from marlow.schema.ranges import NonNegative, Positive, Size, Widths

NAME = "ddpg_om"
KIND = "off_policy"
DESCRIPTION = "DDPG with an opponent model trained online by supervision (ROMMEO Sec. 5.2 baseline)"
SUPPORTED_ACTIONS = frozenset({"box"})


@dataclass
class Config(ReplayKeys, TargetKeys):
    """Defaults in conf/algo/ddpg_om.yaml, each with its source."""

    hidden: Widths
    lr_actor: Positive
    lr_critic: Positive
    lr_om: Positive
    exploration_noise: NonNegative  # 0 = act greedily
    policy_reg: NonNegative
    om_window: Size


@struct.dataclass
class State:
    actor: dict[str, Any]
    critic: dict[str, Any]
    om: dict[str, Any]
    target_actor: dict[str, Any]
    target_critic: dict[str, Any]
    actor_opt: dict[str, Any]
    critic_opt: dict[str, Any]
    om_opt: dict[str, Any]
    recent: replay.ReplayBuffer  # the om_window most recent transitions: {"obs", "actions"} per agent
    steps: jax.Array


class Algorithm(common.AgentwiseUpdate):
    TARGETS = {"target_actor": "actor", "target_critic": "critic"}

    def __init__(self, spec: EnvSpec, cfg: Config):
        self.spec, self.cfg = spec, cfg
        self.others = {a: tuple(b for b in spec.agents if b != a) for a in spec.agents}
        self.opp_dim = {a: sum(spec.act_space(b).flat_dim for b in self.others[a]) for a in spec.agents}
        self.policies = common.Policies(
            spec, cfg.hidden, deterministic=True, noise=cfg.exploration_noise, extra_inputs=self.opp_dim
        )
        self.critic = MLP(tuple(cfg.hidden), 1)
        self.oms = {
            a: MLP(tuple(cfg.hidden), self.opp_dim[a], out_scale=POLICY_HEAD_SCALE) for a in spec.agents
        }
        self.actor_opt = common.make_optimizer(cfg.lr_actor, cfg.max_grad_norm)
        self.critic_opt = common.make_optimizer(cfg.lr_critic, cfg.max_grad_norm)
        self.om_opt = common.make_optimizer(cfg.lr_om, cfg.max_grad_norm)

    def init(self, key: jax.Array) -> State:
        spec = self.spec
        k_pi, k_q, k_om = jax.random.split(key, 3)
        actor = self.policies.init(k_pi)
        critic, om = {}, {}
        for a, kq, ko in zip(
            spec.agents,
            jax.random.split(k_q, spec.num_agents),
            jax.random.split(k_om, spec.num_agents),
            strict=True,
        ):
            q_in = spec.obs_dim(a) + spec.act_space(a).flat_dim + self.opp_dim[a]
            critic[a] = self.critic.init(kq, jnp.zeros((1, q_in)))
            om[a] = self.oms[a].init(ko, jnp.zeros((1, spec.obs_dim(a))))
        example = {
            "obs": {a: jnp.zeros((spec.obs_dim(a),)) for a in spec.agents},
            "actions": {a: jnp.zeros(spec.act_space(a).shape) for a in spec.agents},
        }
        return State(
            actor=actor,
            critic=critic,
            om=om,
            target_actor=jax.tree.map(jnp.copy, actor),
            target_critic=jax.tree.map(jnp.copy, critic),
            actor_opt={a: self.actor_opt.init(actor[a]) for a in spec.agents},
            critic_opt={a: self.critic_opt.init(critic[a]) for a in spec.agents},
            om_opt={a: self.om_opt.init(om[a]) for a in spec.agents},
            recent=replay.init(example, self.cfg.om_window),
            steps=jnp.int32(0),
        )

    # ---- networks ----------------------------------------------------------------------------------------
    def om_predict(self, om_params, agent: str, obs: jax.Array) -> jax.Array:
        """ahat_-i = OM_i(o_i): the others' concatenated flat actions, in [-1, 1] units."""
        return jnp.tanh(self.oms[agent].apply(om_params, obs))

    def others_unit(self, agent: str, flat: dict) -> jax.Array:
        """The others' real flat actions, concatenated in spec order, in [-1, 1] units."""
        return jnp.concatenate([unit_flat(self.spec.act_space(b), flat[b]) for b in self.others[agent]], -1)

    def policy_out(self, actor_params, agent: str, obs: jax.Array, opp_hat: jax.Array) -> jax.Array:
        """mu_i(o_i, ahat_-i) before the squashing (the opponent prediction is a policy input)."""
        return self.policies.out(actor_params, agent, jnp.concatenate([obs, opp_hat], axis=-1))

    def q(self, params, agent: str, obs, own_flat, opp_unit) -> jax.Array:
        """Q_i(o_i, a_i, a_-i) with a_i an env-scale flat action and a_-i already in [-1, 1] units."""
        own = unit_flat(self.spec.act_space(agent), own_flat)
        return jnp.squeeze(self.critic.apply(params, jnp.concatenate([obs, own, opp_unit], axis=-1)), -1)

    # ---- acting and observing ------------------------------------------------------------------------------
    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        out = {}
        for a, k in zip(self.spec.agents, jax.random.split(key, self.spec.num_agents), strict=True):
            pi_out = self.policy_out(state.actor, a, obs[a], self.om_predict(state.om[a], a, obs[a]))
            dist = self.policies.dists[a]
            out[a] = dist.sample(pi_out, k).env if explore else dist.mode(pi_out)[0]
        return out

    def observe(self, state: State, trans: dict) -> State:
        """Push the freshly collected transitions into the opponent model's recent window."""
        new = {"obs": trans["obs"], "actions": trans["actions"]}
        n = jax.tree.leaves(new)[0].shape[0]
        if n > self.cfg.om_window:  # static: keep only the newest om_window rows
            new = jax.tree.map(lambda x: x[n - self.cfg.om_window :], new)
        return state.replace(recent=replay.add(state.recent, new))

    # ---- learning ----------------------------------------------------------------------------------------
    def agent_update(self, state: State, a: str, batch: dict, key: jax.Array) -> tuple[dict, dict]:
        """Opponent-model, critic and actor steps of agent ``a``, in that order (module docstring; no
        randomness: ``key`` is unused)."""
        cfg, spec = self.cfg, self.spec
        obs, next_obs = batch["obs"], batch["next_obs"]
        own_flat = common.flat_actions(spec, batch["actions"])
        not_done = 1.0 - batch["done"]
        win = state.recent
        win_flat = common.flat_actions(spec, win.data["actions"])
        win_mask = (jnp.arange(cfg.om_window) < win.size).astype(jnp.float32)  # rows written so far

        # L(OM_i) = 1/2 mean_W ||OM_i(o_i) - a_-i||^2 over the valid rows of the recent window
        win_target = self.others_unit(a, win_flat)

        def om_loss(p):
            sq = jnp.mean((self.om_predict(p, a, win.data["obs"][a]) - win_target) ** 2, axis=-1)
            return 0.5 * jnp.sum(win_mask * sq) / jnp.maximum(jnp.sum(win_mask), 1.0)

        o_loss, g = jax.value_and_grad(om_loss)(state.om[a])
        om_p, om_o = common.opt_step(self.om_opt, state.om[a], state.om_opt[a], g)

        # y_i = r_i + gamma (1 - d) Qbar_i(o', mubar_i(o', ahat'), ahat'),  ahat' = OM_i(o')
        opp_next = self.om_predict(om_p, a, next_obs[a])
        next_out = self.policy_out(state.target_actor, a, next_obs[a], opp_next)
        next_act = self.policies.dists[a].mode(next_out)[1]
        q_next = self.q(state.target_critic[a], a, next_obs[a], next_act, opp_next)
        y = jax.lax.stop_gradient(batch["rewards"][a] + cfg.gamma * not_done * q_next)
        opp_real = self.others_unit(a, own_flat)

        def critic_loss(p):  # 1/2 E_D[(Q_i(o, a_i, a_-i) - y_i)^2]
            q = self.q(p, a, obs[a], own_flat[a], opp_real)
            return 0.5 * jnp.mean((q - y) ** 2), jnp.mean(q)

        (c_loss, q_mean), g = jax.value_and_grad(critic_loss, has_aux=True)(state.critic[a])
        critic_p, critic_o = common.opt_step(self.critic_opt, state.critic[a], state.critic_opt[a], g)

        # -E_D[Q_i(o, mu_i(o, ahat), ahat)],  ahat = OM_i(o) held fixed
        opp_hat = jax.lax.stop_gradient(self.om_predict(om_p, a, obs[a]))

        def actor_loss(p):
            out = self.policies.nets[a].apply(p, jnp.concatenate([obs[a], opp_hat], axis=-1))
            q = self.q(critic_p, a, obs[a], self.policies.dists[a].mode(out)[1], opp_hat)
            return -jnp.mean(q) + cfg.policy_reg * jnp.mean(out**2)

        a_loss, g = jax.value_and_grad(actor_loss)(state.actor[a])
        actor_p, actor_o = common.opt_step(self.actor_opt, state.actor[a], state.actor_opt[a], g)
        new = {"om": om_p, "critic": critic_p, "actor": actor_p}
        new.update(om_opt=om_o, critic_opt=critic_o, actor_opt=actor_o)
        return new, {"critic_loss": c_loss, "actor_loss": a_loss, "om_loss": o_loss, "q": q_mean}

    def probe(self, state: State, obs: dict) -> dict:
        """Each agent's opponent-model prediction of the first other agent's action at ``obs`` (a
        single-state game's observation), in env units (ROMMEO Fig. 2c)."""
        out = {}
        for a in self.spec.agents:
            b = self.others[a][0]
            d = self.spec.act_space(b).flat_dim
            opp_hat = self.om_predict(state.om[a], a, obs[a])[:, :d]
            out[f"om_mean/{a}"] = from_unit(opp_hat, *flat_bounds([self.spec.act_space(b)]))[0, 0]
        return out
