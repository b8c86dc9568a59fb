"""The communication bodies of the MAG paper's model-free baselines (marlow.nn.comm) and their PPO learners
(marlow.algos.onpolicy.commnet, .g2a): closed forms of CommNet's mean message and of G2A's straight-through
hard weight; what each agent's output reads; and the learning checks of the three communicating PPOs
(Attention-PPO's too): the climbing game in CI, SMAX's 3m in make test-all."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow import envs
from marlow.algos.onpolicy import commnet, g2a
from marlow.experiment.config import resolve
from marlow.nn.comm import G2A, CommNet, others_mean, straight_through_hard
from marlow.runtime.loggers import read_metrics
from marlow.runtime.runner import train

X = jax.random.normal(jax.random.PRNGKey(1), (4, 3, 5))  # [batch, agents, features]


def test_others_mean_is_the_mean_of_the_other_agents():
    h = np.asarray(X)
    want = np.stack([(h.sum(1) - h[:, i]) / 2 for i in range(3)], axis=1)
    np.testing.assert_allclose(others_mean(X), want, rtol=1e-6)
    np.testing.assert_array_equal(others_mean(X[:, :1]), np.zeros((4, 1, 5)))


def test_straight_through_hard_value_and_gradient():
    logits = jnp.asarray([[0.3, -0.2], [-1.0, 2.0]])
    np.testing.assert_array_equal(straight_through_hard(logits, 1.0), [0.0, 1.0])
    g = jax.grad(lambda z: jnp.sum(straight_through_hard(z, 2.0) * jnp.asarray([1.0, 3.0])))(logits)
    p = jax.nn.softmax(logits / 2.0, axis=-1)[:, 1]
    dp = np.asarray(p * (1 - p) / 2.0) * [1.0, 3.0]  # d softmax_1 / d z_1 at temperature 2, times the weight
    np.testing.assert_allclose(g, np.stack([-dp, dp], axis=1), rtol=1e-5)  # d / d z_0 is its negative


def test_commnet_reads_the_others_and_is_permutation_equivariant():
    net = CommNet(8, steps=2)
    p = net.init(jax.random.PRNGKey(0), X)
    out = net.apply(p, X)
    moved = net.apply(p, X.at[:, 2].add(1.0))
    assert not np.allclose(out[:, 0], moved[:, 0], atol=1e-6)  # agent 0 hears agent 2
    perm = jnp.asarray([2, 0, 1])
    np.testing.assert_allclose(net.apply(p, X[:, perm]), out[:, perm], atol=1e-5)  # the mean has no order
    silent = CommNet(8, steps=0)
    ps = silent.init(jax.random.PRNGKey(0), X)
    np.testing.assert_allclose(  # no communication step: each agent reads only itself
        silent.apply(ps, X)[:, 0], silent.apply(ps, X.at[:, 2].add(1.0))[:, 0], atol=1e-6
    )


def _with_hard_bias(params, bias):
    return jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.asarray(bias, v.dtype) if "hard" in str(path) and "bias" in str(path) else v,
        params,
    )


def test_g2a_hard_attention_gates_the_message():
    net = G2A(8)
    p = net.init(jax.random.PRNGKey(0), X)
    kernel_zero = jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.zeros_like(v) if "hard" in str(path) and "kernel" in str(path) else v, p
    )
    closed = _with_hard_bias(kernel_zero, [5.0, 0.0])  # every W_h = 0: no agent talks
    out = net.apply(closed, X)
    np.testing.assert_array_equal(out[..., 8:], np.zeros((4, 3, 8)))  # the message x_i is zero
    np.testing.assert_allclose(out[:, 0], net.apply(closed, X.at[:, 2].add(1.0))[:, 0], atol=1e-6)
    opened = _with_hard_bias(kernel_zero, [0.0, 5.0])  # every W_h = 1: Eq. 6's soft weights over all others
    out = net.apply(opened, X)
    assert not np.allclose(out[:, 0], net.apply(opened, X.at[:, 2].add(1.0))[:, 0], atol=1e-6)
    # the message is the soft-attention average of relu(W_v h_j) over the others, by hand
    prm = opened["params"]
    h = jax.nn.relu(X @ prm["encode"]["kernel"] + prm["encode"]["bias"])
    q, k = h @ prm["query"]["kernel"], h @ prm["key"]["kernel"]
    v = jax.nn.relu(h @ prm["value"]["kernel"] + prm["value"]["bias"])
    for i in range(3):
        others = [j for j in range(3) if j != i]
        w = jax.nn.softmax(jnp.einsum("bw,bmw->bm", q[:, i], k[:, others]) / np.sqrt(8), axis=-1)
        np.testing.assert_allclose(out[:, i, 8:], jnp.einsum("bm,bmw->bw", w, v[:, others]), atol=1e-5)


@pytest.mark.parametrize("module", [commnet, g2a], ids=["commnet", "g2a"])
def test_each_agent_s_policy_reads_the_others_observations(module):
    env = envs.make("smax/3m")
    alg = module.Algorithm(env.spec, resolve([f"algo={module.NAME}", "task=smax/3m"]).algo)
    state = alg.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (4, alg.n, alg.obs_dim))
    base = alg.logits(state.params, obs, None)
    assert base.shape == (4, alg.n, alg.n_actions) and jnp.isfinite(base).all()
    moved = alg.logits(state.params, obs.at[:, 2].add(1.0), None)
    assert not np.allclose(base[:, 0], moved[:, 0], atol=1e-7)  # agent 0 acts on agent 2's observation


COMMUNICATING = ["attention_ppo", "commnet", "g2a"]


def _train(tmp_path, algo: str, *args: str) -> dict:
    heads = ["attn_heads=2"] if algo == "attention_ppo" else []  # 2 heads of 16 features at hidden 32
    run = train(resolve([f"algo={algo}", *args, *heads, "progress=false", f"run_dir={tmp_path / 'run'}"]))
    return read_metrics(run)[0]


@pytest.mark.parametrize("algo", COMMUNICATING)
def test_learns_the_climbing_game(tmp_path, algo):
    """On the iterated climbing game (25 steps of a 3 x 3 shared payoff) a uniform policy earns about -86 per
    episode (the payoffs' mean, -31/9, per step); 8,192 steps of each communicating PPO earn about 110 (the
    (C, C) and (B, B) conventions pay 125 and 175): at least 75 at the last iteration."""
    m = _train(
        tmp_path,
        algo,
        *("task=games/climbing", "total_steps=8192", "eval_every=4096", "num_envs=16", "rollout_steps=32"),
        *("hidden=32,32", "lr=0.001"),
    )
    assert m["train/return"][-1] >= 75.0, m["train/return"]


@pytest.mark.exhaustive
@pytest.mark.parametrize("algo", COMMUNICATING)
def test_learns_to_win_3m(tmp_path, algo):
    """A random team wins no 3m battle against SMAX's heuristic enemy (eval/win_rate 0 at step 0); 80k steps
    at the SMAX defaults win about half of them (Attention-PPO) and must win a quarter."""
    m = _train(tmp_path, algo, "task=smax/3m", "total_steps=81920", "eval_every=40960", "eval_episodes=32")
    assert m["eval/win_rate"][0] == 0.0
    assert m["eval/win_rate"][-1] >= 0.25, m["eval/win_rate"]
