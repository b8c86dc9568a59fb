"""MASAC and MADDPG: init/act/update under jit on discrete, heterogeneous multi-discrete and box tasks,
plus closed-form checks of the critic targets, the temperature update and the target networks.

Every (algorithm, task) pair is compiled once (module-scoped fixture) and reused by all checks."""

from __future__ import annotations

from functools import partial

import closed_forms
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow import envs
from marlow.algos import get_algo
from marlow.envs.api import random_actions
from marlow.envs.spaces import Box, Discrete, MultiDiscrete
from marlow.experiment.config import resolve

B = 32
TASKS = ("mpe/simple_spread", "mpe/simple_schedule", "games/max_of_two_quadratics")
REWARD_SCALE = 2.0
TINY = ["hidden=16,16", f"batch_size={B}", f"reward_scale={REWARD_SCALE}"]
EXTRA = {"masac": [], "maddpg": ["tau=0.0"]}  # MADDPG with frozen targets: see test_maddpg_targets


class Setup:
    def __init__(self, algo_name: str, task: str):
        self.algo_name, self.task = algo_name, task
        self.env = env_for(task)  # shared across algorithms: make_batch compiles once per task
        self.spec = self.env.spec
        cfg = resolve([f"algo={algo_name}", f"task={task}", *TINY, *EXTRA[algo_name]])
        self.cfg = cfg.algo
        self.algo = get_algo(algo_name).Algorithm(self.spec, cfg.algo)
        self.init = jax.jit(self.algo.init)
        self.act = jax.jit(lambda s, o, k: (self.algo.act(s, o, k, True), self.algo.act(s, o, k, False)))
        self.update = jax.jit(self.algo.update)
        self.state0 = self.init(jax.random.PRNGKey(0))
        self.batch = make_batch(self.env, jax.random.PRNGKey(1))
        self.state1, self.metrics1 = self.update(self.state0, self.batch, jax.random.PRNGKey(2))


@partial(jax.jit, static_argnums=0)
def make_batch(env, key):
    """A batch of B random transitions from reset states (jitted: far cheaper than eager env code)."""
    spec = env.spec
    k_reset, k_act, k_step = jax.random.split(key, 3)
    obs, state = jax.vmap(env.reset)(jax.random.split(k_reset, B))
    actions = jax.vmap(lambda k: random_actions(spec, k))(jax.random.split(k_act, B))
    next_obs, _, rewards, _, _ = jax.vmap(env.step)(jax.random.split(k_step, B), state, actions)
    return {
        "obs": obs,
        "actions": actions,
        "rewards": rewards,
        "next_obs": next_obs,
        "done": jnp.zeros((B,), jnp.float32),
    }


def terminal_batch(env, key):
    """Every transition terminal (done=1), with hand-made N(0, 1) rewards."""
    batch = make_batch(env, key)
    rewards = jax.random.normal(jax.random.fold_in(key, 1), (env.spec.num_agents, B))
    return {
        **batch,
        "done": jnp.ones((B,), jnp.float32),
        "rewards": {a: rewards[i] for i, a in enumerate(env.spec.agents)},
    }


_CACHE: dict[tuple[str, str], Setup] = {}
_ENVS: dict[str, object] = {}


def env_for(task: str):
    if task not in _ENVS:
        _ENVS[task] = envs.make(task)
    return _ENVS[task]


def setup_for(algo_name: str, task: str) -> Setup:
    if (algo_name, task) not in _CACHE:
        _CACHE[(algo_name, task)] = Setup(algo_name, task)
    return _CACHE[(algo_name, task)]


@pytest.fixture(scope="module", autouse=True)
def _clear_cache():
    yield
    _CACHE.clear()
    _ENVS.clear()


COMBOS = [(a, t) for a in ("masac", "maddpg") for t in TASKS]
IDS = [f"{a}-{t.split('/')[1]}" for a, t in COMBOS]


def _np_joint(spec, obs, actions):
    """Critic input built independently of marlow.algos.common: observations then one-hot/float actions."""
    parts = [np.asarray(obs[a]) for a in spec.agents]
    for a, s in zip(spec.agents, spec.act_spaces, strict=True):
        act = np.asarray(actions[a])
        if isinstance(s, Discrete):
            parts.append(np.eye(s.n)[act])
        elif isinstance(s, MultiDiscrete):
            parts.extend(np.eye(n)[act[:, i]] for i, n in enumerate(s.nvec))
        else:
            parts.append(act.reshape(act.shape[0], -1))
    return jnp.asarray(np.concatenate(parts, -1), jnp.float32)


def _changed(a, b) -> bool:
    return any(
        not np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def _same(a, b) -> bool:
    return not _changed(a, b)


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo_name,task", COMBOS, ids=IDS)
def test_act_update_under_jit(algo_name, task):
    s = setup_for(algo_name, task)
    spec = s.spec
    explore, greedy = s.act(s.state0, s.batch["obs"], jax.random.PRNGKey(3))
    for acts in (explore, greedy):
        assert set(acts) == set(spec.agents)
        for a, space in zip(spec.agents, spec.act_spaces, strict=True):
            x = np.asarray(acts[a])
            assert x.shape == (B,) + tuple(space.shape), (a, x.shape)
            if not isinstance(space, Box):
                assert acts[a].dtype == jnp.int32
            assert all(space.contains(v) for v in x), (a, x)
    # exploring actions are random, greedy ones deterministic
    explore2, greedy2 = s.act(s.state0, s.batch["obs"], jax.random.PRNGKey(4))
    assert _changed(explore, explore2)
    assert _same(greedy, greedy2)

    m = s.metrics1
    expected = {"critic_loss", "actor_loss", "q"} | ({"alpha", "entropy"} if algo_name == "masac" else set())
    assert set(m) == expected
    for k, v in m.items():
        assert np.shape(v) == () and np.isfinite(float(v)), k
    assert int(s.state1.steps) == 1
    for a in spec.agents:
        assert _changed(s.state0.actor[a], s.state1.actor[a]), a
        assert _changed(s.state0.critic[a], s.state1.critic[a]), a
    # a second update from the new state stays finite
    _, m2 = s.update(s.state1, s.batch, jax.random.PRNGKey(5))
    assert all(np.isfinite(float(v)) for v in m2.values())


@pytest.mark.parametrize("algo_name,task", COMBOS, ids=IDS)
def test_update_is_deterministic_given_key(algo_name, task):
    s = setup_for(algo_name, task)
    state, m = s.update(s.state0, s.batch, jax.random.PRNGKey(2))
    assert _same(state, s.state1)
    assert _same(m, s.metrics1)


# ------------------------------------------------------------------------------------------------
# MASAC
def test_masac_critic_loss_terminal_batch_closed_form():
    """done=1: y = reward_scale * r, so the first critic loss is 0.5 sum_k mean_b (Q_k - c r)^2."""
    s = setup_for("masac", "mpe/simple_spread")
    batch = terminal_batch(s.env, jax.random.PRNGKey(11))
    _, m = s.update(s.state0, batch, jax.random.PRNGKey(12))
    q_in = _np_joint(s.spec, batch["obs"], batch["actions"])
    losses = []
    for a in s.spec.agents:
        q = np.asarray(s.algo.critic.apply(s.state0.critic[a], q_in), np.float64)  # [2, B]
        assert q.shape == (2, B)
        y = REWARD_SCALE * np.asarray(batch["rewards"][a], np.float64)
        losses.append(0.5 * np.sum(np.mean((q - y) ** 2, axis=1)))
    np.testing.assert_allclose(float(m["critic_loss"]), np.mean(losses), rtol=1e-5)
    # the next observations do not matter when every transition is terminal
    garbage = {a: 100.0 + 0 * o for a, o in batch["next_obs"].items()}
    _, m_garbage = s.update(s.state0, {**batch, "next_obs": garbage}, jax.random.PRNGKey(12))
    np.testing.assert_allclose(float(m_garbage["critic_loss"]), float(m["critic_loss"]), rtol=1e-6)


def test_masac_bootstrapped_losses_closed_form():
    """done=0: Eq. (5)'s target y = c r + gamma (min_k Qbar^k(s', a') + alpha H(pi_i(.|o'_i))) with every
    a'_j drawn from pi_j at o'_j, and Eq. (4)'s actor loss mean(-alpha H - min_k Q^k(s, a_i ~ pi_i, a_-i
    from D)) on the just-updated critic, against closed_forms.soft_losses; the formula without the entropy
    term or with the larger twin instead of the smaller gives other values, so each part is required."""
    s = setup_for("masac", "mpe/simple_spread")
    spec, algo, state, key = s.spec, s.algo, s.state0, jax.random.PRNGKey(2)
    k_next, k_pi = jax.random.split(key)
    next_keys = dict(zip(spec.agents, jax.random.split(k_next, spec.num_agents), strict=True))
    pi_keys = dict(zip(spec.agents, jax.random.split(k_pi, spec.num_agents), strict=True))

    def logits(a, obs):
        return np.asarray(algo.policies.out(state.actor, a, obs[a]), np.float64)

    nxt = {a: closed_forms.gumbel_one_hot(next_keys[a], logits(a, s.batch["next_obs"])) for a in spec.agents}
    exact, no_entropy, max_twin = [], [], []
    for a in spec.agents:
        args = (algo, state, s.state1.critic[a], a, s.batch, nxt, logits(a, s.batch["next_obs"]))
        rest = (next_keys[a], logits(a, s.batch["obs"]), pi_keys[a])
        exact.append(closed_forms.soft_losses(*args, *rest))
        no_entropy.append(closed_forms.soft_losses(*args, *rest, entropy_bonus=False)[0])
        max_twin.append(closed_forms.soft_losses(*args, *rest, twin=np.max)[0])
    critic_loss, actor_loss = np.mean(exact, axis=0)
    np.testing.assert_allclose(float(s.metrics1["critic_loss"]), critic_loss, rtol=1e-4)
    np.testing.assert_allclose(float(s.metrics1["actor_loss"]), actor_loss, rtol=1e-4)
    for wrong in (np.mean(no_entropy), np.mean(max_twin)):
        assert abs(wrong - critic_loss) > 1e-2 * abs(critic_loss)


def test_masac_target_critic_is_polyak_average():
    s = setup_for("masac", "mpe/simple_spread")
    tau = s.cfg.tau
    assert 0 < tau < 1
    expected = jax.tree.map(lambda t, o: (1 - tau) * t + tau * o, s.state0.target_critic, s.state1.critic)
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7),
        s.state1.target_critic,
        expected,
    )
    assert _changed(s.state0.target_critic, s.state1.target_critic)


def _peaked_actor(actor_params, n: int):
    """Policy params whose output layer ignores the input and puts almost all mass on action 0."""

    def peak(p):
        layers = sorted(p["params"], key=lambda name: int(name.split("_")[-1]))
        last = dict(p["params"][layers[-1]])
        last["kernel"] = jnp.zeros_like(last["kernel"])
        last["bias"] = jnp.zeros((n,)).at[0].set(30.0)
        return {"params": {**p["params"], layers[-1]: last}}

    return {a: peak(p) for a, p in actor_params.items()}


def test_masac_alpha_autotune_direction():
    s = setup_for("masac", "mpe/simple_spread")
    assert s.cfg.autotune_alpha
    spec = s.spec
    targets = s.algo.target_entropy
    for a in spec.agents:
        np.testing.assert_allclose(targets[a], s.cfg.target_entropy_scale * np.log(5), rtol=1e-6)
    # near-uniform initial policies: entropy ~ log 5 above the target -> alpha decreases
    assert float(s.metrics1["entropy"]) > max(targets.values())
    for a in spec.agents:
        assert float(s.state1.log_alpha[a]) < float(s.state0.log_alpha[a]), a
    np.testing.assert_allclose(float(s.metrics1["alpha"]), s.cfg.alpha, rtol=1e-5)
    # near-deterministic policies: entropy ~ 0 below the target -> alpha increases
    low = s.state0.replace(actor=_peaked_actor(s.state0.actor, 5))
    new, m = s.update(low, s.batch, jax.random.PRNGKey(2))
    assert float(m["entropy"]) < min(targets.values())
    for a in spec.agents:
        assert float(new.log_alpha[a]) > float(low.log_alpha[a]), a


def test_masac_heterogeneous_target_entropy():
    s = setup_for("masac", "mpe/simple_schedule")
    t = s.algo.target_entropy
    sc = s.cfg.target_entropy_scale
    np.testing.assert_allclose(t["agent_0"], sc * (np.log(5) + 2 * np.log(3)), rtol=1e-6)
    np.testing.assert_allclose(t["agent_1"], sc * np.log(5), rtol=1e-6)
    s = setup_for("masac", "games/max_of_two_quadratics")
    assert s.algo.target_entropy["agent_0"] == pytest.approx(-sc * 1)


# ------------------------------------------------------------------------------------------------
# MADDPG
@pytest.mark.parametrize("task", TASKS, ids=[t.split("/")[1] for t in TASKS])
def test_maddpg_targets_frozen_with_tau_zero(task):
    s = setup_for("maddpg", task)
    assert s.cfg.tau == 0.0
    assert _same(s.state1.target_actor, s.state0.target_actor)
    assert _same(s.state1.target_critic, s.state0.target_critic)
    assert _same(s.state0.target_actor, s.state0.actor) and _same(s.state0.target_critic, s.state0.critic)
    assert _changed(s.state1.actor, s.state0.actor) and _changed(s.state1.critic, s.state0.critic)


def test_maddpg_critic_target_uses_target_networks():
    """Second update (online nets moved, targets frozen at init): the critic loss is computed against
    y = c r + gamma (1 - d) Qbar(s', mubar(o')) with the *target* actor and critic."""
    s = setup_for("maddpg", "games/max_of_two_quadratics")
    spec, cfg = s.spec, s.cfg
    batch = make_batch(s.env, jax.random.PRNGKey(21))
    _, m2 = s.update(s.state1, batch, jax.random.PRNGKey(22))
    q_in = _np_joint(spec, batch["obs"], batch["actions"])

    def expected_loss(actor_src, critic_src):
        next_acts = {a: s.algo.policies.mode(actor_src, a, batch["next_obs"][a])[0] for a in spec.agents}
        q_next_in = _np_joint(spec, batch["next_obs"], next_acts)
        losses = []
        for a in spec.agents:
            q = np.asarray(s.algo.critic.apply(s.state1.critic[a], q_in))[:, 0].astype(np.float64)
            q_next = np.asarray(s.algo.critic.apply(critic_src[a], q_next_in))[:, 0].astype(np.float64)
            y = cfg.reward_scale * np.asarray(batch["rewards"][a], np.float64) + cfg.gamma * q_next
            losses.append(np.mean((q - y) ** 2))
        return float(np.mean(losses))

    with_targets = expected_loss(s.state1.target_actor, s.state1.target_critic)
    with_online = expected_loss(s.state1.actor, s.state1.critic)
    np.testing.assert_allclose(float(m2["critic_loss"]), with_targets, rtol=1e-4)
    assert abs(with_targets - with_online) > 1e-3 * abs(with_targets)  # the check can tell them apart
