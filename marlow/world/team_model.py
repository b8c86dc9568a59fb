"""The team dynamics model of Teammate Lookahead: one network for every agent, its weights shared across
agents (the Teammate Lookahead paper, Sec. 3.2 "environment model"; the authors' code, xlnwel/grl2-jax,
its ``happo_mb`` dynamics model; facts in docs/reference/lookahead.md).

For agent i of n, a transition (o, a, r, o', terminated) gives one row

    input  x_i = [o_i zero-padded to the widest observation, one-hot(i), flat(a_1), ..., flat(a_n)]
    target y_i = [o'_i - o_i (padded), r_i]

and the model is

- a probabilistic ensemble (:class:`marlow.world.ensemble.Ensemble`: a diagonal Gaussian over the
  normalised target, log-variance softly bounded, inputs and targets standardised, holdout early stopping,
  elites) over the rows of all agents at once. One member with its log-variance bounds at [-10, 0.5] is
  the authors' model; more members are an option;
- a Bernoulli termination head: an MLP of the same widths on the standardised x_i, trained with binary
  cross-entropy toward ``terminated`` (the authors' discount head). In the model an episode terminates
  where the agents' mean termination probability exceeds 1/2.

:meth:`TeamModel.predict` returns ``(next_obs, rewards, terminated)`` for a batch of joint observations and
env-format actions, the form :class:`marlow.world.model_env.ModelEnv` takes (``batched=True``), so the
lookahead round runs on the rollout engine like real collection. With ``deterministic`` the Gaussian's mean
is used (the authors roll out the mode). Everything is a pure function of a :class:`TeamModelState`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from marlow.buffers.replay import ReplayBuffer
from marlow.envs.api import EnvSpec, flat_actions
from marlow.nn.mlp import MLP
from marlow.nn.optim import make_optimizer
from marlow.world.ensemble import Ensemble, EnsembleConfig, EnsembleState


@struct.dataclass
class TeamModelState:
    ens: EnsembleState
    term: Any  # the termination head's parameters
    term_opt: Any


class TeamModel:
    """Static structure (module docstring); ``term_steps`` gradient steps of the termination head per
    :meth:`train` call, on minibatches of ``cfg.batch_size`` transitions."""

    def __init__(self, spec: EnvSpec, cfg: EnsembleConfig, term_steps: int):
        self.spec, self.cfg, self.term_steps = spec, cfg, int(term_steps)
        self.n = spec.num_agents
        self.obs_dims = tuple(spec.obs_dim(a) for a in spec.agents)
        self.width = max(self.obs_dims)
        self.in_dim = self.width + self.n + sum(s.flat_dim for s in spec.act_spaces)
        self.out_dim = self.width + 1
        self.ensemble = Ensemble(self.in_dim, self.out_dim, cfg)
        self.term_net = MLP(tuple(int(h) for h in cfg.hidden), 1, cfg.activation)
        self.term_opt = make_optimizer(cfg.lr, cfg.max_grad_norm)
        # 1 on the target dimensions agent i really has (its delta, its reward), 0 on the padding
        dims = jnp.arange(self.out_dim)
        self.target_mask = jnp.stack([(dims < d) | (dims == self.width) for d in self.obs_dims]).astype(
            jnp.float32
        )

    # ---- layout -----------------------------------------------------------------------------------
    def _pad(self, x: jax.Array) -> jax.Array:
        pad = self.width - x.shape[-1]
        return x if pad == 0 else jnp.concatenate([x, jnp.zeros(x.shape[:-1] + (pad,), x.dtype)], -1)

    def inputs(self, obs: dict, actions: dict) -> jax.Array:
        """``[..., n, in_dim]``: every agent's row (module docstring) for env-format joint actions."""
        acts = flat_actions(self.spec, actions)
        joint = jnp.concatenate([acts[a].astype(jnp.float32) for a in self.spec.agents], axis=-1)
        rows = []
        for i, a in enumerate(self.spec.agents):
            o = self._pad(obs[a].astype(jnp.float32))
            ids = jnp.broadcast_to(jax.nn.one_hot(i, self.n), o.shape[:-1] + (self.n,))
            rows.append(jnp.concatenate([o, ids, joint], axis=-1))
        return jnp.stack(rows, axis=-2)

    def targets(self, obs: dict, rewards: dict, next_obs: dict) -> jax.Array:
        """``[..., n, out_dim]``: every agent's padded observation delta and its reward."""
        rows = [
            jnp.concatenate(
                [self._pad((next_obs[a] - obs[a]).astype(jnp.float32)), rewards[a][..., None]], axis=-1
            )
            for a in self.spec.agents
        ]
        return jnp.stack(rows, axis=-2).astype(jnp.float32)

    def _term_logits(self, state: TeamModelState, params, x: jax.Array) -> jax.Array:
        xn = (x - state.ens.in_mean) / state.ens.in_std
        return self.term_net.apply(params, xn)[..., 0]

    # ---- pure functions ---------------------------------------------------------------------------
    def init(self, key: jax.Array) -> TeamModelState:
        k_ens, k_term = jax.random.split(key)
        term = self.term_net.init(k_term, jnp.zeros((1, self.in_dim)))
        return TeamModelState(ens=self.ensemble.init(k_ens), term=term, term_opt=self.term_opt.init(term))

    def train(self, state: TeamModelState, buf: ReplayBuffer, key: jax.Array):
        """Fit on the valid rows of ``buf`` (transitions ``obs, actions, rewards, next_obs, done`` with
        ``done`` = terminated; the first ``buf.size`` rows are the valid ones). Returns (state, metrics)."""
        d = buf.data
        x, y = self.inputs(d["obs"], d["actions"]), self.targets(d["obs"], d["rewards"], d["next_obs"])
        cap = x.shape[0]
        k_ens, k_term = jax.random.split(key)
        # transition-major rows: the valid transitions' rows are the first size * n
        ens, metrics = self.ensemble.train(
            state.ens, x.reshape(cap * self.n, -1), y.reshape(cap * self.n, -1), buf.size * self.n, k_ens
        )
        state = state.replace(ens=ens)
        done = d["done"].astype(jnp.float32)

        def bce(params, idx):
            logits = self._term_logits(state, params, x[idx])  # [batch, n]
            return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, done[idx][:, None]))

        def step(carry, k):
            params, opt_state = carry
            idx = jax.random.randint(k, (self.cfg.batch_size,), 0, jnp.maximum(buf.size, 1))
            loss, grads = jax.value_and_grad(bce)(params, idx)
            updates, opt_state = self.term_opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (term, term_opt), losses = jax.lax.scan(
            step, (state.term, state.term_opt), jax.random.split(k_term, self.term_steps)
        )
        metrics = {f"model_{k}": v for k, v in metrics.items()}
        metrics["model_term_loss"] = jnp.mean(losses) if self.term_steps else jnp.float32(0.0)
        return state.replace(term=term, term_opt=term_opt), metrics

    def predict(self, state: TeamModelState, obs: dict, actions: dict, key: jax.Array, deterministic: bool):
        """``(next_obs, rewards, terminated)`` for joint observations / env-format actions with a leading
        batch axis ``[M, ...]``; ``deterministic``: the Gaussian's mean."""
        x = self.inputs(obs, actions)
        sample, _, _ = self.ensemble.predict(state.ens, x, key, deterministic)
        next_obs, rewards = {}, {}
        for i, (a, d) in enumerate(zip(self.spec.agents, self.obs_dims, strict=True)):
            next_obs[a] = obs[a] + sample[..., i, :d].astype(obs[a].dtype)
            rewards[a] = sample[..., i, self.width]
        p_term = jax.nn.sigmoid(self._term_logits(state, state.term, x))
        return next_obs, rewards, jnp.mean(p_term, axis=-1) > 0.5

    def one_step_error(self, state: TeamModelState, trans: dict) -> dict[str, jax.Array]:
        """The mean prediction's error on real transitions (``trans``: obs, actions, rewards, next_obs,
        done, any leading shape): ``model_error`` = MSE in the model's normalised target units over the
        agents' real dimensions (1 = no better than predicting the training mean; comparable with
        ``model_holdout_mse``); ``model_obs_mse`` / ``model_reward_mse`` in raw units; ``model_term_acc``
        the termination head's accuracy."""
        x = self.inputs(trans["obs"], trans["actions"])
        y = self.targets(trans["obs"], trans["rewards"], trans["next_obs"])
        _, mean, _ = self.ensemble.predict(state.ens, x, jax.random.PRNGKey(0), True)
        err = (mean - y) ** 2
        mask = jnp.broadcast_to(self.target_mask, err.shape)
        norm = err / state.ens.out_std**2
        obs_mask = mask.at[..., self.width].set(0.0)
        term = jnp.mean(jax.nn.sigmoid(self._term_logits(state, state.term, x)), -1) > 0.5
        return {
            "model_error": jnp.sum(norm * mask) / jnp.sum(mask),
            "model_obs_mse": jnp.sum(err * obs_mask) / jnp.maximum(jnp.sum(obs_mask), 1.0),
            "model_reward_mse": jnp.mean(err[..., self.width]),
            "model_term_acc": jnp.mean((term == (trans["done"] > 0.5)).astype(jnp.float32)),
        }


__all__ = ["TeamModel", "TeamModelState"]
