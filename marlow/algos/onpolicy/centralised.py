"""What MAPPO and HAPPO share: decentralised actors, one centralised critic V(s) on the global state.

- Actors (:mod:`marlow.algos.onpolicy.actors`): pi_i(a_i | o_i) per agent (or per group of agents of one
  space with ``share_actor``), respecting available-action masks; one Adam per actor group.
- Critic: one V(s) for the team on the global state s (``env.global_state``; the concatenated
  observations of all agents where the task has none), trained on the team reward (the mean of the
  agents' rewards, which is every agent's reward in a shared-reward task) with MAPPO's clipped Huber value
  loss and ValueNorm; its own Adam with learning rate ``critic_lr``.
- Advantages: GAE(gamma, lambda) of the team reward with V(s'), where s' is the global state each step
  reached (the finished episode's last state where it ended), so truncated episodes bootstrap and
  terminated ones do not; normalised over the batch.

The rollout engine passes the masks and the global state to the behaviour policy (``env_info``), and the
trajectory keeps them (:attr:`marlow.rollout.Trajectory.info`). Cooperative tasks only (one team).
Subclasses define ``learn``'s update order (:mod:`mappo`: actors and critic together on each minibatch;
:mod:`happo`: the actors one after another, then the critic).
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
from marlow.schema.ranges import Positive

SUPPORTED_ACTIONS = frozenset({"discrete", "multi_discrete", "box"})


@dataclass
class Config(ppo.Config):
    """PPO's keys and the centralised critic's learning rate (MAPPO's and HAPPO's configs extend it)."""

    critic_lr: Positive


@struct.dataclass
class State:
    params: dict[str, Any]  # {"actors": {group: {"actor", ["log_std"]}}, "critic": ...}
    opt: dict[str, Any]  # {"actors": {group: ...}, "critic": ...}
    vnorm: ppo.ValueNorm
    updates: jax.Array  # learn calls so far


def cooperative_only(name: str, spec: EnvSpec) -> None:
    if spec.competitive:
        teams = ", ".join(n for n, _ in spec.teams)
        raise ConfigError(f"{name} is for cooperative tasks (one team); task {spec.name!r} has teams {teams}")


class CentralisedPPO(OnPolicyDefaults):
    """The shared machinery (module docstring); ``share`` turns on actor parameter sharing."""

    NAME = "centralised_ppo"
    GLOBAL_STATE = True  # the critic reads the task's global state where it has one (else the joint obs)

    def __init__(self, spec: EnvSpec, cfg, share: bool):
        cooperative_only(self.NAME, spec)
        self.spec, self.cfg = spec, cfg
        self.actors = Actors(spec, cfg.hidden, cfg.activation, cfg.log_std_init, share=share)
        self.critic = MLP(tuple(cfg.hidden), 1, cfg.activation)
        self.global_state = self.GLOBAL_STATE and spec.global_state_dim is not None
        self.state_dim = spec.global_state_dim if self.global_state else sum(map(spec.obs_dim, spec.agents))
        clip = [optax.clip_by_global_norm(cfg.max_grad_norm)] if cfg.max_grad_norm > 0 else []
        self.opt = optax.chain(*clip, optax.scale_by_adam(eps=cfg.adam_eps))
        self.steps_per_iter = cfg.rollout_steps
        self.env_info = True  # the policy takes the masks and the global state (rollout env information)
        self.num_envs, self.total_steps = None, None

    def bind(self, num_envs: int, total_steps: int) -> None:
        """The run's number of envs and length (the batch size and the learning-rate schedule)."""
        ppo.check_schedule(self.NAME, self.cfg, num_envs, self._minibatch_counts())
        self.num_envs, self.total_steps = num_envs, total_steps

    def _minibatch_counts(self) -> dict[str, int]:
        return {"num_minibatches": self.cfg.num_minibatches}

    @property
    def iteration_steps(self) -> int:
        return self.cfg.rollout_steps * self.num_envs

    def lr_factor(self, step) -> jax.Array:
        if not self.cfg.anneal_lr:
            return jnp.float32(1.0)
        return ppo.linear_decay(step, self.total_steps, self.iteration_steps)

    # ---- state ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> State:
        k_actors, k_critic = jax.random.split(key)
        actors = self.actors.init(k_actors)
        critic = self.critic.init(k_critic, jnp.zeros((1, self.state_dim)))
        return State(
            params={"actors": actors, "critic": critic},
            opt={"actors": {g: self.opt.init(p) for g, p in actors.items()}, "critic": self.opt.init(critic)},
            vnorm=ppo.ValueNorm.init(),
            updates=jnp.int32(0),
        )

    # ---- the critic's input -----------------------------------------------------------------------
    def critic_input(self, obs: dict, info: dict | None, key: str = "global_state") -> jax.Array:
        """The global state (``info[key]``), or all agents' observations concatenated (tasks without one,
        or ``GLOBAL_STATE = False``)."""
        if self.global_state:
            if info is None or key not in info:
                raise ValueError(f"{self.NAME} needs the rollout's env information ({key})")
            return info[key]
        return jnp.concatenate([obs[a] for a in self.spec.agents], axis=-1)

    def value(self, params, vnorm: ppo.ValueNorm, x) -> jax.Array:
        """V(x) in return units (denormalised)."""
        v = self.critic.apply(params["critic"], x)[..., 0]
        return vnorm.denormalize(v) if self.cfg.value_norm else v

    # ---- acting -----------------------------------------------------------------------------------
    def actor_params(self, params, a: str):
        return params["actors"][self.actors.group[a]]

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool, info: dict | None = None) -> dict:
        keys = jax.random.split(key, self.spec.num_agents)
        out = {}
        for a, k in zip(self.spec.agents, keys, strict=True):
            p, mask = self.actor_params(state.params, a), avail(info, a)
            out[a] = (
                self.actors.sample(p, a, obs[a], k, mask)[0]
                if explore
                else self.actors.mode(p, a, obs[a], mask)
            )
        return out

    def policy(self, state: State) -> rollout.Policy:
        """The behaviour policy; extras: per agent the learning action and its log-prob, and V(s)."""

        def behave(pstate, obs, t, key, info):
            actions, extras = {}, {"action": {}, "log_prob": {}}
            for a, k in zip(self.spec.agents, jax.random.split(key, self.spec.num_agents), strict=True):
                p = self.actor_params(state.params, a)
                env_a, learn_a, logp = self.actors.sample(p, a, obs[a], k, avail(info, a))
                actions[a] = env_a
                extras["action"][a], extras["log_prob"][a] = learn_a, logp
            extras["value"] = self.value(state.params, state.vnorm, self.critic_input(obs, info))
            return pstate, actions, extras

        return behave

    # ---- learning: the batch ----------------------------------------------------------------------
    def batch(self, state: State, traj: rollout.Trajectory) -> tuple[dict, ppo.ValueNorm, jax.Array]:
        """The flat ``[T * B]`` training batch of a trajectory: per agent obs, mask, action, behaviour
        log-prob; the team's advantage, critic input, normalised value target and behaviour value.
        Returns ``(batch, updated ValueNorm, explained variance)``."""
        cfg, x = self.cfg, traj.extras
        team_r = jnp.mean(jnp.stack([traj.rewards[a] for a in self.spec.agents]), axis=0)
        s = self.critic_input(traj.obs, traj.info)
        next_v = self.value(
            state.params, state.vnorm, self.critic_input(traj.next_obs, traj.info, "next_global_state")
        )
        steps = ppo.Steps(team_r, x["value"], next_v, traj.terminated, traj.done)
        adv, target = ppo.gae(steps, cfg.gamma, cfg.gae_lambda)
        adv, target, value, vn, ev = ppo.targets(cfg, adv, target, x["value"], state.vnorm)
        data = {
            "agents": {
                a: {
                    "obs": traj.obs[a],
                    "mask": avail(traj.info, a),
                    "action": x["action"][a],
                    "log_prob": x["log_prob"][a],
                }
                for a in self.spec.agents
            },
            "adv": adv,
            "state": s,
            "target": target,
            "value": value,
        }
        return jax.tree.map(lambda v: v.reshape((-1,) + v.shape[2:]), data), vn, ev

    # ---- learning: the losses ---------------------------------------------------------------------
    def actor_loss(self, p, a: str, mb: dict, adv, factor=1.0):
        """Agent ``a``'s clipped surrogate with its entropy bonus (``factor``: HAPPO's M)."""
        d = mb["agents"][a]
        logp, ent = self.actors.log_prob_entropy(p, a, d["obs"], d["action"], d["mask"])
        adv = self.advantage(a, mb, adv, jax.lax.stop_gradient(logp))
        pg, stats = ppo.clipped_surrogate(logp, d["log_prob"], adv, self.cfg.clip_eps, factor)
        entropy = jnp.mean(ent)
        return pg - self.cfg.ent_coef * entropy, {"policy_loss": pg, "entropy": entropy, **stats}

    def advantage(self, a: str, mb: dict, adv, logp):
        """Agent ``a``'s advantage on the minibatch ``mb`` (``logp``: log pi_a of its actions under the
        parameters being updated, no gradient). PPO: ``adv`` as computed for the batch; Teammate Lookahead
        recomputes V-trace here (:mod:`.lookahead`)."""
        return adv

    def critic_loss(self, critic_params, mb: dict):
        cfg = self.cfg
        v = self.critic.apply(critic_params, mb["state"])[..., 0]
        vf = ppo.value_loss(
            v, mb["value"], mb["target"], cfg.clip_eps if cfg.value_clip else None, cfg.huber_delta or None
        )
        return cfg.vf_coef * vf, {"value_loss": vf}

    def apply(self, grads, opt_state, params, lr):
        """One Adam step (with global-norm clipping) of ``params`` at learning rate ``lr``."""
        updates, opt_state = self.opt.update(grads, opt_state, params)
        return optax.apply_updates(params, jax.tree.map(lambda u: -lr * u, updates)), opt_state

    def critic_step(self, critic_params, opt_state, mb, lr):
        grads, m = jax.grad(self.critic_loss, has_aux=True)(critic_params, mb)
        critic_params, opt_state = self.apply(grads, opt_state, critic_params, lr)
        return critic_params, opt_state, m
