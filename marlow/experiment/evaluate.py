"""``marlow eval``: greedy evaluation of a trained run's checkpoint, and the random-policy baseline."""

from __future__ import annotations

from pathlib import Path

import jax

from marlow import envs
from marlow.envs.api import random_actions
from marlow.experiment import checkpoint
from marlow.experiment.config import RunConfig
from marlow.experiment.loop import Loop, RunnerState, evaluate_learner, evaluate_policy
from marlow.experiment.setup import build, learner, load_run_config, seed_keys, summary


def eval_keys(seed: int, num_seeds: int) -> jax.Array:
    """One evaluation key per seed of a run: ``split(PRNGKey(seed), num_seeds)`` (``marlow eval``)."""
    return jax.random.split(jax.random.PRNGKey(seed), num_seeds)


def load_jax_run(run_dir: str | Path, cfg: RunConfig, env, algo) -> tuple[RunnerState, dict]:
    """The checkpointed runner state of a JAX-env run (leading seed axis) and its meta data.

    ``cfg``, ``env``, ``algo``: from ``load_run_config(run_dir)`` and ``build(cfg)``. The buffer size is
    capped as the runner did when saving, so the template matches the checkpoint. Raises CheckpointError.
    ``rs.learner`` is the learner's state; ``learner(cfg, algo).algo_state(rs.learner)`` the algorithm's."""
    loop = Loop(env, learner(cfg, algo), cfg.experiment)
    return checkpoint.load(run_dir, checkpoint.template(jax.vmap(loop.init), seed_keys(cfg)))


def algo_states(cfg: RunConfig, algo, rs: RunnerState):
    """The algorithm's state inside a loaded runner state (leading seed axis kept)."""
    return learner(cfg, algo).algo_state(rs.learner)


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


def evaluate_run(run_dir: str | Path, episodes: int = 100, seed: int = 12345) -> list[str]:
    """Evaluate the checkpointed policies of every seed of a run on ``episodes`` fresh episodes."""
    cfg = load_run_config(run_dir)
    env, algo = build(cfg)
    if not env.is_jax:
        from marlow.experiment.host import evaluate_host_run

        return evaluate_host_run(cfg, env, algo, Path(run_dir), episodes, seed)
    rs, meta = load_jax_run(run_dir, cfg, env, algo)
    lrn = learner(cfg, algo)
    keys = eval_keys(seed, cfg.experiment.num_seeds)
    res = jax.device_get(
        jax.jit(jax.vmap(lambda s, k: evaluate_learner(env, lrn, s, k, episodes)))(rs.learner, keys)
    )
    e = cfg.experiment
    head = f"{e.algo} on {e.task} after {meta['env_steps']} env steps, {episodes} episodes"
    return summary(head, res, env.spec)


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
