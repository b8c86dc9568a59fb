"""IPPO: independent PPO (de Witt et al. 2020; JaxMARL's ``baselines/IPPO/ippo_ff_mpe.py`` settings).

Every agent i has its own actor pi_i(a_i | o_i) and critic V_i(o_i) on its local observation (no
parameter sharing, so heterogeneous agents need nothing special), trained by PPO on its own reward:

- collection: ``rollout_steps`` steps of ``num_envs`` envs with the current policies, keeping the
  behaviour log-probability log pi_i(a_i|o_i) and the value V_i(o_i) of every step (the trajectory's
  extras);
- advantages: GAE(gamma, lambda) (``ppo.gae``) with V_i of the observation each step reached, so an
  episode truncated by its time limit (every MPE episode) bootstraps from its last state and a
  terminated one does not; advantages normalised over the batch (MAPPO);
- value targets A + V, normalised by a running ValueNorm (MAPPO) when ``value_norm``;
- ``epochs`` passes of ``num_minibatches`` permuted minibatches, each minimising per agent

      L_i = L^CLIP(theta_i) + vf_coef L^V(phi_i) - ent_coef H[pi_i(.|o_i)]

  with PPO's clipped surrogate (Schulman et al. 2017, Eq. 7; ``ppo.clipped_surrogate``), the clipped
  Huber value loss (MAPPO; ``ppo.value_loss``), one Adam per agent over actor and critic with global-norm
  gradient clipping, and the learning rate decayed linearly over the run when ``anneal_lr``.

Actions (:mod:`marlow.algos.onpolicy.actors`): Discrete and MultiDiscrete are categorical (multi-discrete
log-probs and entropies summed over components), respecting the task's available-action masks (SMAX);
Box actions are a Gaussian with a state-independent log-std (``nn.distributions.DiagGaussian``), clipped to
the bounds in the env. Logged: policy and value losses, entropy, approx-KL,
clip fraction, explained variance and the learning rate. Defaults: conf/algo/ippo.yaml, each value with
its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from marlow import rollout
from marlow.algos.learner import OnPolicyDefaults
from marlow.algos.onpolicy import ppo
from marlow.algos.onpolicy.actors import Actors, avail
from marlow.envs.api import EnvSpec
from marlow.nn.mlp import MLP

NAME = "ippo"
KIND = "on_policy"
DESCRIPTION = "Independent PPO: per-agent actor and critic on local observations (JaxMARL's IPPO settings)"
SUPPORTED_ACTIONS = frozenset({"discrete", "multi_discrete", "box"})
SUPPORTS_MASKS = True


@dataclass
class Config(ppo.Config):
    """Defaults in conf/algo/ippo.yaml, each with its source (the keys: :class:`.ppo.Config`)."""


@struct.dataclass
class State:
    params: dict[str, Any]  # agent -> {"actor": ..., "critic": ..., ["log_std": [d]]}
    opt: dict[str, Any]
    vnorm: dict[str, ppo.ValueNorm]
    updates: jax.Array  # learn calls so far


class Algorithm(OnPolicyDefaults):
    """IPPO as a learner (:mod:`marlow.algos.learner`): pure functions over an explicit :class:`State`."""

    def __init__(self, spec: EnvSpec, cfg: Config):
        self.spec, self.cfg = spec, cfg
        self.actors = Actors(spec, cfg.hidden, cfg.activation, cfg.log_std_init)
        self.critic = MLP(tuple(cfg.hidden), 1, cfg.activation)
        self.env_info = spec.action_masks  # the policy needs the masks (rollout env information)
        clip = [optax.clip_by_global_norm(cfg.max_grad_norm)] if cfg.max_grad_norm > 0 else []
        self.opt = optax.chain(*clip, optax.scale_by_adam(eps=cfg.adam_eps))
        self.steps_per_iter = cfg.rollout_steps
        self.num_envs, self.total_steps = None, None

    def bind(self, num_envs: int, total_steps: int) -> None:
        """The run's number of envs and length (the batch size and the learning-rate schedule)."""
        ppo.check_schedule(NAME, self.cfg, num_envs)
        self.num_envs, self.total_steps = num_envs, total_steps

    # ---- state ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> State:
        params = {}
        for a, k in zip(self.spec.agents, jax.random.split(key, self.spec.num_agents), strict=True):
            k_pi, k_v = jax.random.split(k)
            p = self.actors.init_actor(a, k_pi)
            p["critic"] = self.critic.init(k_v, jnp.zeros((1, self.spec.obs_dim(a))))
            params[a] = p
        return State(
            params=params,
            opt={a: self.opt.init(params[a]) for a in self.spec.agents},
            vnorm={a: ppo.ValueNorm.init() for a in self.spec.agents},
            updates=jnp.int32(0),
        )

    # ---- acting -----------------------------------------------------------------------------------
    def value(self, state: State, a: str, obs) -> jax.Array:
        """V_a(obs) in return units (denormalised)."""
        v = self.critic.apply(state.params[a]["critic"], obs)[..., 0]
        return state.vnorm[a].denormalize(v) if self.cfg.value_norm else v

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool, info: dict | None = None) -> dict:
        keys = jax.random.split(key, self.spec.num_agents)
        out = {}
        for a, k in zip(self.spec.agents, keys, strict=True):
            p, mask = state.params[a], avail(info, a)
            if explore:
                out[a] = self.actors.sample(p, a, obs[a], k, mask)[0]
            else:
                out[a] = self.actors.mode(p, a, obs[a], mask)
        return out

    def policy(self, state: State) -> rollout.Policy:
        """The behaviour policy; extras: per agent the learning action, its log-prob and V(o). Takes the
        rollout's env information (``info``) on tasks with action masks."""

        def behave(pstate, obs, t, key, info=None):
            actions, extras = {}, {"action": {}, "log_prob": {}, "value": {}}
            for a, k in zip(self.spec.agents, jax.random.split(key, self.spec.num_agents), strict=True):
                env_a, learn_a, logp = self.actors.sample(state.params[a], a, obs[a], k, avail(info, a))
                actions[a] = env_a
                extras["action"][a], extras["log_prob"][a] = learn_a, logp
                extras["value"][a] = self.value(state, a, obs[a])
            return pstate, actions, extras

        return behave

    # ---- learning ---------------------------------------------------------------------------------
    def learn(self, state: State, traj: rollout.Trajectory, step, key: jax.Array) -> tuple[State, dict]:
        cfg = self.cfg
        lr = cfg.lr * (
            ppo.linear_decay(step, self.total_steps, self.iteration_steps) if cfg.anneal_lr else 1.0
        )
        data, vnorm, ev = {}, {}, {}
        for a in self.spec.agents:
            x = traj.extras
            next_v = self.value(state, a, traj.next_obs[a])
            adv, target = ppo.gae(
                traj.rewards[a], x["value"][a], next_v, traj.terminated, traj.done, cfg.gamma, cfg.gae_lambda
            )
            adv, target, value, vnorm[a], ev[a] = ppo.targets(cfg, adv, target, x["value"][a], state.vnorm[a])
            data[a] = {
                "obs": traj.obs[a],
                "mask": avail(traj.info, a),
                "action": x["action"][a],
                "log_prob": x["log_prob"][a],
                "adv": adv,
                "target": target,
                "value": value,
            }
        data = jax.tree.map(lambda v: v.reshape((-1,) + v.shape[2:]), data)

        def minibatch(carry, mb):
            params, opt = carry
            new_p, new_o, metrics = {}, {}, {}
            for a in self.spec.agents:
                grads, m = jax.grad(self._loss, has_aux=True)(params[a], a, mb[a])
                updates, new_o[a] = self.opt.update(grads, opt[a], params[a])
                new_p[a] = optax.apply_updates(params[a], jax.tree.map(lambda u: -lr * u, updates))
                metrics[a] = m
            return (new_p, new_o), jax.tree.map(lambda *v: jnp.mean(jnp.stack(v)), *metrics.values())

        (params, opt), metrics = ppo.minibatch_epochs(
            (state.params, state.opt), data, key, cfg.epochs, cfg.num_minibatches, minibatch
        )
        metrics["explained_variance"] = jnp.mean(jnp.stack(list(ev.values())))
        metrics["lr"] = jnp.asarray(lr, jnp.float32)
        metrics["updates"] = jnp.float32(cfg.epochs * cfg.num_minibatches)
        state = State(params=params, opt=opt, vnorm=vnorm, updates=state.updates + 1)
        return state, metrics

    @property
    def iteration_steps(self) -> int:
        return self.cfg.rollout_steps * self.num_envs

    def _loss(self, p, a: str, mb: dict):
        """Agent ``a``'s PPO loss on a minibatch (module docstring) and its statistics."""
        cfg = self.cfg
        logp, ent = self.actors.log_prob_entropy(p, a, mb["obs"], mb["action"], mb["mask"])
        pg, stats = ppo.clipped_surrogate(logp, mb["log_prob"], mb["adv"], cfg.clip_eps)
        v = self.critic.apply(p["critic"], mb["obs"])[..., 0]
        vf = ppo.value_loss(
            v, mb["value"], mb["target"], cfg.clip_eps if cfg.value_clip else None, cfg.huber_delta or None
        )
        entropy = jnp.mean(ent)
        loss = pg + cfg.vf_coef * vf - cfg.ent_coef * entropy
        return loss, {"policy_loss": pg, "value_loss": vf, "entropy": entropy, **stats}
