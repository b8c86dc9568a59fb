"""The few action distributions marlow needs, one per space kind (no distrax).

Every distribution maps a network output ``out`` to actions in two forms:

- the *env* form the env consumes (int index, int vector, float vector in the Box bounds);
- the *flat* form fed to centralised critics: one-hot (concatenated per component) or floats, which is
  differentiable w.r.t. the policy parameters (Gumbel-softmax straight-through for discrete parts,
  reparameterised tanh-Gaussian for boxes).

``sample`` also returns ``log_prob`` of the sampled action and ``entropy``: the *exact* entropy for
categorical parts (summed over components for multi-discrete) and the single-sample estimate
``-log_prob`` for tanh-Gaussians, whose entropy has no closed form. MASAC uses ``entropy`` as its
entropy bonus, which for discrete actions is the exact expectation of ``-log pi`` (lower variance than
the sampled ``-log pi`` used by the AORPO code, which also took it from the noise-perturbed softmax).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from marlow.envs.spaces import Box, Discrete, MultiDiscrete, Space, from_unit, to_unit

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SAC / ROMMEO reference clipping of log sigma
TANH_EPS = 1e-6
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
HALF_LOG_2PIE = 0.5 * math.log(2 * math.pi * math.e)


def normal_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log N(x; mean, diag exp(log_std)^2), summed over the last axis."""
    z = (x - mean) / jnp.exp(log_std)
    return jnp.sum(-0.5 * z**2 - log_std - HALF_LOG_2PI, axis=-1)


def normal_entropy(log_std: jax.Array) -> jax.Array:
    """The entropy sum(log std + 1/2 log(2 pi e)) of a diagonal Gaussian, over the last axis."""
    return jnp.sum(log_std + HALF_LOG_2PIE, axis=-1)


def mean_log_std(out: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A Gaussian head's output [mean, log std] (2d), log std clipped to [LOG_STD_MIN, LOG_STD_MAX]."""
    mean, log_std = jnp.split(out, 2, axis=-1)
    return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class Sample(NamedTuple):
    env: jax.Array  # action in the env's format
    flat: jax.Array  # differentiable flat action (one-hot(s) or floats)
    log_prob: jax.Array  # log pi(env action)
    entropy: jax.Array  # exact entropy (categorical) or -log_prob (tanh-Gaussian)


def gumbel_softmax_st(key: jax.Array, logits: jax.Array, temperature: float = 1.0):
    """Gumbel-softmax straight-through (Jang et al. 2016): hard one-hot forward, soft gradient."""
    g = jax.random.gumbel(key, logits.shape)
    soft = jax.nn.softmax((logits + g) / temperature, axis=-1)
    idx = jnp.argmax(soft, axis=-1)
    hard = jax.nn.one_hot(idx, logits.shape[-1], dtype=soft.dtype)
    return idx, hard + (soft - jax.lax.stop_gradient(soft))  # grouped so the forward is exactly one-hot


def _categorical_stats(logits: jax.Array, idx: jax.Array):
    logp_all = jax.nn.log_softmax(logits, axis=-1)
    logp = jnp.take_along_axis(logp_all, idx[..., None], axis=-1)[..., 0]
    ent = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
    return logp, ent


class Categorical:
    """Discrete(n): ``out`` are n logits."""

    def __init__(self, space: Discrete, temperature: float = 1.0):
        self.space, self.temperature = space, temperature
        self.out_dim = space.n

    def sample(self, out: jax.Array, key: jax.Array) -> Sample:
        idx, flat = gumbel_softmax_st(key, out, self.temperature)
        logp, ent = _categorical_stats(out, idx)
        return Sample(idx.astype(jnp.int32), flat, logp, ent)

    def mode(self, out: jax.Array) -> tuple[jax.Array, jax.Array]:
        idx = jnp.argmax(out, axis=-1)
        return idx.astype(jnp.int32), jax.nn.one_hot(idx, self.space.n)

    def log_prob(self, out: jax.Array, action: jax.Array) -> jax.Array:
        return _categorical_stats(out, action.astype(jnp.int32))[0]

    def entropy(self, out: jax.Array) -> jax.Array:
        logp_all = jax.nn.log_softmax(out, axis=-1)
        return -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)


class MultiCategorical:
    """MultiDiscrete(nvec): ``out`` is the concatenation of each component's logits. The log-prob is the
    SUM of component log-probs (the AORPO code multiplied them: a bug), entropy likewise."""

    def __init__(self, space: MultiDiscrete, temperature: float = 1.0):
        self.space, self.temperature = space, temperature
        self.out_dim = space.flat_dim
        self._splits = [int(s) for s in jnp.cumsum(jnp.asarray(space.nvec))[:-1]]

    def _parts(self, out):
        return jnp.split(out, self._splits, axis=-1)

    def sample(self, out: jax.Array, key: jax.Array) -> Sample:
        keys = jax.random.split(key, len(self.space.nvec))
        idxs, flats, logps, ents = [], [], [], []
        for k, logits in zip(keys, self._parts(out), strict=True):
            idx, flat = gumbel_softmax_st(k, logits, self.temperature)
            logp, ent = _categorical_stats(logits, idx)
            idxs.append(idx)
            flats.append(flat)
            logps.append(logp)
            ents.append(ent)
        return Sample(
            jnp.stack(idxs, axis=-1).astype(jnp.int32),
            jnp.concatenate(flats, axis=-1),
            sum(logps),
            sum(ents),
        )

    def mode(self, out: jax.Array) -> tuple[jax.Array, jax.Array]:
        parts = self._parts(out)
        idx = jnp.stack([jnp.argmax(p, axis=-1) for p in parts], axis=-1).astype(jnp.int32)
        return idx, self.space.to_flat(idx)

    def log_prob(self, out: jax.Array, action: jax.Array) -> jax.Array:
        return sum(
            _categorical_stats(p, action[..., i].astype(jnp.int32))[0] for i, p in enumerate(self._parts(out))
        )

    def entropy(self, out: jax.Array) -> jax.Array:
        parts = [jax.nn.log_softmax(p, axis=-1) for p in self._parts(out)]
        return sum(-jnp.sum(jnp.exp(lp) * lp, axis=-1) for lp in parts)


class TanhGaussian:
    """Box(low, high): ``out`` = [mean, log_std] (2d); a = low + (tanh(u)+1)/2 (high-low), u ~ N(mean, std).
    The log-density includes the tanh and affine Jacobians; tanh is clipped to 1 - 1e-6 inside the
    log so the log-probability stays finite at the bounds."""

    def __init__(self, space: Box):
        if not space.bounded:
            raise ValueError("TanhGaussian needs a bounded Box action space")
        self.space = space
        self.dim = space.flat_dim
        self.out_dim = 2 * self.dim
        self._low = space.low_array.reshape(-1)
        self._high = space.high_array.reshape(-1)
        self._half = (self._high - self._low) / 2.0

    def _squash(self, u):
        return from_unit(jnp.tanh(u), self._low, self._high)

    def log_prob_from_pre_tanh(self, u, mean, log_std):
        normal = -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - HALF_LOG_2PI  # per dimension
        t = jnp.clip(jnp.tanh(u), -1 + TANH_EPS, 1 - TANH_EPS)
        jac = jnp.log(1 - t**2) + jnp.log(self._half)
        return jnp.sum(normal - jac, axis=-1)

    def sample(self, out: jax.Array, key: jax.Array) -> Sample:
        mean, log_std = mean_log_std(out)
        u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        a = self._squash(u)
        logp = self.log_prob_from_pre_tanh(u, mean, log_std)
        return Sample(a.reshape(a.shape[:-1] + self.space.shape), a, logp, -logp)

    def mode(self, out: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, _ = mean_log_std(out)
        a = self._squash(mean)
        return a.reshape(a.shape[:-1] + self.space.shape), a

    def log_prob(self, out: jax.Array, action: jax.Array) -> jax.Array:
        mean, log_std = mean_log_std(out)
        flat = action.reshape(action.shape[: action.ndim - len(self.space.shape)] + (self.dim,))
        t = jnp.clip(to_unit(flat, self._low, self._high), -1 + TANH_EPS, 1 - TANH_EPS)
        return self.log_prob_from_pre_tanh(jnp.arctanh(t), mean, log_std)


class DeterministicTanh:
    """Box(low, high) for deterministic policies (MADDPG): ``out`` = pre-tanh action (d); exploration adds
    Gaussian noise of std ``noise`` (in units of the half range) and clips to the bounds."""

    def __init__(self, space: Box, noise: float = 0.1):
        if not space.bounded:
            raise ValueError("DeterministicTanh needs a bounded Box action space")
        self.space, self.noise = space, noise
        self.dim = space.flat_dim
        self.out_dim = self.dim
        self._low = space.low_array.reshape(-1)
        self._high = space.high_array.reshape(-1)
        self._half = (self._high - self._low) / 2.0

    def mode(self, out):
        a = from_unit(jnp.tanh(out), self._low, self._high)
        return a.reshape(a.shape[:-1] + self.space.shape), a

    def sample(self, out, key) -> Sample:
        _, a = self.mode(out)
        a = a + self.noise * self._half * jax.random.normal(key, a.shape)
        a = jnp.clip(a, self._low, self._high)
        zero = jnp.zeros(a.shape[:-1])
        return Sample(a.reshape(a.shape[:-1] + self.space.shape), a, zero, zero)


class DiagGaussian:
    """Box actions for the PPO family: a Gaussian with a state-independent log-std (a learned parameter per
    action dimension, not a network output; cleanrl / MAPPO). ``out`` = the mean (d). The env receives the
    sample clipped to the bounds; log-probabilities and the entropy are those of the unclipped sample
    (the common PPO practice)."""

    def __init__(self, space: Box):
        self.space = space
        self.dim = space.flat_dim
        self.out_dim = self.dim
        self._low = space.low_array.reshape(-1)
        self._high = space.high_array.reshape(-1)

    def sample(self, mean: jax.Array, log_std: jax.Array, key: jax.Array) -> jax.Array:
        return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)

    def log_prob(self, mean: jax.Array, log_std: jax.Array, raw: jax.Array) -> jax.Array:
        return normal_log_prob(raw, mean, log_std)

    def entropy(self, mean: jax.Array, log_std: jax.Array) -> jax.Array:
        return jnp.broadcast_to(normal_entropy(log_std), mean.shape[:-1])

    @staticmethod
    def kl(mean_p, log_std_p, mean_q, log_std_q) -> jax.Array:
        """D_KL(p || q) of two diagonal Gaussians, summed over the last axis (closed form):
        sum_d [ log s_q - log s_p + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2 ]."""
        var_p, var_q = jnp.exp(2 * log_std_p), jnp.exp(2 * log_std_q)
        per_dim = log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5
        return jnp.sum(per_dim, axis=-1)

    def to_env(self, raw: jax.Array) -> jax.Array:
        a = jnp.clip(raw, self._low, self._high)
        return a.reshape(a.shape[:-1] + self.space.shape)


class Gaussian:
    """Box actions with a state-dependent spread: ``out`` = [mean, log_std] (2d, log std clipped), a
    diagonal Gaussian over the flat action (AORPO's opponent models of Box-action agents, Appendix E).
    Samples and the mode are clipped to the bounds; log-probabilities and the entropy are the unclipped
    Gaussian's."""

    def __init__(self, space: Box):
        self.space = space
        self.dim = space.flat_dim
        self.out_dim = 2 * self.dim
        self._low = space.low_array.reshape(-1)
        self._high = space.high_array.reshape(-1)

    def _env(self, a: jax.Array) -> jax.Array:
        return a.reshape(a.shape[:-1] + self.space.shape)

    def sample(self, out: jax.Array, key: jax.Array) -> Sample:
        mean, log_std = mean_log_std(out)
        raw = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        a = jnp.clip(raw, self._low, self._high)
        logp = normal_log_prob(raw, mean, log_std)
        return Sample(self._env(a), a, logp, normal_entropy(log_std))

    def mode(self, out: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, _ = mean_log_std(out)
        a = jnp.clip(mean, self._low, self._high)
        return self._env(a), a

    def log_prob(self, out: jax.Array, action: jax.Array) -> jax.Array:
        mean, log_std = mean_log_std(out)
        return normal_log_prob(self.space.to_flat(action), mean, log_std)

    def entropy(self, out: jax.Array) -> jax.Array:
        return normal_entropy(mean_log_std(out)[1])


def make_dist(space: Space, *, deterministic: bool = False, temperature: float = 1.0, noise: float = 0.1):
    """The policy distribution of a space. Discrete parts always use Gumbel-softmax straight-through
    (stochastic in training, argmax in ``mode``); boxes use a tanh-Gaussian, or a deterministic tanh
    with Gaussian exploration noise when ``deterministic``."""
    if isinstance(space, Discrete):
        return Categorical(space, temperature)
    if isinstance(space, MultiDiscrete):
        return MultiCategorical(space, temperature)
    if isinstance(space, Box):
        return DeterministicTanh(space, noise) if deterministic else TanhGaussian(space)
    raise TypeError(f"unsupported space {space!r}")
