"""MA-MuJoCo tasks on the host-side adapter (marlow.envs.mamujoco, ``task.simulator=gymnasium``: the
reference the default in-loop simulator is tested against in tests/test_envs_mamujoco_rollout.py) and the
PettingZoo adapter features they use (global state, rewards given shared by the env, available actions),
plus one tiny IPPO run through the host loop.

Ground truth for the physics and rewards is the single-agent Gymnasium env the task factorises
(``HalfCheetah-v5`` ...): started from the same MuJoCo state and driven with the same joint action, it must
give every agent's reward and the global state.
"""

from __future__ import annotations

import gymnasium
import mujoco
import numpy as np
import pytest
from gymnasium import spaces as gs
from pettingzoo import ParallelEnv

from marlow import envs
from marlow.envs import Box, Discrete
from marlow.envs.mamujoco import CUSTOM_PARTITIONS, TASKS, mujoco_compiler_warnings, partition
from marlow.envs.pettingzoo import PettingZooEnv
from marlow.errors import ConfigError

# task -> (obs per agent with agent_obsk 1, with 0, actions per agent, global state)
SIZES = {
    "halfcheetah_2x3": ([12, 12], [11, 11], 3, 17),
    "halfcheetah_3x2": ([10, 12, 11], [9, 9, 9], 2, 17),
    "ant_2x4": ([63, 63], [61, 61], 4, 105),
    "ant_4x2": ([42] * 4, [39] * 4, 2, 105),
    "walker2d_2x3": ([12, 12], [11, 11], 3, 17),
    "walker2d_3x2": ([10, 12, 11], [9, 9, 9], 2, 17),
}


def make(task: str, **options):
    """``envs.make``, with MA-MuJoCo tasks on the host-side adapter this file tests."""
    if task.startswith("mamujoco/"):
        options.setdefault("simulator", "gymnasium")
    return envs.make(task, **options)


def _mj(env: PettingZooEnv):
    """The single-agent MuJoCo env (unwrapped) behind a task."""
    pz = env.pz_env
    return getattr(pz, "env", pz).single_agent_env.unwrapped


def _random(rng, env, scale=1.0):
    return {
        a: rng.uniform(-scale, scale, env.spec.act_space(a).shape).astype(np.float32) for a in env.spec.agents
    }


# ---------------------------------------------------------------------------------------------------
# specs and partitions
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", sorted(TASKS))
def test_spec_sizes(task):
    obs1, obs0, act, state = SIZES[task]
    env = make(f"mamujoco/{task}")
    spec = env.spec
    assert isinstance(env, PettingZooEnv) and env.is_jax is False
    assert spec.agents == tuple(f"agent_{i}" for i in range(len(obs1)))
    assert [spec.obs_dim(a) for a in spec.agents] == obs1
    assert all(spec.act_space(a) == Box(-1.0, 1.0, (act,)) for a in spec.agents)
    assert spec.global_state_dim == state and spec.episode_length == 1000
    assert spec.teams == (("team", spec.agents),) and spec.shared_reward and not spec.action_masks
    assert spec.description.startswith("MA-MuJoCo") and env.avail_actions() == {}
    assert [make(f"mamujoco/{task}", agent_obsk=0).spec.obs_dim(a) for a in spec.agents] == obs0
    full = make(f"mamujoco/{task}", full_obs=True)
    assert all(full.spec.obs_dim(a) == state + len(obs1) for a in spec.agents)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_partition_drives_every_actuator_exactly_once(task):
    scenario, conf = TASKS[task]
    env = make(f"mamujoco/{task}")
    parts = env.pz_env.agent_action_partitions
    assert tuple(tuple(n.label for n in p) for p in parts) == partition(scenario, conf)
    model = _mj(env).model
    act_ids = sorted(n.act_ids for p in parts for n in p)
    assert act_ids == list(range(model.nu))
    for p in parts:
        if (scenario, conf) in CUSTOM_PARTITIONS:  # ours list an agent's actions in actuator order
            assert [n.act_ids for n in p] == sorted(n.act_ids for n in p)
        for n in p:  # the node's qpos index is the position of the joint its actuator drives
            joint = model.actuator_trnid[n.act_ids, 0]
            assert model.jnt_qposadr[joint] == model.nq + n.qpos_ids, (task, n.label)
            assert model.jnt_dofadr[joint] == model.nv + n.qvel_ids, (task, n.label)
            if scenario != "Ant":  # Ant's XML joints are hip_1 ... where the graph says hip1
                assert model.joint(joint).name == n.label


def test_custom_partitions_are_the_documented_ones():
    assert partition("HalfCheetah", "3x2") == (("bshin", "bfoot"), ("bthigh", "ffoot"), ("fthigh", "fshin"))
    assert partition("Walker2d", "3x2") == (
        ("leg_joint", "foot_joint"),
        ("thigh_joint", "foot_left_joint"),
        ("thigh_left_joint", "leg_left_joint"),
    )
    assert set(CUSTOM_PARTITIONS) == {("HalfCheetah", "3x2"), ("Walker2d", "3x2")}
    assert partition("HalfCheetah", "2x3") == (("bthigh", "bshin", "bfoot"), ("fthigh", "fshin", "ffoot"))


@pytest.mark.parametrize("task", ["halfcheetah_3x2", "walker2d_3x2", "ant_4x2"])
def test_each_agents_action_reaches_only_its_joints(task):
    env = make(f"mamujoco/{task}")
    mj = _mj(env)
    labels = partition(*TASKS[task])
    env.reset(seed=0)
    for i, agent in enumerate(env.spec.agents):
        actions = {a: np.zeros(env.spec.act_space(a).shape, np.float32) for a in env.spec.agents}
        actions[agent] = np.linspace(0.3, 0.6, actions[agent].size).astype(np.float32)
        env.step(actions)
        ctrl = np.array(mj.data.ctrl)
        driven = np.flatnonzero(ctrl)
        assert len(driven) == len(labels[i])
        np.testing.assert_allclose(ctrl[driven], actions[agent], rtol=1e-6)
        names = [mj.model.joint(mj.model.actuator_trnid[k, 0]).name.replace("_", "") for k in driven]
        assert names == [lab.replace("_", "") for lab in labels[i]]


# ---------------------------------------------------------------------------------------------------
# rewards, global state, episodes
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["halfcheetah_3x2", "walker2d_2x3", "ant_2x4"])
def test_rewards_and_state_equal_the_single_agent_env(task):
    scenario, _ = TASKS[task]
    env = make(f"mamujoco/{task}")
    with mujoco_compiler_warnings():  # no MUJOCO_LOG.TXT for HalfCheetah's deprecated settotalmass
        single = gymnasium.make(f"{scenario}-v5")
    single.reset(seed=0)
    env.reset(seed=3)
    mj = _mj(env)
    mujoco.mj_copyData(single.unwrapped.data, mj.model, mj.data)  # the same state, warm start included
    rng = np.random.default_rng(0)
    for _ in range(30):
        actions = _random(rng, env, 0.5)
        joint = env.pz_env.map_local_actions_to_global_action(actions)
        obs_1, r_1, term_1, _, _ = single.step(joint)
        _, rewards, dones, infos = env.step(actions)
        assert set(rewards.values()) == {np.float32(r_1)}  # the same reward, not summed over agents
        np.testing.assert_allclose(infos["terminal_global_state"], obs_1.astype(np.float32), rtol=1e-6)
        if dones["__all__"]:
            assert term_1 and not infos["truncated"]
            break
    single.close()


def test_global_state_and_terminal_global_state():
    env = make("mamujoco/halfcheetah_2x3", episode_length=5)
    env.reset(seed=1)
    s = env.global_state()
    assert s.dtype == np.float32 and s.shape == (17,)
    np.testing.assert_array_equal(s, np.asarray(env.pz_env.state(), np.float32))
    rng = np.random.default_rng(0)
    for t in range(1, 6):
        _, _, dones, infos = env.step(_random(rng, env))
        if t < 5:  # mid-episode: the state reached is the current state
            assert not dones["__all__"]
            np.testing.assert_array_equal(infos["terminal_global_state"], env.global_state())
    assert dones["__all__"] and infos["truncated"]
    first = env.global_state()  # the auto-reset's first state; the terminal one is the old episode's
    assert not np.allclose(infos["terminal_global_state"], first)
    np.testing.assert_array_equal(first, np.asarray(env.pz_env.state(), np.float32))
    assert np.abs(first).max() < 0.5  # a fresh start: small noise around the initial pose, at rest

    full = make("mamujoco/halfcheetah_2x3", full_obs=True, episode_length=3)
    obs = full.reset(seed=0)
    np.testing.assert_allclose(obs["agent_1"], np.r_[full.global_state(), 0.0, 1.0], rtol=1e-6)
    for _ in range(3):
        obs, _, dones, infos = full.step(_random(rng, full))
    assert dones["__all__"]
    for i, a in enumerate(full.spec.agents):
        np.testing.assert_allclose(infos["terminal_obs"][a][:17], infos["terminal_global_state"], rtol=1e-6)
        np.testing.assert_allclose(obs[a][:17], full.global_state(), rtol=1e-6)
        assert obs[a][17 + i] == 1.0


def test_episodes_truncate_at_1000_steps_or_the_override():
    env = make("mamujoco/halfcheetah_2x3")
    env.reset(seed=0)
    zero = {a: np.zeros(3, np.float32) for a in env.spec.agents}
    for t in range(1, 1001):
        _, _, dones, infos = env.step(zero)
        assert dones["__all__"] == (t == 1000)
    assert infos["truncated"] is True
    env = make("mamujoco/walker2d_3x2", episode_length=7)
    assert env.spec.episode_length == 7
    env.reset(seed=0)
    for t in range(1, 15):
        _, _, dones, infos = env.step({a: np.zeros(2, np.float32) for a in env.spec.agents})
        assert dones["__all__"] == (t % 7 == 0) and infos["truncated"] == (t % 7 == 0)


def test_walker_falls_by_termination_not_truncation():
    env = make("mamujoco/walker2d_2x3")
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    steps = 0
    while steps < 1000:
        _, _, dones, infos = env.step(_random(rng, env))
        steps += 1
        if dones["__all__"]:
            break
    assert steps < 1000 and infos["truncated"] is False  # random torques topple it long before the limit


def test_task_options_and_errors(tmp_path, monkeypatch):
    assert make("mamujoco/halfcheetah_2x3", agent_obsk="0").spec.obs_dim("agent_0") == 11  # CLI-style text
    assert make("mamujoco/halfcheetah_2x3", agent_obsk=2).spec.obs_dim("agent_0") == 13
    assert make("mamujoco/halfcheetah_2x3", full_obs="true").spec.obs_dim("agent_0") == 19
    for bad in ({"agent_obsk": -1}, {"agent_obsk": "x"}, {"episode_length": 0}, {"full_obs": "maybe"}):
        with pytest.raises(ConfigError) as err:
            make("mamujoco/halfcheetah_2x3", **bad)
        assert len(str(err.value).splitlines()) == 1 and next(iter(bad)) in str(err.value)
    with pytest.raises(ConfigError, match="bad arguments"):
        make("mamujoco/ant_2x4", no_such_option=1)
    # MuJoCo's model-compiler notice goes nowhere: no MUJOCO_LOG.TXT in the working directory
    monkeypatch.chdir(tmp_path)
    make("mamujoco/halfcheetah_3x2").reset(seed=0)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------
# adapter features on a tiny fake ParallelEnv
# ---------------------------------------------------------------------------------------------------
class StateEnv(ParallelEnv):
    """Two agents (one Discrete, one Box); ``state()`` = [t, seed % 1000]; rewards ``rewards(t)``; 3-step
    episodes ended by truncation."""

    metadata = {"name": "state_env"}

    def __init__(self, rewards=lambda t: {"a_0": 1.0, "a_1": 1.0}, with_state=True, state_space=False):
        self.possible_agents = ["a_0", "a_1"]
        self.agents = []
        self._rewards, self._with_state = rewards, with_state
        if state_space:
            self.state_space = gs.Box(-np.inf, np.inf, (1, 2))
        self.t, self.seed = 0, -1

    def observation_space(self, agent):
        return gs.Box(-1, 1, (1,))

    def action_space(self, agent):
        return gs.Discrete(3) if agent == "a_0" else gs.Box(-1, 1, (2,))

    def reset(self, seed=None, options=None):
        self.agents, self.t, self.seed = list(self.possible_agents), 0, seed
        return {a: np.zeros(1) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        end = self.t >= 3
        out = {a: np.full(1, self.t) for a in self.agents}
        rew = self._rewards(self.t)
        done = {a: False for a in self.agents}
        trunc = {a: end for a in self.agents}
        if end:
            self.agents = []
        return out, rew, done, trunc, {a: {} for a in out}

    def state(self):
        if not self._with_state:
            return super().state()
        return np.array([self.t, self.seed % 1000], np.float64)


def _acts():
    return {"a_0": 1, "a_1": np.zeros(2, np.float32)}


@pytest.mark.parametrize("state_space", [False, True])
def test_adapter_global_state_on_a_fake_env(state_space):
    env = PettingZooEnv(StateEnv(state_space=state_space), name="fake", episode_length=3)
    assert env.spec.global_state_dim == 2
    env.reset(seed=0)
    seed = env.pz_env.seed % 1000
    np.testing.assert_array_equal(env.global_state(), [0, seed])
    assert env.global_state().dtype == np.float32
    for t in (1, 2):
        _, _, _, infos = env.step(_acts())
        np.testing.assert_array_equal(infos["terminal_global_state"], [t, seed])
        np.testing.assert_array_equal(env.global_state(), [t, seed])
    _, _, dones, infos = env.step(_acts())
    assert dones["__all__"] and infos["truncated"]
    np.testing.assert_array_equal(infos["terminal_global_state"], [3, seed])  # before the auto-reset
    np.testing.assert_array_equal(env.global_state(), [0, env.pz_env.seed % 1000])  # the new episode's
    assert env.pz_env.seed % 1000 != seed


def test_adapter_without_state_and_avail_actions():
    env = PettingZooEnv(StateEnv(with_state=False), name="fake", episode_length=3)
    assert env.spec.global_state_dim is None
    env.reset(seed=0)
    _, _, _, infos = env.step(_acts())
    assert "terminal_global_state" not in infos
    with pytest.raises(ConfigError, match="no global state") as err:
        env.global_state()
    assert len(str(err.value).splitlines()) == 1
    masks = env.avail_actions()
    assert set(masks) == {"a_0"} and env.spec.act_space("a_0") == Discrete(3)  # Box agents are not listed
    assert (
        masks["a_0"].dtype == np.bool_ and masks["a_0"].tolist() == [True] * 3 and not env.spec.action_masks
    )
    masks["a_0"][:] = False  # a copy
    assert env.avail_actions()["a_0"].all()


def test_team_reward_given_sum_individual():
    team = {"t": ["a_0", "a_1"]}
    given = PettingZooEnv(StateEnv(), name="fake", teams=team, team_reward="given", episode_length=3)
    summed = PettingZooEnv(StateEnv(), name="fake", teams=team, team_reward="sum", episode_length=3)
    legacy = PettingZooEnv(StateEnv(), name="fake", teams=team, shared_reward=True, episode_length=3)
    own = PettingZooEnv(StateEnv(), name="fake", teams=team, episode_length=3)
    assert given.spec.shared_reward and summed.spec.shared_reward and legacy.spec.shared_reward
    assert not own.spec.shared_reward and own.team_reward == "individual" and legacy.team_reward == "sum"
    for env, r in ((given, 1.0), (summed, 2.0), (legacy, 2.0), (own, 1.0)):
        env.reset(seed=0)
        _, rew, _, _ = env.step(_acts())
        assert rew == {"a_0": np.float32(r), "a_1": np.float32(r)}

    unequal = PettingZooEnv(
        StateEnv(rewards=lambda t: {"a_0": 1.0, "a_1": 1.0 if t < 2 else 2.0}),
        name="fake",
        teams=team,
        team_reward="given",
        episode_length=3,
    )
    unequal.reset(seed=0)
    unequal.step(_acts())
    with pytest.raises(ConfigError, match="different rewards"):
        unequal.step(_acts())
    with pytest.raises(ConfigError, match="team_reward' must be one of"):
        PettingZooEnv(StateEnv(), name="fake", team_reward="mean", episode_length=3)
    with pytest.raises(ConfigError, match="conflicts"):
        PettingZooEnv(StateEnv(), name="fake", shared_reward=True, team_reward="given", episode_length=3)


def test_mpe2_gets_its_global_state():
    env = make("pettingzoo/mpe2_simple_spread")
    assert env.spec.global_state_dim == 54 and env.team_reward == "sum"
    obs = env.reset(seed=0)
    np.testing.assert_array_equal(env.global_state(), np.concatenate([obs[a] for a in env.spec.agents]))
    env.close()


# ---------------------------------------------------------------------------------------------------
# end to end: IPPO through the host loop
# ---------------------------------------------------------------------------------------------------
def test_ippo_trains_on_halfcheetah_2x3(tmp_path):
    from marlow.experiment.config import resolve
    from marlow.runtime.loggers import read_metrics
    from marlow.runtime.runner import train

    args = [
        "algo=ippo",
        "task=mamujoco/halfcheetah_2x3",
        "task.simulator=gymnasium",
        "hidden=16,16",
        "num_envs=2",
        "rollout_steps=25",
        "epochs=1",
        "num_minibatches=1",
        "eval_every=100",
        "total_steps=200",
        "eval_episodes=1",
        "progress=false",
        f"run_dir={tmp_path / 'run'}",
    ]
    m = read_metrics(train(resolve(args)))
    assert list(m[0]["env_steps"]) == [0, 100, 200]
    for k in ("loss/policy_loss", "loss/value_loss"):
        assert np.isfinite(m[0][k][1:]).all(), k
    assert np.isfinite(m[0]["eval/team_return"]).all()
