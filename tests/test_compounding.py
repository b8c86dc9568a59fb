"""Tests of marlow.world.compounding (AORPO paper Sec. 6.3): with an exact dynamics model and the real
policies the branched rollout reproduces the real trajectory (eps_c ~ 0), inexact opponent models make it
drift, and the communications of one measurement match the hand counts M x (h - n_j) / M x h / 0."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_aorpo import SMALL
from test_model_env import exact_predict, spread

from marlow import envs
from marlow.algos import get_algo
from marlow.errors import ConfigError
from marlow.experiment.config import resolve
from marlow.world.compounding import make_measure, start_states

M, H = 8, 4
AGENTS = ("agent_0", "agent_1", "agent_2")
# ego -> j -> eps_j: n_j = floor(h min eps / eps_j) is h for the better model, floor(h/3) or floor(h/2)
# for the worse one (hand values below)
EPS = {
    "agent_0": {"agent_1": 0.1, "agent_2": 0.3},
    "agent_1": {"agent_0": 0.4, "agent_2": 0.2},
    "agent_2": {"agent_0": 0.25, "agent_1": 0.25},
}
# sum over egos and teammates of M x (h - n_j) for h = 1..4:
#   agent_0: n = (h, floor(h/3)) -> h - floor(h/3) = 1, 2, 2, 3
#   agent_1: n = (floor(h/2), h) -> h - floor(h/2) = 1, 1, 2, 2
#   agent_2: n = (h, h)          -> 0
ADAPTIVE_COMM = [M * 2, M * 3, M * 4, M * 5]
REAL_TO_SIMU_COMM = ADAPTIVE_COMM  # the same number of real steps, at the start instead of the end
ALL_REAL_COMM = [M * h * 6 for h in range(1, H + 1)]  # 3 egos x 2 teammates x M x h


def exact_step(dyn_state, obs, actions, key, agent=None, deterministic=False):
    """The dynamics model replaced by the real env (for a batch of joint observations)."""
    del dyn_state, agent, deterministic
    return jax.vmap(exact_predict, in_axes=(None, 0, 0))(key, obs, actions)


class Setup:
    """A tiny AORPO on simple_spread (test_aorpo's settings), untrained."""

    def __init__(self, task: str = "mpe/simple_spread"):
        self.env = envs.make(task)
        self.spec = self.env.spec
        cfg = resolve(["algo=aorpo", f"task={task}", *SMALL]).algo
        self.algo = get_algo("aorpo").Algorithm(self.spec, cfg)
        self.state = jax.jit(self.algo.init)(jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def exact():
    """One measurement of all four schemes with the exact dynamics model and untrained (inexact)
    opponent models, the opponent-model errors set to EPS."""
    s = Setup()
    spread()  # build the exact model's env outside any trace
    state = s.state.replace(eps={e: {j: jnp.float32(v) for j, v in d.items()} for e, d in EPS.items()})
    mp = pytest.MonkeyPatch()
    mp.setattr(s.algo.dyn, "step", exact_step)
    try:
        measure = make_measure(s.algo, s.env, M, H, ("adaptive", "real_to_simu", "all_models", "all_real"))
        out = jax.device_get(measure(state, jax.random.PRNGKey(5)))
    finally:
        mp.undo()
    return s, state, out


def test_exact_model_with_real_policies_has_no_compounding_error(exact):
    _, _, out = exact
    err = out["all_real"]["eps_c"]
    assert err.shape == (H,)
    assert float(np.max(out["all_real"]["eps_c_ego"])) < 1e-8


def test_inexact_opponent_models_compound(exact):
    _, _, out = exact
    models = out["all_models"]["eps_c"]
    assert float(models.min()) > 1e-4, models
    # the error compounds: the mean over the first h steps grows with h
    assert float(models[-1]) > float(models[0])
    # the adaptive scheme uses the models for n_j <= h steps only: some error, less than all models
    adaptive = out["adaptive"]["eps_c"]
    assert float(adaptive[-1]) > 1e-4
    assert float(adaptive[-1]) < float(models[-1])


def test_communications_match_hand_counts(exact):
    _, _, out = exact
    np.testing.assert_array_equal(out["adaptive"]["comm"], ADAPTIVE_COMM)
    np.testing.assert_array_equal(out["real_to_simu"]["comm"], REAL_TO_SIMU_COMM)
    np.testing.assert_array_equal(out["all_real"]["comm"], ALL_REAL_COMM)
    np.testing.assert_array_equal(out["all_models"]["comm"], np.zeros(H))
    n = out["adaptive"]["n"]
    h = np.arange(1, H + 1)
    np.testing.assert_array_equal(n["agent_0"]["agent_1"], h)
    np.testing.assert_array_equal(n["agent_0"]["agent_2"], h // 3)
    np.testing.assert_array_equal(n["agent_1"]["agent_0"], h // 2)
    np.testing.assert_array_equal(out["adaptive"]["comm_ego"]["agent_1"]["agent_0"], M * (h - h // 2))


def test_start_states_are_spread_over_the_episode(exact):
    s, state, out = exact
    w = out["warmup"]
    assert w.shape == (M,) and w.min() >= 0 and w.max() < s.spec.episode_length and len(set(w.tolist())) > 2
    env_states, obs, w2 = jax.jit(lambda st, k: start_states(s.algo, st, s.env, k, M, 10))(
        state, jax.random.PRNGKey(1)
    )
    assert int(w2.max()) <= 10 and int(jnp.sum(env_states.step)) == 0  # counters reset for the rollouts
    real_obs = jax.vmap(s.env.get_obs)(env_states)
    for a in AGENTS:
        np.testing.assert_allclose(obs[a], real_obs[a])
    # the warmed-up starts moved away from their fresh resets: the agents' velocities are not all zero
    assert float(jnp.abs(obs["agent_0"][:, :2]).max()) > 1e-3


def test_bad_arguments_are_config_errors(exact):
    s, state, _ = exact
    with pytest.raises(ConfigError, match="horizon"):
        make_measure(s.algo, s.env, M, 100)(state, jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match="unknown rollout schemes"):
        make_measure(s.algo, s.env, M, H, ("sometimes",))(state, jax.random.PRNGKey(0))
