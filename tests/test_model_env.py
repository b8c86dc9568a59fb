"""Tests of marlow.world.model_env: an exact model of mpe/simple_spread, started from observations stored in
a replay buffer, reproduces the real env; reset_to/start; the time limit; no retracing per parameter set."""

from __future__ import annotations

from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow.buffers import replay
from marlow.envs import make
from marlow.envs.api import EnvSpec, random_actions
from marlow.envs.spaces import Box, Discrete
from marlow.errors import ConfigError
from marlow.world.branched import compounding_error, rollout
from marlow.world.model_env import ModelEnv, ModelState

N_AGENTS = 3  # simple_spread: 3 agents, 3 landmarks


@cache
def spread():
    return make("mpe/simple_spread")


def spread_state_from_obs(obs):
    """The JaxMARL simple_spread state behind one joint observation.

    obs_i = [vel_i (2), pos_i (2), landmarks - pos_i (3 x 2), others - pos_i (2 x 2), comm (2 x 2)]: agent
    positions and velocities are read directly, landmarks = (landmarks - pos_0) + pos_0; landmarks never
    move (velocity 0) and the agents are silent (comm state 0), so the observation determines the state
    (up to the step counter, which the model env keeps itself)."""
    from jaxmarl.environments.mpe.simple import State

    agents = spread().spec.agents
    pos = jnp.stack([obs[a][2:4] for a in agents])
    vel = jnp.stack([obs[a][0:2] for a in agents])
    landmarks = obs[agents[0]][4:10].reshape(3, 2) + pos[0]
    return State(
        p_pos=jnp.concatenate([pos, landmarks]),
        p_vel=jnp.concatenate([vel, jnp.zeros((3, 2))]),
        c=jnp.zeros((N_AGENTS, 2)),
        done=jnp.array(False),
        step=jnp.array(0, jnp.int32),
    )


def exact_predict(key, obs, actions):
    """An exact 'learned' model: reconstruct the state and step the real env (no auto-reset)."""
    next_obs, _, rewards, _, _ = spread().step_env(key, spread_state_from_obs(obs), actions)
    return next_obs, rewards


@cache
def collect(num_steps=40, num_envs=2, seed=0):
    """Random-action data in a replay buffer holding, per transition, the observation and the true env
    state (the latter only to run the real env as the reference)."""
    env = spread()
    obs, state = jax.vmap(env.reset)(jax.random.split(jax.random.key(seed), num_envs))

    def step(carry, key):
        obs, state = carry
        k_act, k_env = jax.random.split(key)
        actions = jax.vmap(partial(random_actions, env.spec))(jax.random.split(k_act, num_envs))
        nobs, nstate, _, _, _ = jax.vmap(env.step)(jax.random.split(k_env, num_envs), state, actions)
        return (nobs, nstate), {"obs": obs, "state": state}

    @jax.jit
    def run(obs, state):
        _, data = jax.lax.scan(step, (obs, state), jax.random.split(jax.random.key(seed + 1), num_steps))
        data = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), data)
        buf = replay.init(jax.tree.map(lambda x: x[0], data), 128)
        return replay.add(buf, data)

    return run(obs, state)


def test_exact_model_reproduces_real_env_from_stored_states():
    env = spread()
    model = ModelEnv(env.spec, exact_predict)
    buf = collect()
    m, horizon = 8, 6
    batch = replay.sample(buf, jax.random.key(3), m)
    # the stored states are spread over the episodes (not all fresh resets)
    assert int(jnp.sum(batch["state"].step > 0)) >= m // 2

    @jax.jit
    def run(batch, key):
        def step(carry, key):
            real_state, model_state = carry
            k_act, k_env = jax.random.split(key)
            actions = jax.vmap(partial(random_actions, env.spec))(jax.random.split(k_act, m))
            env_keys = jax.random.split(k_env, m)
            r_obs, real_state, r_rew, _, _ = jax.vmap(env.step_env)(env_keys, real_state, actions)
            m_obs, model_state, m_rew, m_done, _ = jax.vmap(model.step)(env_keys, model_state, actions)
            return (real_state, model_state), (r_obs, r_rew, m_obs, m_rew, m_done["__all__"])

        _, model_state = jax.vmap(model.reset_to)(model.start(batch["obs"]))
        return jax.lax.scan(step, (batch["state"], model_state), jax.random.split(key, horizon))[1]

    r_obs, r_rew, m_obs, m_rew, m_done = run(batch, jax.random.key(4))
    for a in env.spec.agents:
        np.testing.assert_allclose(m_obs[a], r_obs[a], atol=1e-5)
        np.testing.assert_allclose(m_rew[a], r_rew[a], atol=1e-5)
    # the trajectories move and the rewards vary, so the check is not vacuous
    assert float(jnp.abs(r_obs["agent_0"][-1] - batch["obs"]["agent_0"]).max()) > 1e-2
    assert float(jnp.std(r_rew["agent_0"])) > 1e-2
    assert not bool(jnp.any(m_done))


def test_exact_model_rollout_path_matches_real_rollout():
    """The same rollout code on the real env and on the exact model env gives the same trajectories
    (compounding error ~0); a wrong model does not."""
    env = spread()
    m, k_max = 6, 5
    batch = replay.sample(collect(), jax.random.key(6), m)

    def policy(obs, key):  # deterministic in obs: the same states give the same actions
        del key
        return {a: (jnp.floor(jnp.abs(o[:, 2]) * 37.0) % 5).astype(jnp.int32) for a, o in obs.items()}

    def drifting(key, obs, actions):  # the exact model plus a constant velocity bias on agent_0
        nobs, rew = exact_predict(key, obs, actions)
        return dict(nobs, agent_0=nobs["agent_0"].at[0].add(0.1)), rew

    @jax.jit
    def run(batch):
        real_states = batch["state"].replace(step=jnp.zeros_like(batch["state"].step))  # no mid-rollout reset
        real = rollout(jax.random.key(7), env, real_states, policy, 4, k_max)
        model = rollout(jax.random.key(8), ModelEnv(env.spec, exact_predict), batch["obs"], policy, 4, k_max)
        bad = rollout(jax.random.key(8), ModelEnv(env.spec, drifting), batch["obs"], policy, 4, k_max)
        batched_predict = jax.vmap(exact_predict, in_axes=(None, 0, 0))  # one key for the whole batch
        batched = ModelEnv(env.spec, batched_predict, batched=True)  # stepped once per time step
        model_b = rollout(jax.random.key(8), batched, batch["obs"], policy, 4, k_max)
        real_s = real.transitions["next_obs"]
        errs = [compounding_error(real_s, r.transitions["next_obs"], r.valid) for r in (model, bad)]
        return real, model, model_b, errs

    real, model, model_b, (err, err_bad) = run(batch)
    for a in env.spec.agents:
        for field in ("next_obs", "rewards"):
            np.testing.assert_allclose(model.transitions[field][a], real.transitions[field][a], atol=1e-5)
            np.testing.assert_allclose(model_b.transitions[field][a], model.transitions[field][a], atol=1e-6)
    assert err.shape == (m,) and float(err.max()) < 1e-8
    assert float(err_bad.min()) > 1e-3


# ------------------------------------------------------------------------------------------------------
# a toy model env for the API checks
# ------------------------------------------------------------------------------------------------------
def toy_spec(episode_length=3):
    return EnvSpec(
        name="toy",
        agents=("a", "b"),
        obs_spaces=(Box(-jnp.inf, jnp.inf, (2,)), Box(-jnp.inf, jnp.inf, (3,))),
        act_spaces=(Discrete(4), Discrete(4)),
        teams=(("t", ("a", "b")),),
        episode_length=episode_length,
    )


def toy_predict(key, obs, actions):
    """obs + action (per agent), reward = sum of the two actions."""
    del key
    nobs = {a: obs[a] + actions[a].astype(jnp.float32) for a in obs}
    r = (actions["a"] + actions["b"]).astype(jnp.float32)
    return nobs, {"a": r, "b": -r}


def test_start_and_reset_to():
    env = ModelEnv(toy_spec(), toy_predict)
    obs = {"a": jnp.ones((5, 2)), "b": jnp.zeros((5, 3))}
    state = env.start(obs)
    assert state.step.shape == (5,) and int(state.step.sum()) == 0
    got, state2 = env.reset_to(state)
    assert got is state.obs and state2 is state
    single = env.start({"a": jnp.ones(2), "b": jnp.zeros(3)}, step=2)
    assert single.step.shape == () and int(single.step) == 2
    with pytest.raises(ConfigError, match="reset_to"):
        env.reset(jax.random.key(0))
    with pytest.raises(ConfigError, match="lacks agents"):
        env.start({"a": jnp.ones(2)})
    assert env.agents == ["a", "b"] and env.num_agents == 2 and env.action_space("b") == Discrete(4)


def test_time_limit_truncation():
    env = ModelEnv(toy_spec(episode_length=3), toy_predict)
    state = env.start({"a": jnp.zeros(2), "b": jnp.zeros(3)})
    step = jax.jit(env.step)
    acts = {"a": jnp.int32(1), "b": jnp.int32(2)}
    seen = []
    for t in range(1, 5):
        obs, state, rew, dones, infos = step(jax.random.key(t), state, acts)
        seen.append((bool(dones["__all__"]), bool(infos["truncated"]), int(state.step)))
        np.testing.assert_allclose(obs["a"], np.full(2, float(t)))  # the episode restart keeps the obs
        np.testing.assert_allclose(infos["terminal_obs"]["b"], np.full(3, 2.0 * t))
        assert float(rew["a"]) == 3.0 and float(rew["b"]) == -3.0
        assert set(dones) == {"a", "b", "__all__"}
    # done exactly after the 3rd step (counter restarts at 0), not before
    assert seen == [(False, False, 1), (False, False, 2), (True, True, 0), (False, False, 1)]
    # a start state with a step counter already at 2 ends after one step
    _, _, _, dones, _ = step(jax.random.key(0), env.start({"a": jnp.zeros(2), "b": jnp.zeros(3)}, 2), acts)
    assert bool(dones["__all__"])


def test_learned_params_reach_the_env_without_retracing():
    spec = toy_spec()
    traces = []

    def predict(params, key, obs, actions):
        nobs, rew = toy_predict(key, obs, actions)
        return {a: o * params["scale"] for a, o in nobs.items()}, rew

    @jax.jit
    def one_step(params, obs):
        traces.append(1)
        env = ModelEnv(spec, partial(predict, params))  # built inside the jitted function
        _, state = env.reset_to(env.start(obs))
        return env.step(jax.random.key(0), state, {"a": jnp.int32(1), "b": jnp.int32(1)})[0]

    obs = {"a": jnp.ones(2), "b": jnp.ones(3)}
    out1 = one_step({"scale": jnp.float32(2.0)}, obs)
    out2 = one_step({"scale": jnp.float32(3.0)}, obs)
    assert len(traces) == 1
    np.testing.assert_allclose(out1["a"], [4.0, 4.0])
    np.testing.assert_allclose(out2["b"], [6.0, 6.0, 6.0])
    assert isinstance(jax.eval_shape(lambda o: ModelEnv(spec, toy_predict).start(o), obs), ModelState)


def test_bad_predict_output_is_reported():
    env = ModelEnv(toy_spec(), lambda key, obs, actions: ({"a": obs["a"]}, {"a": jnp.float32(0)}))
    with pytest.raises(ValueError, match="predict must return"):
        env.step(jax.random.key(0), env.start({"a": jnp.zeros(2), "b": jnp.zeros(3)}), {"a": 0, "b": 0})
    with pytest.raises(ConfigError):
        ModelEnv(toy_spec(), None)


def _toy_spec(length: int = 10) -> EnvSpec:
    return EnvSpec(
        name="toy",
        agents=("a", "b"),
        obs_spaces=(Box(-jnp.inf, jnp.inf, (1,)), Box(-jnp.inf, jnp.inf, (1,))),
        act_spaces=(Discrete(2), Discrete(2)),
        teams=(("team", ("a", "b")),),
        episode_length=length,
    )


def test_predicted_termination_and_an_opaque_latent_through_the_rollout_engine():
    """A stateful model (a counter in its latent) that predicts termination when the counter reaches 3:
    the engine reports terminated (no bootstrap) rather than truncated, and never reads the latent."""
    from marlow import rollout as engine

    spec = _toy_spec()

    def predict(key, latent, obs, actions):
        latent = latent + 1
        nxt = {a: obs[a] + 1.0 for a in spec.agents}
        return latent, nxt, {a: jnp.ones(()) for a in spec.agents}, latent == 3

    env = ModelEnv(spec, predict, stateful=True)
    with pytest.raises(ConfigError, match="latent"):
        env.start({a: jnp.zeros((2, 1)) for a in spec.agents})
    start = env.start({a: jnp.zeros((2, 1)) for a in spec.agents}, latent=jnp.array([0, 1]))
    carry = engine.from_states(env, start)
    policy = engine.stateless(lambda obs, k: {a: jnp.zeros(2, jnp.int32) for a in spec.agents})
    carry, _, traj = engine.collect(env, policy, carry, jax.random.PRNGKey(0), 4)
    # env 0 terminates at its 3rd step (t = 2), env 1 at its 2nd (t = 1); the latent keeps counting
    np.testing.assert_array_equal(traj.terminated[:, 0], [False, False, True, False])
    np.testing.assert_array_equal(traj.terminated[:, 1], [False, True, False, False])
    assert not bool(traj.truncated.any())
    np.testing.assert_array_equal(carry.env_state.latent, [4, 5])


def test_time_limit_is_a_truncation():
    from marlow import rollout as engine

    spec = _toy_spec(length=2)
    env = ModelEnv(spec, lambda key, obs, actions: (obs, {a: jnp.zeros(()) for a in spec.agents}))
    carry = engine.from_states(env, env.start({a: jnp.zeros((3, 1)) for a in spec.agents}))
    policy = engine.stateless(lambda obs, k: {a: jnp.zeros(3, jnp.int32) for a in spec.agents})
    _, _, traj = engine.collect(env, policy, carry, jax.random.PRNGKey(0), 4)
    np.testing.assert_array_equal(traj.truncated[:, 0], [False, True, False, True])
    assert not bool(traj.terminated.any())


def test_a_branched_rollout_ends_at_a_predicted_termination():
    """Steps after a model-predicted episode end are not part of the rollout (invalid), so they never
    reach a model buffer."""
    spec = _toy_spec()

    def predict(key, latent, obs, actions):
        latent = latent + 1
        return latent, obs, {a: jnp.ones(()) for a in spec.agents}, latent == 2

    env = ModelEnv(spec, predict, stateful=True)
    start = env.start({a: jnp.zeros((2, 1)) for a in spec.agents}, latent=jnp.array([0, 5]))
    r = rollout(
        jax.random.PRNGKey(0),
        env,
        start,
        lambda obs, k: {a: jnp.zeros(2, jnp.int32) for a in spec.agents},
        4,
        4,
    )
    np.testing.assert_array_equal(r.valid[:, 0], [True, True, False, False])  # ends at its 2nd step
    np.testing.assert_array_equal(r.valid[:, 1], [True, True, True, True])  # never terminates
    np.testing.assert_array_equal(r.transitions["done"][:, 0], [0.0, 1.0, 0.0, 0.0])
