"""Tests of the SMAX tasks (marlow.envs.smax): specs of every map, jit/vmap rollouts through
``marlow.rollout.collect`` with available actions (random, focus fire, stop), action masks, the global
state, episode ends (terminated / truncated / won), unavailable actions and the 100-step time limit.

SMAX programs take seconds to compile on a CPU, so one jitted ``step_env`` and one jitted rollout of
``smax/3m`` are shared by the tests (module-scoped fixtures)."""

from __future__ import annotations

from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow import envs, rollout
from marlow.envs import smax
from marlow.envs.spaces import Box, Discrete

# name -> (allies, obs dim, actions, global state dim, enemies)
TABLE = {
    "smax/3m": (3, 75, 8, 72, 3),
    "smax/2s3z": (5, 127, 10, 120, 5),
    "smax/3s_vs_5z": (3, 101, 10, 96, 5),
    "smax/3s5z_vs_3s6z": (8, 218, 14, 204, 9),
    "smax/3s_vs_3z": (3, 75, 8, 72, 3),
    "smax/3s_vs_4z": (3, 88, 9, 84, 4),
    "smax/6z_vs_24zg": (6, 387, 29, 360, 24),
}

NUM_ENVS = 8
STEPS = 130  # > one 100-step episode, so every env ends at least one episode


@cache
def get_env(name: str) -> smax.SMAXEnv:
    """One env object per task, so jitted functions keyed on it are compiled once per session."""
    return envs.make(name)


@cache
def jit_step_env():
    return jax.jit(get_env("smax/3m").step_env)


def _stop(env: smax.SMAXEnv) -> dict[str, jax.Array]:
    return {a: jnp.int32(4) for a in env.spec.agents}


def _alive(ws: np.ndarray, num_units: int) -> np.ndarray:
    """Alive flags ``[..., num_units]`` from SMAX world states (per unit 10 features, health first)."""
    return ws[..., : 10 * num_units].reshape(ws.shape[:-1] + (num_units, 10))[..., 0] > 0


# ---- spec and registry ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TABLE))
def test_spec_matches_table(name):
    n_allies, obs_dim, n_actions, gs_dim, n_enemies = TABLE[name]
    env = get_env(name)
    spec = env.spec
    assert isinstance(env, smax.SMAXEnv) and spec.name == name
    assert spec.agents == tuple(f"ally_{i}" for i in range(n_allies))
    assert spec.teams == (("allies", spec.agents),)
    assert spec.shared_reward and spec.action_masks
    assert spec.episode_length == 100 == smax.EPISODE_LENGTH
    assert spec.global_state_dim == gs_dim
    assert spec.episode_events == (("won", "win_rate"),)
    assert dict(spec.extra)["num_enemies"] == n_enemies
    for a in spec.agents:
        assert spec.act_space(a) == Discrete(n_actions)
        obs_space = spec.obs_space(a)
        assert isinstance(obs_space, Box) and obs_space.shape == (obs_dim,)
        assert obs_space.low == -np.inf and obs_space.high == np.inf
    assert spec.description and name in envs.task_names()


def test_custom_maps_are_not_registered_in_jaxmarl():
    extra = dict(get_env("smax/3s_vs_4z").spec.extra)
    assert extra["ally_units"] == ("stalker",) * 3 and extra["enemy_units"] == ("zealot",) * 4
    extra = dict(get_env("smax/6z_vs_24zg").spec.extra)
    assert extra["ally_units"] == ("zealot",) * 6 and extra["enemy_units"] == ("zergling",) * 24
    from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

    assert not set(smax.CUSTOM_MAPS) & set(MAP_NAME_TO_SCENARIO)


def test_episode_length_option():
    assert envs.make("smax/3m", episode_length=50).spec.episode_length == 50


# ---- one jitted, vmapped rollout of smax/3m with available actions -------------------------------------
def _mixed_policy(obs, key, info):
    """Per env, one of three available-action policies, so that the rollout holds losses, wins and
    time-outs: envs 0-1 stop (the fixture hides their allies out of the enemies' sight), envs 2-4 focus
    fire (attack the first enemy in range, else walk east), envs 5-7 act at random."""
    agents = sorted(info["avail"])
    keys = jax.random.split(key, len(agents))
    kind = jnp.where(jnp.arange(NUM_ENVS) < 2, 0, jnp.where(jnp.arange(NUM_ENVS) < 5, 1, 2))
    actions = {}
    for a, k in zip(agents, keys, strict=True):
        avail = info["avail"][a]  # [B, 8]
        attack = jnp.argmax(avail[:, 5:], axis=-1) + 5
        focus = jnp.where(avail[:, 5:].any(-1), attack, 1)
        rand = jax.random.categorical(k, jnp.where(avail, 0.0, -jnp.inf))
        act = jnp.select([kind == 0, kind == 1], [4, focus], rand).astype(jnp.int32)
        ok = jnp.take_along_axis(avail, act[:, None], axis=-1)[:, 0]
        actions[a] = jnp.where(ok, act, 4)  # stop (always available) where the choice is not
    return actions


@pytest.fixture(scope="module")
def rollout_3m():
    env = get_env("smax/3m")

    @jax.jit
    def run(key):
        key_reset, key_run = jax.random.split(key)
        states = rollout.reset(env, key_reset, NUM_ENVS).env_state
        # envs 0-1 start with the allies hidden in the top left corner, out of the enemies' sight
        pos = states.state.unit_positions.at[:2, :3].set(jnp.array([[2.0, 29.0], [3.5, 29.0], [2.75, 30.5]]))
        carry = rollout.from_states(env, states.replace(state=states.state.replace(unit_positions=pos)))
        policy = rollout.stateless(_mixed_policy, env_info=True)
        _, _, traj = rollout.collect(
            env, policy, carry, key_run, STEPS, rollout.Options(env_info=True, record_states=True)
        )
        smax_masks = jax.vmap(jax.vmap(env.jaxmarl_env._env.get_avail_actions))(traj.states.state)
        return traj, smax_masks

    traj, smax_masks = run(jax.random.PRNGKey(0))
    return env, jax.device_get(traj), jax.device_get(smax_masks)


def test_rollout_shapes_and_dtypes(rollout_3m):
    env, traj, _ = rollout_3m
    spec = env.spec
    for a in spec.agents:
        assert traj.obs[a].shape == (STEPS, NUM_ENVS, 75) and traj.obs[a].dtype == np.float32
        assert traj.rewards[a].shape == (STEPS, NUM_ENVS) and traj.rewards[a].dtype == np.float32
        assert np.all(np.isfinite(traj.obs[a])) and np.all(np.isfinite(traj.rewards[a]))
    assert traj.info["global_state"].shape == (STEPS, NUM_ENVS, 72)
    assert traj.info["global_state"].dtype == np.float32
    assert traj.events["won"].shape == (STEPS, NUM_ENVS) and traj.events["won"].dtype == np.bool_


def test_masks_are_smax_avail_actions_and_never_empty(rollout_3m):
    env, traj, smax_masks = rollout_3m
    for a in env.spec.agents:
        avail = traj.info["avail"][a]
        assert avail.shape == (STEPS, NUM_ENVS, 8) and avail.dtype == np.bool_
        np.testing.assert_array_equal(avail, smax_masks[a].astype(bool))
        assert np.all(avail.any(axis=-1)) and np.all(avail[..., 4])  # stop is always available
        taken = np.take_along_axis(avail, traj.actions[a][..., None], axis=-1)[..., 0]
        assert np.all(taken)
    # attacks become available once the teams meet
    assert any(traj.info["avail"][a][..., 5:].any() for a in env.spec.agents)


def test_rewards_shared_and_won_iff_win_bonus(rollout_3m):
    env, traj, _ = rollout_3m
    r = traj.rewards[env.spec.agents[0]]
    for a in env.spec.agents[1:]:
        np.testing.assert_array_equal(traj.rewards[a], r)
    assert np.all(r >= 0) and r.max() > 0
    won = traj.events["won"]
    np.testing.assert_array_equal(won, r >= 1.0)
    assert not np.any(won & ~traj.done)


def test_episode_ends(rollout_3m):
    """Episodes end within 100 steps; terminated = a team eliminated (won iff only the enemies are),
    truncated = time limit with both teams alive; next_obs at an end is the finished episode's."""
    env, traj, _ = rollout_3m
    done = traj.done
    assert not np.any(traj.terminated & traj.truncated)
    assert done.any(axis=0).all()  # every env ended an episode within STEPS > 100 steps
    won = traj.events["won"]
    assert traj.truncated.any() and won.any() and (traj.terminated & ~won).any()  # all three outcomes
    assert np.flatnonzero(done[:, 0])[0] == 99  # the hidden allies' first episode times out on step 100
    for b in range(NUM_ENVS):
        ends = np.flatnonzero(done[:, b])
        lengths = np.diff(np.concatenate([[-1], ends]))
        assert lengths.max() <= 100
        truncated = traj.truncated[ends, b]
        assert np.all(lengths[truncated] == 100)
    alive = _alive(traj.info["next_global_state"], 6)
    allies_alive, enemies_alive = alive[..., :3].any(-1), alive[..., 3:].any(-1)
    np.testing.assert_array_equal(traj.terminated, done & ~(allies_alive & enemies_alive))
    np.testing.assert_array_equal(traj.truncated, done & allies_alive & enemies_alive)
    np.testing.assert_array_equal(won, done & allies_alive & ~enemies_alive)
    np.testing.assert_array_equal(
        traj.info["next_global_state"][:-1][~done[:-1]], traj.info["global_state"][1:][~done[:-1]]
    )
    for a in env.spec.agents:
        nxt, obs = traj.next_obs[a], traj.obs[a]
        np.testing.assert_array_equal(nxt[:-1][~done[:-1]], obs[1:][~done[:-1]])
        # after an end the next obs is a fresh episode's: own health (first own feature) is full
        t, b = np.nonzero(done[:-1])
        np.testing.assert_array_equal(obs[t + 1, b, 75 - 10], 1.0)
        assert np.any(nxt[t, b] != obs[t + 1, b])


def test_global_state_changes(rollout_3m):
    _, traj, _ = rollout_3m
    gs = traj.info["global_state"][:, 0]
    assert np.all(np.isfinite(gs)) and len(np.unique(gs, axis=0)) > STEPS // 2


# ---- constructed states: win, draw, time limit, unavailable actions ------------------------------------
def _fresh_state(seed: int = 0):
    return get_env("smax/3m").reset(jax.random.PRNGKey(seed))[1]


def _battle(state, **fields):
    return state.replace(state=state.state.replace(**{k: jnp.asarray(v) for k, v in fields.items()}))


def _paired_positions(gap: float) -> np.ndarray:
    """Ally i at (15, 12 + 4 i), enemy i ``gap`` to its east: each enemy's closest ally is its partner."""
    allies = np.array([[15.0, 12.0 + 4 * i] for i in range(3)])
    return np.concatenate([allies, allies + [gap, 0.0]]).astype(np.float32)


def test_win_when_enemies_eliminated():
    env = get_env("smax/3m")
    state = _battle(
        _fresh_state(),
        unit_positions=_paired_positions(1.0),
        unit_health=np.array([45.0, 45.0, 45.0, 0.1, 0.1, 0.1], np.float32),
    )
    actions = {f"ally_{i}": jnp.int32(5 + i) for i in range(3)}  # ally i attacks enemy i
    _, state, rewards, dones, infos = jit_step_env()(jax.random.PRNGKey(1), state, actions)
    assert not state.state.unit_alive[3:].any() and state.state.unit_alive[:3].all()
    assert bool(dones["__all__"]) and bool(infos["won"]) and not bool(infos["truncated"])
    assert all(float(rewards[a]) >= 1.0 for a in env.spec.agents)
    assert bool(state.state.done)


def test_draw_is_not_a_win():
    """Both teams die in the same step (SMAX resolves attacks simultaneously): done, not won."""
    env = get_env("smax/3m")
    state = _battle(
        _fresh_state(), unit_positions=_paired_positions(1.0), unit_health=np.full((6,), 0.1, np.float32)
    )
    actions = {f"ally_{i}": jnp.int32(5 + i) for i in range(3)}
    _, state, rewards, dones, infos = jit_step_env()(jax.random.PRNGKey(1), state, actions)
    assert not state.state.unit_alive.any()
    assert bool(dones["__all__"]) and not bool(infos["won"]) and not bool(infos["truncated"])
    assert all(float(rewards[a]) < 1.0 for a in env.spec.agents)


def test_time_limit_truncates_at_100_steps():
    """SMAX's own done fires one step late (101 steps); ours ends the episode on step 100."""
    env = get_env("smax/3m")
    state = _fresh_state()
    key = jax.random.PRNGKey(2)
    for before, expected in ((98, False), (99, True)):
        _, nxt, _, dones, infos = jit_step_env()(key, _battle(state, step=before), _stop(env))
        assert int(nxt.state.step) == before + 1
        assert bool(dones["__all__"]) is expected and bool(infos["truncated"]) is expected
        assert not bool(infos["won"])
    _, _, _, theirs, _ = env.jaxmarl_env.step_env(key, _battle(state, step=99), _stop(env))
    assert not bool(theirs["__all__"])


def test_unavailable_actions_do_nothing():
    """An attack on an enemy out of range, and a dead ally's move, act as "stop"."""
    env = get_env("smax/3m")
    state = _battle(
        _fresh_state(3),
        unit_health=np.array([0.0, 45.0, 45.0, 45.0, 45.0, 45.0], np.float32),
        unit_alive=np.array([False, True, True, True, True, True]),
    )
    masks = env.avail_actions(state)
    assert masks["ally_0"].tolist() == [False] * 4 + [True] + [False] * 3
    assert not bool(masks["ally_1"][5])  # teams start ~16 apart, beyond the marines' range 5
    key = jax.random.PRNGKey(4)
    invalid = {"ally_0": jnp.int32(1), "ally_1": jnp.int32(5), "ally_2": jnp.int32(4)}
    _, s_invalid, r_invalid, _, _ = jit_step_env()(key, state, invalid)
    _, s_stop, r_stop, _, _ = jit_step_env()(key, state, _stop(env))
    for field in ("unit_positions", "unit_health", "unit_weapon_cooldowns", "unit_alive"):
        np.testing.assert_array_equal(getattr(s_invalid.state, field), getattr(s_stop.state, field))
    assert float(r_invalid["ally_1"]) == float(r_stop["ally_1"]) == 0.0


def test_custom_map_jit_vmap_step():
    """3 stalkers vs 4 zealots under jit + vmap (a second compilation, one step)."""
    env = get_env("smax/3s_vs_4z")

    @jax.jit
    def run(key):
        k_reset, k_step = jax.random.split(key)
        obs, state = jax.vmap(env.reset)(jax.random.split(k_reset, 2))
        masks = jax.vmap(env.avail_actions)(state)
        actions = {a: jnp.full((2,), 4, jnp.int32) for a in env.spec.agents}
        out = jax.vmap(env.step)(jax.random.split(k_step, 2), state, actions)
        return obs, masks, jax.vmap(env.global_state)(state), out

    obs, masks, gs, (obs2, _, rewards, dones, infos) = run(jax.random.PRNGKey(0))
    for a in env.spec.agents:
        assert obs[a].shape == obs2[a].shape == (2, 88) and masks[a].shape == (2, 9)
        assert rewards[a].shape == (2,)
    assert gs.shape == (2, 84) and infos["won"].shape == (2,) and not np.any(dones["__all__"])
    np.testing.assert_array_equal(np.asarray(gs[0, -7:]), [2, 2, 2, 3, 3, 3, 3])  # unit-type indices


def test_module_import_is_lazy():
    """Importing the module (e.g. to list tasks) does not import jaxmarl."""
    import subprocess
    import sys

    code = "import sys, marlow.envs.smax; assert 'jaxmarl' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
