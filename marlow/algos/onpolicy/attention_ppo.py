"""Attention-PPO: model-free PPO with attention across agents in actor and critic, the model-free
counterpart of MAMBA and MAG in the MAG paper (Wu et al. 2023, Sec. 4.1 "Baselines": "PPO with centralized
attention-critics and communication during execution"; the MAMBA paper's model-free ablation).

Neither paper gives the architecture; ours follows MAMBA's attention modules (upstream jbr-ai-labs/mamba
``networks/dreamer/action.py`` ``AttentionActor`` and ``networks/dreamer/critic.py``): every agent's
observation is embedded (``relu(W o_i)``, width ``hidden[0]``), ``attn_layers`` transformer layers attend
across the agents (:class:`marlow.nn.attention.AgentAttention`, agent position encoding), and an MLP
(``hidden[1:]``) maps each agent's attended embedding to its logits (actor) or its value (critic). Weights
are shared across agents (agents need one observation and one discrete action space). Because each agent's
action depends on every agent's observation, **execution communicates**, as MAMBA's and MAG's does.

Learning is IPPO's (:mod:`.ippo`) on the stacked agents: the team reward, GAE(gamma, lambda) per agent with
the attention critic's values, advantages normalised over the batch, ValueNorm-ed value targets, PPO's
clipped surrogate (Schulman et al. 2017, Eq. 7) with the entropy bonus, the clipped Huber value loss, one
Adam over actor and critic with global-norm clipping and a linearly annealed learning rate. Available-
action masks are respected (:mod:`.actors`). Defaults: conf/algo/attention_ppo.yaml (IPPO's) and the SMAX
section of conf/task/smax.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from marlow import rollout
from marlow.algos.learner import OnPolicyDefaults
from marlow.algos.onpolicy import ppo
from marlow.algos.onpolicy.actors import mask_logits
from marlow.errors import ConfigError
from marlow.nn.attention import AgentAttention
from marlow.nn.mlp import MLP, POLICY_HEAD_SCALE
from marlow.schema.ranges import Size

NAME = "attention_ppo"
KIND = "on_policy"
DESCRIPTION = "Attention-PPO: PPO with attention across agents in actor and critic (communicates)"
SUPPORTED_ACTIONS = frozenset({"discrete"})
SUPPORTS_MASKS = True
COOPERATIVE = True
HOMOGENEOUS = True
__all__ = ["NAME", "KIND", "DESCRIPTION", "SUPPORTED_ACTIONS", "Config", "Algorithm"]


@dataclass
class Config(ppo.Config):
    """IPPO's keys and the attention's (conf/algo/attention_ppo.yaml)."""

    attn_layers: Size
    attn_heads: Size


class AttentionNet(nn.Module):
    """Embed each agent's input, attend across agents, then an MLP per agent (shared weights)."""

    hidden: tuple[int, ...]
    out_dim: int
    layers: int
    heads: int
    activation: str = "relu"
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.hidden[0])(x))
        x = nn.relu(AgentAttention(self.layers, self.heads, self.hidden[0])(x))
        return MLP(self.hidden[1:], self.out_dim, self.activation, self.out_scale)(x)


@struct.dataclass
class State:
    params: dict[str, Any]  # {"actor": ..., "critic": ...}
    opt: Any
    vnorm: ppo.ValueNorm
    updates: jax.Array


class Algorithm(OnPolicyDefaults):
    """Attention-PPO as a learner (module docstring)."""

    NAME = NAME

    def __init__(self, spec, cfg: Config):
        self.spec, self.cfg = spec, cfg
        kinds = {(spec.obs_space(a), spec.act_space(a)) for a in spec.agents}
        if len(kinds) != 1:
            raise ConfigError(
                f"{self.NAME} shares its networks across agents and needs agents of one observation and "
                f"action space; task {spec.name!r} has {len(kinds)} kinds"
            )
        a0 = spec.agents[0]
        self.n, self.n_actions = spec.num_agents, spec.act_space(a0).n
        self.obs_dim = spec.obs_dim(a0)
        self.actor = self.network(self.n_actions, out_scale=POLICY_HEAD_SCALE)
        self.critic = self.network(1, out_scale=1.0)
        self.env_info = spec.action_masks
        clip = [optax.clip_by_global_norm(cfg.max_grad_norm)] if cfg.max_grad_norm > 0 else []
        self.opt = optax.chain(*clip, optax.scale_by_adam(eps=cfg.adam_eps))
        self.steps_per_iter = cfg.rollout_steps
        self.num_envs, self.total_steps = None, None

    def network(self, out_dim: int, out_scale: float) -> nn.Module:
        """The actor's (``out_dim`` logits) or the critic's (one value) network over ``[..., N, obs]``;
        the communicating baselines built on this learner (:mod:`.commnet`, :mod:`.g2a`) override it."""
        cfg = self.cfg
        if cfg.hidden[0] % cfg.attn_heads:
            raise ConfigError(f"{NAME}: hidden[0] ({cfg.hidden[0]}) must be a multiple of attn_heads")
        h, act = tuple(cfg.hidden), cfg.activation
        return AttentionNet(h, out_dim, cfg.attn_layers, cfg.attn_heads, act, out_scale=out_scale)

    def bind(self, num_envs: int, total_steps: int) -> None:
        ppo.check_schedule(self.NAME, self.cfg, num_envs)
        self.num_envs, self.total_steps = num_envs, total_steps

    @property
    def iteration_steps(self) -> int:
        return self.cfg.rollout_steps * self.num_envs

    def init(self, key: jax.Array) -> State:
        k_pi, k_v = jax.random.split(key)
        x = jnp.zeros((1, self.n, self.obs_dim))
        params = {"actor": self.actor.init(k_pi, x), "critic": self.critic.init(k_v, x)}
        return State(params, self.opt.init(params), ppo.ValueNorm.init(), jnp.int32(0))

    # ---- acting -----------------------------------------------------------------------------------
    def stack(self, obs: dict) -> jax.Array:
        return jnp.stack([obs[a] for a in self.spec.agents], axis=-2)

    def masks(self, info) -> jax.Array | None:
        if info is None or "avail" not in info:
            return None
        return jnp.stack([info["avail"][a] for a in self.spec.agents], axis=-2)

    def logits(self, params, obs, mask):
        return mask_logits(self.actor.apply(params["actor"], obs), mask)

    def value(self, state: State, obs) -> jax.Array:
        """V_i of every agent ``[..., N]`` in return units."""
        v = self.critic.apply(state.params["critic"], obs)[..., 0]
        return state.vnorm.denormalize(v) if self.cfg.value_norm else v

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool, info: dict | None = None) -> dict:
        logits = self.logits(state.params, self.stack(obs), self.masks(info))
        a = jax.random.categorical(key, logits) if explore else jnp.argmax(logits, axis=-1)
        return {ag: a[..., i] for i, ag in enumerate(self.spec.agents)}

    def policy(self, state: State) -> rollout.Policy:
        """The behaviour policy; extras: the joint action, its per-agent log-probs and values."""

        def behave(pstate, obs, t, key, info=None):
            o = self.stack(obs)
            logits = self.logits(state.params, o, self.masks(info))
            a = jax.random.categorical(key, logits)
            logp = jnp.take_along_axis(jax.nn.log_softmax(logits), a[..., None], -1)[..., 0]
            extras = {"action": a, "log_prob": logp, "value": self.value(state, o)}
            return pstate, {ag: a[..., i] for i, ag in enumerate(self.spec.agents)}, extras

        return behave

    # ---- learning ---------------------------------------------------------------------------------
    def learn(self, state: State, traj: rollout.Trajectory, step, key: jax.Array) -> tuple[State, dict]:
        cfg = self.cfg
        lr = cfg.lr * (
            ppo.linear_decay(step, self.total_steps, self.iteration_steps) if cfg.anneal_lr else 1.0
        )
        x = traj.extras
        obs, next_obs = self.stack(traj.obs), self.stack(traj.next_obs)
        reward = jnp.mean(jnp.stack([traj.rewards[a] for a in self.spec.agents]), axis=0)
        n = self.n
        bcast = lambda v: jnp.broadcast_to(v[..., None], v.shape + (n,))  # noqa: E731 [T, E] -> [T, E, N]
        steps = ppo.Steps(
            bcast(reward), x["value"], self.value(state, next_obs), bcast(traj.terminated), bcast(traj.done)
        )
        adv, target = ppo.gae(steps, cfg.gamma, cfg.gae_lambda)
        adv, target, value, vnorm, ev = ppo.targets(cfg, adv, target, x["value"], state.vnorm)
        mask = self.masks(traj.info)
        data = {
            "obs": obs,
            "mask": mask if mask is not None else jnp.ones(obs.shape[:-1] + (self.n_actions,), jnp.bool_),
            "action": x["action"],
            "log_prob": x["log_prob"],
            "adv": adv,
            "target": target,
            "value": value,
        }
        data = jax.tree.map(lambda v: v.reshape((-1,) + v.shape[2:]), data)  # [T * E, N, ...]

        def loss(p, mb):
            logp_all = jax.nn.log_softmax(self.logits(p, mb["obs"], mb["mask"]))
            logp = jnp.take_along_axis(logp_all, mb["action"][..., None], -1)[..., 0]
            pg, stats = ppo.clipped_surrogate(logp, mb["log_prob"], mb["adv"], cfg.clip_eps)
            v = self.critic.apply(p["critic"], mb["obs"])[..., 0]
            clip = cfg.clip_eps if cfg.value_clip else None
            vf = ppo.value_loss(v, mb["value"], mb["target"], clip, cfg.huber_delta or None)
            entropy = jnp.mean(-jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1))
            total = pg + cfg.vf_coef * vf - cfg.ent_coef * entropy
            return total, {"policy_loss": pg, "value_loss": vf, "entropy": entropy, **stats}

        def minibatch(carry, mb):
            params, opt = carry
            grads, m = jax.grad(loss, has_aux=True)(params, mb)
            updates, opt = self.opt.update(grads, opt, params)
            params = optax.apply_updates(params, jax.tree.map(lambda u: -lr * u, updates))
            return (params, opt), m

        (params, opt), metrics = ppo.minibatch_epochs(
            (state.params, state.opt), data, key, cfg.epochs, cfg.num_minibatches, minibatch
        )
        metrics.update(
            explained_variance=ev,
            lr=jnp.asarray(lr, jnp.float32),
            updates=jnp.float32(cfg.epochs * cfg.num_minibatches),
        )
        return State(params, opt, vnorm, state.updates + 1), metrics
