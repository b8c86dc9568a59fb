"""The pieces of the PPO family, shared by IPPO and (next) MAPPO, HAPPO and Teammate Lookahead.

- :func:`gae`: generalised advantage estimation (Schulman et al. 2016, Eq. 16) over a ``[T, B]``
  trajectory with terminations and time-limit truncations kept apart;
- :func:`vtrace`: V-trace off-policy targets (Espeholt et al. 2018, "IMPALA", Sec. 4.1 Eq. 1), the
  form the Teammate Lookahead authors' code uses for the ego update on lookahead-collected data;
- :func:`clipped_surrogate`: PPO's clipped objective (Schulman et al. 2017, Eq. 7) with a multiplicative
  factor outside the min (HAPPO's M, Kuba et al. 2022, Eq. 11 / HARL ``happo.py``; 1 for PPO);
- :func:`value_loss`: the clipped value loss with the Huber loss (MAPPO, Yu et al. 2022, Sec. 3 and its
  code's ``cal_value_loss``);
- :class:`ValueNorm`: running mean / variance of the value targets (MAPPO's ValueNorm: debiased EMA);
- :func:`minibatch_epochs`: epochs of permuted minibatches, one ``lax.scan`` each;
- :class:`Config`: the keys every PPO learner shares (each algorithm's config extends it);
- :func:`targets`: from GAE's (or V-trace's) advantages and returns to the training batch's normalised
  advantages, ValueNorm-ed value targets and behaviour values;
- :func:`explained_variance`, :func:`linear_decay`, :func:`check_schedule`.

Everything is a pure function of arrays, jittable and vmappable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from marlow.errors import ConfigError
from marlow.schema import ranges
from marlow.schema.ranges import AnyFloat, NonNegative, Positive, Range, Size, Unit, Widths


@dataclass
class Config:
    """The keys of every PPO learner (IPPO, MAPPO, HAPPO and what builds on them); the defaults are in each
    algorithm's YAML (conf/algo/<name>.yaml), each with its source."""

    hidden: Widths
    activation: str
    lr: Positive
    anneal_lr: bool
    adam_eps: Positive
    gamma: Unit
    gae_lambda: Unit
    clip_eps: Positive  # the ratio's clip (and the value clip with value_clip)
    ent_coef: NonNegative
    vf_coef: NonNegative
    max_grad_norm: NonNegative  # 0 turns gradient clipping off
    rollout_steps: Size
    epochs: Size
    num_minibatches: Size
    value_norm: bool
    # the EMA weight of the old statistics: at 1 they would never move from their start (mean 0)
    value_norm_beta: Annotated[float, Range(0, 1, hi_open=True)]
    value_clip: bool
    huber_delta: NonNegative  # 0: half the squared error instead of the Huber loss
    normalize_advantages: bool
    log_std_init: AnyFloat  # the initial log-std of Box actions, any sign


class Steps(NamedTuple):
    """What the advantage estimators read of a ``[T, B]`` trajectory: the rewards r_t, the values V(s_t)
    and V(s'_t) (``next_values``: of the observation step t reached, the finished episode's last one where
    an episode ended), and the ``terminated`` and ``done`` (= terminated | truncated) flags."""

    rewards: jax.Array
    values: jax.Array
    next_values: jax.Array
    terminated: jax.Array
    done: jax.Array


def gae(steps: Steps, gamma: float, lam: float):
    """Advantages and value targets of a ``[T, B]`` trajectory (reverse scan).

        delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t)
        A_t     = delta_t + gamma lam (1 - done_t) A_{t+1}
        target_t = A_t + V(s_t)

    With V(s'_t) of the observation step t reached, a truncated episode (done, not terminated)
    bootstraps from its last state while the advantage recursion stops there; a terminated one does
    neither. Returns ``(advantages, targets)``, both ``[T, B]``."""
    rewards, values, next_values, terminated, done = steps
    not_term = 1.0 - terminated.astype(jnp.float32)
    not_done = 1.0 - done.astype(jnp.float32)
    deltas = rewards + gamma * not_term * next_values - values

    def back(a_next, x):
        delta, nd = x
        a = delta + gamma * lam * nd * a_next
        return a, a

    _, adv = jax.lax.scan(back, jnp.zeros_like(values[0]), (deltas, not_done), reverse=True)
    return adv, adv + values


def vtrace(steps: Steps, rho, gamma: float, lam: float, rho_clip: float = 1.0, c_clip: float = 1.0):
    """V-trace advantages and value targets of a ``[T, B]`` trajectory collected by a behaviour policy mu
    for a target policy pi, with ``rho`` = pi(a_t | o_t) / mu(a_t | o_t) (treated as a constant):

        rho_bar_t = min(rho_t, rho_clip),   c_t = lam * min(rho_t, c_clip)
        delta_t   = rho_bar_t (r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t))
        A_t       = delta_t + gamma (1 - done_t) c_t A_{t+1}          (A_t = v_t - V(s_t))
        target_t  = A_t + V(s_t)

    (IMPALA Eq. 1 written as a reverse recursion, with IMPALA's trace coefficient c scaled by lam as in
    the Teammate Lookahead code, xlnwel/grl2-jax; the advantage is v_t - V(s_t), as that code's.) With
    rho = 1 this is :func:`gae` exactly. Episode ends as in :func:`gae`. Returns ``(advantages,
    targets)``."""
    rewards, values, next_values, terminated, done = steps
    rho = jax.lax.stop_gradient(rho)
    rho_bar = jnp.minimum(rho, rho_clip)
    c = lam * jnp.minimum(rho, c_clip)
    not_term = 1.0 - terminated.astype(jnp.float32)
    not_done = 1.0 - done.astype(jnp.float32)
    deltas = rho_bar * (rewards + gamma * not_term * next_values - values)

    def back(a_next, x):
        delta, nd, c_t = x
        a = delta + gamma * nd * c_t * a_next
        return a, a

    _, adv = jax.lax.scan(back, jnp.zeros_like(values[0]), (deltas, not_done, c), reverse=True)
    return adv, adv + values


def clipped_surrogate(logp, logp_old, adv, clip_eps: float, factor=1.0):
    """PPO's clipped surrogate as a loss to minimise (Schulman et al. 2017, Eq. 7), with HAPPO's factor:

        L = -mean( factor * min(r A, clip(r, 1 - eps, 1 + eps) A) ),   r = exp(logp - logp_old)

    ``factor`` (HAPPO's M of the earlier agents in the order) multiplies outside the min, unclipped, as
    in HARL. Returns ``(loss, {"approx_kl", "clip_frac"})`` with approx-KL = mean((r - 1) - log r)
    (Schulman's low-variance estimator, as cleanrl)."""
    log_ratio = logp - logp_old
    ratio = jnp.exp(log_ratio)
    surr = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv)
    loss = -jnp.mean(factor * surr)
    stats = {
        "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
        "clip_frac": jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)),
    }
    return loss, stats


def value_loss(v, v_old, target, clip_eps: float | None, huber_delta: float | None):
    """MAPPO's value loss: the error of the new prediction ``v`` and, with ``clip_eps``, of the prediction
    clipped to ``v_old +- clip_eps``; the larger of the two (PPO2's clipped value loss), through the Huber
    loss with ``huber_delta`` (or half the squared error without), averaged."""

    def err(pred):
        if huber_delta:
            return optax.huber_loss(pred, target, delta=huber_delta)
        return 0.5 * (pred - target) ** 2

    loss = err(v)
    if clip_eps:
        loss = jnp.maximum(loss, err(v_old + jnp.clip(v - v_old, -clip_eps, clip_eps)))
    return jnp.mean(loss)


@struct.dataclass
class ValueNorm:
    """Running statistics of value targets (MAPPO's ValueNorm, Yu et al. 2022 App. B: a debiased EMA of
    the mean and the mean square with weight ``beta``); the critic predicts normalised targets."""

    mean: jax.Array
    mean_sq: jax.Array
    debias: jax.Array

    @staticmethod
    def init() -> ValueNorm:
        return ValueNorm(jnp.float32(0), jnp.float32(0), jnp.float32(0))

    def update(self, x: jax.Array, beta: float) -> ValueNorm:
        return ValueNorm(
            self.mean * beta + jnp.mean(x) * (1 - beta),
            self.mean_sq * beta + jnp.mean(x**2) * (1 - beta),
            self.debias * beta + (1 - beta),
        )

    def stats(self, eps: float = 1e-5, min_var: float = 1e-2):
        d = jnp.maximum(self.debias, eps)
        mean = self.mean / d
        var = jnp.maximum(self.mean_sq / d - mean**2, min_var)
        return mean, jnp.sqrt(var)

    def normalize(self, x):
        mean, std = self.stats()
        return (x - mean) / std

    def denormalize(self, x):
        mean, std = self.stats()
        return x * std + mean


def minibatch_epochs(
    carry: Any,
    data: Any,
    key: jax.Array,
    epochs: int,
    num_minibatches: int,
    step: Callable[[Any, Any], tuple[Any, dict]],
) -> tuple[Any, dict]:
    """``epochs`` passes over ``data`` (leaves ``[N, ...]``), each in ``num_minibatches`` minibatches of a
    fresh permutation (the last ``N mod num_minibatches`` rows of a permutation are left out);
    ``step(carry, minibatch) -> (carry, metrics)``. Returns the carry and the metrics averaged over all
    minibatch steps."""
    n = jax.tree.leaves(data)[0].shape[0]
    size = n // num_minibatches

    def epoch(carry, k):
        perm = jax.random.permutation(k, n)[: size * num_minibatches]
        mbs = jax.tree.map(lambda x: x[perm].reshape((num_minibatches, size) + x.shape[1:]), data)
        return jax.lax.scan(step, carry, mbs)

    carry, metrics = jax.lax.scan(epoch, carry, jax.random.split(key, epochs))
    return carry, jax.tree.map(jnp.mean, metrics)


def targets(cfg: Config, adv, returns, values, vnorm: ValueNorm):
    """The training batch's advantages and value targets from GAE's (or V-trace's) ``adv`` and ``returns``
    and the behaviour values ``values`` (return units), with the ValueNorm ``vnorm`` of the behaviour critic.

    Returns ``(adv, target, value, vnorm', explained_variance)``: ``adv`` normalised over the batch when
    ``cfg.normalize_advantages`` (MAPPO); ``vnorm'`` updated with ``returns`` when ``cfg.value_norm``;
    ``target`` = the returns in the updated normalisation; ``value`` = the clipping anchor of the value loss,
    the behaviour critic's own output (normalised with the statistics it was computed with, as MAPPO's stored
    value predictions); the explained variance of ``values`` for ``returns``.
    """
    ev = explained_variance(values, returns)
    new = vnorm.update(returns, cfg.value_norm_beta) if cfg.value_norm else vnorm
    if cfg.normalize_advantages:
        adv = (adv - jnp.mean(adv)) / (jnp.std(adv) + 1e-8)
    if cfg.value_norm:
        return adv, new.normalize(returns), vnorm.normalize(values), new, ev
    return adv, returns, values, new, ev


def explained_variance(pred: jax.Array, target: jax.Array) -> jax.Array:
    """1 - Var[target - pred] / Var[target] (NaN-free: 0 when the targets are constant)."""
    var = jnp.var(target)
    return jnp.where(var > 0, 1.0 - jnp.var(target - pred) / jnp.where(var > 0, var, 1.0), 0.0)


def linear_decay(step, total_steps: int, iteration_steps: int) -> jax.Array:
    """The learning-rate factor of the iteration that ends at env step ``step``: 1 for the first iteration,
    falling linearly to 1 / (number of iterations) for the last (JaxMARL / PureJaxRL's annealing)."""
    done_before = jnp.asarray(step, jnp.float32) - iteration_steps
    return jnp.clip(1.0 - done_before / total_steps, 0.0, 1.0)


def check_schedule(name: str, cfg, num_envs: int, minibatches: dict[str, int] | None = None) -> None:
    """One-line errors for a schedule that cannot run: a key outside the range its config field declares
    (checked again here for a config built in Python, not through the config system), or a batch of
    ``rollout_steps x num_envs`` transitions too small for one of the ``minibatches`` counts (name -> value;
    default ``num_minibatches``)."""
    ranges.validate(cfg, f" for {name}")
    minibatches = minibatches or {"num_minibatches": cfg.num_minibatches}
    batch = cfg.rollout_steps * num_envs
    for key, n in minibatches.items():
        if batch < n:
            raise ConfigError(
                f"{name}: a batch of rollout_steps x num_envs = {batch} transitions cannot be split into "
                f"{key} = {n}"
            )
