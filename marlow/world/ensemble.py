"""Probabilistic ensemble regression model (AORPO paper Appendix E, after Chua et al. 2018, "PETS").

``B`` members are trained together as one parameter tree whose every leaf has a leading member axis
(one batched dense layer per depth, ``einsum`` over members, the way mbrl-lib batches its ensemble).
Member ``b`` outputs a diagonal Gaussian  N(mu_b(x), Sigma_b(x))  over the (normalised) target.

Loss of member b (Appendix E):
    J_T(theta^b) = E_D[ log det Sigma_b(x) + e^T Sigma_b(x)^{-1} e ],   e = mu_b(x) - y,
computed per output dimension and averaged over dimensions and rows (the PETS/AORPO code's scaling; it is
J_T / out_dim, which fixes the weight of the two regularisers below relative to it). The total loss is
    sum_b J_T(theta^b)
    + logvar_penalty * (sum max_logvar - sum min_logvar)         (PETS / AORPO code)
    + sum_layers weight_decay[l] * ||W_l||^2 / 2                   (PETS / AORPO code, per layer)
with the log-variance softly bounded by learnable bounds (PETS):
    lv <- max_logvar - softplus(max_logvar - lv);   lv <- min_logvar + softplus(lv - min_logvar).

What the AORPO code does differently and what we do instead (``docs/reference/aorpo.md``,
"better practice" list, MBPO / PETS / mbrl-lib): inputs *and* targets are normalised (refit on every
``train`` call); early stopping and elite choice use the holdout MSE of the predicted mean; the
``num_elites`` best members are the only ones used at prediction time; each predicted row is served by
its own randomly chosen elite (Appendix E: "we select one of the models randomly from a uniform
distribution"; the code draws one member for a whole batch).

Everything is a pure function of explicit state; ``train`` is jittable with a static row count and a
traced number of valid rows, and vmappable over seeds (and over agents, see ``marlow.world.dynamics``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from marlow.errors import ConfigError
from marlow.nn.mlp import ACTIVATIONS, Activation
from marlow.nn.optim import make_optimizer
from marlow.schema import ranges
from marlow.schema.groups import prefixed
from marlow.schema.ranges import AnyFloat, NonNegative, Positive, Range, Size, Widths

STD_EPS = 1e-6  # a normaliser std below this is a constant feature: divide by 1 instead (PETS / mbrl-lib)


@dataclass
class EnsembleConfig:
    """Hyperparameters of the probabilistic ensemble. No defaults here: they live in the AORPO YAML.

    Recommended values and their sources ("paper" = AORPO paper, "code" = the AORPO reference code as
    summarised in ``docs/reference/aorpo.md``):

    - ``num_members`` B: 10 (paper Table 1, cooperative communication / navigation; Table 2 predator-prey),
      8 (Table 1 scheduling, Table 2 keep-away / deception; code).
    - ``num_elites``: 5 for B = 8 (MBPO's 5 of 7; ours: neither paper nor code use elites), 7 for B = 10.
    - ``hidden``: (256, 256, 256, 256) (paper Appendix F "four MLP ... each layer has 256 units"; code:
      (512, 512, 512)).
    - ``activation``: "swish" (paper Appendix F, code).
    - ``lr``: per task, paper Tables 1-2 ("Dynamics models learning rate"), 0.001 for cooperative
      navigation (= code's 1e-3). The paper halves it every 5,000 episodes (Appendix F): the caller does
      that with :meth:`Ensemble.scale_lr`.
    - ``weight_decay``: one value per dense layer (hidden layers then the output layer), or a single value
      for all. Code (3 hidden + output): (1e-4, 2.5e-4, 2.5e-4, 5e-4); with four hidden layers
      (1e-4, 2.5e-4, 2.5e-4, 2.5e-4, 5e-4) (ours: the code's pattern with one more middle layer).
    - ``max_logvar_init`` 0.5, ``min_logvar_init`` -10 (code, PETS); in normalised target units.
    - ``logvar_penalty``: 0.01 (code, PETS).
    - ``batch_size``: minibatch rows per member and gradient step. Code 4096; 256 (MBPO, ours for the CPU
      budget: a step costs ~linear in it).
    - ``holdout_ratio``: 0.2 (code's 80/20 split).
    - ``max_holdout``: 5000 (MBPO); ours 2000 for the CPU budget (the holdout is evaluated every epoch).
    - ``steps_per_epoch``: gradient steps between two holdout evaluations (ours; the code's epoch is one
      pass over the data, which grows with the buffer and makes the cost of a call unbounded). 100.
    - ``max_epochs``: code 51 passes; with fixed-size epochs the budget of one call is at most
      ``max_epochs * steps_per_epoch`` steps (ours: choose it from the run's time budget).
    - ``patience``: 5 epochs without improvement (code, MBPO).
    - ``improvement``: relative holdout-MSE improvement that counts, 0.01 (MBPO; the code counts any).
    - ``max_grad_norm``: 200 (code), global norm over the whole ensemble; 0 disables clipping.
    """

    num_members: Size
    num_elites: Size
    hidden: Widths
    activation: Activation
    lr: Positive
    weight_decay: Annotated[tuple[float, ...], Range(0)]
    max_logvar_init: AnyFloat
    min_logvar_init: AnyFloat
    logvar_penalty: NonNegative
    batch_size: Size
    holdout_ratio: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)]
    max_holdout: Size
    steps_per_epoch: Size
    max_epochs: Size
    patience: Size
    improvement: Annotated[float, Range(0, 1, hi_open=True)]
    max_grad_norm: NonNegative


MODEL_PREFIX = "model_"

#: :class:`EnsembleConfig`'s fields with the ``model_`` prefix, for an algorithm config that owns an
#: ensemble (AORPO's world model, Teammate Lookahead's team model): derived from EnsembleConfig, so the two
#: cannot drift. ``sub_config(cfg, EnsembleConfig, MODEL_PREFIX)`` builds the EnsembleConfig back.
ModelKeys = prefixed(EnsembleConfig, MODEL_PREFIX, "ModelKeys", __name__)


def validate(cfg: EnsembleConfig) -> None:
    """Raise :class:`ConfigError` for values the ensemble cannot use: each field's declared range (for a
    config built in Python; the config system checks them on YAML / command-line values), then the
    constraints between keys."""
    ranges.validate(cfg, where=" (EnsembleConfig)")
    if not 1 <= cfg.num_elites <= cfg.num_members:
        raise ConfigError(
            f"ensemble num_elites must be in [1, num_members={cfg.num_members}], got {cfg.num_elites}"
        )
    if len(cfg.hidden) < 1:
        raise ConfigError(f"ensemble hidden must be a non-empty list of positive widths, got {cfg.hidden}")
    if len(cfg.weight_decay) not in (1, len(cfg.hidden) + 1):
        raise ConfigError(
            f"ensemble weight_decay needs 1 or len(hidden)+1={len(cfg.hidden) + 1} values, "
            f"got {cfg.weight_decay}"
        )
    if cfg.min_logvar_init >= cfg.max_logvar_init:
        raise ConfigError(
            f"ensemble min_logvar_init ({cfg.min_logvar_init}) must be below "
            f"max_logvar_init ({cfg.max_logvar_init})"
        )


# ---- network --------------------------------------------------------------------------------------
def _trunc_normal_init(key, shape, dtype=jnp.float32):
    """Truncated normal (2 std) with std 1 / (2 sqrt(fan_in)), the PETS code's ensemble init."""
    std = 1.0 / (2.0 * math.sqrt(shape[-2]))
    return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)


class EnsembleDense(nn.Module):
    """``members`` independent dense layers applied at once: x [B, n, in] -> [B, n, features]."""

    members: int
    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", _trunc_normal_init, (self.members, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.members, self.features))
        return jnp.einsum("bni,bio->bno", x, kernel) + bias[:, None, :]


class EnsembleMLP(nn.Module):
    """``members`` MLPs with ``hidden`` layers; output [B, n, 2 * out_dim] = (mean, raw log-variance)."""

    members: int
    hidden: Sequence[int]
    out_dim: int
    activation: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for i, h in enumerate(self.hidden):
            x = act(EnsembleDense(self.members, h, name=f"layer_{i}")(x))
        return EnsembleDense(self.members, 2 * self.out_dim, name=f"layer_{len(self.hidden)}")(x)


def soft_bound_logvar(lv: jax.Array, max_lv: jax.Array, min_lv: jax.Array) -> jax.Array:
    """PETS soft bounds: lv <- max - softplus(max - lv); lv <- min + softplus(lv - min)."""
    lv = max_lv - jax.nn.softplus(max_lv - lv)
    return min_lv + jax.nn.softplus(lv - min_lv)


# ---- state ----------------------------------------------------------------------------------------
@struct.dataclass
class EnsembleState:
    """``params``: {"net": EnsembleMLP params, "max_logvar": [B, out], "min_logvar": [B, out]}; every leaf
    has the member axis first (per-member log-variance bounds, ours: PETS shares them across members; per
    member, each member's parameters are self-contained, so keeping its best snapshot and gathering the
    elites are plain per-leaf indexing). Normalisers are in input / target units."""

    params: Any
    opt_state: Any
    in_mean: jax.Array  # [in]
    in_std: jax.Array  # [in]
    out_mean: jax.Array  # [out]
    out_std: jax.Array  # [out]
    elites: jax.Array  # int32 [num_elites], members sorted by holdout MSE (best first)
    lr_scale: jax.Array  # float32 multiplier of cfg.lr (Appendix F halves the model lr over time)
    trains: jax.Array  # int32 number of train calls so far


class Split(NamedTuple):
    """Rows used by one ``train`` call (indices into the [N, ...] arrays).

    ``holdout_idx[:n_holdout]`` are the holdout rows (``holdout_mask`` marks them within the static
    ``[min(max_holdout, N)]`` array); member b's bootstrap sample is ``boot_idx[b, :n_train]``, drawn
    with replacement from the training rows; ``train_mask`` [N] marks the training rows (normalisers)."""

    holdout_idx: jax.Array
    holdout_mask: jax.Array
    boot_idx: jax.Array
    train_mask: jax.Array
    n_train: jax.Array
    n_holdout: jax.Array


def _masked_moments(x: jax.Array, mask: jax.Array, n: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and std of the rows of ``x`` where ``mask`` (``n`` of them); padding may hold NaN."""
    m = mask[:, None]
    mean = jnp.sum(jnp.where(m, x, 0.0), axis=0) / n
    var = jnp.sum(jnp.where(m, (x - mean) ** 2, 0.0), axis=0) / n
    std = jnp.sqrt(var)
    return mean, jnp.where(std < STD_EPS, 1.0, std)


# ---- the ensemble ---------------------------------------------------------------------------------
class Ensemble:
    """A probabilistic ensemble mapping [.., in_dim] inputs to Gaussians over [.., out_dim] targets.

    The object holds static structure only; all methods are pure functions of an :class:`EnsembleState`.
    """

    def __init__(self, in_dim: int, out_dim: int, cfg: EnsembleConfig):
        validate(cfg)
        self.in_dim, self.out_dim, self.cfg = int(in_dim), int(out_dim), cfg
        hidden = tuple(int(h) for h in cfg.hidden)
        self.net = EnsembleMLP(cfg.num_members, hidden, self.out_dim, cfg.activation)
        self.elite_net = EnsembleMLP(cfg.num_elites, hidden, self.out_dim, cfg.activation)
        wd = tuple(float(w) for w in cfg.weight_decay)
        self.weight_decay = wd * (len(hidden) + 1) if len(wd) == 1 else wd
        self.opt = make_optimizer(cfg.lr, cfg.max_grad_norm)

    # ---- init / helpers -----------------------------------------------------------------------
    def init(self, key: jax.Array) -> EnsembleState:
        cfg = self.cfg
        net = self.net.init(key, jnp.zeros((cfg.num_members, 1, self.in_dim)))["params"]
        shape = (cfg.num_members, self.out_dim)
        params = {
            "net": net,
            "max_logvar": jnp.full(shape, cfg.max_logvar_init, jnp.float32),
            "min_logvar": jnp.full(shape, cfg.min_logvar_init, jnp.float32),
        }
        return EnsembleState(
            params=params,
            opt_state=self.opt.init(params),
            in_mean=jnp.zeros(self.in_dim),
            in_std=jnp.ones(self.in_dim),
            out_mean=jnp.zeros(self.out_dim),
            out_std=jnp.ones(self.out_dim),
            elites=jnp.arange(cfg.num_elites, dtype=jnp.int32),
            lr_scale=jnp.float32(1.0),
            trains=jnp.int32(0),
        )

    @staticmethod
    def scale_lr(state: EnsembleState, factor: float | jax.Array) -> EnsembleState:
        """Multiply the learning rate by ``factor`` (Appendix F: the model lr is halved every 5,000
        episodes; the caller decides when)."""
        return state.replace(lr_scale=state.lr_scale * factor)

    def _forward(self, net: EnsembleMLP, params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Normalised-unit mean and bounded log-variance, x [M, n, in] (already normalised)."""
        out = net.apply({"params": params["net"]}, x)
        mean, raw = out[..., : self.out_dim], out[..., self.out_dim :]
        lv = soft_bound_logvar(raw, params["max_logvar"][:, None, :], params["min_logvar"][:, None, :])
        return mean, lv

    def _weight_decay(self, params) -> jax.Array:
        """sum_l weight_decay[l] * ||W_l||^2 / 2 over all members (kernels only, as the code)."""
        net = params["net"]
        return sum(
            wd * 0.5 * jnp.sum(net[f"layer_{i}"]["kernel"] ** 2) for i, wd in enumerate(self.weight_decay)
        )

    def loss(self, params, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Total loss and per-member J_T / out_dim; x [B, n, in], y [B, n, out] in normalised units."""
        mean, lv = self._forward(self.net, params, x)
        # Appendix E: log det Sigma + e^T Sigma^{-1} e, per dimension, averaged over dims and rows
        nll = jnp.mean((mean - y) ** 2 * jnp.exp(-lv) + lv, axis=(1, 2))
        penalty = self.cfg.logvar_penalty * (jnp.sum(params["max_logvar"]) - jnp.sum(params["min_logvar"]))
        return jnp.sum(nll) + penalty + self._weight_decay(params), nll

    def data_split(self, key: jax.Array, n_valid: jax.Array, n_rows: int) -> Split:
        """The holdout / bootstrap split that ``train(state, x, y, n_valid, key)`` uses (same ``key``).

        A random permutation of the first ``n_valid`` rows (the rest is padding, never touched); its
        first ``n_holdout = clip(floor(holdout_ratio * n_valid), 1, min(max_holdout, N, n_valid - 1))``
        entries are the holdout, the next ``n_train`` the training rows; every member gets its own
        bootstrap sample of ``n_train`` rows drawn with replacement from the training rows."""
        cfg = self.cfg
        k_perm, k_boot = jax.random.split(jax.random.fold_in(key, 0))
        n_valid = jnp.asarray(n_valid, jnp.int32)
        h_max = min(int(cfg.max_holdout), n_rows)
        pos = jnp.arange(n_rows)
        u = jnp.where(pos < n_valid, jax.random.uniform(k_perm, (n_rows,)), 2.0)
        perm = jnp.argsort(u)  # perm[:n_valid] is a uniformly random order of the valid rows
        n_hold = jnp.floor(cfg.holdout_ratio * n_valid.astype(jnp.float32)).astype(jnp.int32)
        n_hold = jnp.maximum(jnp.minimum(jnp.clip(n_hold, 1, h_max), n_valid - 1), 0)
        n_train = n_valid - n_hold
        r = jax.random.randint(k_boot, (cfg.num_members, n_rows), 0, jnp.maximum(n_train, 1))
        boot_idx = perm[n_hold + r]
        train_mask = jnp.zeros(n_rows, bool).at[perm].set((pos >= n_hold) & (pos < n_valid))
        return Split(perm[:h_max], jnp.arange(h_max) < n_hold, boot_idx, train_mask, n_train, n_hold)

    # ---- training ------------------------------------------------------------------------------
    def train(
        self, state: EnsembleState, inputs: jax.Array, targets: jax.Array, n_valid: jax.Array, key: jax.Array
    ) -> tuple[EnsembleState, dict[str, jax.Array]]:
        """Fit the ensemble on the first ``n_valid`` rows of ``inputs`` [N, in] / ``targets`` [N, out].

        Needs ``n_valid >= 2`` (one holdout row, one training row). Warm-starts from ``state.params``.
        Epochs of ``steps_per_epoch`` bootstrap minibatch steps run until no member improved its holdout
        MSE by the relative ``improvement`` for ``patience`` epochs, or ``max_epochs``; each member keeps
        its best parameters seen (the incoming ones included), and the ``num_elites`` members with the
        lowest holdout MSE of the mean become the elites (the Adam moments are kept from the last epoch,
        as mbrl-lib keeps its optimiser across calls). Metrics (normalised target units, so an MSE of 1
        is as good as predicting the mean): ``holdout_mse`` / ``holdout_nll`` (averaged over the elites),
        ``train_loss`` (per-member J_T / out_dim, last epoch), ``epochs``, ``n_train``, ``n_holdout``."""
        cfg = self.cfg
        n_rows = inputs.shape[0]
        inputs, targets = inputs.astype(jnp.float32), targets.astype(jnp.float32)
        split = self.data_split(key, n_valid, n_rows)
        n_tr = jnp.maximum(split.n_train, 1).astype(jnp.float32)
        in_mean, in_std = _masked_moments(inputs, split.train_mask, n_tr)
        out_mean, out_std = _masked_moments(targets, split.train_mask, n_tr)

        def norm(x, y):
            return (x - in_mean) / in_std, (y - out_mean) / out_std

        # holdout rows, shared by all members
        hx, hy = norm(inputs[split.holdout_idx], targets[split.holdout_idx])
        hmask = split.holdout_mask[None, :]
        n_h = jnp.maximum(split.n_holdout, 1).astype(jnp.float32)

        def holdout(params):
            xb = jnp.broadcast_to(hx, (cfg.num_members,) + hx.shape)
            mean, lv = self._forward(self.net, params, xb)
            err = (mean - hy) ** 2
            mse = jnp.sum(jnp.where(hmask, jnp.mean(err, -1), 0.0), -1) / n_h
            nll = jnp.sum(jnp.where(hmask, jnp.mean(err * jnp.exp(-lv) + lv, -1), 0.0), -1) / n_h
            return mse, nll

        def grad_step(carry, k):
            params, opt_state = carry
            pos = jax.random.randint(k, (cfg.num_members, cfg.batch_size), 0, jnp.maximum(split.n_train, 1))
            rows = jnp.take_along_axis(split.boot_idx, pos, axis=1)  # bootstrap minibatch per member
            xb, yb = norm(inputs[rows], targets[rows])
            (_, nll), grads = jax.value_and_grad(self.loss, has_aux=True)(params, xb, yb)
            updates, opt_state = self.opt.update(grads, opt_state, params)
            updates = jax.tree.map(lambda u: u * state.lr_scale, updates)
            return (optax.apply_updates(params, updates), opt_state), nll

        def pick(better, new, old):
            return jax.tree.map(
                lambda n, o: jnp.where(better.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, old
            )

        def cond(c):
            return (c["epoch"] < cfg.max_epochs) & (c["since"] < cfg.patience)

        def body(c):
            key, k = jax.random.split(c["key"])
            (params, opt_state), nll = jax.lax.scan(
                grad_step, (c["params"], c["opt_state"]), jax.random.split(k, cfg.steps_per_epoch)
            )
            mse, _ = holdout(params)
            better = mse < c["best"]
            significant = mse < c["ref"] * (1.0 - cfg.improvement)
            return dict(
                params=params,
                opt_state=opt_state,
                best_params=pick(better, params, c["best_params"]),
                best=jnp.where(better, mse, c["best"]),
                ref=jnp.where(significant, mse, c["ref"]),
                since=jnp.where(jnp.any(significant), 0, c["since"] + 1),
                epoch=c["epoch"] + 1,
                train_loss=jnp.mean(nll),
                key=key,
            )

        mse0, _ = holdout(state.params)
        c0 = dict(
            params=state.params,
            opt_state=state.opt_state,
            best_params=state.params,
            best=mse0,
            ref=mse0,
            since=jnp.int32(0),
            epoch=jnp.int32(0),
            train_loss=jnp.float32(jnp.nan),
            key=jax.random.fold_in(key, 1),
        )
        c = jax.lax.while_loop(cond, body, c0)
        params = c["best_params"]
        mse, nll = holdout(params)
        elites = jnp.argsort(mse)[: cfg.num_elites].astype(jnp.int32)
        new_state = state.replace(
            params=params,
            opt_state=c["opt_state"],
            in_mean=in_mean,
            in_std=in_std,
            out_mean=out_mean,
            out_std=out_std,
            elites=elites,
            trains=state.trains + 1,
        )
        metrics = {
            "holdout_mse": jnp.mean(mse[elites]),
            "holdout_nll": jnp.mean(nll[elites]),
            "train_loss": c["train_loss"],
            "epochs": c["epoch"],
            "n_train": split.n_train,
            "n_holdout": split.n_holdout,
        }
        return new_state, metrics

    # ---- prediction ----------------------------------------------------------------------------
    def predict_all(self, state: EnsembleState, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Every member's mean and variance, [B, ..., out] each, in target units."""
        batch = inputs.shape[:-1]
        x = (inputs.reshape(1, -1, self.in_dim) - state.in_mean) / state.in_std
        x = jnp.broadcast_to(x, (self.cfg.num_members,) + x.shape[1:])
        mean, lv = self._forward(self.net, state.params, x)
        mean = mean * state.out_std + state.out_mean
        var = jnp.exp(lv) * state.out_std**2
        shape = (self.cfg.num_members,) + batch + (self.out_dim,)
        return mean.reshape(shape), var.reshape(shape)

    def predict(
        self, state: EnsembleState, inputs: jax.Array, key: jax.Array, deterministic: bool = False
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(sample, mean, var) for inputs [..., in], each [..., out] in target units.

        Every row is served by one elite member chosen at random per row (Appendix E: a member drawn
        uniformly, so one rollout can mix members). The choice is a random balanced assignment: the rows
        are shuffled and cut into ``num_elites`` equal chunks, one per elite, so each row's member is
        uniform over the elites and a prediction costs one member's forward pass per row (ours: independent
        draws would need every elite's forward pass on every row). ``deterministic``: sample = mean."""
        cfg = self.cfg
        batch = inputs.shape[:-1]
        x = ((inputs.reshape(-1, self.in_dim) - state.in_mean) / state.in_std).astype(jnp.float32)
        n, e = x.shape[0], cfg.num_elites
        per = -(-n // e)
        k_perm, k_noise = jax.random.split(key)
        perm = jax.random.permutation(k_perm, per * e)  # slot s holds row perm[s] (rows >= n: padding)
        inv = jnp.argsort(perm)  # row r sits in slot inv[r], i.e. in elite chunk inv[r] // per
        x = jnp.concatenate([x, jnp.zeros((per * e - n, self.in_dim), x.dtype)])[perm]
        params = jax.tree.map(lambda p: p[state.elites], state.params)
        mean, lv = self._forward(self.elite_net, params, x.reshape(e, per, self.in_dim))
        mean = mean.reshape(per * e, self.out_dim)[inv][:n] * state.out_std + state.out_mean
        var = jnp.exp(lv).reshape(per * e, self.out_dim)[inv][:n] * state.out_std**2
        if deterministic:
            sample = mean
        else:
            sample = mean + jnp.sqrt(var) * jax.random.normal(k_noise, mean.shape)
        shape = batch + (self.out_dim,)
        return sample.reshape(shape), mean.reshape(shape), var.reshape(shape)
