"""Tests of marlow.world.branched: the rollout-length schedule (Tables 1-2), n_j (Algorithm 1 line 8), which
steps query the real opponent under each scheme, exact communication counts, competitive teams
(Appendix G.3), masking beyond k, vmapping over seeds, and the compounding error (Sec. 6.3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow.envs import make
from marlow.envs.api import EnvSpec
from marlow.envs.spaces import Box, Discrete
from marlow.errors import ConfigError
from marlow.world.branched import (
    PAPER_SCHEDULES,
    Actors,
    Length,
    branched_rollout,
    compounding_error,
    flatten,
    opponent_steps,
    real_query_steps,
    rollout_length,
)
from marlow.world.model_env import ModelEnv

# ------------------------------------------------------------------------------------------------------
# schedule
# ------------------------------------------------------------------------------------------------------


def test_rollout_length_table_values():
    spread = PAPER_SCHEDULES["mpe/simple_spread"]  # Table 1: 1 -> 6 over epochs 15 -> 100
    assert spread == (1, 6, 15, 100)
    epochs = jnp.array([0, 15, 31, 32, 57, 100, 150])
    # hand: f = 1 + (e - 15) * 5 / 85, clipped to [1, 6], floored: 31 -> 1.94, 32 -> 2.0, 57 -> 3.47
    np.testing.assert_array_equal(jax.jit(jax.vmap(spread))(epochs), [1, 1, 1, 2, 3, 6, 6])
    # Table 1 communication 1 -> 10 over 15 -> 100: e = 58 -> 1 + 43 * 9 / 85 = 5.55
    assert int(PAPER_SCHEDULES["mpe/simple_speaker_listener"](58)) == 5
    # Table 1 scheduling 1 -> 8 over 40 -> 100: e = 70 -> 4.5; e = 39 -> 1
    assert int(PAPER_SCHEDULES["mpe/simple_schedule"](70)) == 4
    assert int(PAPER_SCHEDULES["mpe/simple_schedule"](39)) == 1
    # Table 2 predator-prey 1 -> 5 over 20 -> 100: e = 60 -> exactly 3; keep-away e = 75 -> 5.5
    assert int(PAPER_SCHEDULES["mpe/simple_tag"](60)) == 3
    assert int(PAPER_SCHEDULES["mpe/simple_push"](75)) == 5
    assert rollout_length(jnp.int32(100), 1, 10, 30, 120).dtype == jnp.int32
    with pytest.raises(ConfigError):
        rollout_length(10, 1, 5, 20, 20)
    with pytest.raises(ConfigError):
        rollout_length(10, 6, 1, 15, 100)


# ------------------------------------------------------------------------------------------------------
# n_j
# ------------------------------------------------------------------------------------------------------


def as_ints(d):
    return {a: int(v) for a, v in d.items()}


def test_opponent_steps_hand_values():
    # n_j = floor(5 * 0.1 / eps_j): 5, 2.5 -> 2, 1.25 -> 1
    assert as_ints(opponent_steps({"a": 0.1, "b": 0.2, "c": 0.4}, 5)) == {"a": 5, "b": 2, "c": 1}
    # exact integer ratios survive float32 rounding: 3 * 0.1 / 0.3 = 1, 7 * 0.1 / 0.7 = 1
    assert as_ints(opponent_steps({"a": 0.1, "b": 0.3}, 3)) == {"a": 3, "b": 1}
    assert as_ints(opponent_steps({"a": 0.7, "b": 0.1}, 7)) == {"a": 1, "b": 7}
    # a perfect model: it runs all k steps, every imperfect one none
    assert as_ints(opponent_steps({"a": 0.0, "b": 0.3}, 4)) == {"a": 4, "b": 0}
    assert as_ints(opponent_steps({"a": 0.0, "b": 0.0}, 4)) == {"a": 4, "b": 4}
    # traced k and eps
    n = jax.jit(lambda e, k: opponent_steps({"a": e[0], "b": e[1]}, k))(jnp.array([0.25, 0.1]), jnp.int32(8))
    assert as_ints(n) == {"a": 3, "b": 8}  # 8 * 0.4 = 3.2
    assert opponent_steps({}, 5) == {}


def test_opponent_steps_other_team():
    eps = {"t1": 0.2, "t2": 0.4, "o": 0.1}
    # o (other team) always simulated: n = k; its error enters the min (default): 8*0.5, 8*0.25
    assert as_ints(opponent_steps(eps, 8, ("o",))) == {"t1": 4, "t2": 2, "o": 8}
    # the option: min over the queryable teammates only (0.2): 8, 4
    assert as_ints(opponent_steps(eps, 8, ("o",), min_over_simulated=False)) == {"t1": 8, "t2": 4, "o": 8}
    # a poor other-team model still runs all k steps (never floor(8 * 0.1 / 0.4) = 2)
    assert as_ints(opponent_steps({"t1": 0.1, "o": 0.4}, 8, ("o",))) == {"t1": 8, "o": 8}
    with pytest.raises(ConfigError):
        opponent_steps(eps, 8, ("zz",))


def test_real_query_steps():
    t, f = True, False
    # k = 5, k_max = 7, n = 2
    np.testing.assert_array_equal(real_query_steps("adaptive", 2, 5, 7), [f, f, t, t, t, f, f])
    np.testing.assert_array_equal(real_query_steps("real_to_simu", 2, 5, 7), [t, t, t, f, f, f, f])
    np.testing.assert_array_equal(real_query_steps("all_models", 2, 5, 7), [f] * 7)
    np.testing.assert_array_equal(real_query_steps("all_real", 2, 5, 7), [t] * 5 + [f] * 2)
    # n = k: no query; n > k is clipped to k
    assert not bool(real_query_steps("adaptive", 9, 5, 7).any())
    with pytest.raises(ConfigError):
        real_query_steps("simu", 2, 5, 7)


# ------------------------------------------------------------------------------------------------------
# branched rollouts on a toy model env
# ------------------------------------------------------------------------------------------------------
EGO, MATES = "e", ("t1", "t2", "t3")
M, K, K_MAX = 4, 5, 7
MODEL_MARK, REAL_MARK, EGO_MARK = 1, 3, 2


def toy_spec():
    agents = (EGO, *MATES)
    return EnvSpec(
        name="toy",
        agents=agents,
        obs_spaces=tuple(Box(-jnp.inf, jnp.inf, (2,)) for _ in agents),
        act_spaces=tuple(Discrete(5) for _ in agents),
        teams=(("team", agents),),
        episode_length=25,
    )


def toy_predict(key, obs, actions):
    """obs + 1 per step; reward = sum of all actions."""
    del key
    r = sum(actions[a] for a in actions).astype(jnp.float32)
    return {a: o + 1.0 for a, o in obs.items()}, {a: r for a in obs}


def marker(value):
    return lambda obs, key: jnp.full(next(iter(obs.values())).shape[:1], value, jnp.int32)


def ego_act(obs, key):
    assert set(obs) == {EGO, *MATES}  # the ego sees the joint observation
    return jnp.full(obs[EGO].shape[:1], EGO_MARK, jnp.int32)


START = {a: jnp.arange(M * 2, dtype=jnp.float32).reshape(M, 2) + 10 * i for i, a in enumerate((EGO, *MATES))}
EPS = {"t1": 0.1, "t2": 0.2, "t3": 0.4}  # n = (5, 2, 1) for k = 5


def run_toy(scheme, n=None, k=K, real_act=None):
    env = ModelEnv(toy_spec(), toy_predict)
    model_act = {a: marker(MODEL_MARK) for a in MATES}
    real_act = real_act if real_act is not None else {a: marker(REAL_MARK) for a in MATES}
    return branched_rollout(
        jax.random.key(0), env, START, EGO, Actors(ego_act, model_act, real_act), Length(k, K_MAX, n), scheme
    )


# expected real-policy steps (p = 1..7) per scheme for n = (5, 2, 1), k = 5, written out by hand
R, S = True, False
PATTERNS = {
    "adaptive": {
        "t1": [S, S, S, S, S, S, S],
        "t2": [S, S, R, R, R, S, S],
        "t3": [S, R, R, R, R, S, S],
    },
    "real_to_simu": {
        "t1": [S, S, S, S, S, S, S],
        "t2": [R, R, R, S, S, S, S],
        "t3": [R, R, R, R, S, S, S],
    },
    "all_models": {a: [S] * 7 for a in MATES},
    "all_real": {a: [R] * 5 + [S] * 2 for a in MATES},
}
COMMS = {  # M x (number of real steps): M * (k - n_j) for the adaptive schemes
    "adaptive": {"t1": 0, "t2": 12, "t3": 16},
    "real_to_simu": {"t1": 0, "t2": 12, "t3": 16},
    "all_models": {"t1": 0, "t2": 0, "t3": 0},
    "all_real": {"t1": 20, "t2": 20, "t3": 20},
}


@pytest.mark.parametrize("scheme", list(PATTERNS))
def test_scheme_uses_the_real_opponent_exactly_when_it_should(scheme):
    calls = dict.fromkeys(MATES, 0)

    def counted_real(a):
        def act(obs, key):
            jax.debug.callback(lambda: calls.__setitem__(a, calls[a] + 1))  # runs only if this branch runs
            return marker(REAL_MARK)(obs, key)

        return act

    n = opponent_steps(EPS, K)
    r = run_toy(scheme, n=n, real_act={a: counted_real(a) for a in MATES})
    acts = r.transitions["actions"]
    for a in MATES:
        expected = np.where(np.array(PATTERNS[scheme][a]), REAL_MARK, MODEL_MARK)
        np.testing.assert_array_equal(acts[a], np.broadcast_to(expected[:, None], (K_MAX, M)), err_msg=a)
        np.testing.assert_array_equal(r.real_steps[a], PATTERNS[scheme][a])
        assert int(r.communication[a]) == COMMS[scheme][a]
        # the real policy really ran exactly at the real steps (each call answers all M start states)
        assert calls[a] * M == COMMS[scheme][a], (a, calls)
    np.testing.assert_array_equal(acts[EGO], np.full((K_MAX, M), EGO_MARK))
    assert set(r.communication) == set(MATES)


def test_transitions_and_masking_beyond_k():
    r = run_toy("adaptive", n=opponent_steps(EPS, K))
    tr = r.transitions
    assert r.valid.shape == (K_MAX, M)
    np.testing.assert_array_equal(r.valid[:, 0], [True] * K + [False] * (K_MAX - K))
    for a in (EGO, *MATES):
        assert tr["obs"][a].shape == (K_MAX, M, 2)
        np.testing.assert_allclose(tr["obs"][a][0], START[a])
        np.testing.assert_allclose(tr["next_obs"][a], tr["obs"][a] + 1.0)
        np.testing.assert_allclose(tr["obs"][a][1:], tr["next_obs"][a][:-1])
    # reward = sum of the actions actually taken: p=1: 2+1+1+1, p=2: t3 real, p>=3: t2, t3 real
    np.testing.assert_allclose(tr["rewards"]["t1"][:, 0], [5, 7, 9, 9, 9, 5, 5])
    assert tr["done"].shape == (K_MAX, M) and float(tr["done"].sum()) == 0.0
    flat, valid = flatten(r)
    assert flat["obs"]["t2"].shape == (K_MAX * M, 2) and int(valid.sum()) == K * M
    np.testing.assert_allclose(flat["obs"]["e"][M : 2 * M], START["e"] + 1.0)  # step-major


def test_traced_k_one_compilation():
    env = ModelEnv(toy_spec(), toy_predict)
    traces = []

    @jax.jit
    def run(k, eps):
        traces.append(1)
        n = opponent_steps({a: eps[i] for i, a in enumerate(MATES)}, k)
        acts = {a: marker(MODEL_MARK) for a in MATES}
        real = {a: marker(REAL_MARK) for a in MATES}
        return branched_rollout(
            jax.random.key(0), env, START, EGO, Actors(ego_act, acts, real), Length(k, K_MAX, n)
        )

    eps = jnp.array([0.1, 0.2, 0.4])
    r5, r3, r7 = run(jnp.int32(5), eps), run(jnp.int32(3), eps), run(jnp.int32(7), eps)
    assert len(traces) == 1
    # k = 3: n = (3, 1, 0) -> comm M * (0, 2, 3); k = 7: n = (7, 3, 1) -> M * (0, 4, 6)
    assert as_ints(r3.communication) == {"t1": 0, "t2": 8, "t3": 12}
    assert as_ints(r7.communication) == {"t1": 0, "t2": 16, "t3": 24}
    assert as_ints(r5.communication) == COMMS["adaptive"]
    assert int(r3.valid.sum()) == 3 * M and int(r7.valid.sum()) == 7 * M
    # beyond k = 3 nobody is queried
    np.testing.assert_array_equal(r3.transitions["actions"]["t3"][:, 0], [3, 3, 3, 1, 1, 1, 1])


def test_vmap_over_seeds_matches_separate_runs():
    """Random policies and per-seed eps (so per-seed n_j); vmapped == one by one."""
    env = ModelEnv(toy_spec(), toy_predict)

    def sample(lo):
        return lambda obs, key: jax.random.randint(key, obs[EGO].shape[:1], lo, lo + 2)

    def run(key, eps):
        n = opponent_steps({a: eps[i] for i, a in enumerate(MATES)}, K)
        model_act = {a: sample(0) for a in MATES}
        real_act = {a: sample(3) for a in MATES}
        ego = lambda obs, key: jax.random.randint(key, obs[EGO].shape[:1], 0, 5)  # noqa: E731
        return branched_rollout(key, env, START, EGO, Actors(ego, model_act, real_act), Length(K, K_MAX, n))

    keys = jax.random.split(jax.random.key(1), 2)
    eps = jnp.array([[0.1, 0.2, 0.4], [0.4, 0.2, 0.1]])
    batched = jax.jit(jax.vmap(run))(keys, eps)
    for s in range(2):
        single = jax.jit(run)(keys[s], eps[s])
        for got, want in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            np.testing.assert_array_equal(got[s], want)
    assert as_ints(jax.tree.map(lambda x: x[1], batched.communication)) == {"t1": 16, "t2": 12, "t3": 0}
    # real actions (3 or 4) exactly at the real steps, model ones (0 or 1) elsewhere
    t3 = batched.transitions["actions"]["t3"]
    want = np.broadcast_to(np.array(PATTERNS["adaptive"]["t3"][:K])[:, None], (K, M))
    np.testing.assert_array_equal(t3[0, :K] >= 3, want)
    assert bool(jnp.all(t3[1] <= 1))  # seed 1: n_t3 = 5 = k, model only


def test_bad_arguments():
    with pytest.raises(ConfigError, match="scheme"):
        run_toy("simu_to_real", n=opponent_steps(EPS, K))
    with pytest.raises(ConfigError, match="n_j"):
        run_toy("adaptive", n=None)
    with pytest.raises(ConfigError, match="real_act"):
        run_toy("adaptive", n=opponent_steps(EPS, K), real_act={"t1": marker(REAL_MARK)})
    with pytest.raises(ConfigError, match="k="):
        run_toy("all_real", k=K_MAX + 1)
    env = ModelEnv(toy_spec(), toy_predict)
    with pytest.raises(ConfigError, match="ego"):
        branched_rollout(
            jax.random.key(0), env, START, "zz", Actors(ego_act, {}, {}), Length(2, 3), "all_models"
        )
    # all_models needs no real policies; all_real needs no teammate models
    run_toy("all_models", real_act={})
    real_act = {a: marker(REAL_MARK) for a in MATES}
    r = branched_rollout(
        jax.random.key(0), env, START, EGO, Actors(ego_act, {}, real_act), Length(K, K_MAX), "all_real"
    )
    assert int(r.transitions["actions"]["t1"][K_MAX - 1, 0]) == 0  # masked steps: a placeholder action


# ------------------------------------------------------------------------------------------------------
# competitive teams (Appendix G.3) on mpe/simple_tag's spec
# ------------------------------------------------------------------------------------------------------


def test_competitive_ego_queries_only_its_team():
    spec = make("mpe/simple_tag").spec  # adversary_0..2 (predators) vs agent_0 (prey)
    env = ModelEnv(spec, lambda key, obs, actions: (obs, {a: jnp.float32(0) for a in obs}))
    start = {a: jnp.zeros((M, spec.obs_dim(a))) for a in spec.agents}
    ego = "adversary_0"
    assert spec.teammates(ego) == ("adversary_1", "adversary_2") and spec.opponents(ego) == ("agent_0",)
    real_act = {a: marker(REAL_MARK) for a in spec.teammates(ego)}  # the prey cannot be queried at all

    def go(ego, scheme, n, k=4, real_act=real_act):
        model_act = {a: marker(MODEL_MARK) for a in spec.agents if a != ego}
        ego_fn = marker(EGO_MARK)
        return branched_rollout(
            jax.random.key(0), env, start, ego, Actors(ego_fn, model_act, real_act), Length(k, 6, n), scheme
        )

    # eps: the prey's model is the best (0.1) but it is never queried: n = k = 4; teammates 4*0.5, 4*0.25
    n = opponent_steps({"adversary_1": 0.2, "adversary_2": 0.4, "agent_0": 0.1}, 4, spec.opponents(ego))
    assert as_ints(n) == {"adversary_1": 2, "adversary_2": 1, "agent_0": 4}
    r = go(ego, "adaptive", n)
    assert as_ints(r.communication) == {"adversary_1": M * 2, "adversary_2": M * 3, "agent_0": 0}
    np.testing.assert_array_equal(r.transitions["actions"]["agent_0"], np.full((6, M), MODEL_MARK))
    np.testing.assert_array_equal(r.transitions["actions"]["adversary_2"][:, 0], [1, 3, 3, 3, 1, 1])
    # "all real" means all real *teammates*: the other team stays simulated, even with n_j = 0 passed
    r = go(ego, "all_real", {"agent_0": 0})
    assert as_ints(r.communication) == {"adversary_1": M * 4, "adversary_2": M * 4, "agent_0": 0}
    np.testing.assert_array_equal(r.transitions["actions"]["agent_0"], np.full((6, M), MODEL_MARK))
    # the prey as ego has no teammates: nothing is ever queried, every predator is simulated
    r = go("agent_0", "all_real", None, real_act={})
    assert as_ints(r.communication) == {"adversary_0": 0, "adversary_1": 0, "adversary_2": 0}
    np.testing.assert_array_equal(r.transitions["actions"]["adversary_1"], np.full((6, M), MODEL_MARK))


# ------------------------------------------------------------------------------------------------------
# compounding error (Sec. 6.3)
# ------------------------------------------------------------------------------------------------------


def test_compounding_error_hand_example():
    # h = 3 steps, M = 2 starts, agents a (dim 2) and b (dim 1); start 1 is predicted exactly
    real = {"a": jnp.zeros((3, 2, 2)), "b": jnp.zeros((3, 2, 1))}
    model = {
        "a": jnp.array([[[1.0, 0.0], [0, 0]], [[1.0, 1.0], [0, 0]], [[0.0, 0.0], [0, 0]]]),
        "b": jnp.array([[[0.0], [0]], [[1.0], [0]], [[2.0], [0]]]),
    }
    # start 0: ||s_i - s_hat_i||^2 = 1, 1 + 1 + 1 = 3, 4 -> (1 + 3 + 4) / 3
    np.testing.assert_allclose(compounding_error(real, model), [8.0 / 3.0, 0.0], rtol=1e-6)
    # only the first two steps valid: (1 + 3) / 2
    np.testing.assert_allclose(compounding_error(real, model, jnp.array([True, True, False])), [2.0, 0.0])
    valid = jnp.array([[True, True], [False, True], [False, True]])
    np.testing.assert_allclose(compounding_error(real, model, valid), [1.0, 0.0])
    with pytest.raises(ConfigError):
        compounding_error(real, {"a": model["a"]})
