"""TAPPO: teammate-aware MAPPO, the opponent-modelling baseline of the Teammate Lookahead paper (App. B.1,
Tables 1-2). The paper describes it only as MAPPO whose policies are conditioned on learned teammate
representations "like" LIAM (Papoudakis & Albrecht 2021, "Agent Modelling under Partial Observability for
Deep Reinforcement Learning") and gives no architecture; no code was released. This module is **our
design**, after LIAM:

- **Encoder** (one per agent i): a GRU over the agent's own trajectory, input ``x_t = [o^i_t, a^i_{t-1}]``
  (the previous env action: a Box action as taken, a discrete one one-hot; zero at an episode's first
  step, where the hidden state is reset to zero too), and a linear embedding ``z^i_t = W h^i_t``
  (``tm_embed_dim`` wide). It reads only what agent i sees, so execution stays decentralised.
- **Decoder** (one per agent): an MLP ``z^i_t -> `` the teammates' observations ``o^{-i}_t`` (squared
  error) and actions ``a^{-i}_t`` (squared error on the learning action for Box spaces, cross-entropy for
  discrete ones), LIAM's reconstruction of the modelled agents' observations and actions from the
  controlled agent's local trajectory.
- **Policy** ``pi_i(a | o^i_t, z^i_t)``: MAPPO's actor (:mod:`.mappo`, shared across agents of one space
  with agent ids) with the embedding appended to its input; the critic is MAPPO's V(s).
- **Learning** per iteration: MAPPO's update on the trajectory with the embeddings the behaviour policy
  computed kept fixed (stored in the extras; the policy-gradient loss does not train the encoder, as in
  LIAM), then ``tm_updates`` Adam steps of encoder + decoder on the whole trajectory: the GRU is re-run
  over its ``rollout_steps`` steps (back-propagation through the whole rollout) from the hidden state the
  behaviour policy had at the first step, resetting where an episode ended.

The GRU state is the behaviour policy's recurrent state (:mod:`marlow.rollout`'s ``pstate``, reset at
episode ends by ``reset_pstate``); greedy evaluation runs the same encoder (``greedy_policy``). Logged:
MAPPO's metrics and ``tm_obs_loss`` / ``tm_act_loss``, the teammate-reconstruction errors before the
encoder update. Defaults: conf/algo/tappo.yaml (MAPPO's, then the teammate model's, all ours).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from marlow import rollout
from marlow.algos.onpolicy import mappo
from marlow.algos.onpolicy.actors import Actors, avail
from marlow.envs.spaces import Box
from marlow.nn.mlp import MLP
from marlow.nn.recurrent import gru_cell
from marlow.schema.ranges import Positive, Size, Widths

NAME = "tappo"
KIND = "on_policy"
DESCRIPTION = "TAPPO: MAPPO conditioned on a LIAM-style recurrent embedding of teammates (our design)"
SUPPORTED_ACTIONS = frozenset({"discrete", "box"})
SUPPORTS_MASKS = True
COOPERATIVE = True
__all__ = ["NAME", "KIND", "DESCRIPTION", "SUPPORTED_ACTIONS", "Config", "Algorithm"]


@dataclass
class Config(mappo.Config):
    """MAPPO's keys and the teammate model's (conf/algo/tappo.yaml)."""

    tm_hidden: Size  # GRU width
    tm_embed_dim: Size  # width of the embedding z the policy is conditioned on
    tm_decoder_hidden: Widths
    tm_lr: Positive
    tm_updates: Size  # Adam steps of encoder + decoder per iteration, each on the whole trajectory


@struct.dataclass
class State(mappo.State):
    tm: dict[str, Any]  # agent -> {"gru", "embed", "decoder"} parameters
    tm_opt: dict[str, Any]


def _fields(base: mappo.State) -> dict:
    return {f.name: getattr(base, f.name) for f in dataclasses.fields(mappo.State)}


class Algorithm(mappo.Algorithm):
    """TAPPO as a learner (module docstring)."""

    NAME = NAME

    def __init__(self, spec, cfg: Config):
        super().__init__(spec, cfg)
        E = cfg.tm_embed_dim
        wide = tuple(Box(float("-inf"), float("inf"), (spec.obs_dim(a) + E,)) for a in spec.agents)
        self.actors = Actors(
            dataclasses.replace(spec, obs_spaces=wide, num_states=None),
            cfg.hidden,
            cfg.activation,
            cfg.log_std_init,
            share=cfg.share_actor,
        )
        self.box = {a: isinstance(spec.act_space(a), Box) for a in spec.agents}
        self.act_dim = {
            a: spec.act_space(a).flat_dim if self.box[a] else spec.act_space(a).n for a in spec.agents
        }
        self.mates = {a: [b for b in spec.agents if b != a] for a in spec.agents}
        self.gru = gru_cell(cfg.tm_hidden)  # LeCun-normal recurrent kernels: marlow.nn.recurrent says why
        self.embed = nn.Dense(E)
        self.decoder = {
            a: MLP(
                tuple(cfg.tm_decoder_hidden),
                sum(spec.obs_dim(b) + self.act_dim[b] for b in self.mates[a]),
                cfg.activation,
            )
            for a in spec.agents
        }
        self.tm_opt = optax.chain(
            *([optax.clip_by_global_norm(cfg.max_grad_norm)] if cfg.max_grad_norm > 0 else []),
            optax.adam(cfg.tm_lr, eps=cfg.adam_eps),
        )

    # ---- state ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> State:
        k_base, k_tm = jax.random.split(key)
        base = super().init(k_base)
        tm = {}
        for a, k in zip(self.spec.agents, jax.random.split(k_tm, self.spec.num_agents), strict=True):
            k1, k2, k3 = jax.random.split(k, 3)
            h = jnp.zeros((1, self.cfg.tm_hidden))
            tm[a] = {
                "gru": self.gru.init(k1, h, jnp.zeros((1, self.spec.obs_dim(a) + self.act_dim[a]))),
                "embed": self.embed.init(k2, h),
                "decoder": self.decoder[a].init(k3, jnp.zeros((1, self.cfg.tm_embed_dim))),
            }
        return State(**_fields(base), tm=tm, tm_opt={a: self.tm_opt.init(p) for a, p in tm.items()})

    def base_state(self, state: State) -> mappo.State:
        return mappo.State(params=state.params, opt=state.opt, vnorm=state.vnorm, updates=state.updates)

    # ---- the encoder and the recurrent policy state -----------------------------------------------
    def init_pstate(self, num_envs: int) -> dict:
        """Per agent the GRU state and the previous env action (encoded) of ``num_envs`` fresh episodes."""
        return {
            a: {
                "h": jnp.zeros((num_envs, self.cfg.tm_hidden)),
                "prev": jnp.zeros((num_envs, self.act_dim[a])),
            }
            for a in self.spec.agents
        }

    def reset_pstate(self, pstate: dict, done: jax.Array) -> dict:
        return jax.tree.map(lambda x: jnp.where(done[:, None], 0.0, x), pstate)

    def encode_action(self, a: str, action) -> jax.Array:
        if self.box[a]:
            return jnp.asarray(action, jnp.float32).reshape(action.shape[: action.ndim - 1] + (-1,))
        return jax.nn.one_hot(action, self.act_dim[a])

    def encode(self, p, a: str, h, obs, prev):
        """One encoder step: ``(h', z)`` from the GRU state ``h``, the observation and the previous action."""
        h, _ = self.gru.apply(p["gru"], h, jnp.concatenate([obs, prev], axis=-1))
        return h, self.embed.apply(p["embed"], h)

    def _step(self, state: State, pstate, obs, key, info, explore: bool):
        """One step of every agent's encoder and policy -> (pstate, env actions, extras)."""
        new, actions = {}, {}
        extras = {"action": {}, "log_prob": {}, "z": {}, "h_in": {}, "prev": {}}
        for a, k in zip(self.spec.agents, jax.random.split(key, self.spec.num_agents), strict=True):
            h, z = self.encode(state.tm[a], a, pstate[a]["h"], obs[a], pstate[a]["prev"])
            x = jnp.concatenate([obs[a], z], axis=-1)
            p, mask = self.actor_params(state.params, a), avail(info, a)
            if explore:
                env_a, learn_a, logp = self.actors.sample(p, a, x, k, mask)
                extras["action"][a], extras["log_prob"][a] = learn_a, logp
            else:
                env_a = self.actors.mode(p, a, x, mask)
            extras["z"][a], extras["h_in"][a], extras["prev"][a] = z, pstate[a]["h"], pstate[a]["prev"]
            actions[a] = env_a
            new[a] = {"h": h, "prev": self.encode_action(a, env_a)}
        return new, actions, extras

    def policy(self, state: State) -> rollout.Policy:
        """The behaviour policy; extras: MAPPO's, and per agent z, the GRU state before the step and the
        previous action (the encoder's training inputs)."""

        def behave(pstate, obs, t, key, info):
            pstate, actions, extras = self._step(state, pstate, obs, key, info, explore=True)
            extras["value"] = self.value(state.params, state.vnorm, self.critic_input(obs, info))
            return pstate, actions, extras

        return behave

    def greedy_policy(self, state: State) -> rollout.Policy:
        def act(pstate, obs, t, key, info):
            pstate, actions, _ = self._step(state, pstate, obs, key, info, explore=False)
            return pstate, actions, None

        return act

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool, info: dict | None = None) -> dict:
        """Actions of fresh episodes (the policy state at its start); evaluation runs ``greedy_policy``."""
        pstate = self.init_pstate(jax.tree.leaves(obs)[0].shape[0])
        return self._step(state, pstate, obs, key, info, explore)[1]

    # ---- learning ---------------------------------------------------------------------------------
    def batch(self, state, traj: rollout.Trajectory):
        """MAPPO's batch with each agent's actor input widened by the stored embedding."""
        data, vn, ev = super().batch(state, traj)
        for a in self.spec.agents:
            z = traj.extras["z"][a].reshape((-1,) + traj.extras["z"][a].shape[2:])
            d = data["agents"][a]
            d["obs"] = jnp.concatenate([d["obs"], z], axis=-1)
        return data, vn, ev

    def embeddings(self, p, a: str, traj: rollout.Trajectory) -> jax.Array:
        """Agent ``a``'s embeddings ``[T, B, E]`` under encoder parameters ``p``: the GRU re-run over the
        trajectory from the behaviour policy's hidden state at its first step (no gradient into that
        state), reset to zero where an episode began; the previous actions are the stored ones."""
        x = traj.extras
        start = jnp.concatenate([jnp.zeros_like(traj.done[:1]), traj.done[:-1]], axis=0)

        def step(h, inp):
            obs, prev, new_episode = inp
            h, z = self.encode(p, a, jnp.where(new_episode[:, None], 0.0, h), obs, prev)
            return h, z

        h0 = jax.lax.stop_gradient(x["h_in"][a][0])
        return jax.lax.scan(step, h0, (traj.obs[a], x["prev"][a], start))[1]

    def tm_loss(self, p, a: str, traj: rollout.Trajectory):
        """Agent ``a``'s teammate-reconstruction loss on the trajectory ``[T, B]`` and its (obs, action)
        parts: squared errors summed over the predicted dimensions (cross-entropy for discrete actions),
        averaged over steps and envs, summed over teammates."""
        x = traj.extras
        out = self.decoder[a].apply(p["decoder"], self.embeddings(p, a, traj))
        obs_err, act_err, i = 0.0, 0.0, 0
        for b in self.mates[a]:
            d_o, d_a = self.spec.obs_dim(b), self.act_dim[b]
            o_hat, a_hat = out[..., i : i + d_o], out[..., i + d_o : i + d_o + d_a]
            i += d_o + d_a
            obs_err = obs_err + jnp.mean(jnp.sum((o_hat - traj.obs[b]) ** 2, axis=-1))
            if self.box[b]:
                act_err = act_err + jnp.mean(jnp.sum((a_hat - x["action"][b]) ** 2, axis=-1))
            else:
                logp = jax.nn.log_softmax(a_hat, axis=-1)
                act_err = act_err - jnp.mean(jnp.take_along_axis(logp, x["action"][b][..., None], -1))
        return obs_err + act_err, (obs_err, act_err)

    def tm_update(self, tm, tm_opt, traj: rollout.Trajectory):
        """``tm_updates`` Adam steps of every agent's encoder + decoder; metrics of the first step."""

        def one(carry, _):
            tm, opt = carry
            new_tm, new_opt, m = {}, {}, []
            for a in self.spec.agents:
                (_, (o, ac)), g = jax.value_and_grad(self.tm_loss, has_aux=True)(tm[a], a, traj)
                upd, new_opt[a] = self.tm_opt.update(g, opt[a], tm[a])
                new_tm[a] = optax.apply_updates(tm[a], upd)
                m.append((o, ac))
            obs_l = jnp.mean(jnp.stack([o for o, _ in m]))
            act_l = jnp.mean(jnp.stack([ac for _, ac in m]))
            return (new_tm, new_opt), {"tm_obs_loss": obs_l, "tm_act_loss": act_l}

        (tm, tm_opt), metrics = jax.lax.scan(one, (tm, tm_opt), None, length=self.cfg.tm_updates)
        return tm, tm_opt, jax.tree.map(lambda v: v[0], metrics)

    def learn(self, state: State, traj: rollout.Trajectory, step, key: jax.Array) -> tuple[State, dict]:
        base, metrics = super().learn(self.base_state(state), traj, step, key)
        tm, tm_opt, m = self.tm_update(state.tm, state.tm_opt, traj)
        return State(**_fields(base), tm=tm, tm_opt=tm_opt), {**metrics, **m}
