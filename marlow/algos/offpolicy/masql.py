"""MASQL: multi-agent soft Q-learning (Wei et al. 2018, "Multiagent Soft Q-Learning"; Grau-Moya et al.
2018), the energy-based baseline of the ROMMEO paper's Fig. 2 (Sec. 5.2). Each agent runs soft Q-learning
(Haarnoja et al. 2017, "Reinforcement Learning with Deep Energy-Based Policies", "SQL" below) over the
*joint* action a = (a_i, a_-i):

- a joint soft critic Q_i(o_i, a_i, a_-i) with a Polyak target copy Qbar_i;
- an amortised sampling network f_i(o_i, xi), xi ~ N(0, I), whose samples are joint actions and whose
  sample distribution is trained by amortised SVGD toward the joint energy-based policy
  pi_i(a | o_i) ∝ exp(Q_i(o_i, a) / alpha). Agent i executes the a_i component of its joint sample
  (Wei et al.: each agent samples from its own model of the joint max-entropy policy; the marginal of
  that sample is exactly the marginal of exp(Q_i / alpha) over a_i).

SQL Eq. (10), soft value by importance sampling with a uniform proposal q over the action box:
    V_i(o') = alpha log E_{a ~ q}[ exp(Qbar_i(o', a) / alpha) / q(a) ]
            ≈ alpha [ logsumexp_k Qbar_i(o', a_k) / alpha - log K + log |box| ],   a_k ~ U(box), k = 1..K
SQL Eq. (11), critic:
    J_Q = E_D[ 1/2 (Q_i(o, a_i, a_-i) - y)^2 ],   y = c r_i + gamma (1 - d) V_i(o')
SQL Eq. (13), Stein variational direction for a particle a of f_i(o, .), with fixed particles a'_j:
    phi(a) = mean_j [ kappa(a'_j, a) grad_{a'} log p(a'_j) + grad_{a'} kappa(a'_j, a) ],
    log p(a') = Q_i(o, a') / alpha (+ the tanh squash correction below)
SQL Eq. (14), sampler: move the network's particles along phi, i.e. ascend
    sum_k stop_grad(phi(f(o, xi_k)))^T f(o, xi_k)   (the updated half of the particles)

Choices the papers leave open (defaults in conf/algo/masql.yaml; "maci" = the PR2/ROMMEO authors'
``maci`` package, ``maci/learners/masql.py`` and ``get_agents.masql_agent``):
- Actions: networks see and produce actions in [-1, 1] ("unit" actions, tanh output; maci acts in
  [-1, 1] and the game multiplies by 10); the env receives low + (u + 1)(high - low) / 2.
- Uniform proposal and volume: the integral is over the env-scale joint box, so log |box| =
  sum log(high - low), multiplied by alpha (SQL's exact identity; maci adds ``dim x log 2`` without the
  alpha factor, which is the same only at alpha = 1).
- SVGD exactly as SQL / maci: K = ``kernel_particles`` samples per state split into a fixed half and an
  updated half (``kernel_update_ratio``); isotropic Gaussian kernel on the unit actions with bandwidth
  h = median(squared pairwise distance) / log(K_fixed), h >= 1e-3; log p includes SQL's squash
  correction sum log(1 - u^2 + 1e-6) on the unit particles u (a barrier away from the box edges).
  We average the surrogate over batch and particles (maci sums: a constant scale Adam ignores).
  A reparameterised tanh-Gaussian trained by reverse KL would be cheaper, but it is unimodal and
  mode-seeking, which changes exactly the exploration behaviour this baseline is about; SVGD kept.
- The sampler is trained against the critic after this update's critic step (as masac/ddpg here).
- Greedy (evaluation) action: the a_i component of the highest-Q_i joint action among
  ``greedy_particles`` samples of f_i(o, .) (ours: the sampler has no density, hence no mode; the
  argmax of Q over its proposals is soft Q-learning's greedy action; maci evaluates sampled actions).
- The sampler's observation weights start at 0, so its initial samples are centred on the middle of the
  box whatever the observation (ours: our games observe the constant 1 where maci's observe 0, which
  made maci's initial sampler centred exactly; with weight on the constant input, each seed's initial
  joint action would start at a random point up to +-6 away).
- alpha: ``alpha_schedule = constant`` (default alpha = 0.1: maci's ``experiment/run_baselines.py``, whose
  annealing line is commented out) or ``anneal``: alpha_t = alpha + anneal_scale exp(-anneal_rate
  max(t - anneal_start, 0)), t = updates done (maci's ``experiment/run_rommeo.py`` schedule with
  0.1 + 500 exp(-0.1 max(t - 10, 0))). The ROMMEO paper notes MASQL's outcome is "extremely sensitive to
  the annealing scheme": both are one override away.
- gamma 0.95, tau 0.01 with a target update after every update: the ROMMEO reference settings. maci's
  masql_agent sets gamma 0.99 and a target update every 10 steps, but its differential game ends every
  step (done = True), so neither ever reached its targets; our task bootstraps over 25-step episodes.
- Learning rates 3e-4 for critic and sampler: maci's masql_agent (and SQL's defaults).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

import jax
import jax.numpy as jnp
from flax import struct

from marlow.algos import common
from marlow.envs.api import EnvSpec
from marlow.envs.spaces import flat_bounds, from_unit, to_unit
from marlow.errors import ConfigError
from marlow.nn.mlp import MLP
from marlow.schema.groups import ReplayKeys, TargetKeys
from marlow.schema.ranges import Positive, Range, Size, Widths

NAME = "masql"
KIND = "off_policy"
DESCRIPTION = "Multi-agent soft Q-learning: joint soft Q, importance-sampled value, amortised SVGD sampler"
SUPPORTED_ACTIONS = frozenset({"box"})
SQUASH_EPS = 1e-6  # SQL / maci: log(1 - u^2 + EPS)
H_MIN = 1e-3  # SQL / maci: smallest kernel bandwidth


@dataclass
class ParticleKeys:
    """The particles of an amortised SVGD sampler (MASQL, PR2-AC): ``value_particles`` samples estimate the
    soft value; ``kernel_particles`` per state drive the SVGD step, ``kernel_update_ratio`` of them updated
    and the rest fixed (:func:`updated_particles`)."""

    value_particles: Size
    kernel_particles: Annotated[int, Range(lo=2)]  # >= one fixed and one updated particle
    kernel_update_ratio: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)]  # both halves non-empty


def updated_particles(cfg: ParticleKeys) -> int:
    """How many of the ``kernel_particles`` the SVGD step updates; ConfigError unless at least one particle
    is updated and one fixed."""
    n_upd = int(cfg.kernel_particles * cfg.kernel_update_ratio)
    if not (1 <= n_upd < cfg.kernel_particles):
        raise ConfigError(
            "kernel_particles x kernel_update_ratio must leave at least one fixed and one updated "
            f"particle (got {cfg.kernel_particles} x {cfg.kernel_update_ratio})"
        )
    return n_upd


@dataclass
class Config(ReplayKeys, TargetKeys, common.AnnealKeys, ParticleKeys):
    """Defaults in conf/algo/masql.yaml, each with its source."""

    hidden: Widths
    lr_q: Positive
    lr_sampler: Positive
    alpha: Positive  # divides Q (exp(Q / alpha))
    greedy_particles: Size
    reward_scale: Positive


@struct.dataclass
class State:
    q: dict[str, Any]
    target_q: dict[str, Any]
    sampler: dict[str, Any]
    q_opt: dict[str, Any]
    sampler_opt: dict[str, Any]
    steps: jax.Array


# ---- pieces shared with pr2_ac ----------------------------------------------------------------------------
def flat(actions: dict, agents) -> jax.Array:
    """Env-format Box actions of ``agents`` -> one flat [B, sum dims] array."""
    return jnp.concatenate([actions[b].reshape(actions[b].shape[0], -1) for b in agents], -1)


def with_leading(y: jax.Array, x: jax.Array) -> jax.Array:
    """Concatenate y [B, m] in front of x [B, ..., d], broadcasting y over x's middle axes."""
    y = y.reshape(y.shape[:1] + (1,) * (x.ndim - 2) + y.shape[1:])
    return jnp.concatenate([jnp.broadcast_to(y, x.shape[:-1] + y.shape[-1:]), x], axis=-1)


def uniform_soft_value(q_fn, key: jax.Array, lead: tuple[int, ...], low, high, alpha, num: int):
    """SQL Eq. (10): alpha log ∫_box exp(Q(a) / alpha) da by importance sampling from U(box):
        alpha [ logsumexp_k Q(a_k) / alpha - log K + log |box| ],   a_k ~ U(box), K = ``num``.
    ``q_fn`` maps unit actions [*lead, K, D] to Q values [*lead, K]; ``low``/``high`` are the env-scale
    bounds (the volume is the env-scale box's)."""
    u = jax.random.uniform(key, (*lead, num, low.shape[0]), minval=-1.0, maxval=1.0)
    q = q_fn(u)
    log_volume = jnp.sum(jnp.log(high - low))
    return alpha * (jax.nn.logsumexp(q / alpha, axis=-1) - math.log(num) + log_volume)


def rbf_kernel(xs: jax.Array, ys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """SQL / SVGD (Liu & Wang 2016) adaptive isotropic Gaussian kernel over particle sets
    xs [..., Kx, D] and ys [..., Ky, D]: kappa [..., Kx, Ky] = exp(-|x - y|^2 / h) and its gradient
    w.r.t. x [..., Kx, Ky, D], with h = median |x - y|^2 / log Kx (per set, >= 1e-3, no gradient)."""
    diff = xs[..., :, None, :] - ys[..., None, :, :]
    dist_sq = jnp.sum(diff**2, axis=-1)
    kx = xs.shape[-2]
    med = jnp.median(dist_sq.reshape(*dist_sq.shape[:-2], -1), axis=-1)
    h = jax.lax.stop_gradient(jnp.maximum(med / math.log(kx), H_MIN))[..., None, None]
    kappa = jnp.exp(-dist_sq / h)
    grad = -2.0 * diff / h[..., None] * kappa[..., None]
    return kappa, grad


def svgd_direction(fixed: jax.Array, grad_log_p: jax.Array, updated: jax.Array) -> jax.Array:
    """SQL Eq. (13): phi(y_i) = mean_j [ kappa(x_j, y_i) grad log p(x_j) + grad_{x_j} kappa(x_j, y_i) ]
    for fixed particles x [..., Kx, D] with scores grad log p [..., Kx, D] and updated particles
    y [..., Ky, D]; returns [..., Ky, D]."""
    kappa, kappa_grad = rbf_kernel(fixed, updated)
    return jnp.mean(kappa[..., None] * grad_log_p[..., :, None, :] + kappa_grad, axis=-3)


def squash_correction(u: jax.Array) -> jax.Array:
    """SQL's log-density correction sum log(1 - u^2 + eps) of tanh-squashed unit particles u."""
    return jnp.sum(jnp.log(1.0 - u**2 + SQUASH_EPS), axis=-1)


def svgd_loss(fixed: jax.Array, updated: jax.Array, score_fn) -> tuple[jax.Array, jax.Array]:
    """Amortised SVGD surrogate (SQL Eq. 14). The sampler's particles for one state are split into
    ``fixed`` [..., Kx, D] (no gradient; they give the scores ``score_fn(x) = grad_x log p(x)``) and
    ``updated`` [..., Ky, D] (differentiable w.r.t. the sampler), which move along phi. Returns
    (loss, mean |phi|)."""
    fixed = jax.lax.stop_gradient(fixed)
    phi = jax.lax.stop_gradient(svgd_direction(fixed, score_fn(fixed), updated))
    loss = -jnp.mean(jnp.sum(phi * updated, axis=-1))
    return loss, jnp.mean(jnp.linalg.norm(phi, axis=-1))


def zero_obs_weights(params, obs_dim: int):
    """Zero the first layer's weights from the first ``obs_dim`` inputs (the observation) of an MLP
    sampler, so that at initialisation its output does not depend on the observation."""
    first = min(params["params"], key=lambda n: int(n.split("_")[1]))
    kernel = params["params"][first]["kernel"]
    new = jax.tree.map(lambda x: x, params)
    new["params"][first]["kernel"] = kernel.at[:obs_dim].set(0.0)
    return new


# ---- the algorithm ----------------------------------------------------------------------------------------
class Algorithm(common.AgentwiseUpdate):
    TARGETS = {"target_q": "q"}

    def __init__(self, spec: EnvSpec, cfg: Config):
        n_upd = updated_particles(cfg)
        self.spec, self.cfg = spec, cfg
        self.n_fixed = cfg.kernel_particles - n_upd
        self.others = {a: tuple(b for b in spec.agents if b != a) for a in spec.agents}
        # joint action of agent a's model: its own action first, then the others' in spec order
        self.order = {a: (a, *self.others[a]) for a in spec.agents}
        self.bounds = {a: flat_bounds([spec.act_space(b) for b in self.order[a]]) for a in spec.agents}
        self.own_dim = {a: spec.act_space(a).flat_dim for a in spec.agents}
        self.joint_dim = {a: int(self.bounds[a][0].shape[0]) for a in spec.agents}
        h = tuple(cfg.hidden)
        self.q_net = {a: MLP(h, 1) for a in spec.agents}
        self.sampler_net = {a: MLP(h, self.joint_dim[a]) for a in spec.agents}
        self.q_opt = common.make_optimizer(cfg.lr_q, cfg.max_grad_norm)
        self.sampler_opt = common.make_optimizer(cfg.lr_sampler, cfg.max_grad_norm)

    def init(self, key: jax.Array) -> State:
        q, sampler = {}, {}
        keys = jax.random.split(key, 2 * self.spec.num_agents)
        for i, a in enumerate(self.spec.agents):
            x = jnp.zeros((1, self.spec.obs_dim(a) + self.joint_dim[a]))
            q[a] = self.q_net[a].init(keys[2 * i], x)
            sampler[a] = zero_obs_weights(self.sampler_net[a].init(keys[2 * i + 1], x), self.spec.obs_dim(a))
        return State(
            q=q,
            target_q=jax.tree.map(jnp.copy, q),
            sampler=sampler,
            q_opt={a: self.q_opt.init(q[a]) for a in self.spec.agents},
            sampler_opt={a: self.sampler_opt.init(sampler[a]) for a in self.spec.agents},
            steps=jnp.int32(0),
        )

    # ---- networks (all actions in unit scale) -------------------------------------------------------
    def q(self, params, a: str, obs: jax.Array, joint_u: jax.Array) -> jax.Array:
        """Q_a(o, a_joint): obs [B, o], unit joint actions [B, ..., D] -> [B, ...]."""
        return jnp.squeeze(self.q_net[a].apply(params, with_leading(obs, joint_u)), -1)

    def sample(self, params, a: str, obs: jax.Array, xi: jax.Array) -> jax.Array:
        """f_a(o, xi): obs [B, o], latents [B, ..., D] -> unit joint actions [B, ..., D]."""
        return jnp.tanh(self.sampler_net[a].apply(params, with_leading(obs, xi)))

    def alpha(self, steps: jax.Array) -> jax.Array:
        return common.alpha_at(self.cfg, steps)

    # ---- acting ---------------------------------------------------------------------------------------
    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        """Explore: the a_i component of one joint sample f_i(o, xi). Greedy: the a_i component of the
        highest-Q_i of ``greedy_particles`` joint samples (soft Q-learning's argmax_a Q over the
        sampler's proposals)."""
        out = {}
        for a, k in zip(self.spec.agents, jax.random.split(key, self.spec.num_agents), strict=True):
            p, bsz, d = state.sampler[a], obs[a].shape[0], self.joint_dim[a]
            if explore:
                u = self.sample(p, a, obs[a], jax.random.normal(k, (bsz, d)))
            else:
                cands = self.sample(p, a, obs[a], jax.random.normal(k, (bsz, self.cfg.greedy_particles, d)))
                best = jnp.argmax(self.q(state.q[a], a, obs[a], cands), axis=-1)
                u = jnp.take_along_axis(cands, best[:, None, None], axis=1)[:, 0]
            low, high = (x[: self.own_dim[a]] for x in self.bounds[a])
            env = from_unit(u[:, : self.own_dim[a]], low, high)
            out[a] = env.reshape(env.shape[:1] + self.spec.act_space(a).shape)
        return out

    # ---- learning -------------------------------------------------------------------------------------
    def update(self, state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        new_state, metrics = super().update(state, batch, key)
        return new_state, {**metrics, "alpha": self.alpha(state.steps)}

    def agent_update(self, state: State, a: str, batch: dict, key: jax.Array) -> tuple[dict, dict]:
        """Soft Q step then amortised SVGD step of agent ``a``'s sampler (SQL Eqs. 10-14)."""
        cfg, alpha = self.cfg, self.alpha(state.steps)
        obs, next_obs = batch["obs"][a], batch["next_obs"][a]
        bsz = batch["done"].shape[0]
        k_v, k_xi = jax.random.split(key)
        low, high = self.bounds[a]
        joint_real = to_unit(flat(batch["actions"], self.order[a]), low, high)

        # SQL Eq. (10): soft value of o' under the target critic, uniform importance sampling
        def q_next(u):
            return self.q(state.target_q[a], a, next_obs, u)

        v_next = uniform_soft_value(q_next, k_v, (bsz,), low, high, alpha, cfg.value_particles)
        not_done = 1.0 - batch["done"]
        y = jax.lax.stop_gradient(cfg.reward_scale * batch["rewards"][a] + cfg.gamma * not_done * v_next)

        def q_loss(qp):  # SQL Eq. (11)
            q = self.q(qp, a, obs, joint_real)
            return 0.5 * jnp.mean((q - y) ** 2), jnp.mean(q)

        (loss, q_mean), g = jax.value_and_grad(q_loss, has_aux=True)(state.q[a])
        q_p, q_o = common.opt_step(self.q_opt, state.q[a], state.q_opt[a], g)

        # SQL Eqs. (13)-(14): amortised SVGD toward exp(Q(o, .) / alpha), with the updated critic
        def score(x):
            return jax.grad(lambda x: jnp.sum(self.q(q_p, a, obs, x) / alpha + squash_correction(x)))(x)

        xi = jax.random.normal(k_xi, (bsz, cfg.kernel_particles, self.joint_dim[a]))
        fixed = self.sample(state.sampler[a], a, obs, xi[:, : self.n_fixed])

        def sampler_loss(sp):
            return svgd_loss(fixed, self.sample(sp, a, obs, xi[:, self.n_fixed :]), score)

        (_, phi), g = jax.value_and_grad(sampler_loss, has_aux=True)(state.sampler[a])
        s_p, s_o = common.opt_step(self.sampler_opt, state.sampler[a], state.sampler_opt[a], g)
        new = {"q": q_p, "q_opt": q_o, "sampler": s_p, "sampler_opt": s_o}
        return new, {"q_loss": loss, "q": q_mean, "v_next": jnp.mean(v_next), "svgd_phi": phi}
