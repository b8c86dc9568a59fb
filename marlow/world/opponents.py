"""Opponent models pi_phi^{i->j}(a_j | o_j): one per ego agent i and other agent j (AORPO Appendix E).

Every ego agent i keeps a model of every other agent j's policy, fitted by maximum likelihood with an
entropy regulariser on the latest ``window`` real transitions, and measures its error eps^{i->j} on a
held-out split of those transitions (Algorithm 1 lines 6-7; eps sets the opponent-wise rollout lengths
n_j = floor(k min_j' eps_j' / eps_j) elsewhere).

Model input is agent j's *own* observation o_j (the AORPO code's choice; Appendix E writes s): the model
predicts what j does from what j sees. The output distribution follows j's action space:

- ``Discrete(n)``: categorical over n logits;
- ``MultiDiscrete(nvec)``: independent categoricals, log-probabilities *added* over components (the
  AORPO code multiplies them: a bug) and entropies added likewise;
- ``Box``: diagonal Gaussian N(mu(o_j), diag sigma(o_j)^2) with state-dependent sigma (Appendix E),
  log sigma clipped to [-20, 2] (the code's bounds); sampled actions are clipped to the box.

Loss (Appendix E), averaged over the training rows:

    J(phi^j) = E_D[ -log pi_phi(a_j | o_j) ] - alpha E_D[ H(pi_phi(. | o_j)) ]              (App. E)

Sign: the paper writes ``+ alpha H`` in a loss that is minimised, which would *penalise* entropy and push
the model towards a collapsed, over-confident policy. We read it as a regulariser that keeps the model
from collapsing, i.e. an entropy *bonus* (``- alpha H``), which is also what the reference code does:
its loss adds ``0.1 * mean(log pi(a_hat))`` for a sampled a_hat, a single-sample estimate of ``-0.1 H``.
We use the exact entropy (summed over components for multi-discrete, ``sum log sigma + d/2 log(2 pi e)``
for the Gaussian) instead of the code's estimate from the Gumbel-perturbed softmax. For the Gaussian the
optimum is then sigma^2 = s^2 / (1 - alpha) for data of variance s^2 (so alpha < 1 is required), and
for categoricals the fit is the data distribution flattened towards uniform. The paper's second line
(Gaussian) is 2 x the NLL up to a constant; we use the NLL itself so alpha means the same for every
space.

Error (Appendix E, on the evaluation split D^v of the latest samples), one a_hat ~ pi_phi(.|o_j) per row:

    discrete:    eps_j = E_{(o_j, a_j) ~ D^v, a_hat ~ pi_phi}[ 1 - 1(a_j = a_hat) ]           (App. E)
    continuous:  eps_j = E_{(o_j, a_j) ~ D^v, a_hat ~ pi_phi}[ || a_j - a_hat ||_2 ]

For ``MultiDiscrete`` a match means *every* component matches (the action is one joint discrete action).
a_hat is sampled as the paper says (not the argmax the code's match rate uses), so a model that is
exactly right about a stochastic opponent still has eps = 1 - sum_a p(a|o)^2 > 0.

Training follows the reference code (docs/reference/aorpo.md): warm-started at every call (the
previous fit's best parameters and last Adam state), 80/20 split of the window, "epochs" of
``steps_per_epoch`` gradient steps, early stopping with ``patience`` inside a ``lax.while_loop`` bounded
by ``max_epochs``, and the best parameters by the holdout criterion restored at the end (the warm start
competes too: ours, so a call that only makes the model worse keeps it as it was; the criterion reads
only the block of rows that can hold the holdout, :func:`holdout_block`, a fifth of the window). Inputs
are standardised with the mean/std of the training rows, refitted at every call (ours: a deterministic
stand-in for the code's input BatchNorm, whose batch statistics make the output depend on the batch).
The holdout rows both select the early-stopping point and measure eps, as in the code.

The window comes from ``marlow.buffers.replay.recent``: rows oldest first, and early in training only the
last ``n_valid`` rows are real (the rows before them are zeros). ``n_valid`` may be traced.

Parameters are kept in dicts keyed by *target* agent j (agents may have different spaces: never padded),
with the copies of the N-1 egos modelling j stacked on a leading axis and trained in one vmapped call.
``share_across_egos=True`` keeps a single copy per target: every ego sees the same (o_j, a_j) data, so
the copies differ only by initialisation and sampling noise; sharing is a documented speed option.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import jax
import jax.numpy as jnp
from flax import struct

from marlow.envs.api import EnvSpec
from marlow.envs.spaces import Box, Discrete, MultiDiscrete, Space
from marlow.errors import ConfigError
from marlow.nn.distributions import Categorical, Gaussian, MultiCategorical
from marlow.nn.mlp import MLP
from marlow.nn.optim import make_optimizer, opt_step
from marlow.schema import ranges
from marlow.schema.coerce import build
from marlow.schema.files import CONF_DIR, read_yaml
from marlow.schema.groups import prefixed
from marlow.schema.ranges import Count, NonNegative, Positive, Range, Size, Widths

StopMetric = Literal["loss", "greedy_error"]
Holdout = Literal["newest", "oldest"]
STOP_METRICS = ranges.choices(StopMetric)
HOLDOUTS = ranges.choices(Holdout)


@dataclass
class OpponentConfig:
    """Opponent-model settings. The defaults (conf/world.yaml's ``opp_*`` keys; :func:`recommended_config`
    reads them) and their sources; T1/T2 = AORPO paper Tables 1/2, F = Appendix F, code = the reference
    code (docs/reference/aorpo.md):

    - ``hidden`` (64, 64): F "three-layer MLP ... 64 units"; code MLPNetwork 2 x 64 ReLU.
    - ``lr`` 3e-4: T1's cooperative navigation (T1: 1e-3 communication, 3e-4 navigation, 5e-4 scheduling;
      T2: 5e-4 keep-away, 5e-3 deception, 2e-3 predator-prey; the code's ``--opp_lr`` default is 5e-4).
    - ``entropy_coef`` 0.1: code (``+ 0.1 * mean(log pi)``, an entropy bonus; see the module docstring).
    - ``window`` 3072: code, the latest 3 x batch_size (1024) transitions; the runner passes
      ``replay.recent(buffer, window)`` (``fit`` itself takes whatever number of rows it is given).
    - ``holdout_ratio`` 0.2: code (80/20 split, holdout = floor(0.2 n_valid) rows).
    - ``holdout`` "newest": ours. Which block of the window is held out. The code holds out the oldest
      20%, which warm-started models already trained on in earlier calls (the window slides by ~100 rows
      between calls); the newest block has never been trained on, and measures the opponent's current
      policy. "oldest" reproduces the code.
    - ``batch_size`` 0: code (0 = every gradient step uses the whole training split); > 0 samples that
      many training rows with replacement per step.
    - ``steps_per_epoch`` 1: code (one full-batch step per epoch). Budget: max_epochs x steps_per_epoch.
    - ``max_epochs`` 51: code (the loop breaks when i > 50).
    - ``patience`` 5: code (stop after 5 epochs without holdout improvement; the best params are kept).
    - ``stop_metric`` "loss": ours, the holdout value of the training loss (NLL - alpha H): a proper
      criterion for every space, deterministic, and consistent with the regularised objective (early
      stopping on the plain NLL would cut the entropy bonus's effect short). "greedy_error" is the
      code's criterion: 1 - argmax match rate (all components must match), ||a - mu||_2 for boxes.
    - ``max_grad_norm`` 1.0: code ``OPPMD_GRAD_BOUND = 1``.
    - ``normalize_inputs`` True: code (input BatchNorm), here standardisation by training-row stats.
    - ``share_across_egos`` False: paper/code (every agent owns its models of the others).
    """

    hidden: Widths
    lr: Positive
    entropy_coef: NonNegative
    window: Annotated[int, Range(lo=2)]
    holdout_ratio: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)]
    holdout: Holdout
    batch_size: Count
    steps_per_epoch: Size
    max_epochs: Size
    patience: Size
    stop_metric: StopMetric
    max_grad_norm: NonNegative
    normalize_inputs: bool
    share_across_egos: bool


OPP_PREFIX = "opp_"
#: :class:`OpponentConfig`'s fields with the ``opp_`` prefix, for an algorithm config that owns opponent
#: models (AORPO, AORDPG; defaults in conf/world.yaml); ``sub_config(cfg, OpponentConfig, OPP_PREFIX)``
#: builds the OpponentConfig back.
OpponentKeys = prefixed(OpponentConfig, OPP_PREFIX, "OpponentKeys", __name__)


def recommended_config(**overrides) -> OpponentConfig:
    """The opponent-model config AORPO uses by default (conf/world.yaml's ``opp_*`` keys, the one source of
    these defaults) with ``overrides`` applied."""
    defaults = {
        k.removeprefix(OPP_PREFIX): v
        for k, v in read_yaml(CONF_DIR / "world.yaml").items()
        if k.startswith(OPP_PREFIX)
    }
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ConfigError(f"unknown opponent-model keys: {sorted(unknown)}")
    return dataclasses.replace(build(OpponentConfig, defaults, where=" (conf/world.yaml)"), **overrides)


@struct.dataclass
class OpponentState:
    """``params``/``opt_state``: target -> pytree stacked over the ego copies (leading axis
    ``num_copies[target]``); ``obs_mean``/``obs_std``: target -> input standardisation [obs_dim]."""

    params: dict[str, Any]
    opt_state: dict[str, Any]
    obs_mean: dict[str, jax.Array]
    obs_std: dict[str, jax.Array]


# ---------------------------------------------------------------------------------------------------
class Head:
    """The output distribution of a model of agent j (:mod:`marlow.nn.distributions`, by j's action
    space: a categorical over n logits, independent categoricals with log-probabilities and entropies
    added over components, or a Gaussian with state-dependent sigma whose samples are clipped to the
    box), in j's env action format, with the prediction error of Appendix E: 1 - 1(a = a_hat) for
    discrete actions (a match meaning every component matches), ||a - a_hat||_2 for boxes."""

    def __init__(self, space: Space):
        if isinstance(space, Discrete):
            self.dist = Categorical(space)
        elif isinstance(space, MultiDiscrete):
            self.dist = MultiCategorical(space)
        elif isinstance(space, Box):
            self.dist = Gaussian(space)
        else:
            raise ConfigError(f"opponent models do not support the action space {space!r}")
        self.space, self.out_dim = space, self.dist.out_dim

    def log_prob(self, out, a):
        return self.dist.log_prob(out, a)

    def entropy(self, out):
        return self.dist.entropy(out)

    def sample(self, out, key):
        return self.dist.sample(out, key).env

    def mode(self, out):
        return self.dist.mode(out)[0]

    def error(self, a, a_hat):
        if isinstance(self.space, Box):
            return jnp.linalg.norm(self.space.to_flat(a) - self.space.to_flat(a_hat), axis=-1)
        match = a.astype(jnp.int32) == a_hat
        if isinstance(self.space, MultiDiscrete):
            match = jnp.all(match, axis=-1)
        return 1.0 - match.astype(jnp.float32)


# ---------------------------------------------------------------------------------------------------
def holdout_split(window: int, n_valid, ratio: float, holdout: str = "newest"):
    """Row masks (float32 [window]) ``(train, hold)`` of a window whose last ``n_valid`` rows are real.

    ``hold`` is a contiguous block of floor(ratio * n_valid) valid rows: the newest (last) ones or the
    oldest valid ones; ``train`` is the other valid rows. The two are disjoint and cover the valid rows.
    """
    ranges.check_choice("holdout", holdout, HOLDOUTS)
    rows = jnp.arange(window)
    n_valid = jnp.clip(jnp.asarray(n_valid, jnp.int32), 0, window)
    first = window - n_valid
    valid = rows >= first
    # floor(ratio * n_valid) as the code's ``n // 5``; the 2^-22 relative nudge absorbs float32 rounding
    # (0.7 is 0.69999999 in float32)
    n_hold = jnp.floor(ratio * n_valid.astype(jnp.float32) * (1.0 + 2.0**-22)).astype(jnp.int32)
    if holdout == "newest":
        hold = rows >= window - n_hold
    else:
        hold = valid & (rows < first + n_hold)
    train = valid & ~hold
    return train.astype(jnp.float32), hold.astype(jnp.float32)


def holdout_block(window: int, n_valid, ratio: float, holdout: str = "newest"):
    """``(start, size)``: a block of ``size`` rows (static) from row ``start`` that holds every row of
    :func:`holdout_split`'s ``hold`` (a contiguous block of at most floor(ratio * window) rows), so that
    the holdout criterion is evaluated on it alone instead of on the whole window. One row more than
    the largest holdout: ``holdout_split`` rounds in float32, this in float64."""
    size = min(window, int(ratio * window * (1.0 + 2.0**-22)) + 1)
    if holdout == "newest":
        return window - size, size
    first = window - jnp.clip(jnp.asarray(n_valid, jnp.int32), 0, window)
    return jnp.minimum(first, window - size), size


def _masked_mean(values, weights):
    """sum(w v) / sum(w), NaN when there are no rows."""
    n = jnp.sum(weights)
    return jnp.where(n > 0, jnp.sum(weights * values) / jnp.maximum(n, 1.0), jnp.nan)


def _tree_index(tree, i: int):
    return jax.tree.map(lambda x: x[i], tree)


class OpponentModels:
    """Opponent models of every ego agent for every other agent (static structure; pure methods).

    ``egos[j]``: the agents that model j (all others, in spec order); ``num_copies[j]`` = len(egos[j]),
    or 1 with ``share_across_egos``.
    """

    def __init__(self, spec: EnvSpec, cfg: OpponentConfig):
        _check_config(cfg, spec)
        self.spec, self.cfg = spec, cfg
        self.targets = tuple(spec.agents)
        self.egos = {j: tuple(a for a in spec.agents if a != j) for j in self.targets}
        self.num_copies = {j: 1 if cfg.share_across_egos else len(self.egos[j]) for j in self.targets}
        self.heads = {j: Head(spec.act_space(j)) for j in self.targets}
        self.nets = {j: MLP(tuple(cfg.hidden), self.heads[j].out_dim) for j in self.targets}
        self.opt = make_optimizer(cfg.lr, cfg.max_grad_norm)

    def others(self, ego: str) -> tuple[str, ...]:
        """The agents ``ego`` models (every other agent, spec order)."""
        return tuple(j for j in self.targets if j != ego)

    def copy_index(self, ego: str, target: str) -> int:
        """Row of ``ego``'s model of ``target`` in the stacked parameters (static)."""
        if ego == target or ego not in self.egos[target]:
            raise ConfigError(f"{ego!r} has no model of {target!r}")
        return 0 if self.cfg.share_across_egos else self.egos[target].index(ego)

    # ---------------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> OpponentState:
        params, opt_state, mean, std = {}, {}, {}, {}
        for j, k in zip(self.targets, jax.random.split(key, len(self.targets)), strict=True):
            d = self.spec.obs_dim(j)
            keys = jax.random.split(k, self.num_copies[j])
            params[j] = jax.vmap(lambda kk, j=j, d=d: self.nets[j].init(kk, jnp.zeros((1, d))))(keys)
            opt_state[j] = jax.vmap(self.opt.init)(params[j])
            mean[j] = jnp.zeros((d,), jnp.float32)
            std[j] = jnp.ones((d,), jnp.float32)
        return OpponentState(params, opt_state, mean, std)

    # ---------------------------------------------------------------------------------------------
    def _obs(self, state: OpponentState, target: str, obs):
        x = jnp.asarray(obs, jnp.float32)
        return (x - state.obs_mean[target]) / state.obs_std[target]

    def _loss_rows(self, target: str, params, x, a):
        """Per-row loss -log pi(a|x) - alpha H(pi(.|x)) (App. E, entropy bonus) and the NLL."""
        head = self.heads[target]
        out = self.nets[target].apply(params, x)
        nll = -head.log_prob(out, a)
        return nll - self.cfg.entropy_coef * head.entropy(out), nll

    def _stop_value(self, target: str, params, x, a, hold):
        """Holdout early-stopping criterion (lower is better)."""
        if self.cfg.stop_metric == "loss":
            return _masked_mean(self._loss_rows(target, params, x, a)[0], hold)
        head = self.heads[target]
        return _masked_mean(head.error(a, head.mode(self.nets[target].apply(params, x))), hold)

    def _fit_one(self, target: str, params, opt_state, x, a, train, hold, key, block=None):
        """Fit one copy (vmapped over the ego copies): early-stopped Adam on the training rows. ``block``
        (:func:`holdout_block`): the rows the holdout criterion reads (all rows when None)."""
        cfg = self.cfg
        window = x.shape[0]
        n_train = jnp.sum(train)
        p_train = train / jnp.maximum(n_train, 1.0)
        if block is None:
            xh, ah, wh = x, a, hold
        else:
            start, size = block
            xh, ah, wh = (jax.lax.dynamic_slice_in_dim(v, start, size) for v in (x, a, hold))

        def loss(p, xb, ab, w):
            return jnp.sum(w * self._loss_rows(target, p, xb, ab)[0])

        def grad_step(carry, k):
            p, o = carry
            if cfg.batch_size == 0:
                xb, ab, w = x, a, p_train
            else:
                idx = jax.random.choice(k, window, (cfg.batch_size,), p=p_train)
                xb, ab = x[idx], a[idx]
                w = jnp.full((cfg.batch_size,), 1.0 / cfg.batch_size) * (n_train > 0)
            g = jax.grad(loss)(p, xb, ab, w)
            return opt_step(self.opt, p, o, g), None

        def cond(c):
            epoch, since_best = c[0], c[1]
            return (epoch < cfg.max_epochs) & (since_best < cfg.patience)

        def body(c):
            epoch, since_best, p, o, best_p, best_v, k = c
            k, k_steps = jax.random.split(k)
            (p, o), _ = jax.lax.scan(grad_step, (p, o), jax.random.split(k_steps, cfg.steps_per_epoch))
            v = self._stop_value(target, p, xh, ah, wh)
            better = v < best_v  # strict, as the code; NaN (no holdout rows) never improves
            best_p = jax.tree.map(lambda n, b: jnp.where(better, n, b), p, best_p)
            best_v = jnp.where(better, v, best_v)
            since_best = jnp.where(better, 0, since_best + 1)
            return epoch + 1, since_best, p, o, best_p, best_v, k

        v0 = self._stop_value(target, params, xh, ah, wh)  # ours: the warm start competes too
        c0 = (jnp.int32(0), jnp.int32(0), params, opt_state, params, v0, key)
        epochs, _, _, opt_state, best_p, _, _ = jax.lax.while_loop(cond, body, c0)
        return best_p, opt_state, epochs

    def _error_one(self, target: str, params, x, a, hold, key):
        """eps (App. E, sampled a_hat) and the holdout NLL of one copy."""
        head = self.heads[target]
        out = self.nets[target].apply(params, x)
        a_hat = head.sample(out, key)
        eps = _masked_mean(head.error(a, a_hat), hold)
        return eps, _masked_mean(-head.log_prob(out, a), hold)

    def _per_pair(self, per_target: dict[str, jax.Array]) -> dict[str, dict[str, jax.Array]]:
        """target -> [copies] arrays to ego -> target -> scalar."""
        return {
            i: {j: per_target[j][self.copy_index(i, j)] for j in self.others(i)} for i in self.spec.agents
        }

    def _window(self, data: dict, target: str):
        x = jnp.asarray(data["obs"][target], jnp.float32)
        return x.reshape(x.shape[0], -1), jnp.asarray(data["actions"][target])

    # ---------------------------------------------------------------------------------------------
    def fit(self, state: OpponentState, data: dict, n_valid, key: jax.Array) -> tuple[OpponentState, dict]:
        """Refit every model on the latest window (Algorithm 1 line 6), then measure eps (line 7).

        ``data``: {"obs": {agent: [W, obs_dim]}, "actions": {agent: env-format [W, ...]}}, rows oldest
        first, the last ``n_valid`` rows real (see ``replay.recent``). Returns the new state and metrics
        {"eps", "holdout_nll", "epochs": ego -> target -> scalar, "n_train", "n_holdout": scalars}.
        """
        cfg = self.cfg
        window = jax.tree.leaves(data["obs"])[0].shape[0]
        train, hold = holdout_split(window, n_valid, cfg.holdout_ratio, cfg.holdout)
        block = holdout_block(window, n_valid, cfg.holdout_ratio, cfg.holdout)
        k_fit, k_err = jax.random.split(key)
        params, opt_state, mean, std, epochs = {}, {}, {}, {}, {}
        for j, k in zip(self.targets, jax.random.split(k_fit, len(self.targets)), strict=True):
            x, a = self._window(data, j)
            if cfg.normalize_inputs:
                n = jnp.maximum(jnp.sum(train), 1.0)
                mean[j] = jnp.sum(train[:, None] * x, axis=0) / n
                var = jnp.sum(train[:, None] * (x - mean[j]) ** 2, axis=0) / n
                std[j] = jnp.where(var > 1e-12, jnp.sqrt(var), 1.0)
            else:
                mean[j], std[j] = state.obs_mean[j], state.obs_std[j]
            xn = (x - mean[j]) / std[j]
            fit = jax.vmap(
                lambda p, o, kk, j=j, xn=xn, a=a: self._fit_one(j, p, o, xn, a, train, hold, kk, block)
            )
            params[j], opt_state[j], epochs[j] = fit(
                state.params[j], state.opt_state[j], jax.random.split(k, self.num_copies[j])
            )
        new_state = OpponentState(params, opt_state, mean, std)
        metrics = self.error(new_state, data, n_valid, k_err)
        metrics["epochs"] = self._per_pair(epochs)
        return new_state, metrics

    def error(self, state: OpponentState, data: dict, n_valid, key: jax.Array) -> dict:
        """eps^{i->j} (Appendix E) and the holdout NLL on the holdout rows of ``data`` (the same rows
        ``fit`` holds out): {"eps", "holdout_nll": ego -> target -> scalar, "n_train", "n_holdout"}."""
        window = jax.tree.leaves(data["obs"])[0].shape[0]
        train, hold = holdout_split(window, n_valid, self.cfg.holdout_ratio, self.cfg.holdout)
        eps, nll = {}, {}
        for j, k in zip(self.targets, jax.random.split(key, len(self.targets)), strict=True):
            x, a = self._window(data, j)
            xn = self._obs(state, j, x)
            err = jax.vmap(lambda p, kk, j=j, xn=xn, a=a: self._error_one(j, p, xn, a, hold, kk))
            eps[j], nll[j] = err(state.params[j], jax.random.split(k, self.num_copies[j]))
        return {
            "eps": self._per_pair(eps),
            "holdout_nll": self._per_pair(nll),
            "n_train": jnp.sum(train).astype(jnp.int32),
            "n_holdout": jnp.sum(hold).astype(jnp.int32),
        }

    # ---------------------------------------------------------------------------------------------
    def outputs(self, state: OpponentState, ego: str, target: str, obs_j: jax.Array) -> jax.Array:
        """Raw head output of ego's model of target: logits (concatenated for multi-discrete) or
        [mu, log sigma] (log sigma unclipped) for boxes; ``obs_j`` [..., obs_dim]."""
        params = _tree_index(state.params[target], self.copy_index(ego, target))
        return self.nets[target].apply(params, self._obs(state, target, obs_j))

    def log_prob(self, state: OpponentState, ego: str, target: str, obs_j, action) -> jax.Array:
        return self.heads[target].log_prob(self.outputs(state, ego, target, obs_j), action)

    def loss(self, state: OpponentState, ego: str, target: str, obs_j, action) -> jax.Array:
        """The training loss mean(-log pi(a|o) - alpha H(pi(.|o))) of ego's model of target on a batch."""
        params = _tree_index(state.params[target], self.copy_index(ego, target))
        return jnp.mean(self._loss_rows(target, params, self._obs(state, target, obs_j), action)[0])

    def predict(self, state: OpponentState, ego: str, target: str, obs_j, key: jax.Array, greedy: bool):
        """Ego's prediction of target's action in env format (int / int vector / float vector in the box):
        sampled, or the mode when ``greedy`` (static). No gradient flows to the model."""
        out = jax.lax.stop_gradient(self.outputs(state, ego, target, obs_j))
        head = self.heads[target]
        return head.mode(out) if greedy else head.sample(out, key)

    def predict_flat(self, state: OpponentState, ego: str, target: str, obs_j, key, greedy: bool):
        """``predict`` in the flat form a policy is conditioned on: one-hot / concatenated one-hots /
        the float vector."""
        return self.spec.act_space(target).to_flat(self.predict(state, ego, target, obs_j, key, greedy))

    def predict_others(
        self, state: OpponentState, ego: str, obs: dict, key: jax.Array, greedy: bool, flat: bool = False
    ) -> dict:
        """{j: prediction} for every agent ego models, from ``obs[j]``."""
        fn = self.predict_flat if flat else self.predict
        others = self.others(ego)
        keys = jax.random.split(key, len(others))
        return {j: fn(state, ego, j, obs[j], k, greedy) for j, k in zip(others, keys, strict=True)}


def _check_config(cfg: OpponentConfig, spec: EnvSpec) -> None:
    """Each field's declared range (for a config built in Python; the config system checks them on YAML /
    command-line values), then what the ranges cannot say and the constraints involving the env."""

    def bad(msg):
        raise ConfigError(f"opponent models: {msg}")

    ranges.validate(cfg, where=" (OpponentConfig)")
    if spec.num_agents < 2:
        bad(f"task {spec.name!r} has a single agent, nothing to model")
    if not cfg.hidden:
        bad(f"hidden must be positive layer widths, got {cfg.hidden}")
    if cfg.entropy_coef >= 1 and any(isinstance(s, Box) for s in spec.act_spaces):
        bad(f"entropy_coef must be < 1 with Box actions (sigma diverges), got {cfg.entropy_coef}")


__all__ = [
    "OpponentConfig",
    "OpponentModels",
    "OpponentState",
    "holdout_split",
    "Head",
    "recommended_config",
]
