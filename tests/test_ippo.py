"""IPPO and the PPO pieces (marlow.algos.onpolicy): closed-form checks, a bandit, and runs through the
runner (vmapped seeds = separate runs, resume = uninterrupted, the host loop)."""

from __future__ import annotations

import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow import envs, rollout
from marlow.algos.onpolicy import ippo, ppo
from marlow.experiment.config import resolve
from marlow.runtime.loggers import read_metrics
from marlow.runtime.runner import train

SMALL = [
    "algo=ippo",
    "hidden=16,16",
    "num_envs=4",
    "rollout_steps=25",
    "epochs=2",
    "num_minibatches=2",
    "eval_every=200",
    "total_steps=800",
    "eval_episodes=2",
    "progress=false",
]
WALL = ("wall_time", "steps_per_s")


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in WALL} for r in csv.DictReader(f)]


# ---- PPO pieces -------------------------------------------------------------------------------------
def _gae_numpy(r, v, nv, term, trunc, gamma, lam):
    """Direct per-env computation: walk each env's steps backwards, restart at every episode end."""
    T, B = r.shape
    adv = np.zeros((T, B))
    for b in range(B):
        a_next = 0.0
        for t in reversed(range(T)):
            if term[t, b]:
                delta = r[t, b] - v[t, b]  # no bootstrap at a true terminal
            else:
                delta = r[t, b] + gamma * nv[t, b] - v[t, b]  # truncation bootstraps from V(s'_t)
            ended = term[t, b] or trunc[t, b]
            a_next = delta + (0.0 if ended else gamma * lam * a_next)
            adv[t, b] = a_next
    return adv, adv + v


def test_gae_matches_direct_computation_with_terminations_and_truncations():
    rng = np.random.default_rng(0)
    T, B = 40, 6
    r, v, nv = (rng.normal(size=(T, B)) for _ in range(3))
    term = rng.random((T, B)) < 0.1
    trunc = (rng.random((T, B)) < 0.1) & ~term
    assert term.any() and trunc.any()
    adv, ret = ppo.gae(ppo.Steps(*(jnp.asarray(x) for x in (r, v, nv, term, term | trunc))), 0.97, 0.9)
    want_adv, want_ret = _gae_numpy(r, v, nv, term, trunc, 0.97, 0.9)
    np.testing.assert_allclose(adv, want_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, want_ret, rtol=1e-5, atol=1e-5)


def test_clipped_surrogate_and_factor():
    logp_old = jnp.log(jnp.array([0.5, 0.5, 0.5, 0.5]))
    logp = jnp.log(jnp.array([0.8, 0.2, 0.55, 0.45]))  # ratios 1.6, 0.4, 1.1, 0.9
    adv = jnp.array([1.0, 1.0, -1.0, -1.0])
    loss, stats = ppo.clipped_surrogate(logp, logp_old, adv, 0.2)
    # min(r A, clip(r) A): 1.2 (clipped), 0.4, -1.1, -0.9
    assert float(loss) == pytest.approx(-(1.2 + 0.4 - 1.1 - 0.9) / 4, abs=1e-6)
    assert float(stats["clip_frac"]) == pytest.approx(0.5)
    # HAPPO's factor multiplies outside the min, unclipped
    m = jnp.array([2.0, 0.5, 3.0, 1.0])
    loss_m, _ = ppo.clipped_surrogate(logp, logp_old, adv, 0.2, factor=m)
    assert float(loss_m) == pytest.approx(-(2.0 * 1.2 + 0.5 * 0.4 - 3.0 * 1.1 - 0.9) / 4, abs=1e-6)


def test_value_loss_clipping_and_huber():
    v_old, target = jnp.array([0.0]), jnp.array([1.0])
    # the clipped prediction (0.2) is further from the target: the max of the two losses is taken
    assert float(ppo.value_loss(jnp.array([0.9]), v_old, target, 0.2, None)) == pytest.approx(0.5 * 0.8**2)
    assert float(ppo.value_loss(jnp.array([0.9]), v_old, target, None, None)) == pytest.approx(0.5 * 0.1**2)
    # Huber: linear beyond delta
    assert float(ppo.value_loss(jnp.array([-20.0]), v_old, jnp.array([0.0]), None, 10.0)) == pytest.approx(
        10.0 * (20.0 - 5.0)
    )


def test_value_norm_tracks_the_targets():
    vn = ppo.ValueNorm.init()
    rng = np.random.default_rng(1)
    for _ in range(300):
        vn = vn.update(jnp.asarray(rng.normal(5.0, 3.0, size=256)), beta=0.99)
    mean, std = vn.stats()
    assert float(mean) == pytest.approx(5.0, abs=0.3) and float(std) == pytest.approx(3.0, abs=0.3)
    x = jnp.array([1.0, 7.0])
    np.testing.assert_allclose(vn.denormalize(vn.normalize(x)), x, rtol=1e-5)


def test_minibatch_epochs_visit_every_row_once_per_epoch():
    data = {"i": jnp.arange(12)}

    def step(carry, mb):
        return carry + jnp.zeros(12).at[mb["i"]].add(1.0), {"n": jnp.float32(mb["i"].shape[0])}

    seen, m = ppo.minibatch_epochs(jnp.zeros(12), data, jax.random.PRNGKey(0), 3, 4, step)
    np.testing.assert_array_equal(seen, 3.0)
    assert float(m["n"]) == 3.0


def test_linear_decay():
    assert float(ppo.linear_decay(100, 400, 100)) == 1.0
    assert float(ppo.linear_decay(400, 400, 100)) == pytest.approx(0.25)


# ---- IPPO on a one-state bandit ---------------------------------------------------------------------
def test_ppo_update_on_one_state_bandit_moves_toward_the_better_arm():
    """games/climbing as a one-step bandit: agent 0's arm 2 pays 1, the others 0 (agent 1 gets nothing);
    one learn call on a batch of the behaviour policy's own samples raises P(arm 2) for agent 0 only."""
    env = envs.make("games/climbing")
    spec = env.spec
    cfg = resolve(["algo=ippo", "task=games/climbing", "epochs=4", "num_minibatches=1", "lr=0.01"]).algo
    algo = ippo.Algorithm(spec, cfg)
    algo.bind(num_envs=64, total_steps=64)
    state = algo.init(jax.random.PRNGKey(0))
    obs = {a: jnp.ones((64, spec.obs_dim(a))) for a in spec.agents}
    _, actions, extras = algo.policy(state)(None, obs, jnp.int32(0), jax.random.PRNGKey(1))
    a0, a1 = spec.agents
    rewards = {a0: (actions[a0] == 2).astype(jnp.float32), a1: jnp.zeros(64)}
    ones = jnp.ones((1, 64), bool)
    traj = rollout.Trajectory(
        obs=jax.tree.map(lambda x: x[None], obs),
        actions=jax.tree.map(lambda x: x[None], actions),
        rewards=jax.tree.map(lambda x: x[None], rewards),
        next_obs=jax.tree.map(lambda x: x[None], obs),
        terminated=ones,
        truncated=~ones,
        valid=ones,
        extras=jax.tree.map(lambda x: x[None], extras),
    )

    def probs(st, a):
        return jax.nn.softmax(algo.actors.out(st.params[a], a, obs[a][:1]))[0]

    new, metrics = algo.learn(state, traj, 64, jax.random.PRNGKey(2))
    assert float(probs(new, a0)[2]) > float(probs(state, a0)[2]) + 0.05
    assert abs(float(probs(new, a1)[2]) - float(probs(state, a1)[2])) < 0.05  # no signal: only entropy
    assert float(metrics["updates"]) == 4 and np.isfinite(float(metrics["approx_kl"]))


def test_shared_parameters_one_network_for_agents_of_one_space(tmp_path, capsys):
    """share_params: one parameter group; the policy is the same function of each agent's observation
    (swapping two agents' observations swaps their actions); one learn call on the climbing bandit, where
    arm 2 pays both agents, raises P(arm 2) from both agents' rows; a task with agents of different
    spaces is a one-line error; and it trains through the runner."""
    from marlow.cli import main

    spec = envs.make("mpe/simple_spread").spec
    cfg = resolve(["algo=ippo", "task=mpe/simple_spread", "share_params=true"]).algo
    algo = ippo.Algorithm(spec, cfg)
    state = algo.init(jax.random.PRNGKey(0))
    assert list(state.params) == [spec.agents[0]] and list(state.vnorm) == [spec.agents[0]]
    obs = {
        a: jax.random.normal(jax.random.PRNGKey(i), (64, spec.obs_dim(a))) for i, a in enumerate(spec.agents)
    }
    a0, a1, a2 = spec.agents
    acts = algo.act(state, obs, jax.random.PRNGKey(1), False)
    swapped = algo.act(state, {a0: obs[a1], a1: obs[a0], a2: obs[a2]}, jax.random.PRNGKey(1), False)
    assert (
        (swapped[a0] == acts[a1]).all()
        and (swapped[a1] == acts[a0]).all()
        and (swapped[a2] == acts[a2]).all()
    )
    assert not (acts[a0] == acts[a1]).all()  # the observations differ, so do the actions

    env = envs.make("games/climbing")
    bandit = resolve(["algo=ippo", "task=games/climbing", "epochs=4", "num_minibatches=1", "lr=0.01",
                      "share_params=true"]).algo  # fmt: skip
    algo = ippo.Algorithm(env.spec, bandit)
    algo.bind(num_envs=64, total_steps=64)
    state = algo.init(jax.random.PRNGKey(0))
    obs = {a: jnp.ones((64, env.spec.obs_dim(a))) for a in env.spec.agents}
    _, actions, extras = algo.policy(state)(None, obs, jnp.int32(0), jax.random.PRNGKey(1))
    ones = jnp.ones((1, 64), bool)
    traj = rollout.Trajectory(
        obs=jax.tree.map(lambda x: x[None], obs),
        actions=jax.tree.map(lambda x: x[None], actions),
        rewards={a: (actions[a] == 2).astype(jnp.float32)[None] for a in env.spec.agents},
        next_obs=jax.tree.map(lambda x: x[None], obs),
        terminated=ones,
        truncated=~ones,
        valid=ones,
        extras=jax.tree.map(lambda x: x[None], extras),
    )
    g = env.spec.agents[0]
    new, metrics = algo.learn(state, traj, 64, jax.random.PRNGKey(2))
    p_before, p_after = (
        jax.nn.softmax(algo.actors.out(st.params[g], g, obs[g][:1]))[0, 2] for st in (state, new)
    )
    assert float(p_after) > float(p_before) + 0.05
    assert float(metrics["updates"]) == 4  # one minibatch of both agents' rows per epoch

    bad = [
        "train",
        *SMALL,
        "task=mpe/simple_speaker_listener",
        "share_params=true",
        f"run_dir={tmp_path / 'x'}",
    ]
    assert main(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "share_params=true needs agents of one observation and action space" in err[0]
    m = read_metrics(train(resolve([*SMALL, "task=mpe/simple_spread", "share_params=true",
                                    "total_steps=400", f"run_dir={tmp_path / 's'}"])))[0]  # fmt: skip
    assert list(m["env_steps"]) == [0, 200, 400] and np.isfinite(m["loss/value_loss"][1:]).all()


# ---- through the runner -----------------------------------------------------------------------------
@pytest.mark.exhaustive  # the same runner path as test_mappo_happo's vmapped-seed tests, which CI runs
def test_vmapped_seeds_equal_separate_runs(tmp_path):
    batched = read_metrics(
        train(resolve([*SMALL, "task=mpe/simple_spread", "num_seeds=2", f"run_dir={tmp_path / 'b'}"]))
    )
    for s in (0, 1):
        alone = read_metrics(
            train(resolve([*SMALL, "task=mpe/simple_spread", f"seed={s}", f"run_dir={tmp_path / str(s)}"]))
        )[s]
        for col, v in batched[s].items():
            if col not in WALL:
                np.testing.assert_allclose(v, alone[col], rtol=1e-5, atol=1e-5, equal_nan=True, err_msg=col)
    assert not np.allclose(batched[0]["loss/value_loss"][1:], batched[1]["loss/value_loss"][1:])


def test_resume_equals_uninterrupted(tmp_path, die_at_checkpoint):
    args = [*SMALL, "task=games/lookahead_toy", "checkpoint_every=1"]  # Box actions
    whole = train(resolve([*args, f"run_dir={tmp_path / 'a'}"]))
    die_at_checkpoint(3, train, resolve([*args, f"run_dir={tmp_path / 'b'}"]))
    train(resolve([f"resume={tmp_path / 'b'}", "progress=false"]))
    assert _rows(tmp_path / "b") == _rows(whole)


def test_ippo_trains_through_the_host_loop(tmp_path):
    run = train(
        resolve([*SMALL, "task=pettingzoo/mpe2_simple_spread", "num_seeds=2", f"run_dir={tmp_path / 'h'}"])
    )
    m = read_metrics(run)
    for s in (0, 1):
        assert list(m[s]["env_steps"]) == [0, 200, 400, 600, 800]
        assert list(m[s]["updates"][1:]) == [8.0] * 4  # 2 iterations x 2 epochs x 2 minibatches per chunk
        for k in ("loss/policy_loss", "loss/value_loss", "loss/approx_kl", "loss/explained_variance"):
            assert np.isfinite(m[s][k][1:]).all(), k
        assert np.isfinite(m[s]["eval/team_return"]).all()


@pytest.mark.parametrize("bad", ["num_minibatches=0", "epochs=0", "rollout_steps=0", "num_minibatches=1000"])
def test_bad_schedule_is_a_one_line_error(tmp_path, capsys, bad):
    from marlow.cli import main

    assert main(["train", *SMALL, "task=mpe/simple_spread", bad, f"run_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("marlow: error:") and bad.split("=")[0] in err[0], err
