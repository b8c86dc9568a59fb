"""The host-side training loop (marlow.runtime.host) on the PettingZoo task pettingzoo/mpe2_simple_spread.

One tiny MASAC run (2 seeds x 4 envs, 400 env steps, an evaluation every 200) is trained once per module
through ``config.resolve`` + ``runner.train``; a second run with the same config goes through the CLI and
must log exactly the same metrics (determinism; wall-clock columns excluded).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import jax
import numpy as np
import pytest
from flax.serialization import msgpack_restore

from marlow.analysis.evaluate import eval_keys, evaluate_run, evaluation
from marlow.cli import main
from marlow.experiment.config import resolve
from marlow.runtime.checkpoint import CKPT_NAME
from marlow.runtime.host import env_seed, evaluate_host_run
from marlow.runtime.loggers import read_metrics
from marlow.runtime.runner import build, load_run_config, train

TASK = "pettingzoo/mpe2_simple_spread"
ARGS = [
    f"task={TASK}",
    "algo=masac",
    "seed=3",
    "num_seeds=2",
    "num_envs=4",
    "total_steps=400",
    "eval_every=200",
    "update_every=100",
    "warmup_steps=100",
    "batch_size=64",
    "hidden=16,16",
    "eval_episodes=2",
    "progress=false",
]
LOSSES = ["loss/actor_loss", "loss/alpha", "loss/critic_loss", "loss/entropy", "loss/q"]
WALL = ("wall_time", "steps_per_s")


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("host") / "run"
    out = train(resolve(ARGS + [f"run_dir={d}"]))
    assert out == d
    return d


def test_metrics_rows_for_both_seeds(run_dir):
    rows = _rows(run_dir)
    agents = [f"eval/return/agent_{i}" for i in range(3)]
    expected = {
        "seed",
        "env_steps",
        "episodes",
        "updates",
        "agent_interactions",
        "train/return",
        "eval/team_return",
        *agents,
        *LOSSES,
        *WALL,
    }
    assert set(rows[0]) == expected
    assert [(int(r["seed"]), int(r["env_steps"])) for r in rows] == [
        (3, 0),
        (4, 0),
        (3, 200),
        (4, 200),
        (3, 400),
        (4, 400),
    ]
    for r in rows[:2]:  # step-0 evaluation: no training yet
        assert int(r["episodes"]) == 0 and float(r["updates"]) == 0
        assert all(math.isnan(float(r[k])) for k in LOSSES)
    for r, episodes in zip(rows[2:], (8, 8, 16, 16), strict=True):
        assert int(r["episodes"]) == episodes  # 4 envs x 25-step episodes
        assert float(r["updates"]) == 2  # 2 iterations per chunk, both past warm-up
        assert all(math.isfinite(float(r[k])) for k in [*LOSSES, "train/return", "wall_time", "steps_per_s"])
    for r in rows:
        assert math.isfinite(float(r["eval/team_return"]))
        # one team with a shared reward: every agent's return is the team's
        assert float(r["eval/team_return"]) == pytest.approx(float(r[agents[0]]), rel=1e-5)
    assert rows[2]["eval/team_return"] != rows[3]["eval/team_return"]  # the seeds differ
    for name in (CKPT_NAME, "config.yaml", "report.md", "marl_eval.json"):
        assert (run_dir / name).is_file(), name


def test_evaluate_host_run(run_dir):
    run = build(load_run_config(run_dir))
    res, steps = evaluate_host_run(run, run_dir, episodes=2, keys=eval_keys(7, 2))
    assert steps == 400 and np.asarray(res["eval/team_return"]).shape == (2,)
    lines = evaluation(run_dir, episodes=2, seed=7).lines()
    assert lines[0].startswith(f"masac on {TASK} after 400 env steps, 2 episodes: team return ")
    per_seed = lines[0].split("per seed: ")[1].rstrip(")").split(", ")
    assert len(per_seed) == 2 and all(np.isfinite(float(v)) for v in per_seed)
    assert evaluate_run(run_dir, episodes=2, seed=7) == lines  # the `marlow eval` path, deterministic


def test_cli_same_config_is_deterministic(run_dir, tmp_path, capsys):
    d = tmp_path / "cli_run"
    assert main(["train", *ARGS, f"run_dir={d}"]) == 0
    assert f"run directory: {d}" in capsys.readouterr().out
    strip = [{k: v for k, v in r.items() if k not in WALL} for r in _rows(d)]
    assert strip == [{k: v for k, v in r.items() if k not in WALL} for r in _rows(run_dir)]
    # the checkpointed states (algorithm, buffer, keys, counters) too; meta differs by wall_time
    a, b = (msgpack_restore((r / CKPT_NAME).read_bytes()) for r in (d, run_dir))
    assert a["meta"]["chunk"] == b["meta"]["chunk"] == 2
    jax.tree.map(np.testing.assert_array_equal, a["state"], b["state"])


def test_env_seed_streams():
    assert env_seed(3001, 0) == 3001  # env 1 of seed 3 at the start of a run: 1000 * 3 + 1
    resumed = {env_seed(b, c) for b in (3000, 3001, 4000) for c in (1, 2)}
    assert len(resumed) == 6 and not resumed & {3000, 3001, 4000}


def test_resumed_host_chunk_starts_its_training_returns_from_zero():
    """A resumed host run resets its envs (the episodes in progress are dropped), so the running training
    returns restored from the checkpoint must not be added to the first episodes after it."""
    from marlow.runtime.host import HostLoop

    cfg = resolve(ARGS)
    host = HostLoop(build(cfg))
    try:
        st = jax.jit(jax.vmap(host.init))(jax.numpy.stack([jax.random.PRNGKey(s) for s in (3, 4)]))
        st = st.replace(ep_return=st.ep_return + 1e6)  # as if restored mid-episode
        _, m = host.chunk(st, 1)
    finally:
        host.close()
    assert np.all(np.asarray(m["train/return"]) < 0), m["train/return"]  # simple_spread returns are < 0


def test_host_env_information_for_centralised_critics():
    """MAPPO on a host env: every step passes the masks and the global state to the policy, and the
    trajectory keeps the global state each step reached (the finished episode's last state at its end,
    not the next episode's first), as the JAX rollout engine does."""
    from marlow.runtime.host import HostLoop

    cfg = resolve(
        [
            "algo=mappo",
            f"task={TASK}",
            "hidden=8,8",
            "num_envs=2",
            "rollout_steps=25",
            "eval_every=50",
            "total_steps=50",
            "progress=false",
        ]
    )
    run = build(cfg)
    env, host = run.env, HostLoop(run)
    try:
        st = jax.jit(jax.vmap(host.init))(jax.numpy.stack([jax.random.PRNGKey(0)]))
        host.reset(0)
        steps = []
        for t in range(26):  # across the 25-step episode's end
            before = np.stack([e.global_state() for e in host.envs])
            st, step = host._step(st, t)
            after = np.stack([e.global_state() for e in host.envs])
            steps.append((before, after, step))
    finally:
        host.close()
    for t, (before, after, step) in enumerate(steps):
        info = step["info"]
        np.testing.assert_array_equal(info["global_state"][0], before)
        assert set(info["avail"]) == set(env.spec.agents)
        done = step["terminated"][0] | step["truncated"][0]
        assert bool(done.all()) == (t == 24)
        if not done.any():
            np.testing.assert_array_equal(info["next_global_state"][0], after)
        else:  # the last state of the finished episode: its observations, not the reset's
            last = np.concatenate([step["next_obs"][a][0] for a in env.spec.agents], axis=-1)
            np.testing.assert_allclose(info["next_global_state"][0], last, rtol=1e-6)
            assert not np.allclose(info["next_global_state"][0], after)


@pytest.mark.parametrize("algo", [pytest.param("mappo", marks=pytest.mark.exhaustive), "happo"])
def test_centralised_critics_train_on_a_host_env(tmp_path, algo):
    """MAPPO and HAPPO through the host loop on MA-MuJoCo's 3x2 split, whose agents see different numbers
    of joints (no shared actor; HAPPO's lax.switch path) and whose critic takes the 17-number state."""
    args = [
        f"algo={algo}",
        "task=mamujoco/halfcheetah_3x2",
        "task.simulator=gymnasium",
        "hidden=16,16",
        "num_envs=2",
        "rollout_steps=25",
        "epochs=1",
        "eval_every=100",
        "total_steps=200",
        "eval_episodes=1",
        "progress=false",
        f"run_dir={tmp_path / 'run'}",
    ]
    m = read_metrics(train(resolve(args)))[0]
    assert list(m["env_steps"]) == [0, 100, 200]
    for k in ("loss/policy_loss", "loss/value_loss", "eval/team_return"):
        assert np.isfinite(m[k][1:]).all(), k
