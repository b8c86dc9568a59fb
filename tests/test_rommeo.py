"""ROMMEO-Q and ROMMEO-AC: closed-form checks of the soft Q-iteration (Eqs. 10-13), the importance-sampled
value of Algorithm 1, the opponent-model update of Eq. (19), Eq. (15)'s terminal target, finite squashed
log-probabilities at the action bounds, and short learning checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow import envs
from marlow.algos import get_algo
from marlow.envs.games import CLIMBING_PAYOFF
from marlow.experiment.config import resolve
from marlow.runtime.loggers import read_metrics
from marlow.runtime.runner import train

R = np.asarray(CLIMBING_PAYOFF, np.float64)  # rows: agent_0's action, columns: agent_1's
CLIMBING = envs.make("games/climbing").spec
QUAD = envs.make("games/max_of_two_quadratics").spec


def make(algo: str, spec, *overrides: str):
    cfg = resolve([f"algo={algo}", f"task={spec.name}", *overrides]).algo
    return get_algo(algo).Algorithm(spec, cfg)


def all_cells_batch(scale: float = 1.0, done: float = 0.0) -> dict:
    """The 9 joint actions of the climbing game once each, with their (scaled) payoffs."""
    a0, a1 = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
    a0, a1 = a0.ravel(), a1.ravel()
    r = jnp.asarray(R[a0, a1] * scale, jnp.float32)
    ones = jnp.ones((9, 1))
    return {
        "obs": {"agent_0": ones, "agent_1": ones},
        "next_obs": {"agent_0": ones, "agent_1": ones},
        "actions": {"agent_0": jnp.asarray(a0, jnp.int32), "agent_1": jnp.asarray(a1, jnp.int32)},
        "rewards": {"agent_0": r, "agent_1": r},
        "done": jnp.full((9,), done, jnp.float32),
    }


def iterate(algo, state, batch, n):
    def body(s, k):
        return algo.update(s, batch, k)[0], None

    return jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.PRNGKey(0), n))[0])(state)


# ---- ROMMEO-Q -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.0, 0.5, 3.0])
def test_rommeo_q_converges_to_the_closed_form_fixed_point(alpha):
    """One-state game, fixed prior P, every cell updated with lr 1: Q <- R + gamma V(Q) (Eq. 13). Since
    V(Q + c) = V(Q) + c, the fixed point is Q* = R + gamma c / (1 - gamma) with
    c = log sum_b P(b) (sum_a exp(R(a, b) / alpha))^alpha; pi* and rho* then follow Eqs. (10)-(11)."""
    gamma = 0.9
    algo = make(
        "rommeo_q", CLIMBING, f"alpha={alpha}", "alpha_decay=0", "lr=1", "lr_decay=0", f"gamma={gamma}"
    )
    state = algo.init(jax.random.PRNGKey(0))
    prior = {"agent_0": np.array([0.2, 0.5, 0.3]), "agent_1": np.array([0.6, 0.1, 0.3])}
    state = state.replace(counts={a: jnp.asarray(10 * p[None], jnp.float32) for a, p in prior.items()})
    state = iterate(algo, state, all_cells_batch(), 300)
    s0 = jnp.zeros((1,), jnp.int32)
    for agent, table in (("agent_0", R), ("agent_1", R.T)):  # table[own action, other's action]
        p = prior[agent]
        c = np.log(np.sum(p * np.sum(np.exp(table / alpha), axis=0) ** alpha))
        q_star = table + gamma * c / (1 - gamma)
        np.testing.assert_allclose(np.asarray(state.q[agent][0]), q_star, rtol=1e-4, atol=1e-3)
        v = float(algo.exact_value(state, agent, s0, jnp.float32(alpha))[0])
        assert v == pytest.approx(c / (1 - gamma), rel=1e-4, abs=1e-3)  # Eq. (13) at the fixed point
        pi_cond = np.exp(q_star / alpha) / np.sum(np.exp(q_star / alpha), axis=0)  # Eq. (10)
        rho = p * np.sum(np.exp(q_star / alpha), axis=0) ** alpha  # Eq. (11)
        rho /= rho.sum()
        _, log_rho, log_pi = algo.components(state, agent, s0, jnp.float32(alpha))
        np.testing.assert_allclose(np.exp(np.asarray(log_pi[0])), pi_cond, atol=1e-4)
        np.testing.assert_allclose(np.exp(np.asarray(log_rho[0])), rho, atol=1e-4)
        marginal = np.asarray(algo.marginal(state, agent, s0, jnp.float32(alpha))[0])
        np.testing.assert_allclose(marginal, pi_cond @ rho, atol=1e-4)


def test_rommeo_q_sampled_value_of_algorithm_1():
    """Algorithm 1's importance-sampled value. At alpha = 1 its proposal pi(a|s', b) rho(b|s') is the
    optimal one: every single sample (K = 1) gives Eq. (13) exactly. At other alphas it is a consistent
    estimate (large K) of log sum_{a, b} P(b) exp(Q(a, b)) (see the rommeo_q docstring), and K = 1 varies."""
    q = jnp.asarray(R / 10.0, jnp.float32)[None]
    counts = {a: jnp.asarray([[4.0, 1.0, 2.0]]) for a in CLIMBING.agents}
    s0 = jnp.zeros((1,), jnp.int32)
    keys = jax.random.split(jax.random.PRNGKey(1), 2000)

    def draws(algo, state, alpha):
        f = jax.vmap(lambda k: algo.sampled_value(state, "agent_0", s0, jnp.float32(alpha), k)[0])
        return np.asarray(jax.jit(f)(keys))

    one = make("rommeo_q", CLIMBING, "alpha_decay=0", "num_value_samples=1")
    state = one.init(jax.random.PRNGKey(0)).replace(q={"agent_0": q, "agent_1": q}, counts=counts)
    exact = float(one.exact_value(state, "agent_0", s0, jnp.float32(1.0))[0])
    np.testing.assert_allclose(draws(one, state, 1.0), exact, atol=1e-5)
    assert np.std(draws(one, state, 0.5)) > 0.05
    many = make("rommeo_q", CLIMBING, "alpha_decay=0", "num_value_samples=100000")
    target = np.log(np.sum(np.array([4.0, 1.0, 2.0]) / 7.0 * np.exp(R / 10.0)))
    est = float(many.sampled_value(state, "agent_0", s0, jnp.float32(0.5), jax.random.PRNGKey(2))[0])
    assert est == pytest.approx(target, abs=0.02)


def test_rommeo_q_prior_counts_and_emp_ablation():
    algo = make("rommeo_q", CLIMBING, "prior_pseudocount=1")
    emp = make("rommeo_q_emp", CLIMBING, "prior_pseudocount=1")
    state = algo.init(jax.random.PRNGKey(0))
    batch = all_cells_batch()
    batch["actions"]["agent_1"] = jnp.zeros(9, jnp.int32)  # agent_1 always plays A
    state = algo.observe(state, batch)
    np.testing.assert_allclose(state.counts["agent_0"][0], [10.0, 1.0, 1.0])  # agent_0 counts agent_1
    np.testing.assert_allclose(state.counts["agent_1"][0], [4.0, 4.0, 4.0])  # agent_1 counts agent_0
    state = state.replace(q={"agent_0": jnp.asarray(R, jnp.float32)[None], "agent_1": jnp.asarray(R.T)[None]})
    s0 = jnp.zeros((1,), jnp.int32)
    log_prior, log_rho_emp, _ = emp.components(state, "agent_0", s0, jnp.float32(1.0))
    np.testing.assert_allclose(log_rho_emp, log_prior)  # EMP: rho is the empirical frequency
    _, log_rho, _ = algo.components(state, "agent_0", s0, jnp.float32(1.0))
    assert float(jnp.exp(log_rho[0, 0])) > float(jnp.exp(log_prior[0, 0]))  # ROMMEO: pulled toward A


def test_rommeo_q_reaches_the_climbing_optimum_where_emp_does_not(tmp_path):
    """Fig. 1: ROMMEO-Q coordinates on (A, A) = 11; the EMP ablation settles elsewhere (return < 275)."""
    finals = {}
    for algo in ("rommeo_q", "rommeo_q_emp"):
        run = train(
            resolve(
                [
                    f"algo={algo}",
                    "task=games/climbing",
                    "total_steps=1500",
                    "num_envs=1",
                    "eval_every=1500",
                    "num_seeds=8",
                    "eval_episodes=1",
                    "progress=false",
                    f"run_dir={tmp_path / algo}",
                ]
            )
        )
        finals[algo] = np.array([m["eval/team_return"][-1] for m in read_metrics(run).values()])
    assert np.mean(finals["rommeo_q"] == 275.0) >= 0.75  # 25 steps x 11
    assert np.mean(finals["rommeo_q_emp"] == 275.0) <= 0.25


# ---- ROMMEO-AC ------------------------------------------------------------------------------------------
def zero_head(params):
    """Params whose output layer is zero: the network outputs 0 whatever its input."""
    last = sorted(k for k in params["params"] if k.startswith("Dense"))[-1]
    out = jax.tree.map(lambda x: x, params)
    out["params"][last] = jax.tree.map(jnp.zeros_like, params["params"][last])
    return out


def test_rommeo_ac_opponent_model_moves_toward_the_prior_when_q_is_flat():
    """Eq. (19) with Q flat and pi independent of a_-i is KL(rho || P): rho's mean goes to P's."""
    algo = make(
        "rommeo_ac", QUAD, "hidden=16,16", "batch_size=64", "lr_q=0", "lr_pi=0", "lr_prior=0",
        "lr_rho=0.01", "policy_reg=0", "gamma=0",
    )  # fmt: skip
    state = algo.init(jax.random.PRNGKey(0))
    p = state.params
    prior = zero_head(p["prior"]["agent_0"])
    last = sorted(k for k in prior["params"] if k.startswith("Dense"))[-1]
    prior["params"][last]["bias"] = jnp.asarray([np.arctanh(0.5), np.log(0.2)], jnp.float32)  # mean 5
    params = {
        "q": {a: zero_head(p["q"][a]) for a in QUAD.agents},
        "pi": {a: zero_head(p["pi"][a]) for a in QUAD.agents},
        "rho": p["rho"],
        "prior": {**p["prior"], "agent_0": prior},
    }
    state = state.replace(params=params, target_q=params["q"])
    obs = jnp.ones((64, 1))
    batch = {
        "obs": {a: obs for a in QUAD.agents},
        "next_obs": {a: obs for a in QUAD.agents},
        "actions": {a: jnp.zeros((64, 1)) for a in QUAD.agents},
        "rewards": {a: jnp.zeros(64) for a in QUAD.agents},
        "done": jnp.zeros(64),
    }
    before = float(algo.probe(state, QUAD.state_obs(0))["rho_mean/agent_0"])
    state = iterate(algo, state, batch, 400)
    d = algo.probe(state, QUAD.state_obs(0))
    assert abs(before) < 1.5
    assert float(d["prior_mean/agent_0"]) == pytest.approx(5.0, abs=1e-4)  # P frozen
    assert float(d["rho_mean/agent_0"]) == pytest.approx(5.0, abs=0.5)  # rho pulled to P
    assert abs(float(d["rho_mean/agent_1"])) < 1.5  # agent_1's prior is flat: no pull


def test_rommeo_ac_terminal_target_and_finite_log_probs_at_bounds():
    algo = make("rommeo_ac", QUAD, "hidden=16,16", "batch_size=4")
    state = algo.init(jax.random.PRNGKey(0))
    obs = jnp.ones((4, 1))
    acts = jnp.asarray([[-10.0], [10.0], [10.0], [-10.0]])  # exactly at the bounds
    batch = {
        "obs": {a: obs for a in QUAD.agents},
        "next_obs": {a: obs for a in QUAD.agents},
        "actions": {"agent_0": acts, "agent_1": -acts},
        "rewards": {a: jnp.asarray([1.0, -2.0, 3.0, 0.5]) for a in QUAD.agents},
        "done": jnp.ones(4),
    }
    new, m = jax.jit(algo.update)(state, batch, jax.random.PRNGKey(1))
    assert all(np.isfinite(float(v)) for v in m.values())
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(new))
    # Eq. (14)-(15) on terminal transitions: y = r, so the reported loss is 1/2 mean (Q(o, a) - r)^2
    losses = []
    for a, other in (("agent_0", "agent_1"), ("agent_1", "agent_0")):
        q = algo.q(state.params["q"][a], a, obs, batch["actions"][a], batch["actions"][other])
        losses.append(0.5 * np.mean((np.asarray(q) - np.asarray(batch["rewards"][a])) ** 2))
    assert float(m["q_loss"]) == pytest.approx(np.mean(losses), rel=1e-5)
    # the prior's log-likelihood of bound actions is finite even for a confident wrong prior
    dist = algo.opp["agent_0"]
    out = jnp.asarray([[8.0, -20.0]] * 4)  # mean far on the other side, log sigma at its floor
    assert np.isfinite(np.asarray(dist.log_prob(out, -acts))).all()


def test_rommeo_ac_learns_the_global_optimum_of_max_of_two_quadratics(tmp_path):
    """A short ROMMEO-AC run leaves the local basin: greedy return > 150 (the local optimum gives <= 0,
    the global one 250) for both seeds."""
    run = train(
        resolve(
            [
                "algo=rommeo_ac",
                "task=games/max_of_two_quadratics",
                "total_steps=1500",
                "eval_every=1500",
                "batch_size=128",
                "num_seeds=2",
                "eval_episodes=1",
                "progress=false",
                f"run_dir={tmp_path / 'run'}",
            ]
        )
    )
    finals = [m["eval/team_return"][-1] for m in read_metrics(run).values()]
    assert min(finals) > 150.0, finals
