"""The training loop of every learner (:mod:`marlow.algos.learner`): collect, learn, evaluate.

One *iteration* = ``learner.steps_per_iter`` vectorised steps of the ``num_envs`` envs with the learner's
behaviour policy (:func:`marlow.rollout.collect`), then ``learner.learn`` on that trajectory (an
off-policy learner stores it and updates from its replay buffer once warmed up; an on-policy learner
computes advantages and runs its minibatch epochs). One *chunk* = ``eval_every / iteration_steps``
iterations followed by a greedy evaluation.

:meth:`Loop.chunk` is a pure function of the runner state, ``jit``-ed and ``vmap``-ed over seeds by the
runner, so for JAX envs the host sees the program only between evaluations. For host envs
(:mod:`marlow.runtime.host`) only the collection is a Python loop: the same :meth:`Loop.learn`
(counters, training returns, ``learner.learn``) and :func:`summarize` run jitted on the trajectory it
collects, so there is one schedule.

``step`` (env steps per seed) is derived from the iteration counter, which is not batched over seeds, so
under ``vmap`` a learner's ``lax.cond`` on it (warm-up, "retrain the world model every n steps") stays a
real branch instead of becoming a select of both branches.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax.extend.core import jaxpr_as_fun

from marlow import rollout
from marlow.envs.api import EnvSpec
from marlow.envs.spaces import Box


@struct.dataclass
class RunnerState:
    learner: Any
    env: rollout.EnvCarry | None  # [num_envs] env states and observations (None for host envs)
    key: jax.Array
    eval_key: jax.Array
    ep_return: jax.Array  # [num_envs] running team return of the current training episodes
    ep_events: jax.Array  # [num_envs, K] whether each of the task's K episode events happened so far
    env_steps: jax.Array
    episodes: jax.Array
    evals: jax.Array


def team_reward(spec: EnvSpec, rewards: dict) -> jax.Array:
    """Mean over agents of the step reward (the AORPO evaluation metric summed over time)."""
    return jnp.mean(jnp.stack([rewards[a] for a in spec.agents]), axis=0)


def strongly_typed(tree):
    """``tree`` with its weakly typed leaves (from Python scalars, e.g. ``jnp.full(shape, 0.5)``) made
    strongly typed, same dtype and values. A program loaded from the program cache reports its outputs
    strongly typed, so a weakly typed first state made a warm run trace its evaluation and chunk for other
    input types than the cold run had compiled: both caches missed and both programs compiled again
    (ROMMEO-Q, ROMMEO-Q-emp and WoLF-PHC start from such tables; ROMMEO-Q in benchmarks/startup.md)."""

    def strong(x):
        return jax.lax.convert_element_type(x, x.dtype) if getattr(x, "weak_type", False) else x

    return jax.tree.map(strong, tree)


class Loop:
    def __init__(self, env, learner, exp):
        self.env, self.learner, self.spec = env, learner, env.spec
        self.num_envs = exp.num_envs
        self.steps_per_iter = learner.steps_per_iter
        self.iteration_steps = self.steps_per_iter * self.num_envs  # env steps per iteration and seed
        self.iters_per_chunk = exp.eval_every // self.iteration_steps
        self.eval_episodes = exp.eval_episodes
        self.env_info = uses_env_info(learner)

    # ---- state ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> RunnerState:
        """The run's first state, every leaf strongly typed (:func:`strongly_typed`)."""
        k_algo, k_env, k_eval, key = jax.random.split(key, 4)
        env = None
        if self.env.is_jax:
            env = rollout.reset(self.env, k_env, self.num_envs, init_pstate(self.learner, self.num_envs))
        return strongly_typed(
            RunnerState(
                learner=self.learner.init(k_algo),
                env=env,
                key=key,
                eval_key=k_eval,
                ep_return=jnp.zeros(self.num_envs),
                ep_events=jnp.zeros((self.num_envs, len(self.spec.episode_events)), jnp.bool_),
                env_steps=jnp.int32(0),
                episodes=jnp.int32(0),
                evals=jnp.int32(0),
            )
        )

    # ---- one iteration: learn from what was collected (JAX and host envs) --------------------------
    def learn(self, rs: RunnerState, traj: rollout.Trajectory, it) -> tuple[RunnerState, dict]:
        """Counters and training returns of the collected ``traj`` ``[T, E]``, then ``learner.learn`` at
        ``step = (it + 1) * iteration_steps``. Returns the state and this iteration's sums for
        :func:`summarize`. ``it`` must not be batched over seeds."""

        keys = [k for k, _ in self.spec.episode_events]

        def track(carry, inp):
            ep, happened = carry
            r, done, events = inp
            ep = ep + team_reward(self.spec, r)
            if keys:
                happened = happened | jnp.stack([events[k] for k in keys], axis=-1)
            finished = (
                jnp.sum(jnp.where(done, ep, 0.0)),
                jnp.sum(done),
                jnp.sum(happened & done[:, None], axis=0),
            )
            return (jnp.where(done, 0.0, ep), happened & ~done[:, None]), finished

        events = traj.events if traj.events is not None else {}
        (ep_return, ep_events), (ret, cnt, ev_cnt) = jax.lax.scan(
            track, (rs.ep_return, rs.ep_events), (traj.rewards, traj.done, events)
        )
        step = ((jnp.asarray(it, jnp.int32) + 1) * self.iteration_steps).astype(jnp.int32)
        ready = self.learner.ready(step)
        key, k_learn = jax.lax.cond(ready, lambda k: tuple(jax.random.split(k)), lambda k: (k, k), rs.key)
        learner_state, metrics = self.learner.learn(rs.learner, traj, step, k_learn)
        metrics = dict(metrics)
        updates = metrics.pop("updates")
        learned = (updates > 0).astype(jnp.float32)
        rs = rs.replace(
            learner=learner_state,
            key=key,
            ep_return=ep_return,
            ep_events=ep_events,
            env_steps=rs.env_steps + self.iteration_steps,
            episodes=rs.episodes + jnp.sum(cnt).astype(jnp.int32),
        )
        sums = {
            "metrics": jax.tree.map(lambda v: v * learned, metrics),
            "learned": learned,
            "updates": updates,
            "ret_sum": jnp.sum(ret),
            "ret_cnt": jnp.sum(cnt).astype(jnp.float32),
            "event_cnt": {
                m: jnp.sum(ev_cnt[..., i]).astype(jnp.float32)
                for i, (_, m) in enumerate(self.spec.episode_events)
            },
        }
        return rs, sums

    def zero_sums(self, rs: RunnerState) -> dict:
        """Zeros shaped like :meth:`learn`'s sums (the start of a chunk's accumulation)."""
        traj = dummy_trajectory(self.spec, self.learner, rs.learner, self.steps_per_iter, self.num_envs)
        shapes = jax.eval_shape(lambda r: self.learn(r, traj, jnp.int32(0))[1], rs)
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def chunk_metric_names(self, rs_batched: RunnerState) -> list[str]:
        """Names of the non-evaluation metrics of :meth:`chunk` (for a seed-batched state)."""
        sums = self.zero_sums(jax.tree.map(lambda x: x[0], rs_batched))
        events = [f"train/{m}" for m in sums["event_cnt"]]
        return [f"loss/{k}" for k in sums["metrics"]] + ["train/return", *events, "updates"]

    # ---- JAX envs: a whole chunk in one program ----------------------------------------------------
    def _iteration(self, rs, it):
        env_carry, key, traj = rollout.collect(
            self.env,
            self.learner.policy(rs.learner),
            rs.env,
            rs.key,
            self.steps_per_iter,
            rollout.Options(env_info=self.env_info, reset_pstate=getattr(self.learner, "reset_pstate", None)),
        )
        return self.learn(rs.replace(env=env_carry, key=key), traj, it)

    def chunk(self, rs: RunnerState, first_iter: jax.Array, n_iters: jax.Array) -> tuple[RunnerState, dict]:
        """Iterations ``first_iter, ..., first_iter + n_iters - 1`` then an evaluation. Neither argument may
        be batched. ``n_iters`` is ``iters_per_chunk`` but in a shorter last chunk or a resumed run's first
        (:func:`marlow.experiment.setup.chunk_spans`), and 0 for the step-0 evaluation: the iterations are
        a ``while`` loop over an input trip count, so one program serves all of them (the evaluation is
        compiled once, in it, instead of again as a program of its own).

        The iteration is traced once, to a jaxpr that gives the loop's running sums their zeros and is
        then evaluated as the loop's body; the sums are added up in iteration order, ``0 + s_1 + s_2 +
        ...``."""
        closed, out_shapes = jax.make_jaxpr(self._iteration, return_shape=True)(rs, first_iter)
        out_tree = jax.tree.structure(out_shapes)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out_shapes[1])
        end = first_iter + n_iters

        def body(carry):
            it, r, acc = carry
            r, sums = jax.tree.unflatten(out_tree, jaxpr_as_fun(closed)(*jax.tree.leaves((r, it))))
            return it + 1, r, jax.tree.map(jnp.add, acc, sums)

        _, rs, total = jax.lax.while_loop(lambda c: c[0] < end, body, (first_iter, rs, zeros))
        metrics = summarize(total)
        rs, ev = self.evaluate(rs)
        metrics.update(ev)
        metrics["env_steps"] = rs.env_steps
        metrics["episodes"] = rs.episodes
        metrics["agent_interactions"] = self.interactions(rs)
        return rs, metrics

    def span(self, c: int) -> tuple[jax.Array, jax.Array]:
        """:meth:`chunk`'s ``(first_iter, n_iters)`` for the whole chunk ``c``."""
        return jnp.int32(c * self.iters_per_chunk), jnp.int32(self.iters_per_chunk)

    def interactions(self, rs: RunnerState) -> jax.Array:
        return agent_interactions(self.spec, self.learner.communications(rs.learner), rs.env_steps)

    # ---- evaluation -------------------------------------------------------------------------------
    def evaluate(self, rs: RunnerState) -> tuple[RunnerState, dict]:
        """``eval_episodes`` greedy episodes on envs seeded from a separate key stream."""
        key = jax.random.fold_in(rs.eval_key, rs.evals)
        returns = evaluate_learner(self.env, self.learner, rs.learner, key, self.eval_episodes)
        returns.update(diagnostics(self.spec, self.learner, rs.learner))
        return rs.replace(evals=rs.evals + 1), returns


def uses_env_info(learner) -> bool:
    """Whether the learner acts on the env information (masks, global state; :mod:`marlow.rollout`)."""
    return bool(getattr(learner, "env_info", False))


def greedy(learner, learner_state):
    """The learner's greedy ``act(obs, key)`` (``act(obs, key, info)`` for env-information learners)."""
    if uses_env_info(learner):
        return lambda obs, k, info: learner.act(learner_state, obs, k, False, info=info)
    return lambda obs, k: learner.act(learner_state, obs, k, False)


def init_pstate(learner, num_envs: int):
    """The behaviour policy's state of ``num_envs`` fresh episodes (None for stateless policies)."""
    return learner.init_pstate(num_envs) if hasattr(learner, "init_pstate") else None


def greedy_policy(learner, learner_state) -> rollout.Policy:
    """The learner's greedy behaviour as a :data:`marlow.rollout.Policy`: its own ``greedy_policy``
    (learners with a recurrent policy state), else :func:`greedy` without a policy state."""
    if hasattr(learner, "greedy_policy"):
        return learner.greedy_policy(learner_state)
    return rollout.stateless(greedy(learner, learner_state), uses_env_info(learner))


def summarize(sums: dict) -> dict:
    """A chunk's metrics from its iterations' summed :meth:`Loop.learn` sums: losses averaged over the
    iterations that learned (NaN when none did), the mean return of the training episodes that ended,
    and the number of updates applied."""
    cnt = sums["learned"]
    metrics = {
        f"loss/{k}": jnp.where(cnt > 0, v / jnp.maximum(cnt, 1.0), jnp.nan)
        for k, v in sums["metrics"].items()
    }
    n = sums["ret_cnt"]
    metrics["train/return"] = jnp.where(n > 0, sums["ret_sum"] / jnp.maximum(n, 1.0), jnp.nan)
    for m, c in sums.get("event_cnt", {}).items():
        metrics[f"train/{m}"] = jnp.where(n > 0, c / jnp.maximum(n, 1.0), jnp.nan)
    metrics["updates"] = sums["updates"]
    return metrics


def dummy_trajectory(spec: EnvSpec, learner, learner_state, steps: int, num_envs: int):
    """Zeros shaped like the trajectory ``collect`` gives the learner (for shape-only tracing)."""
    obs = {a: jnp.zeros((num_envs, spec.obs_dim(a))) for a in spec.agents}
    info = None
    if uses_env_info(learner):
        info = {"avail": {a: jnp.ones((num_envs, s.flat_dim), jnp.bool_) for a, s in _discrete(spec)}}
        if spec.global_state_dim is not None:
            info["global_state"] = jnp.zeros((num_envs, spec.global_state_dim))
    pstate = init_pstate(learner, num_envs)
    args = (pstate, obs, jnp.int32(0), jax.random.PRNGKey(0)) + ((info,) if info is not None else ())
    _, actions, extras = jax.eval_shape(lambda s, a: learner.policy(s)(*a), learner_state, args)

    def tile(x):
        return jnp.zeros((steps,) + tuple(x.shape), x.dtype)

    if info is not None and "global_state" in info:
        info["next_global_state"] = info["global_state"]
    flags = jnp.zeros((steps, num_envs), jnp.bool_)
    return rollout.Trajectory(
        obs=jax.tree.map(tile, obs),
        actions=jax.tree.map(tile, actions),
        rewards={a: jnp.zeros((steps, num_envs)) for a in spec.agents},
        next_obs=jax.tree.map(tile, obs),
        terminated=flags,
        truncated=flags,
        valid=~flags,
        extras=jax.tree.map(tile, extras),
        info=jax.tree.map(tile, info),
        events={k: flags for k, _ in spec.episode_events},
    )


def _discrete(spec: EnvSpec):
    return [(a, s) for a, s in zip(spec.agents, spec.act_spaces, strict=True) if s.kind != "box"]


def agent_interactions(spec: EnvSpec, communications, env_steps) -> jax.Array:
    """The AORPO paper's *normalised agent interactions* (Sec. 6.2, Fig. 2; Appendix F): the number of
    times the agent group completes a full interaction (every agent takes an action), divided by the
    episode length (25 in MPE). Every real env step is one full interaction; an algorithm that queries
    real agents inside model rollouts reports the count of those single-agent queries with the optional
    ``communications(state)``, each counting 1/N of a full interaction (N agents; ours: the paper does
    not weigh them, the reference code weighs each agent by its input and action size)."""
    full = env_steps.astype(jnp.float32) + jnp.asarray(communications, jnp.float32) / spec.num_agents
    return full / spec.episode_length


def diagnostics(spec: EnvSpec, learner, learner_state) -> dict:
    """The learner's ``diagnostics(state)`` scalars and, on single-state tasks, the :func:`probe`
    readings, as ``diag/<name>`` metrics."""
    out = dict(learner.diagnostics(learner_state))
    out.update(probe(spec, learner, learner_state))
    return {f"diag/{k}": v for k, v in out.items()}


def probe(spec: EnvSpec, learner, learner_state) -> dict:
    """Readings at the one observation of a single-state task (``spec.num_states == 1``: the repeated
    games, where a policy is one action distribution and its greedy action says what it learned):
    ``pi_mean/<agent>``, the first component of each Box-action agent's greedy action (ROMMEO Fig. 2c),
    and the learner's own ``probe(state, obs)`` readings there (opponent models, priors). Nothing on
    other tasks. The greedy step uses a fixed key (the same readings for the same state)."""
    if spec.num_states != 1:
        return {}
    obs = spec.state_obs(0)
    key = jax.random.PRNGKey(0)
    pstate = init_pstate(learner, 1)
    policy = greedy_policy(learner, learner_state)
    if uses_env_info(learner):  # a single state: every action available (greedy acting reads no critic)
        masks = zip(spec.agents, spec.act_spaces, strict=True)
        info = {"avail": {a: jnp.ones((1, s.flat_dim), jnp.bool_) for a, s in masks if s.kind != "box"}}
        _, actions, _ = policy(pstate, obs, jnp.int32(0), key, info)
    else:
        _, actions, _ = policy(pstate, obs, jnp.int32(0), key)
    out = {
        f"pi_mean/{a}": jnp.ravel(actions[a])[0].astype(jnp.float32)
        for a, s in zip(spec.agents, spec.act_spaces, strict=True)
        if isinstance(s, Box)
    }
    out.update(learner.probe(learner_state, obs))
    return out


def evaluate_policy(env, policy, key: jax.Array, episodes: int, env_info: bool = False) -> dict:
    """Run ``episodes`` parallel episodes of ``env.spec.episode_length`` steps with ``policy(obs, key)``
    (``policy(obs, key, info)`` with ``env_info``) and return team/per-agent/per-team returns (means over
    episodes), each episode's team return and the rates of the task's episode events (win rate)."""
    returns, events = episode_outcomes(env, policy, key, episodes, env_info)
    return return_metrics(env.spec, returns, events)


def episode_returns(env, policy, key: jax.Array, episodes: int, env_info: bool = False) -> dict:
    """Each agent's undiscounted return in ``episodes`` parallel episodes of ``policy(obs, key)``:
    ``{agent: [episodes]}`` (:func:`episode_outcomes`)."""
    return episode_outcomes(env, policy, key, episodes, env_info)[0]


def evaluate_learner(env, learner, learner_state, key: jax.Array, episodes: int) -> dict:
    """:func:`evaluate_policy`'s metrics of the learner's greedy policy (:func:`greedy_policy`, with its
    policy state where it has one)."""
    returns, events = policy_outcomes(
        env,
        greedy_policy(learner, learner_state),
        key,
        episodes,
        uses_env_info(learner),
        init_pstate(learner, episodes),
        getattr(learner, "reset_pstate", None),
    )
    return return_metrics(env.spec, returns, events)


def episode_outcomes(env, policy, key: jax.Array, episodes: int, env_info: bool = False):
    """:func:`policy_outcomes` of a stateless ``policy(obs, key)`` (``policy(obs, key, info)`` with
    ``env_info``)."""
    return policy_outcomes(env, rollout.stateless(policy, env_info), key, episodes, env_info)


def policy_outcomes(
    env, policy, key: jax.Array, episodes: int, env_info: bool = False, pstate=None, reset_pstate=None
):
    """``(returns, events)`` of ``episodes`` parallel episodes of the :data:`marlow.rollout.Policy`
    ``policy`` from policy state ``pstate`` (reset by ``reset_pstate`` where an episode ends): each agent's
    undiscounted return ``{agent: [episodes]}`` and, per episode event of the task
    (``spec.episode_events``), whether it happened ``{metric: [episodes]}``. The envs are reset with
    ``split(k_reset, episodes)`` and step ``t`` uses ``split(k_run, episode_length)[t]`` (``k_reset, k_run
    = split(key)``), so an evaluation's keys depend on ``key`` only; the steps after an episode's end are
    not counted."""
    spec = env.spec
    k_reset, k_run = jax.random.split(key)
    carry = rollout.reset(env, k_reset, episodes, pstate)
    T = spec.episode_length
    _, _, traj = rollout.collect(
        env,
        policy,
        carry,
        jax.random.split(k_run, T),
        T,
        rollout.Options(step_keys=True, env_info=env_info, reset_pstate=reset_pstate),
    )
    alive = rollout.episode_mask(traj)
    returns = {a: jnp.sum(traj.rewards[a] * alive, axis=0) for a in spec.agents}
    events = {m: jnp.any(traj.events[k] & (alive > 0), axis=0) for k, m in spec.episode_events}
    return returns, events


def return_metrics(spec: EnvSpec, per_agent: dict, events: dict | None = None) -> dict:
    """Evaluation metrics from each agent's episode returns (arrays ``[..., episodes]``): the team return
    (mean over agents) per episode and its mean, each agent's mean return, in competitive tasks each
    team's mean return, and the rate of each episode event (``events``: metric -> bool ``[...,
    episodes]``, e.g. ``eval/win_rate``). Shared by the JAX and the host loops."""
    team = jnp.mean(jnp.stack([per_agent[a] for a in spec.agents]), axis=0)
    out = {"eval/team_return": jnp.mean(team, axis=-1), "eval/episode_returns": team}
    for metric, happened in (events or {}).items():
        out[f"eval/{metric}"] = jnp.mean(jnp.asarray(happened, jnp.float32), axis=-1)
    for a in spec.agents:
        out[f"eval/return/{a}"] = jnp.mean(per_agent[a], axis=-1)
    if spec.competitive:
        for name, members in spec.teams:
            out[f"eval/team_return/{name}"] = jnp.mean(
                jnp.stack([per_agent[a] for a in members]), axis=(0, -1)
            )
    return out
