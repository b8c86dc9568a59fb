"""Multi-agent dynamics model: a probabilistic ensemble of the joint transition (AORPO Appendix E).

T_theta(s', r | s, a^i, a^{-i}):
- input  x = [o_1, ..., o_n, flat(a_1), ..., flat(a_n)] in ``spec.agents`` order (flat = one-hot for
  Discrete, concatenated one-hots for MultiDiscrete, the floats of a Box: ``common.flat_actions``);
- target y = [o'_1 - o_1, ..., o'_n - o_n, r_1, ..., r_n]: next-observation deltas (MBPO / PETS; the AORPO
  code predicts absolute next observations) and one reward per agent ("per-agent reward heads": the
  reward dimensions of the same Gaussian output).

``per_agent=False`` (ours, default in the AORPO YAML): one ensemble shared by all agents. ``per_agent=True``:
the AORPO code's layout, every agent owns its own ensemble of the joint transition, all trained on the same
data with different keys, stacked on a leading agent axis; agent i's rollouts use ensemble i.

Episode ends are not modelled: the runner stores the true last observation as ``next_obs`` of the final
transition, and the MPE tasks have no terminal states (only a time limit, which the rollout code knows).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from marlow.buffers.replay import ReplayBuffer
from marlow.envs.api import EnvSpec, flat_actions
from marlow.world.ensemble import Ensemble, EnsembleConfig, EnsembleState


class DynamicsModel:
    """Static structure; ``init``, ``train`` and ``step`` are pure functions of an :class:`EnsembleState`
    (with a leading agent axis on every leaf when ``per_agent``)."""

    def __init__(self, spec: EnvSpec, cfg: EnsembleConfig, per_agent: bool):
        self.spec, self.cfg, self.per_agent = spec, cfg, bool(per_agent)
        self.obs_dims = tuple(s.flat_dim for s in spec.obs_spaces)
        self.act_dims = tuple(s.flat_dim for s in spec.act_spaces)
        self.in_dim = sum(self.obs_dims) + sum(self.act_dims)
        self.out_dim = sum(self.obs_dims) + spec.num_agents
        self.ensemble = Ensemble(self.in_dim, self.out_dim, cfg)

    # ---- layout ---------------------------------------------------------------------------------
    def inputs(self, obs: dict, actions: dict) -> jax.Array:
        """[..., in_dim]: every agent's observation, then every agent's flat action (env-format actions)."""
        acts = flat_actions(self.spec, actions)
        parts = [obs[a].astype(jnp.float32) for a in self.spec.agents]
        return jnp.concatenate(parts + [acts[a].astype(jnp.float32) for a in self.spec.agents], axis=-1)

    def targets(self, obs: dict, rewards: dict, next_obs: dict) -> jax.Array:
        """[..., out_dim]: next-observation deltas of every agent, then every agent's reward."""
        deltas = [(next_obs[a] - obs[a]).astype(jnp.float32) for a in self.spec.agents]
        rews = [rewards[a].astype(jnp.float32)[..., None] for a in self.spec.agents]
        return jnp.concatenate(deltas + rews, axis=-1)

    def decode(self, obs: dict, y: jax.Array) -> tuple[dict, dict]:
        """Targets (deltas + rewards) -> (next_obs dict, rewards dict)."""
        next_obs, rewards, i = {}, {}, 0
        for a, d in zip(self.spec.agents, self.obs_dims, strict=True):
            next_obs[a] = obs[a] + y[..., i : i + d]
            i += d
        for a in self.spec.agents:
            rewards[a] = y[..., i]
            i += 1
        return next_obs, rewards

    def agent_state(self, state: EnsembleState, agent: str | None) -> EnsembleState:
        """The ensemble ``agent`` uses (the shared one when not ``per_agent``)."""
        if not self.per_agent:
            return state
        if agent is None:
            raise ValueError("a per-agent dynamics model needs the agent whose ensemble to use")
        i = self.spec.index(agent)
        return jax.tree.map(lambda x: x[i], state)

    # ---- pure functions -------------------------------------------------------------------------
    def init(self, key: jax.Array) -> EnsembleState:
        if self.per_agent:
            return jax.vmap(self.ensemble.init)(jax.random.split(key, self.spec.num_agents))
        return self.ensemble.init(key)

    def train(self, state: EnsembleState, buffer: ReplayBuffer, key: jax.Array):
        """Fit on every valid row of ``buffer`` (the runner's transition dicts). The circular buffer fills
        rows 0..size-1 first and keeps all rows valid once full, so the valid rows are the first
        ``buffer.size``. Returns (state, metrics); per-agent metrics have a leading agent axis."""
        d = buffer.data
        x = self.inputs(d["obs"], d["actions"])
        y = self.targets(d["obs"], d["rewards"], d["next_obs"])
        if self.per_agent:
            keys = jax.random.split(key, self.spec.num_agents)
            return jax.vmap(self.ensemble.train, in_axes=(0, None, None, None, 0))(
                state, x, y, buffer.size, keys
            )
        return self.ensemble.train(state, x, y, buffer.size, key)

    def step(
        self,
        state: EnsembleState,
        obs: dict,
        actions: dict,
        key: jax.Array,
        agent: str | None = None,
        deterministic: bool = False,
    ) -> tuple[dict, dict]:
        """Sampled (or, ``deterministic``, mean) next observations and rewards for a batch of joint
        observations / env-format actions (dicts keyed by agent, any leading batch shape), each row from
        one elite member of ``agent``'s ensemble (the shared one when not ``per_agent``)."""
        ens_state = self.agent_state(state, agent)
        sample, _, _ = self.ensemble.predict(ens_state, self.inputs(obs, actions), key, deterministic)
        return self.decode(obs, sample)
