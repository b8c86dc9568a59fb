"""Training and evaluation on host-side (PettingZoo) envs: :mod:`marlow.experiment.loop`'s semantics with a
Python loop around :class:`~marlow.envs.pettingzoo.PettingZooEnv` instances.

Everything but the env stepping is the JAX loop's code: the algorithm state, replay buffer, keys and
counters are one :class:`HostState` stacked over seeds, and acting (``algo.act``, explore / greedy as two
jitted closures), storing (``replay.add``) and learning (``Loop.updates``: ``replay.sample`` +
``algo.update``) are jitted and vmapped over seeds, one call per vectorised env step / iteration for all
seeds. The schedule is ``Loop``'s: ``update_every / num_envs`` steps of the ``num_envs`` envs of every seed
per iteration, ``updates_per_step`` updates once ``(iteration + 1) * update_every >= warmup_steps``, a
greedy evaluation every ``eval_every`` env steps, the same metric names; the run directory, logging,
checkpoints, divergence check and report are :func:`marlow.experiment.runner.run_chunks`.

Seeding (host envs draw their own numpy randomness, so they are seeded with integers, not JAX keys):

- training env ``i`` of seed ``s`` (``num_envs`` instances per seed) is reset once, with
  ``1000 * (cfg.experiment.seed + s) + i`` (distinct for ``num_envs <= 1000``); later episodes use the
  adapter's auto-reset seeds, drawn from that seed;
- evaluation ``k`` of seed ``s`` resets its ``eval_episodes`` env instances with integer seeds drawn from
  ``fold_in(eval_key, k)``, the JAX loop's separate evaluation stream (part of the checkpoint).

Resume: an env's internal state and RNG cannot be checkpointed, so a resumed run resets its training envs
at chunk ``c`` with seeds derived from ``(1000 * (seed + s) + i, c)`` and starts fresh episodes (the
episodes in progress at the checkpoint are dropped). A resumed host run is therefore a valid
continuation but not bit-identical to an uninterrupted one; evaluations stay on their own stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from marlow import envs
from marlow.buffers import replay
from marlow.experiment import checkpoint
from marlow.experiment.config import RunConfig
from marlow.experiment.evaluate import summary
from marlow.experiment.loop import Loop, agent_interactions, diagnostics, return_metrics
from marlow.experiment.runner import cap_buffer, prepare_run_dir, run_chunks, seed_keys


@struct.dataclass
class HostState:
    """Everything of a host run that lives on device (leading axis: seeds); the envs live on the host."""

    algo: Any
    buffer: replay.ReplayBuffer
    key: jax.Array
    eval_key: jax.Array
    env_steps: jax.Array
    episodes: jax.Array
    evals: jax.Array


def env_seed(base: int, chunk: int) -> int:
    """Reset seed of a training env whose base seed is ``base`` when (re)started at ``chunk``."""
    return base if chunk == 0 else int(np.random.SeedSequence([base, chunk]).generate_state(1)[0])


def _stack(outs: list[dict], agents) -> dict:
    return {a: np.stack([o[a] for o in outs]) for a in agents}


class HostLoop:
    def __init__(self, cfg: RunConfig, env, algo, train_envs: bool = True):
        e = cfg.experiment
        self.cfg, self.algo, self.spec = cfg, algo, env.spec
        self.loop = Loop(env, algo, e, cfg.algo)  # the schedule and the update step of the JAX loop
        self.S, self.E = e.num_seeds, e.num_envs
        n = self.S * self.E if train_envs else 0
        self.envs = [env] + [envs.make(e.task) for _ in range(n - 1)]  # env i of seed s: index s * E + i
        self.eval_envs: list = []
        self.obs: dict | None = None  # {agent: [S * E, obs_dim]}, None until the envs are reset

        def explore(algo_state, obs, key):
            key, k = jax.random.split(key)
            return key, algo.act(algo_state, obs, k, True)

        def store(st: HostState, trans, new_episodes):
            return self.loop.store(st, trans).replace(
                episodes=st.episodes + new_episodes,
                env_steps=st.env_steps + self.loop.steps_per_iter * self.E,
            )

        self._explore = jax.jit(jax.vmap(explore))
        self._greedy = jax.jit(jax.vmap(lambda a, o, k: algo.act(a, o, k, False)))
        self._store = jax.jit(jax.vmap(store), donate_argnums=0)
        self._update = jax.jit(jax.vmap(self.loop.updates, in_axes=(0, None)), donate_argnums=0)
        self._interactions = jax.jit(
            jax.vmap(lambda st: agent_interactions(self.loop.spec, self.loop.algo, st.algo, st.env_steps))
        )
        self._diagnostics = jax.jit(jax.vmap(lambda a: diagnostics(algo, a)))

    # ---- state ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> HostState:
        """One seed's state, with the JAX loop's key split (``k_env`` unused: host envs take int seeds)."""
        k_algo, _k_env, k_eval, key = jax.random.split(key, 4)
        algo_state = self.algo.init(k_algo)
        obs = {a: jnp.zeros((1, self.spec.obs_dim(a))) for a in self.spec.agents}
        actions = jax.tree.map(lambda x: x[0], self.algo.act(algo_state, obs, k_algo, True))
        obs0 = {a: o[0] for a, o in obs.items()}
        example = Loop._transition(
            obs0, actions, {a: jnp.float32(0) for a in self.spec.agents}, obs0, jnp.float32(0)
        )
        zero = jnp.int32(0)
        return HostState(algo_state, replay.init(example, self.loop.capacity), key, k_eval, zero, zero, zero)

    def template(self) -> HostState:
        """Zeros shaped like the seed-stacked state: a checkpoint template without compiling ``init``."""
        return checkpoint.template(jax.vmap(self.init), seed_keys(self.cfg))

    def _shape(self, x: np.ndarray, per_seed: int) -> np.ndarray:
        return x.reshape((self.S, per_seed) + x.shape[1:])

    # ---- training ---------------------------------------------------------------------------------
    def reset(self, chunk: int) -> None:
        """Reset env ``i`` of seed ``s`` with ``1000 * (seed + s) + i`` (``chunk`` > 0: see ``env_seed``)."""
        bases = [1000 * (self.cfg.experiment.seed + s) + i for s in range(self.S) for i in range(self.E)]
        obs = [env.reset(seed=env_seed(b, chunk)) for b, env in zip(bases, self.envs, strict=True)]
        self.obs = _stack(obs, self.spec.agents)
        self.ep_return = np.zeros(len(self.envs), np.float32)

    def close(self) -> None:
        for env in self.envs + self.eval_envs:
            env.close()

    def _step(self, st: HostState) -> tuple[HostState, dict, np.ndarray]:
        """One exploring step of every env -> (state, transitions [S, E, ...], done flags [S * E])."""
        agents = self.spec.agents
        obs = {a: self._shape(o, self.E) for a, o in self.obs.items()}
        key, actions = self._explore(st.algo, obs, st.key)
        actions = jax.device_get(actions)
        flat = {a: x.reshape((-1,) + x.shape[2:]) for a, x in actions.items()}
        outs = [env.step({a: flat[a][j] for a in agents}) for j, env in enumerate(self.envs)]
        self.obs = _stack([o[0] for o in outs], agents)
        rewards = _stack([o[1] for o in outs], agents)
        done = np.array([o[2]["__all__"] for o in outs])
        terminated = done & ~np.array([bool(o[3]["truncated"]) for o in outs])
        terminal_obs = _stack([o[3]["terminal_obs"] for o in outs], agents)
        trans = Loop._transition(
            obs,
            actions,
            {a: self._shape(r, self.E) for a, r in rewards.items()},
            {a: self._shape(o, self.E) for a, o in terminal_obs.items()},
            self._shape(terminated.astype(np.float32), self.E),
        )
        self.ep_return += np.mean(np.stack([rewards[a] for a in agents]), axis=0)  # loop.team_reward
        return st.replace(key=key), trans, done

    def chunk(self, st: HostState, c: int) -> tuple[HostState, dict]:
        """``Loop.chunk`` on the host envs: ``iters_per_chunk`` iterations then an evaluation."""
        L = self.loop
        if self.obs is None:
            self.reset(c)
        m_sum: dict[str, np.ndarray] = {}
        m_cnt, ret_sum, ret_cnt = 0, np.zeros(self.S), np.zeros(self.S)
        for it in range(c * L.iters_per_chunk, (c + 1) * L.iters_per_chunk):
            steps, new_episodes = [], np.zeros(self.S, np.int32)
            for _ in range(L.steps_per_iter):
                st, trans, done = self._step(st)
                steps.append(trans)
                ret_sum += self._shape(np.where(done, self.ep_return, 0.0), self.E).sum(1)
                ret_cnt += self._shape(done, self.E).sum(1)
                new_episodes += self._shape(done, self.E).sum(1).astype(np.int32)
                self.ep_return[done] = 0.0
            # [S, steps, E, ...] -> [S, steps * E, ...]: the JAX loop's time-major order
            trans = jax.tree.map(lambda *xs: np.stack(xs, 1).reshape((self.S, -1) + xs[0].shape[2:]), *steps)
            st = self._store(st, trans, new_episodes)
            if (it + 1) * L.update_every >= L.warmup:
                st, m = self._update(st, np.int32((it + 1) * L.update_every))
                for k, v in jax.device_get(m).items():
                    m_sum[k] = m_sum.get(k, 0.0) + np.asarray(v, np.float64)
                m_cnt += 1
        if m_cnt:
            metrics = {f"loss/{k}": v / m_cnt for k, v in m_sum.items()}
        else:  # no update yet (warm-up): NaN, as Loop.chunk
            metrics = {k: np.full(self.S, np.nan) for k in L.chunk_metric_names(st) if k.startswith("loss/")}
        metrics["train/return"] = np.where(ret_cnt > 0, ret_sum / np.maximum(ret_cnt, 1), np.nan)
        metrics["updates"] = np.full(self.S, float(m_cnt * L.updates_per_step))
        st, ev = self.evaluate(st)
        metrics.update(ev, env_steps=st.env_steps, episodes=st.episodes)
        metrics["agent_interactions"] = np.asarray(self._interactions(st))
        return st, metrics

    # ---- evaluation -------------------------------------------------------------------------------
    def evaluate(self, st: HostState) -> tuple[HostState, dict]:
        """``eval_episodes`` greedy episodes per seed on env instances seeded from ``fold_in(eval_key,
        evals)`` (``Loop.evaluate``'s stream)."""
        episodes = self.cfg.experiment.eval_episodes
        if not self.eval_envs:
            self.eval_envs = [envs.make(self.cfg.experiment.task) for _ in range(self.S * episodes)]
        keys = jax.vmap(jax.random.fold_in)(st.eval_key, st.evals)
        ev = self.evaluate_policies(st.algo, keys, self.eval_envs, episodes)
        ev.update(jax.device_get(self._diagnostics(st.algo)))
        return st.replace(evals=st.evals + 1), ev

    def evaluate_policies(self, algo_states, keys: jax.Array, env_list: list, episodes: int) -> dict:
        """``episodes`` greedy episodes of at most ``episode_length`` steps for each seed's policy (key
        ``keys[s]``, envs ``env_list[s * episodes:(s + 1) * episodes]``); ``evaluate_policy``'s metrics."""
        spec, T = self.spec, self.spec.episode_length

        def streams(key):
            k_reset, k_run = jax.random.split(key)
            return jax.random.randint(k_reset, (episodes,), 0, 2**31 - 1), jax.random.split(k_run, T)

        seeds, step_keys = jax.device_get(jax.vmap(streams)(keys))
        obs = _stack(
            [env.reset(seed=int(s)) for env, s in zip(env_list, seeds.ravel(), strict=True)], spec.agents
        )
        returns = {a: np.zeros(len(env_list), np.float32) for a in spec.agents}
        alive = np.ones(len(env_list), bool)
        for t in range(T):
            if not alive.any():
                break
            actions = self._greedy(
                algo_states, {a: self._shape(o, episodes) for a, o in obs.items()}, step_keys[:, t]
            )
            flat = {a: x.reshape((-1,) + x.shape[2:]) for a, x in jax.device_get(actions).items()}
            for j in np.flatnonzero(alive):
                o, r, d, _ = env_list[j].step({a: flat[a][j] for a in spec.agents})
                for a in spec.agents:
                    returns[a][j] += r[a]
                    obs[a][j] = o[a]
                alive[j] = not d["__all__"]
        return jax.device_get(
            return_metrics(spec, {a: self._shape(r, episodes) for a, r in returns.items()})  # [S, episodes]
        )


def train_host(cfg: RunConfig, env, algo, run_dir: Path) -> Path:
    """Train (or, with ``cfg.experiment.resume`` set, resume) a run on a host env; returns its directory."""
    prepare_run_dir(cfg, run_dir)
    host = HostLoop(cfg, env, algo)
    state = host.template() if cfg.experiment.resume else jax.jit(jax.vmap(host.init))(seed_keys(cfg))
    try:
        return run_chunks(cfg, run_dir, state, host.loop.chunk_metric_names, host.evaluate, host.chunk)
    finally:
        host.close()


def evaluate_host_run(cfg: RunConfig, env, algo, run_dir: Path, episodes: int, seed: int) -> list[str]:
    """Greedy evaluation of every seed's checkpointed policy on ``episodes`` fresh env instances each,
    reset with seeds drawn from ``split(PRNGKey(seed), num_seeds)`` (as ``evaluate_run``)."""
    e = cfg.experiment
    cap_buffer(cfg)
    host = HostLoop(cfg, env, algo, train_envs=False)
    state, meta = checkpoint.load(run_dir, host.template())
    env_list = [env] + [envs.make(e.task) for _ in range(e.num_seeds * episodes - 1)]
    keys = jax.random.split(jax.random.PRNGKey(seed), e.num_seeds)
    try:
        res = host.evaluate_policies(state.algo, keys, env_list, episodes)
    finally:
        for ev in env_list:
            ev.close()
    head = f"{e.algo} on {e.task} after {meta['env_steps']} env steps, {episodes} episodes"
    return summary(head, res, env.spec)
