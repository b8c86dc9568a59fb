"""PR2-AC: probabilistic recursive reasoning actor-critic, level 1 (Wen et al. ICLR 2019, "Probabilistic
Recursive Reasoning for Multi-Agent Reinforcement Learning", Sec. 4 and its PR2-AC algorithm box,
deterministic policy-gradient version), a baseline of the ROMMEO paper's Fig. 2 (Sec. 5.2).

Every agent i has (o_i its observation, the paper's s; a_-i the joint action of the other agents):
- a deterministic policy mu_i(o_i) with a Polyak target copy mubar_i;
- a joint critic Q_i(o_i, a_i, a_-i) with a Polyak target copy Qbar_i;
- a conditional opponent policy rho_i(a_-i | o_i, a_i): agent i's belief of how the others reply to its
  own action a_i, an amortised sampler a_-i = g_i(o_i, a_i, xi), xi ~ N(0, I), trained by amortised SVGD
  toward the optimal conditional policy of PR2's variational derivation,
  rho_i(a_-i | s, a_i) ∝ exp(Q_i(s, a_i, a_-i) / alpha) (its normaliser exp(Q_i(s, a_i) / alpha) does
  not depend on a_-i, so it drops out of the SVGD scores).

Level-1 value of an own action (PR2 Sec. 4):
    Q_i(s, a_i) = E_{a_-i ~ rho_i(.|s, a_i)}[ Q_i(s, a_i, a_-i) ] ≈ 1/M sum_k Q_i(s, a_i, g_i(s, a_i, xi_k))
Critic (PR2-AC algorithm; the expectation under rho is our reading, see the choices below):
    J_Q = E_D[ 1/2 (Q_i(o, a_i, a_-i) - y)^2 ],
    y   = c r_i + gamma (1 - d) 1/M sum_k Qbar_i(o', a'_i, a'_-i,k),
          a'_i = mubar_i(o'),  a'_-i,k ~ rho_i(.|o', a'_i)
Actor, PR2's deterministic policy gradient (Sec. 4):
    grad J(mu_i) = E_D[ grad mu_i(o) grad_{a_i} ∫ rho_i(a_-i|o, a_i) Q_i(o, a_i, a_-i) da_-i ],
                   the inner gradient taken at a_i = mu_i(o),
    i.e. minimise -E_{D, xi}[ Q_i(o, mu_i(o), g_i(o, mu_i(o), xi)) ] + policy_reg E[ mu_i^raw(o)^2 ];
    the gradient flows into a_i through Q and through rho's reply (rho's own parameters held fixed).
Opponent model (PR2 Sec. 4, SVGD update of rho), amortised SVGD as in soft Q-learning (Haarnoja et
al. 2017, Eqs. 13-14; helpers in ``marlow.algos.offpolicy.masql``), on the replayed (o, a_i):
    phi(a_-i) = mean_j [ kappa(a'_j, a_-i) grad log p(a'_j) + grad kappa(a'_j, a_-i) ],
    log p(a') = Q_i(o, a_i, a') / alpha + sum log(1 - a'^2 + 1e-6)   (a' unit actions, SQL's squash term)
Targets: theta' <- tau theta + (1 - tau) theta' after every update, for Q and mu.
Acting:  a_i = mu_i(o_i) + N(0, (exploration_noise x half range)^2), clipped to the Box (greedy: mu_i).

Choices the paper leaves open (defaults in conf/algo/pr2_ac.yaml; "maci" = the authors' ``maci`` package:
``learners/mavb_ac.py``, ``get_agents.pr2ac_agent`` with k = 1, ``experiment/run_baselines.py``):
- rho: amortised SVGD sampler (maci's choice, kept: a tanh-Gaussian trained by reverse KL is cheaper but
  unimodal and mode-seeking). K = ``kernel_particles`` per state, half fixed, half updated; adaptive
  Gaussian kernel, median bandwidth; as in ``marlow.algos.offpolicy.masql``. Its observation weights
  start at 0
  (ours: our games observe the constant 1 where maci observes 0; this keeps the initial reply centred).
- Networks see actions in [-1, 1] (ours, as in rommeo_ac/ddpg: the games' [-10, 10] would dominate the
  inputs; maci acts in [-1, 1] and the game multiplies by 10).
- maci deviates from the paper in three places; we follow the paper: (1) maci's critic target is a soft
  value over *uniform* opponent samples, alpha log mean_k exp(Qbar(o', a'_i, u_k) / alpha) + d log 2,
  not the expectation under rho; (2) its actor objective is alpha log mean_k exp(Q / alpha) (a soft
  maximum over rho's samples) instead of the mean; (3) its actor feeds rho the *replayed* a_i instead of
  mu_i(o), so no gradient reaches a_i through rho's reply. maci's actor also evaluates Q at o' (a
  typo that is harmless on the one-state games).
- The actor and rho are trained against the critic after this update's critic step; the actor's rho is
  the one before this update's rho step (order of the algorithm box: critic, actor, opponent model).
- Exploration: Gaussian noise of std 0.1 x half range, as this library's DDPG family (maci uses
  Ornstein-Uhlenbeck noise with a hand-made noise-level schedule and a 1000-step random phase; the ROMMEO
  paper notes deterministic methods need such tuning: we do not tune). Actor regulariser
  1e-3 x mean squared pre-tanh output as our ddpg/maddpg (maci has none; it keeps tanh out of float32
  saturation, where the policy gradient vanishes). No gradient clipping (maci's MAVBAC has none).
- alpha constant 0.1 (maci run_baselines.py).
- Known issue (sii-yingwen/rommeo #25, docs/reference/rommeo.md): on Max of Two Quadratics PR2-AC was
  reported to converge to the local optimum 0 in others' hands, not 10 as published. Implemented as
  specified, not tuned for either outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from marlow.algos import common
from marlow.algos.offpolicy.masql import (
    ParticleKeys,
    flat,
    squash_correction,
    svgd_loss,
    updated_particles,
    with_leading,
    zero_obs_weights,
)
from marlow.envs.api import EnvSpec
from marlow.envs.spaces import flat_bounds, from_unit, to_unit
from marlow.nn.mlp import MLP
from marlow.schema.groups import ReplayKeys, TargetKeys
from marlow.schema.ranges import NonNegative, Positive, Widths

NAME = "pr2_ac"
KIND = "off_policy"
DESCRIPTION = "PR2-AC: level-1 recursive reasoning actor-critic with an SVGD conditional opponent model"
SUPPORTED_ACTIONS = frozenset({"box"})
PROBE_SAMPLES = 256  # samples of rho averaged for the rho_mean reading (:meth:`Algorithm.probe`)


@dataclass
class Config(ReplayKeys, TargetKeys, ParticleKeys):
    """Defaults in conf/algo/pr2_ac.yaml, each with its source."""

    hidden: Widths
    lr_actor: Positive
    lr_critic: Positive
    lr_rho: Positive
    alpha: Positive  # divides Q (exp(Q / alpha))
    exploration_noise: NonNegative  # 0 = act greedily
    policy_reg: NonNegative
    reward_scale: Positive


@struct.dataclass
class State:
    actor: dict[str, Any]
    target_actor: dict[str, Any]
    critic: dict[str, Any]
    target_critic: dict[str, Any]
    rho: dict[str, Any]
    actor_opt: dict[str, Any]
    critic_opt: dict[str, Any]
    rho_opt: dict[str, Any]
    steps: jax.Array


class Algorithm(common.AgentwiseUpdate):
    TARGETS = {"target_actor": "actor", "target_critic": "critic"}

    def __init__(self, spec: EnvSpec, cfg: Config):
        n_upd = updated_particles(cfg)
        self.spec, self.cfg = spec, cfg
        self.n_fixed = cfg.kernel_particles - n_upd
        self.others = {a: tuple(b for b in spec.agents if b != a) for a in spec.agents}
        self.own_bounds = {a: flat_bounds([spec.act_space(a)]) for a in spec.agents}
        self.opp_bounds = {a: flat_bounds([spec.act_space(b) for b in self.others[a]]) for a in spec.agents}
        self.own_dim = {a: spec.act_space(a).flat_dim for a in spec.agents}
        self.opp_dim = {a: int(self.opp_bounds[a][0].shape[0]) for a in spec.agents}
        h = tuple(cfg.hidden)
        self.policies = common.Policies(spec, h, deterministic=True, noise=cfg.exploration_noise)
        self.critic_net = {a: MLP(h, 1) for a in spec.agents}
        self.rho_net = {a: MLP(h, self.opp_dim[a]) for a in spec.agents}
        self.actor_opt = common.make_optimizer(cfg.lr_actor, cfg.max_grad_norm)
        self.critic_opt = common.make_optimizer(cfg.lr_critic, cfg.max_grad_norm)
        self.rho_opt = common.make_optimizer(cfg.lr_rho, cfg.max_grad_norm)

    def init(self, key: jax.Array) -> State:
        spec = self.spec
        k_pi, k_q, k_rho = jax.random.split(key, 3)
        actor = self.policies.init(k_pi)
        critic, rho = {}, {}
        for a, kq, kr in zip(
            spec.agents,
            jax.random.split(k_q, spec.num_agents),
            jax.random.split(k_rho, spec.num_agents),
            strict=True,
        ):
            o, d, d_opp = spec.obs_dim(a), self.own_dim[a], self.opp_dim[a]
            critic[a] = self.critic_net[a].init(kq, jnp.zeros((1, o + d + d_opp)))
            rho[a] = zero_obs_weights(self.rho_net[a].init(kr, jnp.zeros((1, o + d + d_opp))), o)
        return State(
            actor=actor,
            target_actor=jax.tree.map(jnp.copy, actor),
            critic=critic,
            target_critic=jax.tree.map(jnp.copy, critic),
            rho=rho,
            actor_opt={a: self.actor_opt.init(actor[a]) for a in spec.agents},
            critic_opt={a: self.critic_opt.init(critic[a]) for a in spec.agents},
            rho_opt={a: self.rho_opt.init(rho[a]) for a in spec.agents},
            steps=jnp.int32(0),
        )

    # ---- networks (all actions in unit scale) -------------------------------------------------------
    def mu(self, actor_params, a: str, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """mu_a(o) as (unit action [B, d], pre-tanh output [B, d])."""
        raw = self.policies.nets[a].apply(actor_params[a], obs)
        return jnp.tanh(raw), raw

    def q(self, params, a: str, obs: jax.Array, own_u: jax.Array, opp_u: jax.Array) -> jax.Array:
        """Q_a(o, a_i, a_-i): obs [B, o], own [B, d], others [B, ..., d_opp] -> [B, ...]."""
        x = with_leading(obs, with_leading(own_u, opp_u))
        return jnp.squeeze(self.critic_net[a].apply(params, x), -1)

    def reply(self, params, a: str, obs: jax.Array, own_u: jax.Array, xi: jax.Array) -> jax.Array:
        """g_a(o, a_i, xi) ~ rho_a(.|o, a_i): obs [B, o], own [B, d], latents [B, K, d_opp] -> unit
        replies [B, K, d_opp]."""
        x = with_leading(obs, with_leading(own_u, xi))
        return jnp.tanh(self.rho_net[a].apply(params, x))

    # ---- acting ---------------------------------------------------------------------------------------
    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        return self.policies.act(state.actor, obs, key, explore)

    # ---- learning -------------------------------------------------------------------------------------
    def agent_update(self, state: State, a: str, batch: dict, key: jax.Array) -> tuple[dict, dict]:
        """Critic, actor and opponent-model (rho) steps of agent ``a``, in that order (module docstring)."""
        cfg = self.cfg
        obs, next_obs = batch["obs"][a], batch["next_obs"][a]
        not_done = 1.0 - batch["done"]
        bsz = batch["done"].shape[0]
        new = {}

        def step(net, loss_fn, opt):
            (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(getattr(state, net)[a])
            new[net], new[net + "_opt"] = common.opt_step(
                opt, getattr(state, net)[a], getattr(state, net + "_opt")[a], g
            )
            return loss, aux

        k_next, k_pi, k_rho = jax.random.split(key, 3)
        own_u = to_unit(flat(batch["actions"], (a,)), *self.own_bounds[a])
        opp_u = to_unit(flat(batch["actions"], self.others[a]), *self.opp_bounds[a])

        # critic target: a'_i = mubar(o'), a'_-i,k ~ rho(.|o', a'_i), y = r + gamma (1-d) mean_k Qbar
        own_next, _ = self.mu(state.target_actor, a, next_obs)
        xi = jax.random.normal(k_next, (bsz, cfg.value_particles, self.opp_dim[a]))
        opp_next = self.reply(state.rho[a], a, next_obs, own_next, xi)
        q_next = jnp.mean(self.q(state.target_critic[a], a, next_obs, own_next, opp_next), -1)
        y = jax.lax.stop_gradient(cfg.reward_scale * batch["rewards"][a] + cfg.gamma * not_done * q_next)

        def critic_loss(qp):
            q = self.q(qp, a, obs, own_u, opp_u)
            return 0.5 * jnp.mean((q - y) ** 2), jnp.mean(q)

        c_loss, q_mean = step("critic", critic_loss, self.critic_opt)

        # actor: maximise Q_i(o, mu(o)) = E_{rho(.|o, mu(o))} Q_i(o, mu(o), a_-i), gradient through rho
        xi_pi = jax.random.normal(k_pi, (bsz, cfg.value_particles, self.opp_dim[a]))

        def actor_loss(ap):
            raw = self.policies.nets[a].apply(ap, obs)
            own = jnp.tanh(raw)
            opp = self.reply(state.rho[a], a, obs, own, xi_pi)
            q = self.q(new["critic"], a, obs, own, opp)
            return -jnp.mean(q) + cfg.policy_reg * jnp.mean(raw**2), None

        a_loss, _ = step("actor", actor_loss, self.actor_opt)

        # opponent model: amortised SVGD toward exp(Q_i(o, a_i, .) / alpha), (o, a_i) from D
        xi_rho = jax.random.normal(k_rho, (bsz, cfg.kernel_particles, self.opp_dim[a]))
        fixed = self.reply(state.rho[a], a, obs, own_u, xi_rho[:, : self.n_fixed])

        def score(x):
            def log_p(x):
                return jnp.sum(self.q(new["critic"], a, obs, own_u, x) / cfg.alpha + squash_correction(x))

            return jax.grad(log_p)(x)

        def rho_loss(rp):
            return svgd_loss(fixed, self.reply(rp, a, obs, own_u, xi_rho[:, self.n_fixed :]), score)

        _, phi = step("rho", rho_loss, self.rho_opt)
        return new, {"critic_loss": c_loss, "actor_loss": a_loss, "q": q_mean, "svgd_phi": phi}

    def probe(self, state: State, obs: dict) -> dict:
        """At ``obs`` (a single-state game's observation): the mean, over a fixed set of samples, of rho's
        predicted reply of the first other agent to the agent's greedy action, in env units."""
        out = {}
        for a in self.spec.agents:
            own, _ = self.mu(state.actor, a, obs[a])
            xi = jax.random.normal(jax.random.PRNGKey(0), (1, PROBE_SAMPLES, self.opp_dim[a]))
            reply = from_unit(self.reply(state.rho[a], a, obs[a], own, xi), *self.opp_bounds[a])
            out[f"rho_mean/{a}"] = jnp.mean(reply[0, :, 0])
        return out
