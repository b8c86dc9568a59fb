"""The learner protocol is checked once, when a learner is made: every algorithm module declares its KIND,
a missing piece or a misspelled optional hook is a one-line ConfigError instead of a silent change."""

from __future__ import annotations

import types
from dataclasses import dataclass

import pytest

from marlow import envs
from marlow.algos import ALGORITHMS, get_algo
from marlow.algos.learner import KINDS, OFF_POLICY, check_learner, kind_of, make_learner
from marlow.errors import ConfigError

SPEC = envs.make("games/climbing").spec


@dataclass
class _Cfg:
    batch_size: int = 4
    buffer_size: int = 16
    update_every: int = 1
    updates_per_step: int = 1
    warmup_steps: int = 0


class _Algo:
    """The least an off-policy algorithm needs: init, act, update (never called here)."""

    def __init__(self, spec):
        self.spec = spec

    def init(self, key):
        return None

    def act(self, state, obs, key, explore):
        return {}

    def update(self, state, batch, key):
        return state, {}


def _module(kind=OFF_POLICY):
    return types.SimpleNamespace(__name__="tests.fake_algo", KIND=kind)


def _make(algo, kind=OFF_POLICY):
    return make_learner(_module(kind), algo, _Cfg(), SPEC, num_envs=1, total_steps=16)


def test_every_algorithm_declares_its_kind():
    assert {a: kind_of(get_algo(a)) in KINDS for a in ALGORITHMS} == dict.fromkeys(ALGORITHMS, True)
    with pytest.raises(
        ConfigError, match="must set KIND to one of off_policy, on_policy, world_model; got None"
    ):
        kind_of(types.SimpleNamespace(__name__="mine"))
    with pytest.raises(ConfigError, match="got 'onpolicy'"):
        kind_of(_module("onpolicy"))


def test_a_complete_off_policy_algorithm_is_accepted():
    lrn = _make(_Algo(SPEC))
    assert lrn.steps_per_iter == 1 and lrn.algo is not None


def test_a_missing_method_is_named():
    class NoUpdate(_Algo):
        update = None

    with pytest.raises(
        ConfigError, match=r"algorithm fake_algo lacks update \(.*OffPolicyAlgorithm needs them\)"
    ):
        _make(NoUpdate(SPEC))


@pytest.mark.parametrize(
    "typo,hook", [("obsreve", "observe"), ("prepar", "prepare"), ("diagnostic", "diagnostics")]
)
def test_a_misspelled_optional_hook_is_refused(typo, hook):
    """An optional hook under a wrong name would silently never be called."""
    algo = type("Typo", (_Algo,), {typo: lambda self, *a: None})(SPEC)
    with pytest.raises(ConfigError, match=f"defines '{typo}'.*did you mean '{hook}'"):
        _make(algo)


def test_a_helper_with_a_private_name_is_not_a_hook():
    algo = type("Helper", (_Algo,), {"_prepar": lambda self, *a: None, "update_critic": lambda self: None})(
        SPEC
    )
    _make(algo)


def test_full_round_needs_reduced_updates():
    algo = type("Rounds", (_Algo,), {"full_round": lambda self, step: True})(SPEC)
    with pytest.raises(ConfigError, match="full_round but no REDUCED_UPDATES"):
        _make(algo)


def test_recurrent_hooks_come_all_or_none():
    lrn = _make(_Algo(SPEC))
    lrn.init_pstate = lambda n: None
    with pytest.raises(ConfigError, match="has init_pstate but not reset_pstate, greedy_policy"):
        check_learner(lrn, "algorithm fake_algo")
    lrn.reset_pstate = lambda p, d: p
    lrn.greedy_policy = lambda s: None
    check_learner(lrn, "algorithm fake_algo")


# ---- single-state readings: the greedy action of any learner, the models' own readings ------------------
def _learner(algo_name: str, task: str):
    from marlow.experiment.config import resolve
    from marlow.experiment.setup import build

    budget = ["total_steps=3200", "eval_every=3200"]  # whole iterations of every learner here
    cfg = resolve([f"algo={algo_name}", f"task={task}", "num_envs=1", "hidden=8,8", *budget])
    return build(cfg, quiet=True)


@pytest.mark.parametrize("algo_name", ["ddpg_om", "ippo"])
def test_single_state_tasks_log_every_learners_greedy_action(algo_name):
    import jax
    import numpy as np

    from marlow.experiment.loop import greedy_policy, init_pstate, probe

    run = _learner(algo_name, "games/max_of_two_quadratics")
    lrn, spec = run.learner, run.env.spec
    state = lrn.init(jax.random.PRNGKey(3))
    got = jax.jit(lambda s: probe(spec, lrn, s))(state)
    obs = {a: np.ones((1, 1), np.float32) for a in spec.agents}  # the game's one observation
    _, greedy, _ = greedy_policy(lrn, state)(init_pstate(lrn, 1), obs, 0, jax.random.PRNGKey(0))
    for a in spec.agents:
        assert float(got[f"pi_mean/{a}"]) == pytest.approx(float(greedy[a][0, 0]), rel=1e-6)
    models = {k.split("/")[0] for k in got} - {"pi_mean"}
    assert models == ({"om_mean"} if algo_name == "ddpg_om" else set())  # the algorithm's own probe


def test_tasks_with_many_states_log_no_probe():
    import jax

    from marlow.experiment.loop import probe

    run = _learner("masac", "mpe/simple_spread")
    assert probe(run.env.spec, run.learner, jax.eval_shape(run.learner.init, jax.random.PRNGKey(0))) == {}


def test_the_agentwise_scaffold_moves_targets_and_averages_metrics():
    """common.AgentwiseUpdate: each agent's step with its own key, the new fields applied, the target
    Polyak-averaged toward the updated online value, steps + 1, metrics averaged over agents."""
    import jax
    import jax.numpy as jnp
    from flax import struct

    from marlow.algos import common

    @struct.dataclass
    class State:
        w: dict
        target_w: dict
        steps: jax.Array

    class Toy(common.AgentwiseUpdate):
        TARGETS = {"target_w": "w"}

        def __init__(self):
            self.spec, self.cfg = SPEC, types.SimpleNamespace(tau=0.25)

        def agent_update(self, state, a, batch, key):
            noise = jax.random.uniform(key)  # a different key per agent
            return {"w": state.w[a] + 1.0}, {"loss": noise, "index": jnp.float32(SPEC.index(a))}

    w = {a: jnp.float32(4.0) for a in SPEC.agents}
    state, m = Toy().update(State(w, w, jnp.int32(0)), {}, jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(0), SPEC.num_agents)
    for a in SPEC.agents:
        assert float(state.w[a]) == 5.0
        assert float(state.target_w[a]) == 0.75 * 4.0 + 0.25 * 5.0
    assert int(state.steps) == 1
    assert float(m["index"]) == pytest.approx((SPEC.num_agents - 1) / 2)
    assert float(m["loss"]) == pytest.approx(float(jnp.mean(jax.vmap(jax.random.uniform)(keys))))
