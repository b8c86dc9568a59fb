"""``marlow eval``: greedy evaluation of a trained run's checkpoint, and the random-policy baseline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from marlow import envs
from marlow.envs.api import EnvSpec, random_actions
from marlow.errors import ConfigError
from marlow.experiment.loop import Loop, RunnerState, evaluate_learner, evaluate_policy
from marlow.experiment.setup import Run, build, load_run_config, seed_keys, summary
from marlow.runtime import checkpoint


def eval_keys(seed: int, num_seeds: int) -> jax.Array:
    """One evaluation key per seed of a run: ``split(PRNGKey(seed), num_seeds)`` (``marlow eval``)."""
    return jax.random.split(jax.random.PRNGKey(seed), num_seeds)


def load_jax_run(run_dir: str | Path, run: Run) -> tuple[RunnerState, dict]:
    """The checkpointed runner state of a JAX-env run (leading seed axis) and its meta data.

    ``run``: ``build(load_run_config(run_dir))``, whose buffer is capped as the runner's was when it
    saved, so the template matches the checkpoint. Raises CheckpointError. ``rs.learner`` is the
    learner's state; :func:`algo_states` the algorithm's."""
    loop = Loop(run.env, run.learner, run.cfg.experiment)
    return checkpoint.load(run_dir, checkpoint.template(jax.vmap(loop.init), seed_keys(run.cfg)))


def algo_states(run: Run, rs: RunnerState):
    """The algorithm's state inside a loaded runner state (leading seed axis kept)."""
    return run.learner.algo_state(rs.learner)


def evaluate_seeds(env, act, algo_states, episodes: int, seed: int, env_info: bool = False) -> dict:
    """Greedy evaluation of each seed's policy: ``act(algo_state, obs, key)`` (``act(algo_state, obs, key,
    info)`` with ``env_info``: masks and global state) for every seed of ``algo_states`` (leading seed
    axis), ``episodes`` episodes per seed with :func:`eval_keys`; one jitted program vmapped over seeds.
    Returns :func:`marlow.experiment.loop.evaluate_policy`'s metrics with a leading seed axis."""
    num_seeds = jax.tree.leaves(algo_states)[0].shape[0]

    def one(algo_state, key):
        policy = (
            (lambda o, k, i: act(algo_state, o, k, i)) if env_info else (lambda o, k: act(algo_state, o, k))
        )
        return evaluate_policy(env, policy, key, episodes, env_info=env_info)

    return jax.device_get(jax.jit(jax.vmap(one))(algo_states, eval_keys(seed, num_seeds)))


@dataclass(frozen=True)
class Evaluation:
    """A run's greedy evaluation: ``metrics`` are :func:`~marlow.experiment.loop.evaluate_policy`'s with a
    leading seed axis, after ``env_steps`` env steps of training."""

    algo: str
    task: str
    env_steps: int
    episodes: int
    metrics: dict
    spec: EnvSpec

    def lines(self) -> list[str]:
        """What ``marlow eval`` prints: the team return (mean and per seed), in competitive tasks each
        team's."""
        head = f"{self.algo} on {self.task} after {self.env_steps} env steps, {self.episodes} episodes"
        return summary(head, self.metrics, self.spec)

    def numbers(self) -> dict:
        """``team_return`` (mean over seeds) and ``team_return_per_seed``, each agent's mean return
        (``agent_returns``), in competitive tasks each team's (``team_returns``), the rate of each episode
        event (e.g. ``win_rate``), ``env_steps`` and ``episodes``."""
        m = {k: np.asarray(v, np.float64) for k, v in self.metrics.items()}
        team = np.ravel(m["eval/team_return"])
        out = {
            "team_return": float(team.mean()),
            "team_return_per_seed": [float(v) for v in team],
            "agent_returns": {a: float(m[f"eval/return/{a}"].mean()) for a in self.spec.agents},
        }
        if self.spec.competitive:
            out["team_returns"] = {t: float(m[f"eval/team_return/{t}"].mean()) for t, _ in self.spec.teams}
        out.update({e: float(m[f"eval/{e}"].mean()) for _, e in self.spec.episode_events})
        return {**out, "env_steps": self.env_steps, "episodes": self.episodes}


def evaluation(run_dir: str | Path, episodes: int = 100, seed: int = 12345) -> Evaluation:
    """Evaluate the checkpointed policies of every seed of a run on ``episodes`` fresh episodes each, with
    the keys of :func:`eval_keys`. Raises ConfigError for ``episodes < 1``, CheckpointError for an
    unreadable run."""
    if episodes < 1:
        raise ConfigError(f"evaluation needs at least one episode, got episodes={episodes}")
    run = build(load_run_config(run_dir))
    env, e = run.env, run.cfg.experiment
    keys = eval_keys(seed, e.num_seeds)
    if env.is_jax:
        rs, meta = load_jax_run(run_dir, run)
        res = jax.device_get(
            jax.jit(jax.vmap(lambda s, k: evaluate_learner(env, run.learner, s, k, episodes)))(
                rs.learner, keys
            )
        )
        steps = int(meta["env_steps"])
    else:  # host envs (PettingZoo)
        from marlow.runtime.host import evaluate_host_run

        res, steps = evaluate_host_run(run, Path(run_dir), episodes, keys)
    return Evaluation(e.algo, e.task, steps, episodes, res, env.spec)


def evaluate_run(run_dir: str | Path, episodes: int = 100, seed: int = 12345) -> list[str]:
    """``marlow eval``: the lines of :meth:`Evaluation.lines` for :func:`evaluation`."""
    return evaluation(run_dir, episodes, seed).lines()


def random_policy_return(task: str, episodes: int = 100, seed: int = 12345) -> float:
    """Mean team return of uniformly random actions (the baseline quoted in the README)."""
    env = envs.make(task)
    spec = env.spec
    res = jax.jit(
        lambda k: evaluate_policy(
            env,
            lambda o, kk: jax.vmap(lambda q: random_actions(spec, q))(jax.random.split(kk, episodes)),
            k,
            episodes,
        )
    )(jax.random.PRNGKey(seed))
    return float(res["eval/team_return"])
