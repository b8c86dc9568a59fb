"""TAPPO (marlow.algos.onpolicy.tappo) and the recurrent policy state it runs on: the rollout engine resets
the state where an episode ended, the encoder re-run in training reproduces exactly the embeddings the
behaviour policy computed (hidden states, previous actions and resets bookkept right), the teammate
decoder learns, and a resumed run equals an uninterrupted one (the GRU state of the episodes in progress
is part of the checkpoint)."""

from __future__ import annotations

import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from marlow import envs, rollout
from marlow.algos.onpolicy import tappo
from marlow.experiment.config import resolve
from marlow.runtime.runner import train

TASK = "mpe/simple_spread"  # 25-step episodes: resets inside a 40-step trajectory


def _algo(*extra: str):
    env = envs.make(TASK)
    cfg = resolve(["algo=tappo", f"task={TASK}", "hidden=16,16", "tm_hidden=16", "tm_embed_dim=4", *extra])
    return env, tappo.Algorithm(env.spec, cfg.algo)


def _collect(env, algo, state, steps=40, num_envs=3, key=0):
    carry = rollout.reset(env, jax.random.PRNGKey(key), num_envs, algo.init_pstate(num_envs))
    return rollout.collect(
        env,
        algo.policy(state),
        carry,
        jax.random.PRNGKey(key + 1),
        steps,
        rollout.Options(env_info=True, reset_pstate=algo.reset_pstate),
    )


def test_collect_resets_policy_state_at_episode_ends():
    env = envs.make(TASK)

    def count(pstate, obs, t, key):  # steps since the episode began
        n = next(iter(obs.values())).shape[0]
        return pstate + 1, {a: jnp.zeros((n,), jnp.int32) for a in env.spec.agents}, pstate

    carry = rollout.reset(env, jax.random.PRNGKey(0), 2, jnp.zeros((2,), jnp.int32))
    out, _, traj = rollout.collect(
        env,
        count,
        carry,
        jax.random.PRNGKey(1),
        60,
        rollout.Options(reset_pstate=lambda p, d: jnp.where(d, 0, p)),
    )
    seen = np.asarray(traj.extras)[:, 0]
    np.testing.assert_array_equal(seen, np.arange(60) % env.spec.episode_length)
    assert np.asarray(traj.done)[:, 0].sum() == 2
    np.testing.assert_array_equal(np.asarray(out.pstate), [60 % 25] * 2)


def test_reencoded_embeddings_equal_the_behaviour_policy_s():
    env, algo = _algo()
    state = algo.init(jax.random.PRNGKey(3))
    _, _, traj = _collect(env, algo, state)
    assert np.asarray(traj.done).sum() == 3  # every env started a second episode at step 25
    for a in env.spec.agents:
        z = algo.embeddings(state.tm[a], a, traj)
        np.testing.assert_allclose(np.asarray(z), np.asarray(traj.extras["z"][a]), atol=1e-5)
        # the embedding depends on the history: step 1's differs from what a fresh episode would give
        fresh = algo.encode(state.tm[a], a, jnp.zeros((3, 16)), traj.obs[a][1], jnp.zeros((3, 5)))[1]
        assert not np.allclose(np.asarray(fresh), np.asarray(traj.extras["z"][a][1]), atol=1e-6)
        # and the reset really happened: step 25's is a fresh episode's
        fresh = algo.encode(state.tm[a], a, jnp.zeros((3, 16)), traj.obs[a][25], jnp.zeros((3, 5)))[1]
        np.testing.assert_allclose(np.asarray(fresh), np.asarray(traj.extras["z"][a][25]), atol=1e-5)


def test_teammate_decoder_learns():
    env, algo = _algo("tm_updates=150", "tm_lr=0.003")
    state = algo.init(jax.random.PRNGKey(0))
    _, _, traj = _collect(env, algo, state, steps=50, num_envs=8)
    tm, _, first = jax.jit(algo.tm_update)(state.tm, state.tm_opt, traj)
    after = {a: algo.tm_loss(tm[a], a, traj)[1] for a in env.spec.agents}
    before = {a: algo.tm_loss(state.tm[a], a, traj)[1] for a in env.spec.agents}
    np.testing.assert_allclose(
        first["tm_obs_loss"], np.mean([float(before[a][0]) for a in before]), rtol=1e-5
    )
    for a in env.spec.agents:  # teammates' observations: at most half the initial error
        assert float(after[a][0]) < 0.5 * float(before[a][0]), a
        assert float(after[a][1]) < float(before[a][1]), a  # their actions: better than at the start


def _rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return [
            {k: v for k, v in r.items() if k not in ("wall_time", "steps_per_s")} for r in csv.DictReader(f)
        ]


def test_resumed_tappo_run_equals_uninterrupted(tmp_path, die_at_checkpoint):
    """Iterations of 20 steps inside 25-step episodes: the GRU state crosses iterations and checkpoints."""
    tiny = [
        "algo=tappo",
        f"task={TASK}",
        "hidden=8,8",
        "tm_hidden=8",
        "tm_decoder_hidden=8",
        "rollout_steps=20",
        "epochs=1",
        "num_envs=2",
        "eval_every=40",
        "total_steps=120",
        "eval_episodes=2",
        "checkpoint_every=1",
        "progress=false",
    ]
    run_a = train(resolve([*tiny, f"run_dir={tmp_path / 'a'}"]))
    die_at_checkpoint(2, train, resolve([*tiny, f"run_dir={tmp_path / 'b'}"]))
    train(resolve([f"resume={tmp_path / 'b'}", "progress=false"]))
    assert _rows(tmp_path / "b") == _rows(Path(run_a))
    assert len(_rows(Path(run_a))) == 4
