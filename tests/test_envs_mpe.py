"""Tests of the MPE tasks (marlow.envs.mpe): spaces, jit/vmap, 25-step episodes, reward conventions,
the scheduling task and restarting from stored states."""

from __future__ import annotations

from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow import envs
from marlow.envs import mpe
from marlow.envs.api import MultiAgentEnv, random_actions
from marlow.envs.spaces import Box, Discrete, MultiDiscrete
from marlow.errors import ConfigError

FACTORIES = {
    "mpe/simple_spread": mpe.simple_spread,
    "mpe/simple_speaker_listener": mpe.simple_speaker_listener,
    "mpe/simple_push": mpe.simple_push,
    "mpe/simple_adversary": mpe.simple_adversary,
    "mpe/simple_tag": mpe.simple_tag,
    "mpe/simple_schedule": mpe.simple_schedule,
}

# name -> ({agent: (action space, obs dim)}, teams, shared_reward)
TABLE = {
    "mpe/simple_spread": (
        {f"agent_{i}": (Discrete(5), 18) for i in range(3)},
        (("team", ("agent_0", "agent_1", "agent_2")),),
        True,
    ),
    "mpe/simple_speaker_listener": (
        {"speaker_0": (Discrete(3), 3), "listener_0": (Discrete(5), 11)},
        (("team", ("speaker_0", "listener_0")),),
        True,
    ),
    "mpe/simple_push": (
        {"adversary_0": (Discrete(5), 8), "agent_0": (Discrete(5), 19)},
        (("adversary", ("adversary_0",)), ("agent", ("agent_0",))),
        False,
    ),
    "mpe/simple_adversary": (
        {"adversary_0": (Discrete(5), 8), "agent_0": (Discrete(5), 10), "agent_1": (Discrete(5), 10)},
        (("adversary", ("adversary_0",)), ("agent", ("agent_0", "agent_1"))),
        False,
    ),
    "mpe/simple_tag": (
        {**{f"adversary_{i}": (Discrete(5), 16) for i in range(3)}, "agent_0": (Discrete(5), 14)},
        (("adversary", ("adversary_0", "adversary_1", "adversary_2")), ("agent", ("agent_0",))),
        False,
    ),
    "mpe/simple_schedule": (
        {
            "agent_0": (MultiDiscrete((5, 3, 3)), 20),
            "agent_1": (Discrete(5), 15),
            "agent_2": (Discrete(5), 15),
        },
        (("team", ("agent_0", "agent_1", "agent_2")),),
        True,
    ),
}

NUM_ENVS = 8
T = mpe.EPISODE_LENGTH


@cache
def get_env(name: str) -> MultiAgentEnv:
    """One env object per task, so jitted functions keyed on it are compiled once per session."""
    return FACTORIES[name]()


@cache
def jit_step(name: str):
    return jax.jit(get_env(name).step)


def _state_from(env: mpe.SimpleScheduleMPE, p_pos, goal, p_vel=None):
    """A scheduling state with given positions (agents then landmarks) and goals."""
    _, state = env.reset(jax.random.PRNGKey(0))
    p_pos = jnp.asarray(p_pos, jnp.float32)
    p_vel = jnp.zeros_like(p_pos) if p_vel is None else jnp.asarray(p_vel, jnp.float32)
    return state.replace(p_pos=p_pos, p_vel=p_vel, goal=jnp.asarray(goal, jnp.int32))


def _noop(env: MultiAgentEnv) -> dict[str, jax.Array]:
    return {a: jnp.zeros(s.shape, jnp.int32) for a, s in zip(env.agents, env.spec.act_spaces, strict=True)}


# ---- spaces, spec, registry -------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FACTORIES))
def test_spec_matches_table(name):
    env = get_env(name)
    agents, teams, shared = TABLE[name]
    spec = env.spec
    assert spec.name == name
    assert spec.episode_length == 25
    assert spec.agents == tuple(agents)
    assert spec.teams == teams
    assert spec.shared_reward is shared
    for agent, (act_space, obs_dim) in agents.items():
        assert spec.act_space(agent) == act_space
        obs_space = spec.obs_space(agent)
        assert isinstance(obs_space, Box) and obs_space.shape == (obs_dim,)
        assert obs_space.low == -np.inf and obs_space.high == np.inf


def test_registered_via_make():
    from marlow.envs.registry import make, task_names

    assert set(FACTORIES) <= set(task_names())
    env = make("mpe/simple_spread")
    assert isinstance(env, mpe.JaxMARLMPE) and env.spec.name == "mpe/simple_spread"


def test_max_steps_refused():
    with pytest.raises(TypeError):
        mpe.simple_spread(max_steps=25)


# ---- jit + vmap rollouts: exactly 25 steps, auto-reset, dtypes ----------------------------------------
@pytest.mark.parametrize("name", list(FACTORIES))
def test_vmapped_episode_is_25_steps_then_autoresets(name):
    """Reset and step 8 envs under jit + vmap for one episode plus 3 steps (one compilation per task)."""
    env = get_env(name)
    spec = env.spec

    def one_step(state, key):
        k_act, k_step = jax.random.split(key)
        actions = jax.vmap(lambda k: random_actions(spec, k))(jax.random.split(k_act, NUM_ENVS))
        obs, state, rewards, dones, infos = jax.vmap(env.step)(
            jax.random.split(k_step, NUM_ENVS), state, actions
        )
        # did any agent's returned obs differ from the terminal obs (i.e. was the env reset)?
        diff = [jnp.any(infos["terminal_obs"][a] != obs[a], axis=-1) for a in spec.agents]
        changed = jnp.stack(diff).any(axis=0)
        return state, (rewards, dones, infos["truncated"], changed, state.step)

    @jax.jit
    def run(key):
        key_reset, key_steps = jax.random.split(key)
        obs, state = jax.vmap(env.reset)(jax.random.split(key_reset, NUM_ENVS))
        _, out = jax.lax.scan(one_step, state, jax.random.split(key_steps, T + 3))
        return obs, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), out)  # -> [env, time]

    obs, (rewards, dones, truncated, changed, steps) = run(jax.random.PRNGKey(0))
    for a in spec.agents:
        assert obs[a].shape == (NUM_ENVS, spec.obs_dim(a)) and obs[a].dtype == jnp.float32

    assert set(dones) == {*spec.agents, "__all__"}
    for a in spec.agents:
        assert rewards[a].shape == (NUM_ENVS, T + 3) and rewards[a].dtype == jnp.float32
        assert dones[a].dtype == jnp.bool_
        np.testing.assert_array_equal(dones[a], dones["__all__"])
        assert np.all(np.isfinite(rewards[a]))
    done = np.asarray(dones["__all__"])
    expected = np.zeros((NUM_ENVS, T + 3), bool)
    expected[:, T - 1] = True  # the 25th step ends the episode
    np.testing.assert_array_equal(done, expected)
    np.testing.assert_array_equal(np.asarray(truncated), expected)
    assert truncated.dtype == jnp.bool_
    # at the episode end the returned obs are a fresh episode's, different from the terminal obs
    assert np.all(np.asarray(changed)[:, T - 1])
    # the step counter counts 1..24, restarts at the reset, then counts 1, 2, 3 again
    expected_steps = np.concatenate([np.arange(1, T), [0, 1, 2, 3]])
    np.testing.assert_array_equal(np.asarray(steps), np.tile(expected_steps, (NUM_ENVS, 1)))


def test_single_env_jit_step_and_jaxmarl_off_by_one():
    """JaxMARL's own done fires after 26 steps for max_steps=25; ours after exactly 25."""
    env = get_env("mpe/simple_spread")
    inner = env.jaxmarl_env
    assert inner.max_steps == 25
    step = jit_step("mpe/simple_spread")
    _, s_ours = env.reset(jax.random.PRNGKey(1))
    s_theirs = s_ours
    ours_done_at = theirs_done_at = None
    for t in range(1, 27):
        key = jax.random.PRNGKey(t)
        actions = random_actions(env.spec, key)
        _, s_theirs, _, d_theirs, _ = inner.step_env(key, s_theirs, actions)
        _, s_ours, _, d_ours, infos = step(key, s_ours, actions)
        if theirs_done_at is None and bool(d_theirs["__all__"]):
            theirs_done_at = t
        if ours_done_at is None and bool(d_ours["__all__"]):
            ours_done_at = t
            assert bool(infos["truncated"])
    assert (ours_done_at, theirs_done_at) == (25, 26)


# ---- reward conventions -----------------------------------------------------------------------------
def test_spread_reward_is_sum_of_jaxmarl_rewards():
    env = get_env("mpe/simple_spread")
    _, state = env.reset(jax.random.PRNGKey(3))
    # put agents 0 and 1 on top of each other so the collision (local) part is non-zero too
    state = state.replace(p_pos=state.p_pos.at[1].set(state.p_pos[0] + 0.05))
    key = jax.random.PRNGKey(4)
    actions = random_actions(env.spec, key)
    _, _, ours, _, _ = env.step_env(key, state, actions)
    _, _, theirs, _, _ = env.jaxmarl_env.step_env(key, state, actions)
    total = sum(float(theirs[a]) for a in env.agents)
    assert float(theirs["agent_0"]) != float(theirs["agent_2"])  # per-agent rewards differ
    for a in env.agents:
        assert ours[a].dtype == jnp.float32
        np.testing.assert_allclose(float(ours[a]), total, rtol=1e-6)


@pytest.mark.parametrize("name", ["mpe/simple_tag", "mpe/simple_adversary"])
def test_competitive_rewards_are_jaxmarls(name):
    env = get_env(name)
    _, state = env.reset(jax.random.PRNGKey(5))
    # adversary_0 on top of agent_0 (a catch in tag)
    agent0 = env.spec.index("agent_0")
    state = state.replace(p_pos=state.p_pos.at[0].set(state.p_pos[agent0]))
    key = jax.random.PRNGKey(6)
    actions = _noop(env)
    _, _, ours, _, _ = env.step_env(key, state, actions)
    _, _, theirs, _, _ = env.jaxmarl_env.step_env(key, state, actions)
    for a in env.agents:
        assert ours[a].dtype == jnp.float32
        np.testing.assert_allclose(float(ours[a]), float(theirs[a]), rtol=1e-6)


# ---- scheduling ------------------------------------------------------------------------------------
def test_schedule_reward_hand_computed():
    env = mpe.SimpleScheduleMPE()
    # agents 0, 1, 2 then landmarks 0, 1, 2; goals: agent 0 -> landmark 2, 1 -> 0, 2 -> 1
    p_pos = [[0.0, 0.0], [0.5, 0.5], [-1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -0.5]]
    state = _state_from(env, p_pos, goal=[2, 0, 1])
    _, new_state, rewards, _, _ = env.step_env(jax.random.PRNGKey(0), state, _noop(env))
    np.testing.assert_allclose(np.asarray(new_state.p_pos), np.asarray(p_pos), atol=1e-7)  # at rest
    # |p0-g0|^2 = 0.25, |p1-g1|^2 = 0.25 + 0.25, |p2-g2|^2 = 1 + 1
    expected = -(0.25 + 0.5 + 2.0)
    for a in env.agents:
        np.testing.assert_allclose(float(rewards[a]), expected, rtol=1e-6)
        assert rewards[a].dtype == jnp.float32
    _, _, rewards3, _, _ = mpe.SimpleScheduleMPE(sum_team_reward=True).step_env(
        jax.random.PRNGKey(0), state, _noop(env)
    )
    np.testing.assert_allclose(float(rewards3["agent_1"]), 3 * expected, rtol=1e-6)


def test_schedule_observation_layout():
    env = mpe.SimpleScheduleMPE()
    p_pos = [[0.0, 0.0], [0.5, 0.5], [-1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, -0.5]]
    vel = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0, 0], [0, 0], [0, 0]]
    state = _state_from(env, p_pos, goal=[2, 0, 1], p_vel=vel)
    obs = env.get_obs(state)
    leader = np.concatenate(
        [[0.1, 0.2], [0.0, -0.5], [1, 0, 0], [0, 1, 0], [0.5, 0.5, -1.0, 0.0], np.zeros(6)]
    )
    np.testing.assert_allclose(np.asarray(obs["agent_0"]), leader, atol=1e-6)
    follower1 = np.concatenate(
        [[0.3, 0.4], [0.5, -0.5, -0.5, 0.5, -0.5, -1.0], [-0.5, -0.5, -1.5, -0.5], np.zeros(3)]
    )
    np.testing.assert_allclose(np.asarray(obs["agent_1"]), follower1, atol=1e-6)
    follower2 = np.concatenate(
        [[0.5, 0.6], [2.0, 0.0, 1.0, 1.0, 1.0, -0.5], [1.0, 0.0, 1.5, 0.5], np.zeros(3)]
    )
    np.testing.assert_allclose(np.asarray(obs["agent_2"]), follower2, atol=1e-6)


def test_schedule_message_reaches_followers_next_obs():
    env = mpe.SimpleScheduleMPE()
    obs, state = env.reset(jax.random.PRNGKey(7))
    np.testing.assert_array_equal(np.asarray(obs["agent_1"][-3:]), np.zeros(3))  # no message yet
    actions = {"agent_0": jnp.array([0, 2, 1], jnp.int32), "agent_1": jnp.int32(0), "agent_2": jnp.int32(0)}
    obs, state, _, _, _ = env.step_env(jax.random.PRNGKey(8), state, actions)
    np.testing.assert_array_equal(np.asarray(obs["agent_1"][-3:]), [0, 0, 1])
    np.testing.assert_array_equal(np.asarray(obs["agent_2"][-3:]), [0, 1, 0])
    np.testing.assert_array_equal(np.asarray(obs["agent_0"][-6:]), [0, 0, 1, 0, 1, 0])
    # a new message replaces the old one
    actions["agent_0"] = jnp.array([3, 0, 2], jnp.int32)
    obs, _, _, _, _ = env.step_env(jax.random.PRNGKey(9), state, actions)
    np.testing.assert_array_equal(np.asarray(obs["agent_1"][-3:]), [1, 0, 0])
    np.testing.assert_array_equal(np.asarray(obs["agent_2"][-3:]), [0, 0, 1])


def test_schedule_has_no_collisions():
    env = mpe.SimpleScheduleMPE()
    # agents 0 and 1 overlap (distance 0.05 < 2 * 0.075), agent 2 sits on landmark 0
    p_pos = [[0.0, 0.0], [0.05, 0.0], [0.5, 0.5], [0.5, 0.5], [-0.5, 0.5], [0.5, -0.5]]
    state = _state_from(env, p_pos, goal=[0, 1, 2])
    for t in range(3):
        _, state, _, _, _ = env.step_env(jax.random.PRNGKey(t), state, _noop(env))
    np.testing.assert_allclose(np.asarray(state.p_pos), np.asarray(p_pos), atol=1e-7)
    np.testing.assert_array_equal(np.asarray(state.p_vel), np.zeros((6, 2)))
    # and moving agents still move: leader pushes +x, which reaches the position on the 2nd step
    actions = {**_noop(env), "agent_0": jnp.array([2, 0, 0], jnp.int32)}
    for t in range(2):
        _, state, _, _, _ = env.step_env(jax.random.PRNGKey(t), state, actions)
    assert float(state.p_pos[0, 0]) > 0.0 and float(state.p_pos[1, 0]) == pytest.approx(0.05)


# ---- restarting from stored states ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["mpe/simple_spread", "mpe/simple_schedule"])
def test_reset_to_reproduces_obs_and_step_is_deterministic(name):
    env = get_env(name)
    step = jit_step(name)
    obs, state = env.reset(jax.random.PRNGKey(10))
    for t in range(5):
        key = jax.random.PRNGKey(100 + t)
        obs, state, _, _, _ = step(key, state, random_actions(env.spec, key))
    stored_obs, stored_state = obs, jax.tree.map(np.asarray, state)  # e.g. a replay-buffer copy

    obs2, state2 = env.reset_to(jax.tree.map(jnp.asarray, stored_state))
    for a in env.agents:
        np.testing.assert_array_equal(np.asarray(obs2[a]), np.asarray(stored_obs[a]))

    key = jax.random.PRNGKey(11)
    actions = random_actions(env.spec, key)
    out1 = step(key, state2, actions)
    out2 = step(key, env.reset_to(jax.tree.map(jnp.asarray, stored_state))[1], actions)
    for x, y in zip(jax.tree.leaves(out1), jax.tree.leaves(out2), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert int(out1[1].step) == 6


@pytest.mark.parametrize("task", ["mpe/simple_spread", "mpe/simple_schedule", "mpe/simple_tag"])
def test_global_state_and_action_masks(task):
    """MPE's global state is the concatenated observations (spec.global_state_dim); it has no action
    masks, so every action is available; the games say they have no global state."""
    env = envs.make(task)
    obs, state = env.reset(jax.random.PRNGKey(0))
    g = env.global_state(state)
    assert g.shape == (env.spec.global_state_dim,)
    np.testing.assert_array_equal(g, np.concatenate([obs[a] for a in env.spec.agents]))
    assert not env.spec.action_masks
    masks = env.avail_actions(state)
    assert all(
        bool(np.all(m)) and m.shape == (s.flat_dim,)
        for m, s in zip(masks.values(), env.spec.act_spaces, strict=True)
    )
    game = envs.make("games/climbing")
    assert game.spec.global_state_dim is None
    with pytest.raises(ConfigError, match="no global state"):
        game.global_state(game.reset(jax.random.PRNGKey(0))[1])
