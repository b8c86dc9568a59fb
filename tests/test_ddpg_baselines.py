"""Independent DDPG and DDPG-OM (the ROMMEO paper's Fig. 2 baselines): closed-form checks of the critic
targets, what each critic may see, the opponent model's online supervision, the policy's opponent input,
and a short learning check on the one-shot lookahead toy game.

Both algorithms run on ``games/lookahead_toy`` (two agents, Box(0, 1, (1,)), constant observation [1],
reward R = a0^3 - 2 (a0 - a1)^2 + 3 a0, optimum (1, 1) -> 4). Each algorithm's init/act/update/observe
is compiled once (module-scoped fixture) for batches of B transitions and reused by every check."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from readings import probe_fn

from marlow import envs
from marlow.algos import get_algo
from marlow.envs.games import lookahead_toy_reward
from marlow.experiment.config import resolve

B = 64
TASK = "games/lookahead_toy"
AGENTS = ("agent_0", "agent_1")


class Setup:
    def __init__(self, name: str):
        self.spec = envs.make(TASK).spec
        self.cfg = resolve([f"algo={name}", f"task={TASK}", f"batch_size={B}"]).algo
        self.algo = get_algo(name).Algorithm(self.spec, self.cfg)
        algo = self.algo
        self.init = jax.jit(algo.init)
        self.act = jax.jit(algo.act, static_argnums=3)
        self.update = jax.jit(algo.update)
        self.diagnostics = probe_fn(self.spec, algo, self.cfg)
        self.observe = jax.jit(algo.observe) if hasattr(algo, "observe") else (lambda s, t: s)
        self.state0 = self.init(jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def ddpg():
    return Setup("ddpg")


@pytest.fixture(scope="module")
def ddpg_om():
    return Setup("ddpg_om")


@pytest.fixture(scope="module", params=["ddpg", "ddpg_om"])
def setup(request):
    return request.getfixturevalue(request.param)


def make_batch(key, done=0.0, a0=None, a1=None):
    """B one-shot transitions at the constant observation; actions uniform in [0, 1] unless given."""
    k0, k1 = jax.random.split(key)
    acts = {
        "agent_0": jax.random.uniform(k0, (B, 1)) if a0 is None else jnp.full((B, 1), a0),
        "agent_1": jax.random.uniform(k1, (B, 1)) if a1 is None else jnp.full((B, 1), a1),
    }
    r = lookahead_toy_reward(acts["agent_0"][:, 0], acts["agent_1"][:, 0])
    ones = {a: jnp.ones((B, 1)) for a in AGENTS}
    return {
        "obs": ones,
        "actions": acts,
        "rewards": {a: r for a in AGENTS},
        "next_obs": ones,
        "done": jnp.full((B,), done, jnp.float32),
    }


def tree_equal(x, y) -> bool:
    return all(
        bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True)
    )


# ---- hand computations (no helper of the algorithm modules: raw networks and [0, 1] -> [-1, 1] by hand)
def unit(a):
    return 2.0 * a - 1.0  # Box(0, 1) -> [-1, 1]


def mu(s: Setup, actor_params, agent, x):
    return (jnp.tanh(s.algo.policies.nets[agent].apply(actor_params[agent], x)) + 1.0) / 2.0


def critic(s: Setup, params, agent, *inputs):
    return s.algo.critic.apply(params[agent], jnp.concatenate(inputs, -1))[:, 0]


def om(s: Setup, state, agent, obs):
    return jnp.tanh(s.algo.oms[agent].apply(state.om[agent], obs))  # [-1, 1] units


# ---- critics ---------------------------------------------------------------------------------------------
def test_ddpg_critic_ignores_the_other_agents_action(ddpg):
    s = ddpg
    batch = make_batch(jax.random.PRNGKey(1))
    other = dict(batch, actions=dict(batch["actions"], agent_1=jnp.zeros((B, 1))))  # rewards unchanged
    key = jax.random.PRNGKey(2)
    s1, _ = s.update(s.state0, batch, key)
    s2, _ = s.update(s.state0, other, key)
    # agent_0 (critic Q_0(o_0, a_0)) learns exactly the same; agent_1 sees its own action change
    assert tree_equal(s1.critic["agent_0"], s2.critic["agent_0"])
    assert tree_equal(s1.actor["agent_0"], s2.actor["agent_0"])
    assert not tree_equal(s1.critic["agent_1"], s2.critic["agent_1"])
    x0 = jnp.concatenate([batch["obs"]["agent_0"], unit(batch["actions"]["agent_0"])], -1)
    assert s.state0.critic["agent_0"]["params"]["Dense_0"]["kernel"].shape[0] == x0.shape[-1] == 2


def test_ddpg_om_critic_sees_the_other_agents_action(ddpg_om):
    s = ddpg_om
    batch = make_batch(jax.random.PRNGKey(1))
    other = dict(batch, actions=dict(batch["actions"], agent_1=jnp.zeros((B, 1))))
    key = jax.random.PRNGKey(2)
    s1, _ = s.update(s.state0, batch, key)
    s2, _ = s.update(s.state0, other, key)
    assert not tree_equal(s1.critic["agent_0"], s2.critic["agent_0"])
    assert s.state0.critic["agent_0"]["params"]["Dense_0"]["kernel"].shape[0] == 3  # o_0, a_0, a_1


def hand_critic_loss(s: Setup, state, new_state, batch):
    """1/2 mean (Q_i(o, a) - y_i)^2 averaged over agents, y_i from ``state``'s target networks (and, for
    DDPG-OM, the opponent model after this update's OM step, i.e. ``new_state.om``)."""
    losses = []
    for i, a in enumerate(AGENTS):
        o, o2 = batch["obs"][a], batch["next_obs"][a]
        own = unit(batch["actions"][a])
        if s.algo.__module__.endswith("ddpg_om"):
            opp2 = om(s, new_state, a, o2)
            a2 = mu(s, state.target_actor, a, jnp.concatenate([o2, opp2], -1))
            q_next = critic(s, state.target_critic, a, o2, unit(a2), opp2)
            q = critic(s, state.critic, a, o, own, unit(batch["actions"][AGENTS[1 - i]]))
        else:
            q_next = critic(s, state.target_critic, a, o2, unit(mu(s, state.target_actor, a, o2)))
            q = critic(s, state.critic, a, o, own)
        y = batch["rewards"][a] + s.cfg.gamma * (1.0 - batch["done"]) * q_next
        losses.append(0.5 * jnp.mean((q - y) ** 2))
    return float(np.mean(losses))


@pytest.mark.parametrize("done", [0.0, 1.0])
def test_critic_loss_matches_hand_computed_target(setup, done):
    s = setup
    # one update first, so the target networks differ from the online ones; DDPG-OM's window holds
    # actions (0.9, 0.9), so its opponent model moves during the checked update too
    state0 = s.observe(s.state0, make_batch(jax.random.PRNGKey(8), a0=0.9, a1=0.9))
    state1, _ = s.update(state0, make_batch(jax.random.PRNGKey(3)), jax.random.PRNGKey(4))
    assert not tree_equal(state1.target_critic, state1.critic)
    batch = make_batch(jax.random.PRNGKey(5), done=done)
    batch["rewards"] = {a: jax.random.normal(jax.random.PRNGKey(6 + i), (B,)) for i, a in enumerate(AGENTS)}
    state2, metrics = s.update(state1, batch, jax.random.PRNGKey(7))
    expected = hand_critic_loss(s, state1, state2, batch)
    assert float(metrics["critic_loss"]) == pytest.approx(expected, rel=1e-4)
    if done == 0.0:  # the bootstrap term matters: dropping it gives another loss
        assert expected != pytest.approx(
            hand_critic_loss(s, state1, state2, dict(batch, done=batch["done"] + 1))
        )
    # Polyak targets: theta' <- tau theta + (1 - tau) theta'
    tau = s.cfg.tau
    want = jax.tree.map(lambda t, o: (1 - tau) * t + tau * o, state1.target_critic, state2.critic)
    for x, y in zip(jax.tree.leaves(state2.target_critic), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


# ---- DDPG-OM's opponent model and policy input -----------------------------------------------------------
def test_opponent_model_fits_the_recent_window_not_the_replay_batch(ddpg_om):
    s = ddpg_om
    # the window holds B transitions of constant actions (0.2, 0.8); the replay batches are uniform
    state = s.observe(s.state0, make_batch(jax.random.PRNGKey(8), a0=0.2, a1=0.8))
    assert int(state.recent.size) == B < s.cfg.om_window  # most rows of the window are still empty
    err0 = abs(float(s.diagnostics(state)["om_mean/agent_0"]) - 0.8)
    losses = []
    for k in range(60):
        state, m = s.update(state, make_batch(jax.random.PRNGKey(100 + k)), jax.random.PRNGKey(k))
        losses.append(float(m["om_loss"]))
    d = s.diagnostics(state)
    # agent_0 predicts agent_1's 0.8 and agent_1 predicts agent_0's 0.2 (not the batch mean 0.5, nor the
    # ~0.1 that unmasked empty rows of the window, action 0, would give)
    assert err0 > 0.2
    assert abs(float(d["om_mean/agent_0"]) - 0.8) < 0.03
    assert abs(float(d["om_mean/agent_1"]) - 0.2) < 0.03
    assert losses[-1] < 0.05 * losses[0]


def test_policy_input_contains_the_opponent_prediction(ddpg_om):
    s = ddpg_om
    state = s.state0
    obs = {a: jnp.ones((B, 1)) for a in AGENTS}
    assert state.actor["agent_0"]["params"]["Dense_0"]["kernel"].shape[0] == 2  # o_0 and ahat_1
    greedy = s.act(state, obs, jax.random.PRNGKey(0), False)
    for a in AGENTS:
        want = mu(s, state.actor, a, jnp.concatenate([obs[a], om(s, state, a, obs[a])], -1))
        np.testing.assert_allclose(greedy[a], want, rtol=1e-6)
    # move agent_0's opponent model output: its greedy action moves, agent_1's does not
    bumped = jax.tree.map(jnp.copy, state.om)
    last = max(bumped["agent_0"]["params"], key=lambda n: int(n.split("_")[1]))
    bumped["agent_0"]["params"][last]["bias"] = bumped["agent_0"]["params"][last]["bias"] + 2.0
    greedy2 = s.act(state.replace(om=bumped), obs, jax.random.PRNGKey(0), False)
    assert float(jnp.max(jnp.abs(greedy2["agent_0"] - greedy["agent_0"]))) > 1e-4
    np.testing.assert_array_equal(greedy2["agent_1"], greedy["agent_1"])
    d = s.diagnostics(state.replace(om=bumped))
    assert float(d["om_mean/agent_0"]) == pytest.approx(
        float((om(s, state.replace(om=bumped), "agent_0", obs["agent_0"])[0, 0] + 1) / 2), rel=1e-5
    )
    assert float(d["pi_mean/agent_0"]) == pytest.approx(float(greedy2["agent_0"][0, 0]), rel=1e-5)


def test_exploration_adds_noise_greedy_does_not(setup):
    s = setup
    obs = {a: jnp.ones((B, 1)) for a in AGENTS}
    greedy = s.act(s.state0, obs, jax.random.PRNGKey(0), False)
    noisy = s.act(s.state0, obs, jax.random.PRNGKey(0), True)
    for a in AGENTS:
        assert float(jnp.max(greedy[a]) - jnp.min(greedy[a])) == 0.0
        # std 0.1 x half range (0.05 on [0, 1]) around the greedy action ~0.5 (rarely clipped)
        assert float(jnp.std(noisy[a])) == pytest.approx(0.1 * 0.5, rel=0.3)
        assert float(jnp.min(noisy[a])) >= 0.0 and float(jnp.max(noisy[a])) <= 1.0


# ---- learning --------------------------------------------------------------------------------------------
def test_random_policy_value_on_lookahead_toy():
    # E[a0^3] - 2 E[(a0 - a1)^2] + 3 E[a0] = 1/4 - 1/3 + 3/2 = 1.417 for uniform actions: far below 4
    a = jax.random.uniform(jax.random.PRNGKey(0), (2, 200_000))
    assert float(jnp.mean(lookahead_toy_reward(a[0], a[1]))) == pytest.approx(1.417, abs=0.02)


def test_learns_the_optimum_of_the_lookahead_toy(setup):
    """One update per batch of B fresh exploratory one-shot transitions (a bandit: no replay needed).
    The initial greedy joint action (~0.5, ~0.5) scores ~1.6 and a random policy 1.42; the optimum is 4."""
    s = setup
    state = s.state0
    obs = {a: jnp.ones((B, 1)) for a in AGENTS}
    key = jax.random.PRNGKey(11)
    for _ in range(250):
        key, k_act, k_upd = jax.random.split(key, 3)
        acts = s.act(state, obs, k_act, True)
        batch = make_batch(k_act, done=1.0, a0=0.0, a1=0.0)
        r = lookahead_toy_reward(acts["agent_0"][:, 0], acts["agent_1"][:, 0])
        batch = dict(batch, actions=acts, rewards={a: r for a in AGENTS})
        state = s.update(s.observe(state, batch), batch, k_upd)[0]
    greedy = s.act(state, obs, key, False)
    ret = float(lookahead_toy_reward(greedy["agent_0"][0, 0], greedy["agent_1"][0, 0]))
    assert ret > 3.8, (ret, greedy["agent_0"][0, 0], greedy["agent_1"][0, 0])
