"""Tests of the host-side PettingZoo adapter (marlow.envs.pettingzoo).

Equivalence with the JAX task ``mpe/simple_spread`` (``test_mpe2_matches_jax_simple_spread``): from the same
state and the same discrete actions, mpe2's ``simple_spread_v3`` and JaxMARL's ``SimpleSpreadMPE`` (behind
marlow's ``mpe/simple_spread``) agree on a whole 25-step episode. Reading both implementations:

- observations: same layout ``[vel, pos, landmarks - pos, others - pos (index order), others' comm]``
  (JaxMARL's double ``jnp.roll`` yields the other agents in index order, as mpe2's list filter does);
- physics: same constants (dt 0.1, damping 0.25, accel 5, mass 1, contact force 100, margin 1e-3, agent
  radius 0.15, landmarks do not collide) and the same integration order (position updated with the old
  velocity, then damping and force) and the same discrete action directions;
- reward: both give agent i ``0.5 * (-#other agents colliding with i) + 0.5 * (-sum over landmarks of the
  nearest agent's distance)``; the adapter's ``shared_reward=True`` over one team and marlow's JAX task
  both hand every agent the sum over agents;
- episode length: mpe2 truncates after exactly ``max_cycles`` = 25 steps, like marlow's JAX task (which
  corrects JaxMARL's own 26-step episodes).

The differences that remain are not semantic: mpe2 keeps float64 state where JAX uses float32 (the
episodes agree to ~1e-6, also through collisions; the test uses atol 1e-4), and the two draw initial
states from different generators, so equal seeds do not give equal episodes (the test copies the JAX
state into the mpe2 world instead, and does not compare the states after the auto-reset).
"""

from __future__ import annotations

import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium import spaces as gs
from pettingzoo import ParallelEnv

from marlow.envs import Box, Discrete, MultiDiscrete, make
from marlow.envs.pettingzoo import PettingZooEnv, infer_teams, make_pettingzoo
from marlow.errors import ConfigError

AGENTS3 = ["agent_0", "agent_1", "agent_2"]


def _random_actions(rng, env):
    return {a: int(rng.integers(env.spec.act_space(a).n)) for a in env.spec.agents}


# ---------------------------------------------------------------------------------------------------
# 1. adapter basics on mpe2 simple_spread_v3
# ---------------------------------------------------------------------------------------------------
def test_spec_of_registered_mpe2_simple_spread():
    env = make("pettingzoo/mpe2_simple_spread")
    assert isinstance(env, PettingZooEnv) and env.is_jax is False
    spec = env.spec
    assert spec.name == "pettingzoo/mpe2_simple_spread"
    assert spec.agents == tuple(AGENTS3)
    assert all(spec.obs_dim(a) == 18 for a in AGENTS3)
    assert all(spec.obs_space(a) == Box(-np.inf, np.inf, (18,)) for a in AGENTS3)
    assert all(spec.act_space(a) == Discrete(5) for a in AGENTS3)
    assert spec.teams == (("team", tuple(AGENTS3)),)
    assert spec.shared_reward and spec.episode_length == 25
    env.close()


def test_episode_is_25_steps_then_auto_resets():
    env = make("pettingzoo/mpe2_simple_spread")
    obs = env.reset(seed=0)
    assert set(obs) == set(AGENTS3)
    assert all(o.dtype == np.float32 and o.shape == (18,) for o in obs.values())
    rng = np.random.default_rng(0)
    for t in range(1, 26):
        prev = obs
        obs, rew, dones, infos = env.step(_random_actions(rng, env))
        assert set(dones) == set(AGENTS3) | {"__all__"}
        assert all(isinstance(r, np.float32) for r in rew.values())
        assert len({float(r) for r in rew.values()}) == 1  # shared team reward
        if t < 25:
            assert not any(dones.values()) and infos["truncated"] is False
            for a in AGENTS3:
                np.testing.assert_array_equal(infos["terminal_obs"][a], obs[a])
        assert not np.array_equal(prev["agent_0"], obs["agent_0"])
    assert all(dones.values()) and infos["truncated"] is True
    # obs is the first obs of a fresh episode (agents at rest), terminal_obs the last of the old one
    for a in AGENTS3:
        np.testing.assert_array_equal(obs[a][:2], 0.0)
        assert not np.array_equal(infos["terminal_obs"][a], obs[a])
        assert infos["terminal_obs"][a].dtype == np.float32
    # the next episode runs 25 steps as well
    for t in range(1, 26):
        obs, rew, dones, infos = env.step(_random_actions(rng, env))
        assert dones["__all__"] == (t == 25)
    env.close()


def test_seeding_is_deterministic_across_auto_resets():
    def rollout(seed, steps=60):
        env = make("pettingzoo/mpe2_simple_spread")
        rng = np.random.default_rng(123)
        out = [env.reset(seed=seed)]
        for _ in range(steps):
            obs, rew, _, infos = env.step(_random_actions(rng, env))
            out += [obs, rew, infos["terminal_obs"]]
        env.close()
        return out

    a, b, c = rollout(7), rollout(7), rollout(8)

    def flat(xs):
        return np.concatenate([np.atleast_1d(np.asarray(d[k], np.float64)) for d in xs for k in AGENTS3])

    np.testing.assert_array_equal(flat(a), flat(b))
    assert not np.array_equal(flat(a), flat(c))


def test_task_string_forms_and_inferred_settings():
    env = make("pettingzoo:mpe2.simple_spread_v3", N=2, max_cycles=5)
    assert env.spec.name == "pettingzoo:mpe2.simple_spread_v3"
    assert env.spec.agents == ("agent_0", "agent_1")
    assert env.spec.obs_dim("agent_0") == 12  # vel 2 + pos 2 + 2 landmarks + 1 other + 1 comm
    assert env.spec.episode_length == 5  # read from the env's max_cycles
    assert env.spec.teams == (("agent", ("agent_0", "agent_1")),) and not env.spec.shared_reward
    env.reset(seed=0)
    for _ in range(5):
        _, rew, dones, infos = env.step({"agent_0": 1, "agent_1": np.int64(2)})
    assert dones["__all__"] and infos["truncated"]
    env = make_pettingzoo(
        "pettingzoo:mpe2.simple_spread_v3:parallel_env", continuous_actions=True, shared_reward=True
    )
    assert env.spec.act_space("agent_0") == Box(0.0, 1.0, (5,)) and env.spec.shared_reward
    env.reset(seed=1)
    _, rew, _, _ = env.step({a: np.full(5, 0.5, np.float32) for a in AGENTS3})
    assert len({float(r) for r in rew.values()}) == 1


def test_infer_teams_uses_prefix_before_last_underscore():
    teams = infer_teams(["adversary_0", "adversary_1", "agent_0", "red_team_3", "solo"])
    assert teams == {
        "adversary": ["adversary_0", "adversary_1"],
        "agent": ["agent_0"],
        "red_team": ["red_team_3"],
        "solo": ["solo"],
    }


# ---------------------------------------------------------------------------------------------------
# 2. equivalence with marlow's JAX mpe/simple_spread (see the module docstring)
# ---------------------------------------------------------------------------------------------------
def _copy_jax_state_into_mpe2(pz_env, state):
    world = pz_env.pz_env.unwrapped.world
    pos = np.asarray(state.p_pos, np.float64)
    vel = np.asarray(state.p_vel, np.float64)
    assert len(world.entities) == pos.shape[0]  # agents then landmarks, as in JaxMARL's p_pos
    for i, entity in enumerate(world.entities):
        entity.state.p_pos = pos[i].copy()
        entity.state.p_vel = vel[i].copy()
    for i, agent in enumerate(world.agents):
        agent.state.c = np.asarray(state.c[i], np.float64).copy()


@pytest.fixture(scope="module")
def jax_spread():
    jenv = make("mpe/simple_spread")
    obs, state = jenv.reset(jax.random.PRNGKey(3))
    return jenv, jax.jit(jenv.step), obs, state


@pytest.mark.parametrize("start", ["reset", "crowded"])
def test_mpe2_matches_jax_simple_spread(start, jax_spread):
    jenv, step, jobs, state = jax_spread
    penv = make("pettingzoo/mpe2_simple_spread")
    assert jenv.spec.agents == penv.spec.agents
    assert [jenv.spec.obs_dim(a) for a in AGENTS3] == [penv.spec.obs_dim(a) for a in AGENTS3]
    assert jenv.spec.act_spaces == penv.spec.act_spaces
    assert jenv.spec.episode_length == penv.spec.episode_length == 25

    if start == "crowded":  # agents 0 and 1 overlap (radius 0.15 each) so contact forces and penalties act
        p_pos = np.array(state.p_pos)
        p_pos[:3] = [[0.0, 0.0], [0.12, 0.05], [0.2, -0.1]]
        state = state.replace(p_pos=jnp.asarray(p_pos))
    penv.reset(seed=0)
    _copy_jax_state_into_mpe2(penv, state)
    if start == "reset":  # mpe2's observation of the copied state is JaxMARL's
        for a in AGENTS3:
            np.testing.assert_allclose(penv.pz_env.unwrapped.observe(a), jobs[a], atol=1e-6)

    rng = np.random.default_rng(42)
    keys = jax.random.split(jax.random.PRNGKey(0), 25)
    collisions = 0
    for t in range(1, 26):
        acts = _random_actions(rng, penv)
        jobs, state, jrew, jdones, jinfos = step(
            keys[t - 1], state, {a: jnp.int32(v) for a, v in acts.items()}
        )
        pobs, prew, pdones, pinfos = penv.step(acts)
        for a in AGENTS3:  # terminal_obs == obs mid-episode, the last obs at the end, in both APIs
            np.testing.assert_allclose(pinfos["terminal_obs"][a], jinfos["terminal_obs"][a], atol=1e-4)
            np.testing.assert_allclose(prew[a], float(jrew[a]), atol=1e-4)
        assert {k: bool(v) for k, v in jdones.items()} == pdones
        assert bool(jinfos["truncated"]) == pinfos["truncated"] == (t == 25)
        if t < 25:
            for a in AGENTS3:
                np.testing.assert_allclose(pobs[a], jobs[a], atol=1e-4)
            # shared reward = 1.5 * global - 0.5 * total collisions (local_ratio 0.5, summed over 3 agents)
            pos = np.asarray(state.p_pos, np.float64)
            glob = -sum(np.linalg.norm(pos[:3] - lm, axis=1).min() for lm in pos[3:])
            collisions += round((1.5 * glob - float(jrew["agent_0"])) / 0.5)
    if start == "crowded":
        assert collisions > 0  # the collision penalty was exercised and agreed
    penv.close()


# ---------------------------------------------------------------------------------------------------
# 3. error cases
# ---------------------------------------------------------------------------------------------------
class ToyParallelEnv(ParallelEnv):
    """2 agents with Box actions; each agent leaves after ``end_steps[agent]`` steps (terminated, or
    truncated when ``truncate``). Observations are filled with ``10 * agent index + step + 1``."""

    metadata = {"name": "toy_v0"}

    def __init__(self, end_steps=None, truncate=False, obs_spaces=None, act_spaces=None):
        self.possible_agents = ["red_0", "blue_0"]
        self.end_steps = end_steps or {"red_0": 2, "blue_0": 4}
        self.truncate = truncate
        self._obs_spaces = obs_spaces or {a: gs.Box(-100, 100, (2, 2)) for a in self.possible_agents}
        box = gs.Box(-1.0, 1.0, (2,), np.float32)
        self._act_spaces = act_spaces or {a: box for a in self.possible_agents}
        self.received = []
        self.seeds = []

    def observation_space(self, agent):
        return self._obs_spaces[agent]

    def action_space(self, agent):
        return self._act_spaces[agent]

    def _obs(self, agent):
        return np.full((2, 2), 10 * self.possible_agents.index(agent) + self.t + 1, np.float64)

    def reset(self, seed=None, options=None):
        self.seeds.append(seed)
        self.agents = list(self.possible_agents)
        self.t = 0
        return {a: self._obs(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents), (sorted(actions), self.agents)
        for a, act in actions.items():
            assert self.action_space(a).contains(act), (a, act)
        self.received.append(actions)
        self.t += 1
        obs = {a: self._obs(a) for a in self.agents}
        rew = {a: float(np.sum(actions[a])) + 1.0 for a in self.agents}
        ended = {a: self.t >= self.end_steps[a] for a in self.agents}
        term = {a: ended[a] and not self.truncate for a in self.agents}
        trunc = {a: ended[a] and self.truncate for a in self.agents}
        infos = {a: {"t": self.t} for a in self.agents}
        self.agents = [a for a in self.agents if not ended[a]]
        return obs, rew, term, trunc, infos


@pytest.fixture
def fake_module(monkeypatch):
    mod = types.ModuleType("marlow_fake_pz_module")
    mod.parallel_env = ToyParallelEnv
    mod.aec_env = lambda: __import__("mpe2.simple_spread_v3", fromlist=["env"]).env()
    mod.not_an_env = lambda: 42
    mod.not_callable = 3
    mod.dict_obs = lambda: ToyParallelEnv(obs_spaces={"red_0": gs.Dict({"x": gs.Discrete(2)}),
                                                      "blue_0": gs.Box(0, 1, (2,))})  # fmt: skip
    mod.tuple_act = lambda: ToyParallelEnv(act_spaces={"red_0": gs.Box(0, 1, (2,)),
                                                       "blue_0": gs.Tuple([gs.Discrete(2)])})  # fmt: skip
    mod.shifted_discrete = lambda: ToyParallelEnv(act_spaces={"red_0": gs.Discrete(3, start=1),
                                                              "blue_0": gs.Discrete(3)})  # fmt: skip
    monkeypatch.setitem(sys.modules, "marlow_fake_pz_module", mod)
    return "pettingzoo:marlow_fake_pz_module"


def test_import_and_factory_errors(fake_module):
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_xyz'"):
        make("pettingzoo:no_such_module_xyz")
    with pytest.raises(ConfigError, match="has no attribute 'missing'"):
        make(fake_module + ":missing")
    with pytest.raises(ConfigError, match="not callable"):
        make(fake_module + ":not_callable")
    with pytest.raises(ConfigError, match="returned int, not a PettingZoo ParallelEnv"):
        make(fake_module + ":not_an_env")
    with pytest.raises(ConfigError, match="not a PettingZoo ParallelEnv"):
        make(fake_module + ":aec_env")
    with pytest.raises(ConfigError, match="bad arguments"):
        make(fake_module, no_such_argument=1)
    for bad in ("pettingzoo:", "pettingzoo:a:b:c", "pettingzoo:mod:"):
        with pytest.raises(ConfigError, match="bad PettingZoo task"):
            make(bad)
    with pytest.raises(ConfigError, match="partition"):
        make(fake_module, episode_length=4, teams={"all": ["red_0"]})
    with pytest.raises(ConfigError, match="episode_length"):
        make(fake_module)  # the toy env has no max_cycles-like attribute
    with pytest.raises(ConfigError) as err:
        make("pettingzoo:no_such_module_xyz")
    assert len(str(err.value).splitlines()) == 1


def test_unsupported_spaces(fake_module):
    with pytest.raises(ValueError, match=r"agent 'red_0': unsupported observation space Dict"):
        make(fake_module + ":dict_obs", episode_length=4)
    with pytest.raises(ValueError, match=r"agent 'blue_0': unsupported action space Tuple"):
        make(fake_module + ":tuple_act", episode_length=4)
    with pytest.raises(ValueError, match=r"agent 'red_0'.*nonzero start"):
        make(fake_module + ":shifted_discrete", episode_length=4)
    with pytest.raises(ConfigError):  # also a ConfigError, so the CLI prints one line
        make(fake_module + ":dict_obs", episode_length=4)


def test_discrete_observations_are_one_hot_and_multidiscrete_actions_pass_through():
    toy = ToyParallelEnv(
        obs_spaces={"red_0": gs.Discrete(3), "blue_0": gs.MultiDiscrete([2, 3])},
        act_spaces={"red_0": gs.MultiDiscrete([5, 3]), "blue_0": gs.Discrete(4)},
    )
    toy._obs = lambda a: 1 if a == "red_0" else np.array([1, 2])
    env = PettingZooEnv(toy, name="toy", episode_length=10)
    assert env.spec.obs_space("red_0") == Box(0.0, 1.0, (3,)) and env.spec.obs_dim("blue_0") == 5
    assert env.spec.act_space("red_0") == MultiDiscrete((5, 3))
    assert env.spec.act_space("blue_0") == Discrete(4)
    obs = env.reset(seed=0)
    np.testing.assert_array_equal(obs["red_0"], [0, 1, 0])
    np.testing.assert_array_equal(obs["blue_0"], [0, 1, 0, 0, 1])
    env.step({"red_0": jnp.array([4, 2], jnp.int32), "blue_0": jnp.int32(3)})
    sent = toy.received[-1]
    assert isinstance(sent["blue_0"], int) and sent["blue_0"] == 3
    np.testing.assert_array_equal(sent["red_0"], [4, 2])


# ---------------------------------------------------------------------------------------------------
# 4. agents leaving early, termination vs truncation, time limit, seeds
# ---------------------------------------------------------------------------------------------------
def _box_actions(v=0.25):
    return {a: np.full(2, v, np.float32) for a in ("red_0", "blue_0")}


def test_departed_agent_gets_zeros_and_termination_is_not_truncation():
    toy = ToyParallelEnv()  # red_0 terminates after 2 steps, blue_0 after 4
    env = PettingZooEnv(toy, name="toy", episode_length=10)
    assert env.spec.teams == (("red", ("red_0",)), ("blue", ("blue_0",)))
    assert env.spec.obs_space("red_0") == Box(-np.inf, np.inf, (4,))
    assert env.spec.act_space("red_0") == Box(-1.0, 1.0, (2,))
    obs = env.reset(seed=5)
    np.testing.assert_array_equal(obs["red_0"], np.full(4, 1.0))

    obs, rew, dones, infos = env.step(_box_actions())
    assert not any(dones.values())
    assert rew == {"red_0": np.float32(1.5), "blue_0": np.float32(1.5)}
    assert infos["agent_infos"]["red_0"] == {"t": 1}

    obs, rew, dones, infos = env.step(_box_actions())  # red_0 leaves: real last obs, its reward, done
    np.testing.assert_array_equal(obs["red_0"], np.full(4, 3.0))
    assert rew["red_0"] == np.float32(1.5)
    assert dones == {"red_0": True, "blue_0": False, "__all__": False} and infos["truncated"] is False

    obs, rew, dones, infos = env.step(_box_actions())  # red_0 gone: zeros, 0, done; no action forwarded
    assert set(toy.received[-1]) == {"blue_0"}
    np.testing.assert_array_equal(obs["red_0"], np.zeros(4))
    np.testing.assert_array_equal(obs["blue_0"], np.full(4, 14.0))
    assert rew["red_0"] == 0.0 and rew["blue_0"] == np.float32(1.5)
    assert dones == {"red_0": True, "blue_0": False, "__all__": False}

    obs, rew, dones, infos = env.step({"blue_0": np.array([0.5, 0.5])})  # a red_0 action may be omitted
    assert all(dones.values()) and infos["truncated"] is False  # ended by termination
    np.testing.assert_array_equal(infos["terminal_obs"]["red_0"], np.zeros(4))
    np.testing.assert_array_equal(infos["terminal_obs"]["blue_0"], np.full(4, 15.0))
    assert rew == {"red_0": np.float32(0.0), "blue_0": np.float32(2.0)}
    # auto-reset: both agents back, with a seed drawn from the generator seeded at reset
    np.testing.assert_array_equal(obs["red_0"], np.full(4, 1.0))
    np.testing.assert_array_equal(obs["blue_0"], np.full(4, 11.0))
    assert len(toy.seeds) == 2 and all(isinstance(s, int) for s in toy.seeds)
    obs, rew, dones, infos = env.step(_box_actions())
    assert not any(dones.values()) and set(toy.received[-1]) == {"red_0", "blue_0"}

    env2 = PettingZooEnv(ToyParallelEnv(), name="toy", episode_length=10)
    env2.reset(seed=5)
    for _ in range(4):
        env2.step(_box_actions())
    assert env2.pz_env.seeds == toy.seeds


def test_truncation_and_adapter_time_limit():
    env = PettingZooEnv(ToyParallelEnv(truncate=True), name="toy", episode_length=10)
    env.reset(seed=0)
    for _ in range(3):
        _, _, dones, infos = env.step(_box_actions())
        assert not dones["__all__"] and infos["truncated"] is False
    _, _, dones, infos = env.step(_box_actions())
    assert dones["__all__"] and infos["truncated"] is True

    # episode_length given explicitly is enforced by the adapter as a time limit
    env = PettingZooEnv(ToyParallelEnv(end_steps={"red_0": 2, "blue_0": 99}), name="toy", episode_length=3)
    env.reset(seed=0)
    for t in range(1, 7):
        _, _, dones, infos = env.step(_box_actions())
        assert dones["__all__"] == (t % 3 == 0) and infos["truncated"] == (t % 3 == 0)
        assert dones["red_0"] == (t % 3 != 1)


def test_shared_reward_sums_over_team_with_departed_agents_counting_zero():
    env = PettingZooEnv(
        ToyParallelEnv(), name="toy", teams={"all": ["red_0", "blue_0"]}, shared_reward=True, episode_length=9
    )
    env.reset(seed=0)
    _, rew, _, _ = env.step({"red_0": np.array([0.5, 0.5]), "blue_0": np.array([-1.0, 0.0])})
    assert rew == {"red_0": np.float32(2.0 + 0.0), "blue_0": np.float32(2.0)}
    env.step(_box_actions())
    _, rew, _, _ = env.step(_box_actions())  # red_0 departed: the team reward is blue_0's alone
    assert rew == {"red_0": np.float32(1.5), "blue_0": np.float32(1.5)}


def test_step_before_reset_raises():
    env = PettingZooEnv(ToyParallelEnv(), name="toy", episode_length=4)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(_box_actions())


class BrokenStateEnv(ToyParallelEnv):
    def state(self):
        raise RuntimeError("boom")


def test_a_state_that_fails_is_said_not_swallowed(monkeypatch):
    """An env whose state() raises (before and after a first reset) runs without a global state, and the
    user is told why (MAPPO's and HAPPO's critics then see the joint observation)."""
    mod = types.ModuleType("marlow_fake_pz_broken_state")
    mod.parallel_env = BrokenStateEnv
    monkeypatch.setitem(sys.modules, "marlow_fake_pz_broken_state", mod)
    with pytest.warns(
        UserWarning, match=r"BrokenStateEnv.state\(\) raised RuntimeError: boom; .*joint observation"
    ):
        env = make("pettingzoo:marlow_fake_pz_broken_state", episode_length=4)
    assert env.spec.global_state_dim is None
    env.close()
