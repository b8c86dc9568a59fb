"""MAPPO and HAPPO (marlow.algos.onpolicy): masks, the centralised critic's input, HAPPO's factor M by
hand, vmapped seeds = separate runs. Learning thresholds are in test_learning.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from marlow import rollout
from marlow.algos.onpolicy import happo, mappo
from marlow.algos.onpolicy.actors import Actors
from marlow.envs.api import EnvSpec, MultiAgentEnv
from marlow.envs.spaces import Box, Discrete, MultiDiscrete
from marlow.experiment.config import resolve
from marlow.runtime.loggers import read_metrics
from marlow.runtime.runner import train

AGENTS = ("a", "b", "c")


@struct.dataclass
class HiddenState:
    t: jax.Array
    h: jax.Array  # +-1, drawn at reset: the reward of every step, in the global state but not in obs


class HiddenSignal(MultiAgentEnv):
    """Three agents, Discrete(3) actions, 5-step episodes that end by time limit. Every step pays every
    agent ``h`` (+-1, drawn at reset); ``h`` is in the global state ``[h, t / 5]`` only, never in the
    observations ``[t / 5]``. Agent ``a`` may use action 0 only at even steps and action 2 only at steps
    divisible by 3 (action masks); the others have all actions."""

    T = 5

    def __init__(self):
        self.spec = EnvSpec(
            name="test/hidden_signal",
            agents=AGENTS,
            obs_spaces=(Box(-np.inf, np.inf, (1,)),) * 3,
            act_spaces=(Discrete(3),) * 3,
            teams=(("team", AGENTS),),
            episode_length=self.T,
            shared_reward=True,
            action_masks=True,
            global_state_dim=2,
        )

    def get_obs(self, state):
        return {x: (state.t / self.T)[None].astype(jnp.float32) for x in AGENTS}

    def reset(self, key):
        h = jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
        state = HiddenState(jnp.int32(0), h)
        return self.get_obs(state), state

    def step_env(self, key, state, actions):
        new = HiddenState(state.t + 1, state.h)
        done = new.t >= self.T
        dones = {x: done for x in AGENTS} | {"__all__": done}
        return self.get_obs(new), new, {x: state.h for x in AGENTS}, dones, {"truncated": done}

    def avail_actions(self, state):
        masks = {x: jnp.ones((3,), bool) for x in AGENTS}
        masks["a"] = jnp.array([state.t % 2 == 0, True, state.t % 3 == 0])
        return masks

    def global_state(self, state):
        return jnp.stack([state.h, state.t / self.T]).astype(jnp.float32)


def _algo(mod, extra=()):
    cfg = resolve([f"algo={mod.NAME}", "hidden=16,16", *extra]).algo
    algo = mod.Algorithm(HiddenSignal().spec, cfg)
    algo.bind(num_envs=8, total_steps=10_000)
    return algo


def _collect(algo, state, key, steps=10, num_envs=8, record_states=False):
    env = HiddenSignal()
    carry = rollout.reset(env, jax.random.PRNGKey(7), num_envs)
    _, _, traj = rollout.collect(
        env,
        algo.policy(state),
        carry,
        key,
        steps,
        rollout.Options(env_info=True, record_states=record_states),
    )
    return env, traj


# ---- masks ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", [Discrete(5), MultiDiscrete((3, 4))])
def test_masked_actions_are_never_sampled_and_have_zero_probability(space):
    spec = EnvSpec("test/one", ("x",), (Box(-1.0, 1.0, (2,)),), (space,), (("t", ("x",)),), 1)
    actors = Actors(spec, (8,), "tanh", 0.0)
    p = actors.init(jax.random.PRNGKey(0))["x"]
    p = jax.tree.map(lambda v: v * 50.0, p)  # peaked logits, so masking must actually matter
    n = 4000
    obs = jax.random.normal(jax.random.PRNGKey(1), (n, 2))
    mask = jnp.ones((space.flat_dim,), bool).at[jnp.array([0, 2])].set(False)  # two unavailable
    keys = jax.random.split(jax.random.PRNGKey(2), n)
    env_a, _, logp = jax.vmap(lambda o, k: actors.sample(p, "x", o, k, mask))(obs, keys)
    flat = jax.vmap(space.to_flat)(env_a)
    assert not bool(jnp.any(flat[:, ~mask] > 0)), "a masked action was sampled"
    assert bool(jnp.all(jnp.isfinite(logp)))
    # every unavailable action has log-probability ~ -1e9 (probability exactly 0) ...
    greedy = jax.vmap(lambda o: actors.mode(p, "x", o, mask))(obs)
    assert not bool(jnp.any(jax.vmap(space.to_flat)(greedy)[:, ~mask] > 0))
    if isinstance(space, Discrete):
        for bad in (0, 2):
            lp, _ = actors.log_prob_entropy(p, "x", obs[:5], jnp.full((5,), bad), mask)
            assert bool(jnp.all(jnp.exp(lp) == 0.0))
    # ... and the entropy is that of the renormalised available actions (no NaN from masked terms)
    _, ent = actors.log_prob_entropy(p, "x", obs[:5], env_a[:5], mask)
    logits = actors.out(p, "x", obs[:5])
    parts = [(0, 3), (3, 7)] if isinstance(space, MultiDiscrete) else [(0, 5)]
    want = 0.0
    for lo, hi in parts:
        lg, m = logits[:, lo:hi], mask[lo:hi]
        pr = jax.nn.softmax(jnp.where(m, lg, -jnp.inf), axis=-1)
        want = want - jnp.sum(jnp.where(m, pr * jnp.log(jnp.where(m, pr, 1.0)), 0.0), axis=-1)
    np.testing.assert_allclose(ent, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mod", [mappo, happo])
def test_rollout_env_info_masks_and_global_state(mod):
    algo = _algo(mod)
    state = algo.init(jax.random.PRNGKey(0))
    env, traj = _collect(algo, state, jax.random.PRNGKey(1), steps=12, record_states=True)
    masks = jax.vmap(jax.vmap(env.avail_actions))(traj.states)
    for x in AGENTS:
        np.testing.assert_array_equal(traj.info["avail"][x], masks[x])
        taken = jnp.take_along_axis(masks[x], traj.actions[x][..., None], -1)[..., 0]
        assert bool(jnp.all(taken)), f"agent {x} took an unavailable action"
    assert not bool(jnp.all(masks["a"]))  # the mask really rules actions out
    np.testing.assert_array_equal(
        traj.info["global_state"], jax.vmap(jax.vmap(env.global_state))(traj.states)
    )
    # the state each step reached: at the time limit (t = 5) that of the finished episode, not the reset's
    gs = traj.info["next_global_state"]
    np.testing.assert_allclose(gs[traj.truncated][:, 1], 1.0)
    np.testing.assert_array_equal(gs[:-1][~traj.done[:-1]], traj.info["global_state"][1:][~traj.done[:-1]])
    np.testing.assert_array_equal(gs[..., 0], traj.info["global_state"][..., 0])  # the same episode's h


def test_mappo_critic_sees_the_global_state():
    algo = _algo(mappo, ["lr=0.003", "critic_lr=0.01"])
    state = algo.init(jax.random.PRNGKey(0))
    _, traj = _collect(algo, state, jax.random.PRNGKey(1))
    want = algo.value(state.params, state.vnorm, traj.info["global_state"])
    np.testing.assert_allclose(traj.extras["value"], want, rtol=1e-6)
    obs = {x: jnp.zeros((2, 1)) for x in AGENTS}
    info = {"global_state": jnp.array([[1.0, 0.0], [-1.0, 0.0]])}
    np.testing.assert_array_equal(algo.critic_input(obs, info), info["global_state"])
    # h is only in the global state: after some learning V separates the two signs, which no critic on
    # the observations could do (they are the same for h = +1 and h = -1)
    key = jax.random.PRNGKey(2)

    @jax.jit
    def iteration(state, key, step):
        k1, k2 = jax.random.split(key)
        return algo.learn(state, _collect(algo, state, k1)[1], step, k2)[0]

    for i in range(30):
        key, k = jax.random.split(key)
        state = iteration(state, k, (i + 1) * 80)
    v = algo.value(state.params, state.vnorm, info["global_state"])
    assert float(v[0]) > 1.0 and float(v[1]) < -1.0, v  # the returns from t = 0 are +-5 (gamma 0.99)


# ---- HAPPO's factor M -------------------------------------------------------------------------------
def _happo_phase(extra=(), stacked=None, order=(2, 0, 1)):
    algo = _algo(happo, ["lr=0.01", "epochs=3", *extra])
    if stacked is not None:
        algo.stacked = stacked
    state = algo.init(jax.random.PRNGKey(0))
    _, traj = _collect(algo, state, jax.random.PRNGKey(1))
    data, _, _ = algo.batch(state, traj)
    actors, _, factors, _ = jax.jit(algo.actor_phase)(
        state.params["actors"], state.opt["actors"], data, jnp.array(order), jax.random.PRNGKey(3), 0.01
    )
    return algo, state, data, actors, factors


def test_happo_factor_matches_a_hand_computation():
    algo, state, data, actors, factors = _happo_phase()
    assert algo.stacked  # three agents of one space: the stacked path

    def log_ratio(x):
        d = data["agents"][x]
        new, _ = algo.actors.log_prob_entropy(actors[x], x, d["obs"], d["action"], d["mask"])
        return new - d["log_prob"]

    # order (c, a, b): c sees M = 1, a sees pi_c,new / pi_c,old, b sees the product for c and a
    np.testing.assert_allclose(factors[0], 1.0)
    np.testing.assert_allclose(factors[1], jnp.exp(log_ratio("c")), rtol=1e-5)
    np.testing.assert_allclose(factors[2], jnp.exp(log_ratio("c") + log_ratio("a")), rtol=1e-5)
    assert float(jnp.std(factors[2])) > 1e-3  # the agents really moved
    for x in AGENTS:  # every agent was trained
        assert not np.allclose(jax.tree.leaves(actors[x])[0], jax.tree.leaves(state.params["actors"][x])[0])

    # the Lookahead authors' variant: the same product, clipped to [0.8, 1.2] where it is used
    _, _, data_c, actors_c, factors_c = _happo_phase(["factor_clip=0.2"])
    d = data_c["agents"]["c"]
    new, _ = algo.actors.log_prob_entropy(actors_c["c"], "c", d["obs"], d["action"], d["mask"])
    np.testing.assert_allclose(factors_c[1], jnp.clip(jnp.exp(new - d["log_prob"]), 0.8, 1.2), rtol=1e-5)


def test_happo_switch_path_equals_stacked_path():
    """Agents of different spaces go through lax.switch; on agents of one space both paths agree."""
    _, _, _, actors_s, factors_s = _happo_phase(stacked=True)
    _, _, _, actors_w, factors_w = _happo_phase(stacked=False)
    np.testing.assert_allclose(factors_s, factors_w, rtol=1e-5, atol=1e-6)
    for x in AGENTS:
        for u, v in zip(jax.tree.leaves(actors_s[x]), jax.tree.leaves(actors_w[x]), strict=True):
            np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


# ---- through the runner -----------------------------------------------------------------------------
SMALL = [
    "hidden=16,16",
    "num_envs=4",
    "rollout_steps=25",
    "epochs=2",
    "eval_every=200",
    "total_steps=600",
    "eval_episodes=2",
    "progress=false",
    "task=games/lookahead_toy",  # cheap to compile; cooperative, continuous actions, agents of one space
]


@pytest.mark.parametrize("name", ["mappo", "happo"])
def test_vmapped_seeds_equal_separate_runs(tmp_path, name):
    args = [f"algo={name}", *SMALL]
    batched = read_metrics(train(resolve([*args, "num_seeds=2", f"run_dir={tmp_path / 'b'}"])))
    for s in (0, 1):
        alone = read_metrics(train(resolve([*args, f"seed={s}", f"run_dir={tmp_path / str(s)}"])))[s]
        for col, v in batched[s].items():
            if col not in ("wall_time", "steps_per_s"):
                np.testing.assert_allclose(v, alone[col], rtol=1e-5, atol=1e-5, equal_nan=True, err_msg=col)
    assert not np.allclose(batched[0]["loss/value_loss"][1:], batched[1]["loss/value_loss"][1:])


def test_cooperative_only_and_bad_schedule():
    from marlow.errors import ConfigError

    with pytest.raises(ConfigError, match="cooperative"):
        train(resolve(["algo=mappo", "task=mpe/simple_tag", "progress=false"]))
    with pytest.raises(ConfigError, match="critic_minibatches"):
        train(resolve(["algo=happo", "critic_minibatches=0", "progress=false"]))
