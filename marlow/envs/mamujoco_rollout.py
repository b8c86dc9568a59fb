"""MA-MuJoCo inside the jitted loop: the same tasks as :mod:`marlow.envs.mamujoco`, stepped by MuJoCo's
batched multithreaded ``mujoco.rollout`` through one host callback per vectorised step.

``task.simulator=rollout`` (the default) on a ``mamujoco/`` task builds this env around the host-side
adapter (``task.simulator=gymnasium``). The Gymnasium-Robotics env stays the reference and the source of
everything but the physics loop: this module builds it once and reads from it

- the MuJoCo model and ``frame_skip`` (physics steps per env step);
- each agent's observation as a gather of ``(qpos, qvel, cfrc_ext)`` entries (Gymnasium clips some
  velocities and Ant's contact forces: those bounds too), and the global state likewise, found by
  setting distinct values into the reference's ``MjData`` and matching what its observation functions
  return (so the partitions, the observation depth ``agent_obsk`` and ``full_obs`` are
  Gymnasium-Robotics' own, whatever they are);
- which actuator each agent's action components drive (the same probing of its action mapping);
- the single-agent env's reward weights, healthy and contact-force ranges, reset noise and initial state
  (Gymnasium ``HalfCheetah-v5``, ``Walker2d-v5``, ``Ant-v5``; their ``step`` and ``reset_model`` are
  written out below with the same formulas).

The env state is ``(qpos, qvel, t)`` in float32 (JAX's default precision: MuJoCo integrates in float64
inside a step, and the state is rounded to float32 between steps). Under ``vmap`` (envs, seeds) the
callback receives every env at once (``vmap_method="broadcast_all"``) and advances them all in one
``mujoco.rollout`` call on all cores. Resets draw their noise from JAX's key (the distributions of
Gymnasium's ``reset_model``, not its numpy stream). Ant's observations, reward and global state also
read the bodies' external contact forces and its reward the torso's ``xpos``, which ``mujoco.rollout``
does not return: its last physics step runs outside the pool (:class:`_Physics`).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from marlow.envs.api import MultiAgentEnv
from marlow.errors import ConfigError

SUPPORTED = ("HalfCheetah", "Walker2d", "Ant")
_ROLLOUT_LOCK = threading.Lock()  # mujoco.rollout's persistent pool is one per process: one call at a time


@struct.dataclass
class MjState:
    qpos: jax.Array  # [nq]
    qvel: jax.Array  # [nv]
    cfrc: jax.Array  # [nbody * 6] external contact forces (Ant; empty for the others)
    xy: jax.Array  # [2] the torso's (x, y) as Gymnasium's data last computed it (Ant's forward reward)
    t: jax.Array  # int32 env steps since the reset


@dataclasses.dataclass(frozen=True)
class Gather:
    """An observation as a gather of the source vector ``concat(qpos, qvel, cfrc)`` (``index``), each
    entry clipped to ``[low, high]`` (infinite where Gymnasium does not clip), with ``constant`` where
    ``index`` is -1 (the one-hot agent id of ``full_obs``)."""

    index: np.ndarray
    low: np.ndarray
    high: np.ndarray
    constant: np.ndarray

    def __call__(self, src: jax.Array) -> jax.Array:
        x = jnp.clip(src[..., np.maximum(self.index, 0)], self.low, self.high)
        return jnp.where(self.index >= 0, x, self.constant).astype(jnp.float32)


def _probe_gather(set_data, read) -> Gather:
    """The :class:`Gather` that reproduces ``read()`` (one observation vector of the current data) after
    ``set_data(src)``: distinct small values identify the entries, large ones of both signs reveal
    clipping, a last set checks the result."""
    n = set_data.size
    small = 0.001 * (1.0 + np.arange(n))
    set_data(small)
    obs = np.asarray(read(), np.float64)
    index = np.full(obs.shape, -1)
    for k, v in enumerate(obs):
        hit = np.flatnonzero(np.abs(small - v) < 1e-12)
        if len(hit) == 1:
            index[k] = hit[0]
    constant = np.where(index < 0, obs, 0.0)
    low, high = np.full(obs.shape, -np.inf), np.full(obs.shape, np.inf)
    for sign in (1.0, -1.0):  # every entry once far above and once far below any bound
        big = sign * 100.0 * (1.0 + np.arange(n)) * np.where(np.arange(n) % 2, -1.0, 1.0)
        set_data(big)
        seen = np.asarray(read(), np.float64)
        src = big[np.maximum(index, 0)]
        low = np.where((index >= 0) & (seen > src), seen, low)
        high = np.where((index >= 0) & (seen < src), seen, high)
    gather = Gather(index, low, high, constant)
    check = np.sin(np.arange(n) + 1.0) * 20.0
    set_data(check)
    want = np.asarray(read(), np.float64)
    got = np.asarray(gather(jnp.asarray(check)), np.float64)
    if not np.allclose(got, want, rtol=1e-6, atol=1e-5):
        raise ConfigError("simulator=rollout: this observation is not a gather of qpos, qvel and cfrc_ext")
    return gather


class _Setter:
    """``set_data(src)`` on the reference's MjData: qpos, qvel and (``cfrc``) the external contact forces
    (no ``mj_forward``: the observations read only these)."""

    def __init__(self, data, nq: int, nv: int, cfrc: bool):
        self.data, self.nq, self.nv = data, nq, nv
        self.nc = data.cfrc_ext.size if cfrc else 0
        self.size = nq + nv + self.nc

    def __call__(self, src):
        self.data.qpos[:] = src[: self.nq]
        self.data.qvel[:] = src[self.nq : self.nq + self.nv]
        if self.nc:
            self.data.cfrc_ext[:] = np.reshape(src[self.nq + self.nv :], self.data.cfrc_ext.shape)


class _Physics:
    """``frame_skip`` MuJoCo steps of a batch of ``(qpos, qvel, ctrl)`` in one ``mujoco.rollout`` call on
    every core. One rollout at a time in the process (a lock: XLA may run the callbacks of several devices
    at once, mujoco.rollout's persistent pool is one per process, and each call already uses every core);
    the pool is started here, never inside a callback's thread.

    With ``contact`` (Ant) it also returns what Gymnasium reads after ``do_simulation``: the external
    contact forces of ``mj_rnePostConstraint`` and the torso's (x, y) ``xpos``. MuJoCo leaves both as the
    last evaluation inside the final physics step computed them (Ant integrates with RK4, so neither is
    exactly the final state's), so the pool runs all but the last physics step and the last one runs
    here, env by env (a share per thread), as Gymnasium's ``mj_step`` and ``mj_rnePostConstraint`` do."""

    def __init__(self, model, frame_skip: int, contact: bool, body: int):
        import mujoco

        self.model, self.skip, self.contact, self.body = model, frame_skip, contact, body
        self.nq, self.nv, self.nu = model.nq, model.nv, model.nu
        self.nc = model.nbody * 6 if contact else 0
        self.nstate = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        if self.nstate != 1 + self.nq + self.nv:  # time, qpos, qvel: no actuator or mocap state
            raise ConfigError("simulator=rollout: the model has state beyond qpos and qvel")
        self.threads = os.cpu_count() or 1
        self.datas = [mujoco.MjData(model) for _ in range(self.threads)]
        self._warm_pool()
        # Ant's last physics step, a share of the envs per thread (MuJoCo releases the GIL while stepping)
        self.workers = ThreadPoolExecutor(self.threads) if contact else None

    def _warm_pool(self) -> None:
        """Start mujoco.rollout's persistent thread pool here, in the constructing thread: a pool first
        made inside one of XLA's callback threads crashed the process (seen with a ``Rollout`` object)."""
        from mujoco import rollout

        state = np.zeros((1, self.nstate))
        state[0, 1 : 1 + self.nq] = self.model.qpos0
        with _ROLLOUT_LOCK:
            rollout.rollout([self.model], self.datas, state, np.zeros((1, 1, self.nu)), persistent_pool=True)

    def _last_step(self, worker: int, envs: np.ndarray, state, control, out, cfrc, xy) -> None:
        """One physics step of ``envs`` from ``state`` as Gymnasium's ``do_simulation`` ends, on the
        ``worker``-th MjData: ``mj_step`` then ``mj_rnePostConstraint``; writes the final state, the
        contact forces and the torso's (x, y)."""
        import mujoco

        d, kind = self.datas[worker], mujoco.mjtState.mjSTATE_FULLPHYSICS
        for i in envs:
            mujoco.mj_setState(self.model, d, state[i], kind)
            d.ctrl[:] = control[i, -1]
            mujoco.mj_step(self.model, d)
            mujoco.mj_rnePostConstraint(self.model, d)
            mujoco.mj_getState(self.model, d, out[i, -1], kind)
            cfrc[i] = d.cfrc_ext.ravel()
            xy[i] = d.xpos[self.body, :2]

    def __call__(self, qpos: np.ndarray, qvel: np.ndarray, ctrl: np.ndarray):
        from mujoco import rollout

        lead = qpos.shape[:-1]
        n = int(np.prod(lead, dtype=np.int64))
        state = np.zeros((n, self.nstate))
        state[:, 1 : 1 + self.nq] = np.asarray(qpos, np.float64).reshape(n, self.nq)
        state[:, 1 + self.nq :] = np.asarray(qvel, np.float64).reshape(n, self.nv)
        control = np.repeat(np.asarray(ctrl, np.float64).reshape(n, 1, self.nu), self.skip, axis=1)
        cfrc, xy = np.zeros((n, self.nc), np.float32), np.zeros((n, 2), np.float32)
        with _ROLLOUT_LOCK:
            if not self.contact:
                out, _ = rollout.rollout([self.model] * n, self.datas, state, control, persistent_pool=True)
            else:  # all but the last physics step in the pool, the last one here (module docstring)
                out = np.zeros((n, 1, self.nstate))
                if self.skip > 1:
                    state, _ = rollout.rollout(
                        [self.model] * n, self.datas, state, control[:, 1:], persistent_pool=True
                    )
                    state = state[:, -1]
                chunks = np.array_split(np.arange(n), len(self.datas))
                args = (state, control, out, cfrc, xy)
                list(self.workers.map(lambda c: self._last_step(c[0], c[1], *args), enumerate(chunks)))
        last = out[:, -1]
        return (
            last[:, 1 : 1 + self.nq].astype(np.float32).reshape(*lead, self.nq),
            last[:, 1 + self.nq :].astype(np.float32).reshape(*lead, self.nv),
            cfrc.reshape(*lead, self.nc),
            xy.reshape(*lead, 2),
        )


class RolloutMaMuJoCo(MultiAgentEnv):
    """A ``mamujoco/`` task in the jitted loop (module docstring); ``reference`` is the host-side
    :class:`~marlow.envs.pettingzoo.PettingZooEnv` of the same task and options, whose spec it keeps."""

    host_callbacks = True

    def __init__(self, reference, scenario: str):
        if scenario not in SUPPORTED:
            raise ConfigError(
                f"{reference.spec.name}: task.simulator=rollout supports {', '.join(SUPPORTED)}, not "
                f"{scenario} (use task.simulator=gymnasium)"
            )
        self.scenario = scenario
        pz = reference.pz_env
        inner = getattr(pz, "env", pz).unwrapped  # under the full_obs wrapper
        single = inner.single_agent_env.unwrapped
        self.model, self.frame_skip = single.model, int(single.frame_skip)
        self.dt = float(single.dt)
        self.nq, self.nv, self.nu = self.model.nq, self.model.nv, self.model.nu
        self.spec = dataclasses.replace(
            reference.spec,
            description=reference.spec.description.replace("host-side", "mujoco.rollout in the jitted loop"),
        )
        self.episode_length = self.spec.episode_length
        self.forward_weight = float(single._forward_reward_weight)
        self.ctrl_weight = float(single._ctrl_cost_weight)
        self.noise = float(single._reset_noise_scale)
        self.init_qpos = np.asarray(single.init_qpos, np.float32)
        self.init_qvel = np.asarray(single.init_qvel, np.float32)
        if scenario in ("Walker2d", "Ant"):
            self.healthy_reward = float(single._healthy_reward)
            self.z_range = tuple(map(float, single._healthy_z_range))
            self.terminate_unhealthy = bool(single._terminate_when_unhealthy)
        if scenario == "Walker2d":
            self.angle_range = tuple(map(float, single._healthy_angle_range))
        contact = scenario == "Ant"
        if contact:
            self.contact_weight = float(single._contact_cost_weight)
            self.contact_range = tuple(map(float, single._contact_force_range))
            body = int(single.data.body(single._main_body).id)
        self.nc = self.model.nbody * 6 if contact else 0

        data = single.data
        saved = (data.qpos.copy(), data.qvel.copy(), data.cfrc_ext.copy())
        setter = _Setter(data, self.nq, self.nv, contact)
        agents = list(pz.possible_agents)
        if hasattr(pz, "_obs"):  # full_obs: the global state and the one-hot agent id
            self.obs_gather = {a: _probe_gather(setter, lambda a=a: pz._obs()[a]) for a in agents}
        else:
            self.obs_gather = {
                a: _probe_gather(setter, lambda i=i: inner._get_obs_agent(i)) for i, a in enumerate(agents)
            }
        self.state_gather = _probe_gather(setter, inner.state)
        data.qpos[:], data.qvel[:], data.cfrc_ext[:] = saved
        self.ctrl_of = self._probe_actions(inner, agents)
        self.physics = _Physics(self.model, self.frame_skip, contact, body if contact else 0)

    def _probe_actions(self, inner, agents) -> dict[str, np.ndarray]:
        """Agent -> the actuator each of its action components drives."""
        dims = {a: self.spec.act_space(a).flat_dim for a in agents}
        start = np.cumsum([0] + [dims[a] for a in agents])
        acts = {a: np.arange(start[i], start[i + 1], dtype=np.float64) for i, a in enumerate(agents)}
        glob = np.asarray(inner.map_local_actions_to_global_action(acts))
        where = {int(v): j for j, v in enumerate(glob)}
        return {a: np.array([where[int(v)] for v in acts[a]]) for a in agents}

    # ---- the env API ------------------------------------------------------------------------------
    @staticmethod
    def _src(state: MjState) -> jax.Array:
        return jnp.concatenate([state.qpos, state.qvel, state.cfrc], axis=-1)

    def get_obs(self, state: MjState) -> dict:
        src = self._src(state)
        return {a: g(src) for a, g in self.obs_gather.items()}

    def global_state(self, state: MjState) -> jax.Array:
        return self.state_gather(self._src(state))

    def reset(self, key: jax.Array):
        """Gymnasium's ``reset_model``: uniform noise on qpos; on qvel, uniform (Walker2d) or Gaussian
        (HalfCheetah, Ant), of scale ``reset_noise_scale``. Ant's contact forces start at zero (Gymnasium's
        reset observation holds whatever its data held before the reset: they are only computed in a
        step) and its torso (x, y) at the reset position."""
        k_pos, k_vel = jax.random.split(key)
        s = self.noise
        qpos = self.init_qpos + jax.random.uniform(k_pos, (self.nq,), minval=-s, maxval=s)
        if self.scenario == "Walker2d":
            qvel = self.init_qvel + jax.random.uniform(k_vel, (self.nv,), minval=-s, maxval=s)
        else:
            qvel = self.init_qvel + s * jax.random.normal(k_vel, (self.nv,))
        state = MjState(qpos, qvel, jnp.zeros((self.nc,)), qpos[:2], jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key: jax.Array, state: MjState, actions: dict):
        ctrl = jnp.zeros((self.nu,), jnp.float32)
        for a, idx in self.ctrl_of.items():
            ctrl = ctrl.at[idx].set(jnp.reshape(actions[a], (-1,)).astype(jnp.float32))
        shapes = (
            jax.ShapeDtypeStruct((self.nq,), jnp.float32),
            jax.ShapeDtypeStruct((self.nv,), jnp.float32),
            jax.ShapeDtypeStruct((self.nc,), jnp.float32),
            jax.ShapeDtypeStruct((2,), jnp.float32),
        )
        qpos, qvel, cfrc, xy = jax.pure_callback(
            self.physics, shapes, state.qpos, state.qvel, ctrl, vmap_method="broadcast_all"
        )
        # the single-agent env's step: forward velocity, control cost, Walker2d's and Ant's health, Ant's
        # contact cost (Gymnasium v5's formulas)
        if self.scenario == "Ant":
            x_velocity = (xy[0] - state.xy[0]) / self.dt
        else:
            x_velocity = (qpos[0] - state.qpos[0]) / self.dt
            xy = qpos[:2]
        reward = self.forward_weight * x_velocity - self.ctrl_weight * jnp.sum(ctrl**2)
        terminated = jnp.asarray(False)
        if self.scenario == "Walker2d":
            z, angle = qpos[1], qpos[2]
            healthy = (self.z_range[0] < z) & (z < self.z_range[1])
            healthy &= (self.angle_range[0] < angle) & (angle < self.angle_range[1])
        elif self.scenario == "Ant":
            finite = jnp.all(jnp.isfinite(qpos)) & jnp.all(jnp.isfinite(qvel))
            healthy = finite & (self.z_range[0] <= qpos[2]) & (qpos[2] <= self.z_range[1])
            reward = reward - self.contact_weight * jnp.sum(jnp.clip(cfrc, *self.contact_range) ** 2)
        if self.scenario in ("Walker2d", "Ant"):
            reward = reward + self.healthy_reward * healthy
            terminated = jnp.logical_and(~healthy, self.terminate_unhealthy)
        t = state.t + 1
        truncated = jnp.logical_and(t >= self.episode_length, ~terminated)
        new = MjState(qpos, qvel, cfrc, xy, t)
        done = terminated | truncated
        rewards = {a: reward.astype(jnp.float32) for a in self.spec.agents}
        dones = {**{a: done for a in self.spec.agents}, "__all__": done}
        return self.get_obs(new), new, rewards, dones, {"truncated": truncated}
