"""IPPO: independent PPO (de Witt et al. 2020; JaxMARL's ``baselines/IPPO/ippo_ff_mpe.py`` settings).

Every agent i has its own actor pi_i(a_i | o_i) and critic V_i(o_i) on its local observation (no
parameter sharing, so heterogeneous agents need nothing special), trained by PPO on its own reward. With
``share_params`` the agents share one actor and one critic (JaxMARL's IPPO script: one ActorCritic
applied to every agent's observation, the agents batched on one axis, no agent id), which needs agents of
one observation and action space: the agents' columns are laid side by side as extra envs, so GAE, the
value normalisation, the advantage normalisation and the minibatches run over all agents' rows, and the
program is one network's, not one per agent. Per *group* (one agent, or all agents sharing):

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
the bounds in the env. Logged: policy and value losses, entropy, approx-KL, clip fraction, explained
variance and the learning rate. Defaults: conf/ppo.yaml and conf/algo/ippo.yaml, each value with its
source.
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
from marlow.errors import ConfigError
from marlow.nn.mlp import MLP

NAME = "ippo"
KIND = "on_policy"
DESCRIPTION = "Independent PPO: per-agent actor and critic on local observations (JaxMARL's IPPO settings)"
SUPPORTED_ACTIONS = frozenset({"discrete", "multi_discrete", "box"})
SUPPORTS_MASKS = True


@dataclass
class Config(ppo.Config):
    """Defaults in conf/ppo.yaml and conf/algo/ippo.yaml, each with its source (the keys:
    :class:`.ppo.Config`)."""

    share_params: bool  # one actor and one critic for all agents (agents of one space)


@struct.dataclass
class State:
    params: dict[str, Any]  # group -> {"actor": ..., "critic": ..., ["log_std": [d]]}
    opt: dict[str, Any]
    vnorm: dict[str, ppo.ValueNorm]
    updates: jax.Array  # learn calls so far


class Algorithm(OnPolicyDefaults):
    """IPPO as a learner (:mod:`marlow.algos.learner`): pure functions over an explicit :class:`State`.

    Parameters, optimiser states and value normalisers are kept per *group*, named by its first member:
    every agent alone, or (``share_params``) all agents in one. A group's members are laid side by side on
    the env axis (:meth:`_cols`), so a group of one is its agent's arrays unchanged."""

    def __init__(self, spec: EnvSpec, cfg: Config):
        self.spec, self.cfg = spec, cfg
        if cfg.share_params and len(set(zip(spec.obs_spaces, spec.act_spaces, strict=True))) > 1:
            raise ConfigError(
                f"ippo: share_params=true needs agents of one observation and action space; task "
                f"{spec.name!r} has agents of different spaces"
            )
        self.members = (
            {spec.agents[0]: list(spec.agents)} if cfg.share_params else {a: [a] for a in spec.agents}
        )
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

    def _cols(self, g: str, per_agent: dict, axis: int = 0):
        """Group ``g``'s members' arrays side by side on the env ``axis`` (0 for one step's ``[E, ...]``,
        1 for a trajectory's ``[T, E, ...]``); None stays None."""
        parts = [per_agent[a] for a in self.members[g]]
        if len(parts) == 1 or parts[0] is None:
            return parts[0]
        return jnp.concatenate(parts, axis=axis)

    def _split(self, g: str, x, axis: int = 0) -> dict:
        """The inverse of :meth:`_cols`: member -> its columns."""
        members = self.members[g]
        if len(members) == 1:
            return {members[0]: x}
        return dict(zip(members, jnp.split(x, len(members), axis=axis), strict=True))

    def _masks(self, info, g: str, axis: int = 0):
        return self._cols(g, {a: avail(info, a) for a in self.members[g]}, axis)

    # ---- state ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> State:
        params = {}
        for g, k in zip(self.members, jax.random.split(key, len(self.members)), strict=True):
            k_pi, k_v = jax.random.split(k)
            p = self.actors.init_actor(g, k_pi)
            p["critic"] = self.critic.init(k_v, jnp.zeros((1, self.spec.obs_dim(g))))
            params[g] = p
        return State(
            params=params,
            opt={g: self.opt.init(params[g]) for g in self.members},
            vnorm={g: ppo.ValueNorm.init() for g in self.members},
            updates=jnp.int32(0),
        )

    # ---- acting -----------------------------------------------------------------------------------
    def value(self, state: State, g: str, obs) -> jax.Array:
        """V_g(obs) in return units (denormalised), ``g`` a group."""
        v = self.critic.apply(state.params[g]["critic"], obs)[..., 0]
        return state.vnorm[g].denormalize(v) if self.cfg.value_norm else v

    def _agent_keys(self, key: jax.Array) -> dict:
        """One key per agent; a group samples with its first member's."""
        return dict(zip(self.spec.agents, jax.random.split(key, self.spec.num_agents), strict=True))

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool, info: dict | None = None) -> dict:
        keys, out = self._agent_keys(key), {}
        for g in self.members:
            p, o, mask = state.params[g], self._cols(g, obs), self._masks(info, g)
            if explore:
                actions = self.actors.sample(p, g, o, keys[g], mask)[0]
            else:
                actions = self.actors.mode(p, g, o, mask)
            out.update(self._split(g, actions))
        return out

    def policy(self, state: State) -> rollout.Policy:
        """The behaviour policy; extras: per agent the learning action, its log-prob and V(o). Takes the
        rollout's env information (``info``) on tasks with action masks."""

        def behave(pstate, obs, t, key, info=None):
            keys = self._agent_keys(key)
            actions, extras = {}, {"action": {}, "log_prob": {}, "value": {}}
            for g in self.members:
                o = self._cols(g, obs)
                env_a, learn_a, logp = self.actors.sample(
                    state.params[g], g, o, keys[g], self._masks(info, g)
                )
                actions.update(self._split(g, env_a))
                extras["action"].update(self._split(g, learn_a))
                extras["log_prob"].update(self._split(g, logp))
                extras["value"].update(self._split(g, self.value(state, g, o)))
            return pstate, actions, extras

        return behave

    # ---- learning ---------------------------------------------------------------------------------
    def learn(self, state: State, traj: rollout.Trajectory, step, key: jax.Array) -> tuple[State, dict]:
        cfg = self.cfg
        lr = cfg.lr * (
            ppo.linear_decay(step, self.total_steps, self.iteration_steps) if cfg.anneal_lr else 1.0
        )
        data, vnorm, ev = {}, {}, {}
        x = traj.extras
        for g, members in self.members.items():
            # the members' columns side by side: each is an env of its own ([T, n E])
            terminated = self._cols(g, dict.fromkeys(members, traj.terminated), 1)
            done = self._cols(g, dict.fromkeys(members, traj.done), 1)
            rewards, behaviour_v = self._cols(g, traj.rewards, 1), self._cols(g, x["value"], 1)
            next_v = self.value(state, g, self._cols(g, traj.next_obs, 1))
            steps = ppo.Steps(rewards, behaviour_v, next_v, terminated, done)
            adv, target = ppo.gae(steps, cfg.gamma, cfg.gae_lambda)
            adv, target, value, vnorm[g], ev[g] = ppo.targets(cfg, adv, target, behaviour_v, state.vnorm[g])
            data[g] = {
                "obs": self._cols(g, traj.obs, 1),
                "mask": self._masks(traj.info, g, 1),
                "action": self._cols(g, x["action"], 1),
                "log_prob": self._cols(g, x["log_prob"], 1),
                "adv": adv,
                "target": target,
                "value": value,
            }
        data = jax.tree.map(lambda v: v.reshape((-1,) + v.shape[2:]), data)

        def minibatch(carry, mb):
            params, opt = carry
            new_p, new_o, metrics = {}, {}, {}
            for g in self.members:
                grads, m = jax.grad(self._loss, has_aux=True)(params[g], g, mb[g])
                updates, new_o[g] = self.opt.update(grads, opt[g], params[g])
                new_p[g] = optax.apply_updates(params[g], jax.tree.map(lambda u: -lr * u, updates))
                metrics[g] = m
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
        """Group ``a``'s PPO loss on a minibatch (module docstring) and its statistics."""
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
