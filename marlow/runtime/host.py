"""Training and evaluation on host-side (PettingZoo) envs: only the collection is a Python loop around
:class:`~marlow.envs.pettingzoo.PettingZooEnv` instances; everything else is the JAX loop's code.

The runner state is :class:`~marlow.experiment.loop.RunnerState` (without env states, which live on the
host) stacked over seeds. Each vectorised step calls the learner's behaviour policy (jitted and vmapped
over seeds, one call for all seeds and envs), steps every env, and the steps of an iteration form a
:class:`~marlow.rollout.Trajectory` ``[steps_per_iter, num_envs]`` per seed; :meth:`Loop.learn`
(counters, training returns, ``learner.learn``: the replay buffer and updates of an off-policy learner,
the epochs of an on-policy one) then runs jitted and vmapped over seeds on it, and a chunk's metrics are
:func:`~marlow.experiment.loop.summarize`'s. The run directory, logging, checkpoints, divergence check
and report are :func:`marlow.runtime.session.run_chunks`.

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

import jax
import jax.numpy as jnp
import numpy as np

from marlow import rollout
from marlow.experiment.loop import (
    Loop,
    RunnerState,
    diagnostics,
    greedy_policy,
    init_pstate,
    return_metrics,
    summarize,
    uses_env_info,
)
from marlow.experiment.setup import Run, make_env, prepare_run_dir, seed_keys
from marlow.runtime import checkpoint
from marlow.runtime.session import run_chunks


def env_seed(base: int, chunk: int) -> int:
    """Reset seed of a training env whose base seed is ``base`` when (re)started at ``chunk``."""
    return base if chunk == 0 else int(np.random.SeedSequence([base, chunk]).generate_state(1)[0])


def _stack(outs: list[dict], agents) -> dict:
    return {a: np.stack([o[a] for o in outs]) for a in agents}


class HostLoop:
    def __init__(self, run: Run, train_envs: bool = True):
        cfg, env = run.cfg, run.env
        e = cfg.experiment
        self.cfg, self.spec = cfg, env.spec
        self.learner = run.learner
        self.loop = Loop(env, self.learner, e)  # the schedule and the learning step of the JAX loop
        self.S, self.E = e.num_seeds, e.num_envs
        n = self.S * self.E if train_envs else 0
        self.envs = [env] + [make_env(e) for _ in range(n - 1)]  # env i of seed s: index s * E + i
        self.eval_envs: list = []
        self.obs: dict | None = None  # {agent: [S * E, obs_dim]}, None until the envs are reset
        lrn = self.learner

        self.env_info = uses_env_info(lrn)

        def behave(lstate, pstate, obs, t, key, info):
            key, k = jax.random.split(key)
            extra = (info,) if self.env_info else ()
            pstate, actions, extras = lrn.policy(lstate)(pstate, obs, t, k, *extra)
            return key, pstate, actions, extras

        self._behave = jax.jit(jax.vmap(behave, in_axes=(0, 0, 0, None, 0, 0)))
        self.pstate = None  # the behaviour policy's state per seed (None: stateless), set at env resets
        reset = getattr(lrn, "reset_pstate", None)
        self._reset_pstate = jax.jit(jax.vmap(reset)) if reset is not None else lambda p, d: p

        def act(lstate, pstate, obs, t, key, info):
            extra = (info,) if self.env_info else ()
            pstate, actions, _ = greedy_policy(lrn, lstate)(pstate, obs, t, key, *extra)
            return pstate, actions

        self._greedy = jax.jit(jax.vmap(act, in_axes=(0, 0, 0, None, 0, 0)))
        self._learn = jax.jit(jax.vmap(self.loop.learn, in_axes=(0, 0, None)), donate_argnums=0)
        self._interactions = jax.jit(jax.vmap(self.loop.interactions))
        self._diagnostics = jax.jit(jax.vmap(lambda s: diagnostics(self.spec, lrn, s)))

    # ---- state ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> RunnerState:
        """One seed's state (``Loop.init``: the JAX loop's key split; no env states)."""
        return self.loop.init(key)

    def template(self) -> RunnerState:
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
        self.pstate = self._init_pstate(self.E)

    def _init_pstate(self, per_seed: int):
        """The policy state of ``per_seed`` fresh episodes for every seed (leading seed axis), or None."""
        p = init_pstate(self.learner, per_seed)
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (self.S,) + x.shape), p)

    def close(self) -> None:
        for env in self.envs + self.eval_envs:
            env.close()

    def _info(self, env_list: list, per_seed: int) -> dict | None:
        """The env information of ``env_list`` (``[S, per_seed, ...]``) for env-information learners: each
        env's available-action masks and, with a global state, the global state (:mod:`marlow.rollout`)."""
        if not self.env_info:
            return None
        masks = [env.avail_actions() for env in env_list]
        info = {"avail": {a: self._shape(np.stack([m[a] for m in masks]), per_seed) for a in masks[0]}}
        if self.spec.global_state_dim is not None:
            info["global_state"] = self._shape(np.stack([env.global_state() for env in env_list]), per_seed)
        return info

    def _step(self, st: RunnerState, t: int) -> tuple[RunnerState, dict]:
        """One behaviour step of every env -> (state, the step's trajectory fields ``[S, E, ...]``)."""
        agents = self.spec.agents
        obs = {a: self._shape(o, self.E) for a, o in self.obs.items()}
        info = self._info(self.envs, self.E)
        key, self.pstate, actions, extras = self._behave(
            st.learner, self.pstate, obs, np.int32(t), st.key, info
        )
        actions, extras = jax.device_get((actions, extras))
        flat = {a: x.reshape((-1,) + x.shape[2:]) for a, x in actions.items()}
        outs = [env.step({a: flat[a][j] for a in agents}) for j, env in enumerate(self.envs)]
        if info is not None and "global_state" in info:
            reached = np.stack([o[3]["terminal_global_state"] for o in outs])
            info["next_global_state"] = self._shape(reached, self.E)
        self.obs = _stack([o[0] for o in outs], agents)
        done = np.array([o[2]["__all__"] for o in outs])
        self.pstate = self._reset_pstate(self.pstate, self._shape(done, self.E))
        truncated = np.array([bool(o[3]["truncated"]) for o in outs])
        step = {
            "obs": obs,
            "actions": actions,
            "rewards": {a: self._shape(r, self.E) for a, r in _stack([o[1] for o in outs], agents).items()},
            "next_obs": {
                a: self._shape(o, self.E)
                for a, o in _stack([o[3]["terminal_obs"] for o in outs], agents).items()
            },
            "terminated": self._shape(done & ~truncated, self.E),
            "truncated": self._shape(done & truncated, self.E),
            "extras": extras,
            "info": info,
            "events": {
                k: self._shape(np.array([bool(o[3].get(k, False)) for o in outs]), self.E)
                for k, _ in self.spec.episode_events
            },
        }
        return st.replace(key=key), step

    def chunk(
        self, st: RunnerState, c: int, first_step: int | None = None, steps: int | None = None
    ) -> tuple[RunnerState, dict]:
        """``Loop.chunk`` on the host envs: chunk ``c``'s iterations (by default the whole chunk; else
        the ``steps`` env steps from ``first_step``, :func:`marlow.experiment.setup.chunk_spans`) then an
        evaluation."""
        L = self.loop
        if self.obs is None:  # a new run, or a resumed one whose episodes in progress were dropped
            self.reset(c)
            st = st.replace(ep_return=jnp.zeros_like(st.ep_return), ep_events=jnp.zeros_like(st.ep_events))
        sums = None
        first = c * L.iters_per_chunk if first_step is None else first_step // L.iteration_steps
        n = L.iters_per_chunk if steps is None else steps // L.iteration_steps
        for it in range(first, first + n):
            steps = []
            for t in range(L.steps_per_iter):
                st, step = self._step(st, t)
                steps.append(step)
            # [S, T, E, ...]: per seed, the JAX loop's time-major trajectory
            fields = jax.tree.map(lambda *xs: np.stack(xs, 1), *steps)
            traj = rollout.Trajectory(valid=np.ones(fields["terminated"].shape, bool), states=None, **fields)
            st, s = self._learn(st, traj, np.int32(it))
            s = jax.device_get(s)
            sums = s if sums is None else jax.tree.map(np.add, sums, s)
        metrics = jax.device_get(summarize(sums))
        st, ev = self.evaluate(st)
        metrics.update(ev, env_steps=st.env_steps, episodes=st.episodes)
        metrics["agent_interactions"] = np.asarray(self._interactions(st))
        return st, metrics

    # ---- evaluation -------------------------------------------------------------------------------
    def evaluate(self, st: RunnerState) -> tuple[RunnerState, dict]:
        """``eval_episodes`` greedy episodes per seed on env instances seeded from ``fold_in(eval_key,
        evals)`` (``Loop.evaluate``'s stream)."""
        episodes = self.cfg.experiment.eval_episodes
        if not self.eval_envs:
            self.eval_envs = [make_env(self.cfg.experiment) for _ in range(self.S * episodes)]
        keys = jax.vmap(jax.random.fold_in)(st.eval_key, st.evals)
        ev = self.evaluate_policies(st.learner, keys, self.eval_envs, episodes)
        ev.update(jax.device_get(self._diagnostics(st.learner)))
        return st.replace(evals=st.evals + 1), ev

    def evaluate_policies(self, learner_states, keys: jax.Array, env_list: list, episodes: int) -> dict:
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
        events = {m: np.zeros(len(env_list), bool) for _, m in spec.episode_events}
        alive = np.ones(len(env_list), bool)
        pstate = self._init_pstate(episodes)  # only each env's first episode is played: never reset
        for t in range(T):
            if not alive.any():
                break
            pstate, actions = self._greedy(
                learner_states,
                pstate,
                {a: self._shape(o, episodes) for a, o in obs.items()},
                np.int32(t),
                step_keys[:, t],
                self._info(env_list, episodes),
            )
            flat = {a: x.reshape((-1,) + x.shape[2:]) for a, x in jax.device_get(actions).items()}
            for j in np.flatnonzero(alive):
                o, r, d, inf = env_list[j].step({a: flat[a][j] for a in spec.agents})
                for a in spec.agents:
                    returns[a][j] += r[a]
                    obs[a][j] = o[a]
                for k, m in spec.episode_events:
                    events[m][j] |= bool(inf.get(k, False))
                alive[j] = not d["__all__"]
        shaped = {a: self._shape(r, episodes) for a, r in returns.items()}  # [S, episodes]
        return jax.device_get(
            return_metrics(spec, shaped, {m: self._shape(e, episodes) for m, e in events.items()})
        )


def train_host(run: Run, run_dir: Path) -> Path:
    """Train (or, with ``cfg.experiment.resume`` set, resume) a run on a host env; returns its directory."""
    cfg = run.cfg
    prepare_run_dir(run, run_dir)
    host = HostLoop(run)
    state = host.template() if cfg.experiment.resume else jax.jit(jax.vmap(host.init))(seed_keys(cfg))
    try:
        return run_chunks(cfg, run_dir, state, host.loop.chunk_metric_names, host.evaluate, host.chunk)
    finally:
        host.close()


def evaluate_host_run(run: Run, run_dir: Path, episodes: int, keys) -> tuple[dict, int]:
    """Greedy evaluation of every seed's checkpointed policy on ``episodes`` fresh env instances each,
    reset with seeds drawn from ``keys[s]`` (``marlow.analysis.evaluate.eval_keys``): the metrics of
    :meth:`HostLoop.evaluate_policies` and the env steps the checkpoint was trained for."""
    e = run.cfg.experiment
    host = HostLoop(run, train_envs=False)
    state, meta = checkpoint.load(run_dir, host.template())
    env_list = [run.env] + [make_env(e) for _ in range(e.num_seeds * episodes - 1)]
    try:
        return host.evaluate_policies(state.learner, keys, env_list, episodes), int(meta["env_steps"])
    finally:
        for ev in env_list:
            ev.close()
