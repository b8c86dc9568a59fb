"""ROMMEO-AC: regularised opponent model with maximum entropy objective, actor-critic (ROMMEO paper
Sec. 3.2, Eqs. 14-22, Appendix A Algorithm 2).

Every agent i has (o_i is its observation, the paper's s; a_-i the joint action of the other agents):
- a joint critic Q_i(o_i, a_i, a_-i) with a Polyak target copy Qbar_i;
- a conditional policy pi_i(a_i | o_i, a_-i), tanh-Gaussian, a_i = f(eps; o_i, a_-i);
- an opponent model rho_i(a_-i | o_i), tanh-Gaussian over the others' joint action, a_-i = g(eps; o_i);
- a prior P_i(a_-i | o_i), tanh-Gaussian, fitted by maximum likelihood to the others' real actions.

Acting (Algorithm 2):  ahat_-i ~ rho_i(.|o_i),  a_i ~ pi_i(.|o_i, ahat_-i)   (greedy: the modes).
Eq. (14), critic:      J_Q = E_D[ 1/2 (Q_i(o, a_i, a_-i) - r_i - gamma (1 - d) Vbar(o'))^2 ]
Eq. (15), value:       Vbar(o') = Qbar_i(o', a', ahat') - alpha log pi_i(a'|o', ahat') - log rho_i(ahat'|o')
                                  + log P_i(ahat'|o'),   ahat' ~ rho_i(.|o'),  a' ~ pi_i(.|o', ahat')
Eq. (18), policy:      J_pi = E[ alpha log pi_i(f(eps; o, ahat)|o, ahat) - Q_i(o, f(eps; o, ahat), ahat) ],
                       ahat ~ rho_i(.|o) (not differentiated)
Eq. (19), opponent:    J_rho = E_{(o, a_i) ~ D}[ log rho_i(g(eps; o)|o) - log P_i(g(eps; o)|o)
                                                 - Q_i(o, a_i, g(eps; o)) + alpha log pi_i(a_i|o, g(eps; o)) ]
Algorithm 2, prior:    J_P = -E_D[ log P_i(a_-i|o) ]  (the real actions of the others)
Eqs. (20)-(22) are the gradients of these losses; autodiff computes them.

Choices (the reference code's, docs/reference/rommeo.md, unless marked ours):
- Q, pi, rho and P are 2 x 100 ReLU MLPs; log sigma clipped to [-20, 2]; pi and rho carry the code's
  regulariser ``policy_reg x 0.5 (mean log sigma^2 + mean mu^2)``.
- Networks see actions rescaled to [-1, 1] (ours: the games' [-10, 10] actions would otherwise dominate
  the inputs). Log-probabilities are those of the env-scale actions.
- Eq. (15)'s next actions come from the current pi and rho (Algorithm 2 writes a target policy, the code
  uses the current one; there is no target policy network).
- The prior is fitted on the sampled mini-batch, i.e. on the whole buffer as in Algorithm 2 (the code
  uses a recent window that wraps onto empty rows early in training: a bug we avoid), one gradient step
  per update. Every loss is a batch *mean* (the code's opponent loss is a sum: a batch-size-dependent
  scale, a bug we avoid). atanh of actions at the bounds is clipped (``TanhGaussian``), so log P of a
  real action at +-10 stays finite.
- alpha: ``alpha_schedule = constant`` (default: the paper says ROMMEO-AC "does not need ... a delicately
  designed annealing scheme for alpha") or ``anneal``, the code's per-step schedule
  alpha_t = alpha + anneal_scale exp(-anneal_rate max(t - anneal_start, 0)) with t = updates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from marlow.algos import common
from marlow.envs.api import EnvSpec
from marlow.envs.spaces import Box, flat_bounds, to_unit
from marlow.nn.distributions import TanhGaussian
from marlow.nn.mlp import MLP, POLICY_HEAD_SCALE
from marlow.schema.groups import ReplayKeys, TargetKeys
from marlow.schema.ranges import NonNegative, Positive, Widths

NAME = "rommeo_ac"
KIND = "off_policy"
DESCRIPTION = "ROMMEO-AC: max-entropy actor-critic with a regularised opponent model (ROMMEO Alg. 2)"
SUPPORTED_ACTIONS = frozenset({"box"})
NETS = ("q", "pi", "rho", "prior")


@dataclass
class Config(ReplayKeys, TargetKeys, common.AnnealKeys):
    """Defaults in conf/algo/rommeo_ac.yaml, each with its source."""

    hidden: Widths
    # learning rates may be 0, which freezes a network (tests/test_rommeo.py freezes Q, pi and P)
    lr_q: NonNegative
    lr_pi: NonNegative
    lr_rho: NonNegative
    lr_prior: NonNegative
    alpha: Positive  # the max-entropy temperature (pi* ∝ exp(Q / alpha))
    policy_reg: NonNegative
    reward_scale: Positive


@struct.dataclass
class State:
    params: dict[str, dict[str, Any]]  # net name -> agent -> params
    opt: dict[str, dict[str, Any]]
    target_q: dict[str, Any]
    steps: jax.Array


def others_box(spec: EnvSpec, agents: tuple[str, ...]) -> Box:
    """One flat Box over the concatenated actions of ``agents``."""
    low, high = flat_bounds([spec.act_space(b) for b in agents])
    return Box(tuple(low.tolist()), tuple(high.tolist()), (int(low.shape[0]),))


class Algorithm(common.AgentwiseUpdate):
    def __init__(self, spec: EnvSpec, cfg: Config):
        self.spec, self.cfg = spec, cfg
        self.others = {a: tuple(b for b in spec.agents if b != a) for a in spec.agents}
        self.own = {a: TanhGaussian(spec.act_space(a)) for a in spec.agents}
        self.opp = {a: TanhGaussian(others_box(spec, self.others[a])) for a in spec.agents}
        self.own_bounds = {a: flat_bounds([spec.act_space(a)]) for a in spec.agents}
        self.opp_bounds = {a: flat_bounds([spec.act_space(b) for b in self.others[a]]) for a in spec.agents}
        h = tuple(cfg.hidden)
        self.nets = {
            "q": {a: MLP(h, 1) for a in spec.agents},
            "pi": {a: MLP(h, self.own[a].out_dim, out_scale=POLICY_HEAD_SCALE) for a in spec.agents},
            "rho": {a: MLP(h, self.opp[a].out_dim, out_scale=POLICY_HEAD_SCALE) for a in spec.agents},
            "prior": {a: MLP(h, self.opp[a].out_dim, out_scale=POLICY_HEAD_SCALE) for a in spec.agents},
        }
        lrs = {"q": cfg.lr_q, "pi": cfg.lr_pi, "rho": cfg.lr_rho, "prior": cfg.lr_prior}
        self.opts = {n: common.make_optimizer(lrs[n], cfg.max_grad_norm) for n in NETS}

    # ---- shapes ------------------------------------------------------------------------------------
    def _in_dims(self, a: str) -> dict[str, int]:
        o, d_own, d_opp = self.spec.obs_dim(a), self.own[a].dim, self.opp[a].dim
        return {"q": o + d_own + d_opp, "pi": o + d_opp, "rho": o, "prior": o}

    def init(self, key: jax.Array) -> State:
        params: dict[str, dict[str, Any]] = {n: {} for n in NETS}
        keys = iter(jax.random.split(key, len(NETS) * self.spec.num_agents))
        for a in self.spec.agents:
            dims = self._in_dims(a)
            for n in NETS:
                params[n][a] = self.nets[n][a].init(next(keys), jnp.zeros((1, dims[n])))
        opt = {n: {a: self.opts[n].init(params[n][a]) for a in self.spec.agents} for n in NETS}
        return State(params=params, opt=opt, target_q=jax.tree.map(jnp.copy, params["q"]), steps=jnp.int32(0))

    def alpha(self, steps: jax.Array) -> jax.Array:
        return common.alpha_at(self.cfg, steps)

    # ---- network evaluation --------------------------------------------------------------------------
    def own_unit(self, a: str, x: jax.Array) -> jax.Array:
        """Agent ``a``'s env-scale flat action -> [-1, 1] (network inputs)."""
        return to_unit(x, *self.own_bounds[a])

    def opp_unit(self, a: str, x: jax.Array) -> jax.Array:
        """The others' env-scale joint flat action (as agent ``a`` models it) -> [-1, 1]."""
        return to_unit(x, *self.opp_bounds[a])

    def _out(self, params, net: str, a: str, *inputs) -> jax.Array:
        return self.nets[net][a].apply(params[net][a], jnp.concatenate(inputs, axis=-1))

    def q(self, q_params, a: str, obs, own, opp) -> jax.Array:
        x = jnp.concatenate([obs, self.own_unit(a, own), self.opp_unit(a, opp)], axis=-1)
        return jnp.squeeze(self.nets["q"][a].apply(q_params, x), -1)

    def pi_out(self, params, a: str, obs, opp) -> jax.Array:
        return self._out(params, "pi", a, obs, self.opp_unit(a, opp))

    def others_flat(self, a: str, actions: dict) -> jax.Array:
        return jnp.concatenate([actions[b].reshape(actions[b].shape[0], -1) for b in self.others[a]], -1)

    def _reg(self, out: jax.Array) -> jax.Array:
        """The code's regulariser 0.5 (mean log sigma^2 + mean mu^2) on a tanh-Gaussian head."""
        mean, log_std = jnp.split(out, 2, axis=-1)
        return 0.5 * (jnp.mean((2.0 * log_std) ** 2) + jnp.mean(mean**2))

    # ---- acting --------------------------------------------------------------------------------------
    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        p = state.params
        out = {}
        for a, k in zip(self.spec.agents, jax.random.split(key, self.spec.num_agents), strict=True):
            k_rho, k_pi = jax.random.split(k)
            rho_out = self._out(p, "rho", a, obs[a])
            opp = self.opp[a].sample(rho_out, k_rho).flat if explore else self.opp[a].mode(rho_out)[1]
            pi_out = self.pi_out(p, a, obs[a], opp)
            out[a] = self.own[a].sample(pi_out, k_pi).env if explore else self.own[a].mode(pi_out)[0]
        return out

    # ---- learning ------------------------------------------------------------------------------------
    def update(self, state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        new_state, metrics = super().update(state, batch, key)
        return new_state, {**metrics, "alpha": self.alpha(state.steps)}

    def combine(self, state: State, parts: list) -> tuple[State, dict]:
        """:meth:`AgentwiseUpdate.combine` for parameters kept per network, then per agent."""
        new, metrics = common.gather_parts(self.spec, parts)
        new = {"params": {n: new[n] for n in NETS}, "opt": {n: new[f"{n}_opt"] for n in NETS}}
        return common.apply_update(state, new, self.cfg.tau, target_q=new["params"]["q"]), metrics

    def agent_update(self, state: State, a: str, batch: dict, key: jax.Array) -> tuple[dict, dict]:
        """Eqs. (14)-(19) and the prior's step for agent ``a``, every loss on the parameters before this
        update (Algorithm 2)."""
        cfg, p, alpha = self.cfg, state.params, self.alpha(state.steps)
        obs, next_obs = batch["obs"][a], batch["next_obs"][a]
        own_flat = common.flat_actions(self.spec, batch["actions"])
        opp_real, own_real = self.others_flat(a, own_flat), own_flat[a]
        dist_own, dist_opp = self.own[a], self.opp[a]
        k_rho1, k_pi1, k_rho, k_pi, k_rho2 = jax.random.split(key, 5)
        new, m = {}, {}

        def step(net, loss_fn):
            (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(p[net][a])
            new[net], new[f"{net}_opt"] = common.opt_step(self.opts[net], p[net][a], state.opt[net][a], g)
            return loss, aux

        # Eq. (15): the soft value of o' under the current pi, rho and prior
        rho_next = dist_opp.sample(self._out(p, "rho", a, next_obs), k_rho1)
        pi_next = dist_own.sample(self.pi_out(p, a, next_obs, rho_next.flat), k_pi1)
        log_prior_next = dist_opp.log_prob(self._out(p, "prior", a, next_obs), rho_next.flat)
        v_next = (
            self.q(state.target_q[a], a, next_obs, pi_next.flat, rho_next.flat)
            - alpha * pi_next.log_prob
            - rho_next.log_prob
            + log_prior_next
        )
        not_done = 1.0 - batch["done"]
        y = jax.lax.stop_gradient(cfg.reward_scale * batch["rewards"][a] + cfg.gamma * not_done * v_next)

        def q_loss(qp):  # Eq. (14)
            q = self.q(qp, a, obs, own_real, opp_real)
            return 0.5 * jnp.mean((q - y) ** 2), jnp.mean(q)

        m["q_loss"], m["q"] = step("q", q_loss)
        opp_hat = jax.lax.stop_gradient(dist_opp.sample(self._out(p, "rho", a, obs), k_rho).flat)

        def pi_loss(pp):  # Eq. (18)
            out = self.nets["pi"][a].apply(pp, jnp.concatenate([obs, self.opp_unit(a, opp_hat)], -1))
            s = dist_own.sample(out, k_pi)
            q = self.q(p["q"][a], a, obs, s.flat, opp_hat)
            loss = jnp.mean(alpha * s.log_prob - q) + cfg.policy_reg * self._reg(out)
            return loss, jnp.mean(-s.log_prob)

        m["pi_loss"], m["entropy"] = step("pi", pi_loss)

        def rho_loss(rp):  # Eq. (19)
            out = self.nets["rho"][a].apply(rp, obs)
            s = dist_opp.sample(out, k_rho2)
            log_prior = dist_opp.log_prob(self._out(p, "prior", a, obs), s.flat)
            q = self.q(p["q"][a], a, obs, own_real, s.flat)
            log_pi = dist_own.log_prob(self.pi_out(p, a, obs, s.flat), own_real)
            loss = jnp.mean(s.log_prob - log_prior - q + alpha * log_pi)
            return loss + cfg.policy_reg * self._reg(out), None

        m["rho_loss"], _ = step("rho", rho_loss)

        def prior_loss(pp):  # Algorithm 2: maximum likelihood of P
            return -jnp.mean(dist_opp.log_prob(self.nets["prior"][a].apply(pp, obs), opp_real)), None

        m["prior_nll"], _ = step("prior", prior_loss)
        return new, m

    def probe(self, state: State, obs: dict) -> dict:
        """At ``obs`` (a single-state game's observation): the means (modes) of each agent's opponent model
        and of its prior for the first other agent, in env units (Fig. 2c)."""
        p = state.params
        out = {}
        for a in self.spec.agents:
            d = self.spec.act_space(self.others[a][0]).flat_dim
            out[f"rho_mean/{a}"] = self.opp[a].mode(self._out(p, "rho", a, obs[a]))[1][0, :d][0]
            out[f"prior_mean/{a}"] = self.opp[a].mode(self._out(p, "prior", a, obs[a]))[1][0, :d][0]
        return out
