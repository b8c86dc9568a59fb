"""MA-MuJoCo in the jitted loop (task.simulator=rollout, the default; marlow.envs.mamujoco_rollout)
against Gymnasium-Robotics' own env (task.simulator=gymnasium) on the same states and actions: every
agent's observation, the global state, the reward and the termination, step after step (each step starts
both from the same state)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow import envs
from marlow.envs.mamujoco_rollout import MjState
from marlow.errors import ConfigError

CASES = [
    ("mamujoco/halfcheetah_2x3", {}),
    ("mamujoco/halfcheetah_3x2", {"agent_obsk": 0}),  # a custom split, depth 0
    ("mamujoco/walker2d_2x3", {}),  # clipped velocities, health and termination
    ("mamujoco/walker2d_3x2", {"full_obs": True}),  # the global state and the one-hot id
    ("mamujoco/ant_2x4", {}),  # contact forces in the observations, the reward and the global state
    ("mamujoco/ant_4x2", {"full_obs": True}),
]
# a state that ends the episode: Walker2d's torso dropped below 0.8, Ant's lifted above 1.0
UNHEALTHY = {"mamujoco/walker2d": (1, -0.9), "mamujoco/ant": (2, 1.0)}


def _inner(ref):
    pz = ref.pz_env
    return pz, getattr(pz, "env", pz).unwrapped.single_agent_env.unwrapped


@pytest.mark.parametrize("task,opts", CASES)
def test_steps_match_gymnasium_robotics(task, opts):
    ref = envs.make(task, simulator="gymnasium", **opts)
    fast = envs.make(task, **opts)  # the default simulator
    assert fast.spec == ref.spec.__class__(**{**ref.spec.__dict__, "description": fast.spec.description})
    pz, single = _inner(ref)
    step = jax.jit(fast.step_env)
    rng = np.random.default_rng(0)
    pz.reset(seed=1)
    falls, robot = 0, task.split("_")[0]
    for t in range(60):
        if robot in UNHEALTHY and t == 40:  # unhealthy from here: the episode ends at this step
            qpos = single.data.qpos.copy()
            qpos[UNHEALTHY[robot][0]] += UNHEALTHY[robot][1]
            single.set_state(qpos, single.data.qvel.copy())
        # both start from the float32 state the fast env holds (the torso's x, y as set_state leaves them)
        qpos, qvel = (np.asarray(x, np.float32) for x in (single.data.qpos, single.data.qvel))
        single.set_state(qpos.astype(np.float64), qvel.astype(np.float64))
        cfrc = (
            np.asarray(single.data.cfrc_ext, np.float32).ravel() if robot == "mamujoco/ant" else np.zeros(0)
        )
        state = MjState(
            jnp.asarray(qpos), jnp.asarray(qvel), jnp.asarray(cfrc), jnp.asarray(qpos[:2]), jnp.int32(t)
        )
        np.testing.assert_allclose(fast.global_state(state), pz.state(), rtol=1e-6, atol=1e-6)
        acts = {
            a: rng.uniform(-1, 1, fast.spec.act_space(a).shape).astype(np.float32) for a in fast.spec.agents
        }
        obs, new, rewards, dones, _ = step(
            jax.random.PRNGKey(t), state, {a: jnp.asarray(v) for a, v in acts.items()}
        )
        want_obs, want_r, want_term, _, _ = pz.step(acts)
        for a in fast.spec.agents:
            np.testing.assert_allclose(obs[a], want_obs[a], rtol=1e-4, atol=1e-4)
            assert float(rewards[a]) == pytest.approx(float(want_r[a]), rel=1e-4, abs=1e-3)
            assert bool(dones[a]) == bool(want_term[a])
        falls += int(want_term[fast.spec.agents[0]])
        if want_term[fast.spec.agents[0]]:
            pz.reset(seed=t)
    if robot in UNHEALTHY:
        assert falls >= 1  # the termination was compared where it happens


def test_resets_follow_gymnasium_noise_and_the_time_limit_truncates():
    fast = envs.make("mamujoco/halfcheetah_2x3", simulator="rollout", episode_length=3)
    obs, st = jax.vmap(fast.reset)(jax.random.split(jax.random.PRNGKey(0), 512))
    qpos = np.asarray(st.qpos) - fast.init_qpos
    assert np.abs(qpos).max() <= fast.noise + 1e-6 and qpos.std() == pytest.approx(
        fast.noise / 3**0.5, rel=0.1
    )
    assert np.asarray(st.qvel).std() == pytest.approx(fast.noise, rel=0.1)  # Gaussian, scale 0.1
    acts = {a: jnp.zeros(fast.spec.act_space(a).shape) for a in fast.spec.agents}
    state, done = jax.tree.map(lambda x: x[0], st), []
    for t in range(3):
        _, state, _, dones, info = jax.jit(fast.step_env)(jax.random.PRNGKey(t), state, acts)
        done.append((bool(dones["__all__"]), bool(info["truncated"])))
    assert done == [(False, False), (False, False), (True, True)]


def test_the_default_runs_in_the_jitted_loop_and_a_bad_simulator_is_a_one_line_error():
    fast, host = envs.make("mamujoco/ant_4x2"), envs.make("mamujoco/ant_4x2", simulator="gymnasium")
    assert fast.is_jax and not host.is_jax
    assert fast.spec.description == (
        "MA-MuJoCo Ant 4x2 (Gymnasium-Robotics, mujoco.rollout in the jitted loop)"
    )
    assert host.spec.description == "MA-MuJoCo Ant 4x2 (Gymnasium-Robotics, host-side)"
    with pytest.raises(ConfigError, match="simulator") as err:
        envs.make("mamujoco/halfcheetah_2x3", simulator="mjx")
    assert len(str(err.value).splitlines()) == 1


def test_trains_in_the_jitted_loop_with_vmapped_seeds(tmp_path):
    """IPPO through the runner, two vmapped seeds (one callback advances both seeds' envs): finite
    metrics, different seeds, and no compiled program cached (they hold a Python callback)."""
    import marlow
    from marlow.runtime.program_cache import from_marlow

    task = {"episode_length": 20}
    cfg = marlow.config(
        "ippo", "mamujoco/walker2d_2x3", task, num_seeds=2, num_envs=2, rollout_steps=16, epochs=1,
        num_minibatches=1, hidden=[8, 8], total_steps=128, eval_every=64, eval_episodes=1, progress=False,
        run_dir=str(tmp_path / "run"),
    )  # fmt: skip
    assert not from_marlow(marlow.build(cfg))
    m = marlow.metrics(marlow.train(run_config=cfg))
    returns = np.array([m[s]["eval/team_return"][-1] for s in (0, 1)])
    assert np.all(np.isfinite(returns)) and returns[0] != returns[1]
    assert m[0]["env_steps"][-1] == 128


def test_runs_record_their_simulator_and_older_runs_keep_gymnasium():
    """The task's config writes the simulator into every run's config; a run directory saved before the
    in-loop simulator was the default (no simulator in its task options) ran, and resumes on, the host."""
    import marlow
    from marlow.experiment.config import from_dict

    cfg = marlow.config("ippo", "mamujoco/halfcheetah_2x3")
    assert cfg.experiment.task_options == {"simulator": "rollout"}
    assert marlow.config("ippo", "mamujoco/ant_2x4", {"simulator": "gymnasium"}).experiment.task_options == {
        "simulator": "gymnasium"
    }
    old = {**cfg.to_dict(), "task_options": {"agent_obsk": 0}}
    assert from_dict(old).experiment.task_options == {"agent_obsk": 0, "simulator": "gymnasium"}
    other = marlow.config("ippo", "mpe/simple_spread").to_dict()
    assert from_dict(other).experiment.task_options == {}
