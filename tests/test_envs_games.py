"""Tests of the small games in marlow.envs.games (payoffs, equilibria, episode mechanics, jit/vmap)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow.envs import games
from marlow.envs.api import random_actions
from marlow.envs.registry import _REGISTRY
from marlow.envs.spaces import Box, Discrete
from marlow.errors import ConfigError

NAMES = ("games/climbing", "games/max_of_two_quadratics", "games/lookahead_toy", "games/climb")


def make(name, **kwargs):
    # Build through the registry entry (without importing the other task modules).
    return _REGISTRY[name].factory(**kwargs)


def box(x):
    return jnp.asarray([x], jnp.float32)


def step_rewards(env, a0, a1, state=None):
    if state is None:
        _, state = env.reset(jax.random.PRNGKey(0))
    _, _, rewards, _, _ = env.step_env(jax.random.PRNGKey(1), state, {"agent_0": a0, "agent_1": a1})
    return float(rewards["agent_0"]), float(rewards["agent_1"])


# ---- specs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_spec(name):
    env = make(name)
    spec = env.spec
    assert spec.name == name
    assert spec.agents == ("agent_0", "agent_1")
    if name == "games/climb":
        assert spec.competitive and not spec.shared_reward
        assert spec.opponents("agent_0") == ("agent_1",)
        assert spec.obs_space("agent_0") == Box(0.0, 1.0, (2,))
    else:
        assert spec.teams == (("team", ("agent_0", "agent_1")),)
        assert spec.shared_reward and not spec.competitive
        assert spec.obs_space("agent_0") == Box(0.0, 1.0, (1,))
    expected_len = 1 if name == "games/lookahead_toy" else 25
    assert spec.episode_length == expected_len


def test_bad_kwargs():
    with pytest.raises(ConfigError):
        make("games/climb", transition="nope")
    with pytest.raises(ConfigError):
        make("games/climbing", episode_length=0)
    with pytest.raises(ConfigError):
        make("games/lookahead_toy", episode_length=5)  # one-shot by default


# ---- climbing game -----------------------------------------------------------------------------


def test_climbing_payoffs_every_joint_action():
    env = make("games/climbing")
    assert env.spec.act_space("agent_0") == Discrete(3)
    table = [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]
    for i in range(3):
        for j in range(3):
            r0, r1 = step_rewards(env, jnp.int32(i), jnp.int32(j))
            assert r0 == r1 == table[i][j], (i, j)


def test_climbing_paper_cc_payoff():
    env = make("games/climbing", cc_payoff=(5, 3))
    assert step_rewards(env, jnp.int32(2), jnp.int32(2)) == (5.0, 3.0)
    assert step_rewards(env, jnp.int32(0), jnp.int32(0)) == (11.0, 11.0)
    assert not env.spec.shared_reward


# ---- max of two quadratics ---------------------------------------------------------------------


def test_max_of_two_quadratics_values_and_clipping():
    f = games.max_of_two_quadratics_reward
    np.testing.assert_allclose(f(-5.0, -5.0), 0.0, atol=1e-6)
    np.testing.assert_allclose(f(5.0, 5.0), 10.0, atol=1e-6)
    np.testing.assert_allclose(f(0.0, 0.0), 0.8 * (-2 * 25 / 9), rtol=1e-6)  # f1 = -4.44 > f2 = -40
    env = make("games/max_of_two_quadratics")
    assert env.spec.act_space("agent_0") == Box(-10.0, 10.0, (1,))
    np.testing.assert_allclose(step_rewards(env, box(5.0), box(5.0)), (10.0, 10.0), atol=1e-6)
    np.testing.assert_allclose(step_rewards(env, box(-5.0), box(-5.0)), (0.0, 0.0), atol=1e-6)
    # (20, 5) is clipped to (10, 5): f1 = 0.8 (-25 - 100/9), f2 = -25 + 10 = -15.
    np.testing.assert_allclose(step_rewards(env, box(20.0), box(5.0)), (-15.0, -15.0), rtol=1e-6)
    np.testing.assert_allclose(step_rewards(env, box(-30.0), box(-30.0)), (float(f(-10.0, -10.0)),) * 2)


# ---- lookahead toy -----------------------------------------------------------------------------


def test_lookahead_toy_values():
    f = games.lookahead_toy_reward
    for (a0, a1), expected in {
        (0.0, 0.0): 0.0,
        (1.0, 1.0): 4.0,
        (0.5, 0.0): 0.125 - 0.5 + 1.5,
        (0.1, 0.1): 0.001 + 0.3,
        (0.0, 1.0): -2.0,
    }.items():
        np.testing.assert_allclose(f(a0, a1), expected, rtol=1e-6, atol=1e-7)
    env = make("games/lookahead_toy")
    np.testing.assert_allclose(step_rewards(env, box(2.0), box(1.0)), (4.0, 4.0), rtol=1e-6)  # clipped
    np.testing.assert_allclose(step_rewards(env, box(-1.0), box(1.0)), (-2.0, -2.0), rtol=1e-6)


def test_lookahead_toy_is_one_shot_terminal():
    env = make("games/lookahead_toy")
    _, state = env.reset(jax.random.PRNGKey(0))
    _, _, _, dones, infos = env.step(jax.random.PRNGKey(1), state, {"agent_0": box(1.0), "agent_1": box(1.0)})
    assert bool(dones["__all__"]) and not bool(infos["truncated"])


# ---- climb -------------------------------------------------------------------------------------


def test_climb_agent2_reward_at_landmarks():
    r2 = games.climb_agent2_reward
    # State 1: max(-2|p-LL|^2, -|p-UR|^2); both landmarks give 0, the centre -0.5.
    np.testing.assert_allclose(r2(0, -0.5, -0.5), 0.0, atol=1e-7)
    np.testing.assert_allclose(r2(0, 0.5, 0.5), 0.0, atol=1e-7)
    np.testing.assert_allclose(r2(0, 0.0, 0.0), max(-2 * 0.5, -0.5))
    np.testing.assert_allclose(r2(0, -0.5, 0.5), max(-2 * 1.0, -1.0))
    np.testing.assert_allclose(r2(0, -1.0, -1.0), max(-2 * 0.5, -4.5))
    # State 2: max(-|p-LL|^2, -2|p-UR|^2).
    np.testing.assert_allclose(r2(1, -0.5, -0.5), 0.0, atol=1e-7)
    np.testing.assert_allclose(r2(1, 0.5, 0.5), 0.0, atol=1e-7)
    np.testing.assert_allclose(r2(1, 1.0, 1.0), max(-4.5, -2 * 0.5))
    np.testing.assert_allclose(r2(1, -1.0, -1.0), max(-0.5, -2 * 4.5))
    # Agent 1 peaks only at its state's landmark.
    r1 = games.climb_agent1_reward
    assert float(r1(0, -0.5, -0.5)) == 0.0 and float(r1(0, 0.5, 0.5)) == -4.0
    assert float(r1(1, 0.5, 0.5)) == 0.0 and float(r1(1, -0.5, -0.5)) == -4.0


@pytest.mark.parametrize("state", [0, 1])
def test_climb_unique_pure_nash_on_grid(state):
    grid = jnp.linspace(-1.0, 1.0, 81)  # step 0.025, contains +-0.5
    a, b = jnp.meshgrid(grid, grid, indexing="ij")  # [i, j] = (a_i, b_j)
    r1, r2 = (np.asarray(r, np.float64) for r in games.climb_rewards(state, a, b))
    tol = 1e-6
    best_a = r1 >= r1.max(axis=0, keepdims=True) - tol  # agent 1 cannot improve by changing a
    best_b = r2 >= r2.max(axis=1, keepdims=True) - tol  # agent 2 cannot improve by changing b
    ne = np.argwhere(best_a & best_b)
    assert len(ne) == 1
    i, j = ne[0]
    np.testing.assert_allclose((grid[i], grid[j]), games.CLIMB_LANDMARKS[state], atol=1e-6)


def test_climb_env_rewards_and_alternating_states():
    env = make("games/climb")
    state = games.ClimbState(t=jnp.int32(0), s=jnp.int32(0))
    np.testing.assert_allclose(step_rewards(env, box(-0.5), box(-0.5), state), (0.0, 0.0), atol=1e-7)
    np.testing.assert_allclose(step_rewards(env, box(5.0), box(5.0), state), (-9.0, -0.5), atol=1e-6)
    obs, state = env.reset(jax.random.PRNGKey(3))
    acts = {"agent_0": box(0.0), "agent_1": box(0.0)}
    for _ in range(5):
        np.testing.assert_array_equal(obs["agent_0"], np.eye(2)[int(state.s)])
        s_prev = int(state.s)
        obs, state, _, _, _ = env.step_env(jax.random.PRNGKey(0), state, acts)
        assert int(state.s) == 1 - s_prev


def test_climb_random_transition_visits_both_states():
    env = make("games/climb", transition="random")
    _, state = env.reset(jax.random.PRNGKey(0))
    acts = {"agent_0": box(0.0), "agent_1": box(0.0)}
    seen = set()
    for k in range(20):
        _, state, _, _, _ = env.step_env(jax.random.PRNGKey(k), state, acts)
        seen.add(int(state.s))
    assert seen == {0, 1}


# ---- episode mechanics, jit and vmap -----------------------------------------------------------


def _rollout(env, key, num_steps):
    _, state = env.reset(key)

    def body(state, k):
        k_act, k_step = jax.random.split(k)
        actions = random_actions(env.spec, k_act)
        obs, state, rewards, dones, infos = env.step(k_step, state, actions)
        return state, (dones["__all__"], infos["truncated"], state.t, rewards["agent_0"])

    _, out = jax.lax.scan(body, state, jax.random.split(key, num_steps))
    return out


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("games/climbing", {}),
        ("games/max_of_two_quadratics", {"episode_length": 7}),
        ("games/lookahead_toy", {}),
        ("games/lookahead_toy", {"one_shot": False, "episode_length": 4}),
        ("games/climb", {}),
    ],
)
def test_episode_length_and_auto_reset_jit_vmap(name, kwargs):
    env = make(name, **kwargs)
    length = env.spec.episode_length
    num_steps = 2 * length + 1
    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    done, truncated, t, r = jax.jit(jax.vmap(lambda k: _rollout(env, k, num_steps)))(keys)
    assert done.shape == (8, num_steps)
    expected_done = (np.arange(num_steps) + 1) % length == 0
    np.testing.assert_array_equal(np.asarray(done), np.broadcast_to(expected_done, done.shape))
    one_shot = dict(env.spec.extra).get("one_shot", False)
    np.testing.assert_array_equal(np.asarray(truncated), np.asarray(done) & (not one_shot))
    # After a done step the state is a fresh episode (t = 0); otherwise t counts up.
    np.testing.assert_array_equal(
        np.asarray(t), np.broadcast_to((np.arange(num_steps) + 1) % length, t.shape)
    )
    assert np.all(np.isfinite(np.asarray(r)))


@pytest.mark.parametrize("name", NAMES)
def test_vmapped_reset_and_step(name):
    env = make(name)
    keys = jax.random.split(jax.random.PRNGKey(1), 8)
    obs, state = jax.vmap(env.reset)(keys)
    assert obs["agent_0"].shape == (8, env.spec.obs_dim("agent_0"))
    actions = jax.vmap(lambda k: random_actions(env.spec, k))(keys)
    obs2, state2, rewards, dones, infos = jax.jit(jax.vmap(env.step))(keys, state, actions)
    assert rewards["agent_0"].shape == rewards["agent_1"].shape == (8,)
    assert rewards["agent_0"].dtype == jnp.float32
    assert infos["terminal_obs"]["agent_1"].shape == obs2["agent_1"].shape
    assert dones["__all__"].shape == infos["truncated"].shape == (8,)
