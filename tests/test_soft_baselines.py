"""MASQL and PR2-AC (the ROMMEO paper's Fig. 2 energy-based / recursive-reasoning baselines): the
importance-sampled soft value against a numerical integral, the SVGD direction against its closed form,
the critic targets against hand computations on terminal and non-terminal batches, PR2-AC's conditional
opponent model moving to the best reply of a known Q, MASQL's sampler moving to the mode of a known Q,
and a short learning check each on the one-shot lookahead toy game.

``games/lookahead_toy``: two agents, Box(0, 1, (1,)), constant observation [1], reward
R = a0^3 - 2 (a0 - a1)^2 + 3 a0, optimum (1, 1) -> 4; a uniformly random joint action scores 1.42 and the
initial greedy joint action (~0.5, ~0.5) about 1.6. Each algorithm's init/act/update is compiled once per
configuration (module-scoped fixtures) for batches of B transitions and reused by every check."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from readings import probe_fn

from marlow import envs
from marlow.algos import get_algo
from marlow.algos.offpolicy.masql import rbf_kernel, svgd_direction, uniform_soft_value
from marlow.envs.games import lookahead_toy_reward
from marlow.experiment.config import resolve

B = 64
TOY = "games/lookahead_toy"
QUAD = "games/max_of_two_quadratics"
AGENTS = ("agent_0", "agent_1")


class Setup:
    def __init__(self, name: str, task: str = TOY, *overrides: str, algo_cls=None):
        self.spec = envs.make(task).spec
        self.cfg = resolve([f"algo={name}", f"task={task}", f"batch_size={B}", *overrides]).algo
        self.algo = (algo_cls or get_algo(name).Algorithm)(self.spec, self.cfg)
        self.init = jax.jit(self.algo.init)
        self.act = jax.jit(self.algo.act, static_argnums=3)
        self.update = jax.jit(self.algo.update)
        self.diagnostics = probe_fn(self.spec, self.algo, self.cfg)
        self.state0 = self.init(jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def masql():
    return Setup("masql")


@pytest.fixture(scope="module")
def pr2():
    return Setup("pr2_ac")


def make_batch(key, done=0.0, low=0.0, high=1.0, reward_fn=lookahead_toy_reward):
    """B one-step transitions at the constant observation, actions uniform in [low, high]."""
    k0, k1 = jax.random.split(key)
    acts = {
        a: jax.random.uniform(k, (B, 1), minval=low, maxval=high)
        for a, k in zip(AGENTS, (k0, k1), strict=True)
    }
    r = reward_fn(acts["agent_0"][:, 0], acts["agent_1"][:, 0])
    ones = {a: jnp.ones((B, 1)) for a in AGENTS}
    return {
        "obs": ones,
        "actions": acts,
        "rewards": {a: r for a in AGENTS},
        "next_obs": ones,
        "done": jnp.full((B,), done, jnp.float32),
    }


def random_rewards(batch, seed):
    return dict(
        batch,
        rewards={a: jax.random.normal(jax.random.PRNGKey(seed + i), (B,)) for i, a in enumerate(AGENTS)},
    )


def assert_polyak(old_target, online, new_target, tau):
    want = jax.tree.map(lambda t, o: (1 - tau) * t + tau * o, old_target, online)
    for x, y in zip(jax.tree.leaves(new_target), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


# ---- hand computations: raw networks, actions mapped to [-1, 1] by hand ---------------------------------
def unit(x, low, high):
    return 2.0 * (x - low) / (high - low) - 1.0


def mlp(net, params, *inputs):
    return net.apply(params, jnp.concatenate(inputs, -1))


# ---- MASQL: the importance-sampled soft value and the SVGD direction -----------------------------------
def test_importance_sampled_soft_value_approaches_the_integral():
    """V = alpha log ∫_[low, high] exp(Q(a) / alpha) da for the 1-D quadratic Q(a) = 2 - (a - 3)^2 / 4 on
    [-10, 10] (env scale; the estimator samples unit actions), against a fine trapezoid grid. The
    estimator's error (Jensen bias and spread over keys) shrinks as the number of samples grows."""
    low, high, alpha = jnp.array([-10.0]), jnp.array([10.0]), 2.0

    def q_env(a):
        return 2.0 - (a - 3.0) ** 2 / 4.0

    grid = np.linspace(-10.0, 10.0, 200_001)
    exact = alpha * math.log(np.trapezoid(np.exp(q_env(grid) / alpha), grid))

    def q_unit(u):  # [..., K, 1] unit actions -> [..., K]
        return q_env(low + (u[..., 0] + 1.0) * (high - low) / 2.0)

    errors = []
    for num in (4, 64, 4096):
        v = uniform_soft_value(
            q_unit, jax.random.PRNGKey(0), (200,), low, high, alpha, num
        )  # 200 keys' worth
        errors.append(float(jnp.sqrt(jnp.mean((v - exact) ** 2))))
    assert errors[0] > errors[1] > errors[2]
    assert errors[0] > 0.5  # the test can tell a few samples from many
    assert errors[2] < 0.05


def test_svgd_direction_matches_its_closed_form():
    """phi(y_i) = mean_j [k(x_j, y_i) s(x_j) + grad_x k(x_j, y_i)], k = exp(-|x - y|^2 / h), h =
    median |x - y|^2 / log Kx, written out with loops for one set of 2-D particles."""
    kx, ky = jax.random.split(jax.random.PRNGKey(3))
    x = np.asarray(jax.random.normal(kx, (5, 2)), np.float64)
    y = np.asarray(jax.random.normal(ky, (4, 2)), np.float64)
    s = -x  # score of a standard normal
    d2 = np.array([[np.sum((xj - yi) ** 2) for yi in y] for xj in x])
    h = np.median(d2) / np.log(5)
    phi = np.zeros_like(y)
    for i in range(4):
        for j in range(5):
            k = np.exp(-d2[j, i] / h)
            phi[i] += k * s[j] - 2.0 * (x[j] - y[i]) / h * k
    phi /= 5
    got = svgd_direction(
        jnp.asarray(x, jnp.float32), jnp.asarray(s, jnp.float32), jnp.asarray(y, jnp.float32)
    )
    np.testing.assert_allclose(np.asarray(got), phi, rtol=1e-4, atol=1e-5)
    kappa, _ = rbf_kernel(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    np.testing.assert_allclose(np.asarray(kappa), np.exp(-d2 / h), rtol=1e-4)


# ---- MASQL: critic targets --------------------------------------------------------------------------------
def masql_q(s: Setup, params, agent, obs, joint_u):
    return mlp(s.algo.q_net[agent], params[agent], obs, joint_u)[:, 0]


def masql_joint_u(s: Setup, batch, agent, low, high):
    other = AGENTS[1 - AGENTS.index(agent)]
    return unit(jnp.concatenate([batch["actions"][agent], batch["actions"][other]], -1), low, high)


def test_masql_terminal_target_is_the_reward(masql):
    s = masql
    state1, _ = s.update(s.state0, make_batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(2))
    assert not all(
        bool(jnp.array_equal(a, b))
        for a, b in zip(*map(jax.tree.leaves, (state1.q, state1.target_q)), strict=True)
    )
    batch = random_rewards(make_batch(jax.random.PRNGKey(3), done=1.0), 10)
    state2, m = s.update(state1, batch, jax.random.PRNGKey(4))
    want = np.mean(
        [
            0.5
            * jnp.mean(
                (
                    masql_q(s, state1.q, a, batch["obs"][a], masql_joint_u(s, batch, a, 0.0, 1.0))
                    - batch["rewards"][a]
                )
                ** 2
            )
            for a in AGENTS
        ]
    )
    assert float(m["q_loss"]) == pytest.approx(float(want), rel=1e-4)
    assert_polyak(state1.target_q, state2.q, state2.target_q, s.cfg.tau)


@pytest.fixture(scope="module")
def masql_quad_many():
    """MASQL on the [-10, 10]^2 game with alpha 1 and many value samples, so that its importance-sampled
    value is close to the integral (the box volume 20^2 enters the value: log 400 = 6)."""
    return Setup("masql", QUAD, "alpha=1.0", "value_particles=8192")


def test_masql_bootstrapped_target_matches_the_integral(masql_quad_many):
    """y = r + gamma (1 - d) alpha log ∫_[-10,10]^2 exp(Qbar(o', a) / alpha) da, the integral on a grid."""
    s = masql_quad_many
    low, high = -10.0, 10.0
    state1, _ = s.update(
        s.state0,
        random_rewards(make_batch(jax.random.PRNGKey(1), low=low, high=high), 0),
        jax.random.PRNGKey(2),
    )
    batch = random_rewards(make_batch(jax.random.PRNGKey(3), low=low, high=high), 10)
    _, m = s.update(state1, batch, jax.random.PRNGKey(4))
    g = np.linspace(low, high, 201)
    u = unit(jnp.asarray(np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)), low, high)
    losses, losses_no_volume = [], []
    for a in AGENTS:
        q_grid = masql_q(s, state1.target_q, a, jnp.ones((u.shape[0], 1)), u).reshape(201, 201)
        integral = np.trapezoid(np.trapezoid(np.exp(np.asarray(q_grid, np.float64)), g, axis=1), g)
        v = math.log(integral)  # alpha = 1; the observation is the same for every row
        q = masql_q(s, state1.q, a, batch["obs"][a], masql_joint_u(s, batch, a, low, high))
        y = batch["rewards"][a] + s.cfg.gamma * v
        losses.append(0.5 * float(jnp.mean((q - y) ** 2)))
        y_bad = batch["rewards"][a] + s.cfg.gamma * (v - math.log(400.0))
        losses_no_volume.append(0.5 * float(jnp.mean((q - y_bad) ** 2)))
    assert float(m["q_loss"]) == pytest.approx(np.mean(losses), rel=2e-2)
    assert np.mean(losses_no_volume) != pytest.approx(np.mean(losses), rel=0.2)  # the volume term matters


# ---- PR2-AC: critic targets -------------------------------------------------------------------------------
def pr2_mu(s: Setup, actor, agent, obs):
    return jnp.tanh(mlp(s.algo.policies.nets[agent], actor[agent], obs))  # unit action


def pr2_reply(s: Setup, rho, agent, obs, own_u, xi):
    """rho's unit replies [B, K, 1] to own unit actions [B, 1], latents [B, K, 1]."""
    k = xi.shape[1]
    x = jnp.concatenate([jnp.repeat(obs[:, None], k, 1), jnp.repeat(own_u[:, None], k, 1), xi], -1)
    return jnp.tanh(mlp(s.algo.rho_net[agent], rho[agent], x))


def pr2_q(s: Setup, params, agent, obs, own_u, opp_u):
    return mlp(s.algo.critic_net[agent], params[agent], obs, own_u, opp_u)[..., 0]


def deterministic_rho(rho):
    """rho with its latent input weights zeroed: every sample is then the same reply g(o, a_i)."""
    rho = jax.tree.map(jnp.copy, rho)
    for a in AGENTS:
        first = rho[a]["params"]["Dense_0"]
        first["kernel"] = first["kernel"].at[-1:].set(0.0)  # inputs: o (1), a_i (1), xi (1)
    return rho


def shift_output(params, c):
    """Add c to the output bias of every agent's MLP."""
    params = jax.tree.map(jnp.copy, params)
    for a in AGENTS:
        last = max(params[a]["params"], key=lambda n: int(n.split("_")[1]))
        params[a]["params"][last]["bias"] = params[a]["params"][last]["bias"] + c
    return params


@pytest.mark.parametrize("done", [0.0, 1.0])
@pytest.mark.parametrize("stochastic", [False, True])
def test_pr2_critic_target_matches_hand_computation(pr2, done, stochastic):
    """y = r + gamma (1 - d) E_{a'_-i ~ rho(.|o', mubar(o'))} Qbar(o', mubar(o'), a'_-i). With a
    deterministic rho the loss is exact. With the learnt stochastic rho the algorithm averages
    value_particles = K samples per row, so its loss is, in expectation, the exact-target loss plus
    gamma^2 Var_rho(Qbar) / (2K); the expectation and the variance are computed by hand from 20000 samples."""
    s = pr2
    state1, _ = s.update(s.state0, make_batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(2))
    if not stochastic:
        state1 = state1.replace(rho=deterministic_rho(state1.rho))
    state1 = state1.replace(target_critic=shift_output(state1.target_critic, 3.0))  # a bootstrap that shows
    batch = random_rewards(make_batch(jax.random.PRNGKey(3), done=done), 10)
    state2, m = s.update(state1, batch, jax.random.PRNGKey(4))
    n = 20_000
    losses, losses_no_boot = [], []
    for i, a in enumerate(AGENTS):
        o = batch["obs"][a][:1]  # the constant observation
        own2 = pr2_mu(s, state1.target_actor, a, o)
        opp2 = pr2_reply(s, state1.rho, a, o, own2, jax.random.normal(jax.random.PRNGKey(99), (1, n, 1)))
        q2 = pr2_q(
            s, state1.target_critic, a, jnp.repeat(o[:, None], n, 1), jnp.repeat(own2[:, None], n, 1), opp2
        )
        v, var = float(jnp.mean(q2)), float(jnp.var(q2))
        own = unit(batch["actions"][a], 0.0, 1.0)
        opp = unit(batch["actions"][AGENTS[1 - i]], 0.0, 1.0)
        q = pr2_q(s, state1.critic, a, batch["obs"][a], own, opp)
        r = batch["rewards"][a]
        noise = (1.0 - done) * s.cfg.gamma**2 * var / s.cfg.value_particles
        losses.append(0.5 * (float(jnp.mean((q - r - s.cfg.gamma * (1.0 - done) * v) ** 2)) + noise))
        losses_no_boot.append(0.5 * float(jnp.mean((q - r) ** 2)))
    assert float(m["critic_loss"]) == pytest.approx(
        np.mean(losses), rel=3e-2 if stochastic and not done else 1e-4
    )
    if not done:
        assert np.mean(losses_no_boot) != pytest.approx(np.mean(losses), rel=0.1)
        if stochastic:
            assert var > 1e-3  # the learnt rho is stochastic, its replies spread
    assert_polyak(state1.target_critic, state2.critic, state2.target_critic, s.cfg.tau)
    assert_polyak(state1.target_actor, state2.actor, state2.target_actor, s.cfg.tau)


# ---- PR2-AC's opponent model and MASQL's sampler under a known Q -----------------------------------------
def known_q_pr2():
    """PR2-AC whose critic is replaced by the fixed Q(o, a_i, a_-i) = -4 (a_-i - a_i)^2 (unit actions):
    the best reply to a_i is a_-i = a_i, and rho's target exp(Q / alpha) is a Gaussian around a_i."""
    base = get_algo("pr2_ac").Algorithm

    class KnownQ(base):
        def q(self, params, a, obs, own_u, opp_u):
            own = jnp.broadcast_to(
                own_u.reshape(own_u.shape[:1] + (1,) * (opp_u.ndim - 2) + own_u.shape[1:]), opp_u.shape
            )
            return -4.0 * jnp.sum((opp_u - own) ** 2, -1)

    return Setup("pr2_ac", QUAD, algo_cls=KnownQ)


def test_pr2_rho_learns_the_best_reply_to_own_action():
    s = known_q_pr2()
    state = s.state0
    probe = jnp.array([[-0.6], [0.0], [0.6]])  # own unit actions
    xi = jax.random.normal(jax.random.PRNGKey(5), (3, 512, 1))
    ones = jnp.ones((3, 1))

    def replies(state, a):
        return jnp.mean(s.algo.reply(state.rho[a], a, ones, probe, xi), axis=1)[:, 0]

    before = np.asarray(replies(state, "agent_0"))
    for k in range(60):
        state, _ = s.update(
            state, make_batch(jax.random.PRNGKey(100 + k), low=-10.0, high=10.0), jax.random.PRNGKey(k)
        )
    for a in AGENTS:
        after = np.asarray(replies(state, a))
        np.testing.assert_allclose(after, np.asarray(probe[:, 0]), atol=0.12)
        spread = float(jnp.mean(jnp.std(s.algo.reply(state.rho[a], a, ones, probe, xi), axis=1)))
        assert 0.05 < spread < 0.2, spread  # exp(Q / alpha) has std sqrt(alpha / 8) = 0.11: no collapse
    assert np.max(np.abs(before - np.asarray(probe[:, 0]))) > 0.3  # it had to move
    d = s.diagnostics(state)  # rho_mean: rho's mean reply (env scale) to the agent's own greedy action
    for a in AGENTS:
        assert float(d[f"rho_mean/{a}"]) == pytest.approx(float(d[f"pi_mean/{a}"]), abs=1.0)


def test_pr2_policy_gradient_flows_through_the_opponents_reply():
    """PR2's actor ascends grad_{a_i} E_rho[Q(o, a_i, a_-i)] including rho's dependence on a_i. With the
    reply fixed to a_-i = a_i and Q = -(a_-i - 0.5)^2 (no direct dependence on a_i), the only policy
    gradient is the one through the reply: mu moves to 0.5 (env 5). A policy gradient that ignored it
    would leave mu near its initial ~0 (within +-2 in env units)."""
    base = get_algo("pr2_ac").Algorithm

    class MirrorReply(base):
        def q(self, params, a, obs, own_u, opp_u):
            return -jnp.sum((opp_u - 0.5) ** 2, -1)

        def reply(self, params, a, obs, own_u, xi):
            return jnp.broadcast_to(own_u[:, None, :], xi.shape)

    s = Setup("pr2_ac", QUAD, algo_cls=MirrorReply)
    state = s.state0
    assert abs(float(s.diagnostics(state)["pi_mean/agent_0"])) < 2.0
    for k in range(60):
        state, _ = s.update(
            state, make_batch(jax.random.PRNGKey(100 + k), low=-10.0, high=10.0), jax.random.PRNGKey(k)
        )
    d = s.diagnostics(state)
    for a in AGENTS:
        assert float(d[f"pi_mean/{a}"]) == pytest.approx(5.0, abs=0.5)


def test_masql_sampler_moves_to_the_mode_of_a_known_q():
    """MASQL whose critic is replaced by Q(o, u) = -4 |u - (0.5, -0.3)|^2 (unit joint actions): the
    sampler's particles move to exp(Q / alpha) around (0.5, -0.3); the greedy actions follow."""
    base = get_algo("masql").Algorithm
    target = jnp.array([0.5, -0.3])

    class KnownQ(base):
        def q(self, params, a, obs, joint_u):
            return -4.0 * jnp.sum((joint_u - target) ** 2, -1)

    s = Setup("masql", QUAD, "lr_sampler=0.003", algo_cls=KnownQ)
    state = s.state0
    for k in range(60):
        state, _ = s.update(
            state, make_batch(jax.random.PRNGKey(100 + k), low=-10.0, high=10.0), jax.random.PRNGKey(k)
        )
    ones = jnp.ones((1, 1))
    xi = jax.random.normal(jax.random.PRNGKey(6), (1, 2048, 2))
    for a in AGENTS:
        u = s.algo.sample(state.sampler[a], a, ones, xi)[0]
        np.testing.assert_allclose(np.asarray(jnp.mean(u, 0)), np.asarray(target), atol=0.1)
        spread = float(jnp.mean(jnp.std(u, 0)))
        assert 0.05 < spread < 0.2, spread  # exp(Q / alpha) has std sqrt(alpha / 8) = 0.11: no collapse
    d = s.diagnostics(state)  # greedy: own component of the best-Q sample, env scale
    assert float(d["pi_mean/agent_0"]) == pytest.approx(5.0, abs=0.5)
    assert float(d["pi_mean/agent_1"]) == pytest.approx(5.0, abs=0.5)


# ---- learning --------------------------------------------------------------------------------------------
def learn_toy(s: Setup, steps: int, seed: int = 11) -> tuple[float, float]:
    """One update per batch of B fresh exploratory one-shot transitions (a bandit: no replay needed);
    returns the greedy joint action's reward and the mean reward of B exploratory joint actions."""
    state = s.state0
    obs = {a: jnp.ones((B, 1)) for a in AGENTS}
    key = jax.random.PRNGKey(seed)
    for _ in range(steps):
        key, k_act, k_upd = jax.random.split(key, 3)
        acts = s.act(state, obs, k_act, True)
        r = lookahead_toy_reward(acts["agent_0"][:, 0], acts["agent_1"][:, 0])
        batch = dict(make_batch(k_act, done=1.0), actions=acts, rewards={a: r for a in AGENTS})
        state = s.update(state, batch, k_upd)[0]
    greedy = s.act(state, obs, key, False)
    explore = s.act(state, obs, key, True)
    return (
        float(lookahead_toy_reward(greedy["agent_0"][0, 0], greedy["agent_1"][0, 0])),
        float(jnp.mean(lookahead_toy_reward(explore["agent_0"][:, 0], explore["agent_1"][:, 0]))),
    )


def test_random_policy_value_on_lookahead_toy():
    a = jax.random.uniform(jax.random.PRNGKey(0), (2, 200_000))
    assert float(jnp.mean(lookahead_toy_reward(a[0], a[1]))) == pytest.approx(1.417, abs=0.02)


def test_masql_learns_the_lookahead_toy(masql):
    greedy, explore = learn_toy(masql, 300)
    assert greedy > 3.7, greedy  # the greedy joint action (best-Q proposal) near (1, 1)
    assert explore > 3.2, explore  # the sampler itself moved: its samples score 1.5 at initialisation


def test_pr2_learns_the_lookahead_toy(pr2):
    greedy, explore = learn_toy(pr2, 250)
    assert greedy > 3.8, greedy
    assert explore > 3.5, explore  # mu + exploration noise
