"""MAG, Models as AGents (Wu et al. 2023, "Models as Agents: Optimizing Multi-Step Predictions of
Interactive Local Models in Model-Based Multi-Agent Reinforcement Learning"): MAMBA
(:mod:`marlow.algos.model_based.mamba`) whose imagined rollouts are *planned* by the local models, which
act as agents of a "model MMDP" (Def. 1) that minimise the team's accumulated prediction error while the
current joint policy plays the environment. Upstream: ZifanWu/MAG (``src/networks/dreamer/rnns.py``
``MPCPredict``, ``src/agent/optim/loss.py``, ``src/agent/learners/DreamerLearner.py``).

Added to MAMBA's learner step, after the world model's updates:

- **the model-error predictor** ``R_m`` (Sec. 3.3 "Approximating R_m"; App. B: an MLP of ``rm_layers``
  layers of ``rm_hidden`` units, ELU): on the *prior* features ``[z ~ p(z|h), h]`` of every step and agent
  of ``rm_batch`` replayed windows, regressed (smooth L1, ``rm_updates`` Adam steps) toward the frozen
  world model's loss at that step and agent (:func:`marlow.world.rssm.model_loss`'s ``per_step``: KL +
  reconstruction + reward + continuation + available actions). It tells the local models where their
  predictions are weak.
- **planning at every imagination step** (Algorithm 1 lines 9-12, random shooting MPC): after the policy's
  actions give the next deterministic state ``h``, ``plan_candidates`` (L) candidate next latents are
  drawn from the prior (the candidates differ only in that sample, as in the code); each candidate is
  rolled ``plan_horizon - 1`` (H - 1) more steps with the current policy (actions sampled under masks
  sampled from the model, the next latents from the prior), and scored by the sum over its H states of
  the predicted error ``R_m``. The first step of the best candidate becomes the imagined next state (MPC
  keeps only the first step). ``plan_select``: ``joint`` takes, per imagined sample, the candidate with the
  lowest error summed over agents (Def. 1's model reward is shared by the local models); ``agent`` lets
  each agent's local model take, per sample, the candidate with its own lowest accumulated error. The
  reference code takes one argmin over the whole batch and all agents (its per-sample choice is a TODO);
  we choose per sample. The L candidates and their rollouts are one batched computation (a leading
  candidate axis), not a Python loop. With L = 1 this is MAMBA exactly (the same draws, the only
  candidate kept; tests/test_mag.py).

Logged besides MAMBA's metrics: ``rm_loss``; ``plan_err_chosen`` and ``plan_err_random``, the predicted
(R_m) H-step score of the chosen and of a uniformly random candidate, summed along the imagination
horizon; ``pred_err_acc_kXX`` and ``pred_err_random_acc_kXX``, the predicted error of the imagined states
accumulated over the first k imagination steps, for the planned states and for random candidates (the
Fig. 3 analogue within one model: a random candidate is what MAMBA's plain prior draw keeps); and
MAMBA's realised error (``real_err_*``), here with planned latents. Defaults: conf/algo/mag.yaml;
per-map L and H (Table 1) in conf/task/smax/<map>.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct

from marlow.algos.model_based import mamba
from marlow.buffers import sequence
from marlow.nn.mlp import MLP
from marlow.schema.ranges import Positive, Size
from marlow.world import rssm

NAME = "mag"
KIND = "world_model"
DESCRIPTION = "MAG: MAMBA with imagined rollouts planned to keep the local models' accumulated error low"
SUPPORTED_ACTIONS = mamba.SUPPORTED_ACTIONS
SUPPORTS_MASKS = True
COOPERATIVE = True
HOMOGENEOUS = True
__all__ = ["NAME", "KIND", "DESCRIPTION", "SUPPORTED_ACTIONS", "Config", "Algorithm"]


@dataclass
class Config(mamba.Config):
    """MAMBA's keys and MAG's (conf/algo/mag.yaml)."""

    plan_candidates: Size  # L
    plan_horizon: Size  # H
    plan_select: Literal["joint", "agent"]
    rm_hidden: Size
    rm_layers: Size
    rm_lr: Positive
    rm_updates: Size
    rm_batch: Size


@struct.dataclass
class State(mamba.State):
    rm: Any
    rm_opt: Any


class Algorithm(mamba.Algorithm):
    """MAG as a learner (module docstring)."""

    NAME = NAME

    def __init__(self, spec, cfg: Config):
        super().__init__(spec, cfg)
        self.rm_net = MLP((cfg.rm_hidden,) * (cfg.rm_layers - 1), 1, "elu")
        self.rm_tx = optax.adam(cfg.rm_lr)

    def init_extra(self, state: mamba.State, key) -> State:
        rm = self.rm_net.init(key, jnp.zeros((1, self.n, self.sizes.feat)))
        base = {f: getattr(state, f) for f in state.__dataclass_fields__}
        return State(**base, rm=rm, rm_opt=self.rm_tx.init(rm))

    def predicted_error(self, rm, deter, stoch) -> jax.Array:
        """R_m at the prior features ``[z, h]``: ``[..., N]`` (``deter`` broadcast to the latents' batch)."""
        deter = jnp.broadcast_to(deter, stoch.shape[:-1] + deter.shape[-1:])
        return self.rm_net.apply(rm, self.features(deter, stoch))[..., 0]

    # ---- the error predictor ----------------------------------------------------------------------
    def train_extra(self, state: State, key) -> tuple[State, dict]:
        cfg = self.cfg
        params = jax.lax.stop_gradient(state.model)

        def one(carry, k):
            rm, opt = carry
            k_s, k_l = jax.random.split(k)
            window = sequence.sample(state.buffer, k_s, cfg.rm_batch, cfg.seq_len)
            _, (_, target, post) = rssm.model_loss(self.model, params, window, k_l, cfg.kl_balance)
            deter, z = jax.lax.stop_gradient((post["deter"], post["prior_stoch"]))

            def loss(p):
                return jnp.mean(optax.huber_loss(self.predicted_error(p, deter, z), target, delta=1.0))

            value, grads = jax.value_and_grad(loss)(rm)
            upd, opt = self.rm_tx.update(grads, opt, rm)
            return (optax.apply_updates(rm, upd), opt), value

        (rm, opt), losses = jax.lax.scan(one, (state.rm, state.rm_opt), jax.random.split(key, cfg.rm_updates))
        return state.replace(rm=rm, rm_opt=opt), {"rm_loss": jnp.mean(losses)}

    # ---- planning ---------------------------------------------------------------------------------
    def candidate_scores(self, state: State, deter, cands, key) -> tuple[jax.Array, jax.Array]:
        """Each candidate's predicted error over H steps, per agent: ``deter [M, N, D]`` (shared by the
        candidates), ``cands [L, M, N, S]`` -> ``(scores, first)``, both ``[L, M, N]``: the sum over the H
        states of each candidate's rollout and the error of its first state, the candidate itself (module
        docstring)."""
        params = jax.lax.stop_gradient(state.model)
        L = cands.shape[0]
        deter = jnp.broadcast_to(deter, (L,) + deter.shape)
        first = self.predicted_error(state.rm, deter, cands)

        def advance(carry, k):
            d, z = carry
            k_av, k_a, k_z = jax.random.split(k, 3)
            a, _, _ = self.imagined_action(params, state.actor, self.features(d, z), k_av, k_a)
            d = self._m(params, rssm.WorldModel.transition, d, z, jax.nn.one_hot(a, self.n_actions))
            z = self.sample_prior(params, d, k_z, 1)[0]
            return (d, z), self.predicted_error(state.rm, d, z)

        _, errs = jax.lax.scan(advance, (deter, cands), jax.random.split(key, self.cfg.plan_horizon - 1))
        return first + jnp.sum(errs, axis=0), first

    def next_latent(self, state: State, deter, key) -> tuple[jax.Array, dict]:
        """The planned next latent at ``deter`` ``[M, N, D]`` (module docstring) and, per sample, the chosen
        and a random candidate's predicted errors (summed over agents)."""
        L = self.cfg.plan_candidates
        k_c, k_roll, k_rand = jax.random.split(key, 3)  # MAMBA draws its one latent with k_c too
        cands = self.sample_prior(state.model, deter, k_c, L)  # [L, M, N, S]
        scores, first = jax.lax.stop_gradient(self.candidate_scores(state, deter, cands, k_roll))  # [L, M, N]
        team = jnp.sum(scores, axis=-1)  # [L, M]
        if self.cfg.plan_select == "joint":
            best = jnp.argmin(team, axis=0)  # [M]
            pick = jnp.broadcast_to(best[:, None], deter.shape[:-1])  # [M, N]
        else:
            pick = jnp.argmin(scores, axis=0)  # [M, N]
        z = jnp.take_along_axis(cands, pick[None, ..., None], axis=0)[0]
        rand = jax.random.randint(k_rand, team.shape[1:], 0, L)  # a random candidate (MAMBA's kind of draw)

        def at(x, idx):
            return jnp.take_along_axis(x, idx[None], axis=0)[0]

        metrics = {
            "plan_err_chosen": jnp.sum(at(scores, pick), axis=-1),
            "plan_err_random": at(team, rand),
            "step_err_chosen": jnp.sum(at(first, pick), axis=-1),
            "step_err_random": at(jnp.sum(first, axis=-1), rand),
        }
        return z, metrics

    def horizon_metrics(self, plan: dict) -> dict:
        """The planning metrics ``[H, M]`` of an imagination: the H-step scores summed along the imagined
        horizon (``plan_err_*``), and the predicted error of the states taken, accumulated step by step
        along it (``pred_err_acc_kXX`` for the planned states, ``pred_err_random_acc_kXX`` for random
        candidates; the Fig. 3 analogue)."""
        out = {k: jnp.sum(jnp.mean(plan[k], axis=1)) for k in ("plan_err_chosen", "plan_err_random")}
        for name, key in (("pred_err_acc", "step_err_chosen"), ("pred_err_random_acc", "step_err_random")):
            acc = jnp.cumsum(jnp.mean(plan[key], axis=1))
            out.update({f"{name}_k{k + 1:02d}": acc[k] for k in range(acc.shape[0])})
        return out
