"""Probabilistic ensemble (marlow.world.ensemble) and the multi-agent dynamics model (marlow.world.dynamics).

The toy system: x ~ U[9, 11], y = 50 + 8 sin(2 (x - 10)) + s(x) eps, s(x) = 0.5 + 1.5 (x - 9), eps ~ N(0, 1):
an input-dependent mean and a variance that grows 49-fold across the domain, far from zero mean / unit
scale, so a fit without input/output normalisation (log-variance capped at 0.5 in target units) or with a
constant variance cannot meet the tolerances.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow.buffers import replay
from marlow.envs import make
from marlow.envs.api import random_actions
from marlow.errors import ConfigError
from marlow.world.dynamics import DynamicsModel
from marlow.world.ensemble import Ensemble, EnsembleConfig

N_ROWS, N_VALID = 5000, 4000  # rows 4000.. are buffer padding

CFG = EnsembleConfig(
    num_members=4,
    num_elites=3,
    hidden=(64, 64),
    activation="swish",
    lr=3e-3,
    weight_decay=(1e-5,),
    max_logvar_init=0.5,
    min_logvar_init=-10.0,
    logvar_penalty=0.01,
    batch_size=128,
    holdout_ratio=0.2,
    max_holdout=1000,
    steps_per_epoch=100,
    max_epochs=40,
    patience=5,
    improvement=0.01,
    max_grad_norm=200.0,
)


def true_mean(x):
    return 50.0 + 8.0 * jnp.sin(2.0 * (x - 10.0))


def true_std(x):
    return 0.5 + 1.5 * (x - 9.0)


def toy_data(key):
    kx, ke = jax.random.split(key)
    x = jax.random.uniform(kx, (N_ROWS, 1), minval=9.0, maxval=11.0)
    y = true_mean(x) + true_std(x) * jax.random.normal(ke, (N_ROWS, 1))
    return x, y.at[N_VALID:].set(jnp.nan)  # padding rows hold garbage that must never be read


@pytest.fixture(scope="module")
def toy():
    ens = Ensemble(1, 1, CFG)
    train = jax.jit(ens.train)
    x, y = toy_data(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(3)
    state, metrics = train(ens.init(jax.random.PRNGKey(2)), x, y, jnp.int32(N_VALID), key)
    return ens, train, x, y, key, state, metrics


def normalised_holdout_mse(ens, state, x, y, key):
    """Per-member holdout MSE of the mean in normalised target units, computed from the public API."""
    split = ens.data_split(key, jnp.int32(N_VALID), N_ROWS)
    idx = np.asarray(split.holdout_idx)[np.asarray(split.holdout_mask)]
    mean, _ = ens.predict_all(state, x[idx])
    err = ((mean - y[idx]) / state.out_std) ** 2
    return np.asarray(jnp.mean(err, axis=(1, 2)))


# ---- the toy fit -------------------------------------------------------------------------------------
def test_fits_stochastic_toy_mean_and_variance(toy):
    ens, _, _, _, _, state, metrics = toy
    xt = jnp.linspace(9.1, 10.9, 19)[:, None]
    mu, var = true_mean(xt)[:, 0], true_std(xt)[:, 0] ** 2
    means, variances = ens.predict_all(state, xt)
    elites = np.asarray(state.elites)
    m_hat = np.asarray(means[elites, :, 0].mean(0))
    v_hat = np.asarray(variances[elites, :, 0].mean(0))
    # mean within a quarter of the local noise std, variance within a factor 1.5, at every test point
    assert np.all(np.abs(m_hat - mu) < 0.25 * np.sqrt(var)), (m_hat, mu)
    ratio = v_hat / var
    assert np.all((ratio > 1 / 1.5) & (ratio < 1.5)), ratio
    # the tolerance is tight enough to reject the best constant variance ...
    const = np.full_like(ratio, float(jnp.mean(var)))
    assert not np.all((const / var > 1 / 1.5) & (const / var < 1.5))
    # ... and a variance capped by max_logvar_init in target units (no output normalisation)
    assert np.max(np.asarray(var)) > 1.5 * np.exp(CFG.max_logvar_init)
    # early stopping on this easy problem: well before max_epochs, after at least `patience` epochs
    assert CFG.patience <= int(metrics["epochs"]) < CFG.max_epochs
    assert int(metrics["n_holdout"]) == 800 and int(metrics["n_train"]) == 3200
    assert np.isfinite(float(metrics["holdout_nll"]))


def test_predict_samples_have_the_predicted_distribution(toy):
    ens, _, _, _, _, state, _ = toy
    x0 = jnp.full((6000, 1), 10.6)
    sample, mean, var = jax.jit(ens.predict)(state, x0, jax.random.PRNGKey(7))
    # each row is one elite's Gaussian: the mixture's mean / variance match the truth at x0
    mix_mean = float(jnp.mean(mean))
    mix_var = float(jnp.mean(var) + jnp.var(mean))
    assert abs(float(jnp.mean(sample)) - mix_mean) < 4 * np.sqrt(mix_var / 6000)
    assert abs(float(jnp.var(sample)) / mix_var - 1.0) < 0.1
    assert abs(mix_mean - float(true_mean(10.6))) < 0.25 * float(true_std(10.6))
    assert abs(mix_var / float(true_std(10.6)) ** 2 - 1.0) < 0.5


# ---- holdout, padding, elites, best parameters -----------------------------------------------------
def test_split_holdout_disjoint_from_training_and_padding_unused(toy):
    ens, _, _, _, key, _, _ = toy
    split = ens.data_split(key, jnp.int32(N_VALID), N_ROWS)
    hold = np.asarray(split.holdout_idx)[np.asarray(split.holdout_mask)]
    boot = np.asarray(split.boot_idx)[:, : int(split.n_train)]
    train_rows = np.flatnonzero(np.asarray(split.train_mask))
    assert len(hold) == len(set(hold)) == 800 and hold.max() < N_VALID
    assert len(train_rows) == 3200 and train_rows.max() < N_VALID
    assert set(hold).isdisjoint(train_rows) and set(hold) | set(train_rows) == set(range(N_VALID))
    for b in range(CFG.num_members):
        assert set(boot[b]) <= set(train_rows)
        # a bootstrap sample: drawn with replacement, so about 1 - 1/e of the rows are distinct
        assert 0.55 < len(set(boot[b])) / len(train_rows) < 0.72
    assert not np.array_equal(boot[0], boot[1])  # resampled independently per member


def test_holdout_rows_are_never_trained_on(toy):
    ens, train, x, y, key, state, metrics = toy
    split = ens.data_split(key, jnp.int32(N_VALID), N_ROWS)
    hold = np.asarray(split.holdout_idx)[np.asarray(split.holdout_mask)]
    y_bad = y.at[hold].add(1000.0)  # corrupt only the holdout targets
    state_b, metrics_b = train(ens.init(jax.random.PRNGKey(2)), x, y_bad, jnp.int32(N_VALID), key)
    np.testing.assert_allclose(state_b.out_mean, state.out_mean, rtol=1e-6)  # normaliser: training rows
    xt = jnp.linspace(9.1, 10.9, 19)[:, None]
    m_bad = ens.predict_all(state_b, xt)[0][np.asarray(state_b.elites)].mean(0)[:, 0]
    # a looser tolerance than the clean fit's: the corrupted holdout stops training earlier; had the
    # +1000 rows (20% of the data) entered the gradients, the fit would be off by ~200
    assert np.all(np.abs(np.asarray(m_bad) - np.asarray(true_mean(xt)[:, 0])) < 0.5 * true_std(xt)[:, 0])
    # the corrupted rows are seen only through the holdout score
    assert float(metrics_b["holdout_mse"]) > 1000 * float(metrics["holdout_mse"])


def test_elites_are_the_best_holdout_members(toy):
    ens, _, x, y, key, state, metrics = toy
    mse = normalised_holdout_mse(ens, state, x, y, key)
    order = np.argsort(mse)
    np.testing.assert_array_equal(np.asarray(state.elites), order[: CFG.num_elites])
    np.testing.assert_allclose(float(metrics["holdout_mse"]), mse[order[: CFG.num_elites]].mean(), rtol=1e-4)
    assert mse[order[-1]] > mse[order[0]]


def test_keeps_best_parameters_when_training_only_hurts(toy):
    ens, train, x, y, key, state, _ = toy
    ruined = Ensemble.scale_lr(state, 1000.0)  # lr 3.0: every epoch makes every member worse
    state2, m2 = train(ruined, x, y, jnp.int32(N_VALID), key)
    assert int(m2["epochs"]) == CFG.patience  # no improvement ever: stop after `patience` epochs
    for a, b in zip(jax.tree.leaves(state2.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(state2.elites), np.asarray(state.elites))


# ---- per-sample member choice ------------------------------------------------------------------------
def test_each_row_uses_one_elite_chosen_per_row(toy):
    ens, _, _, _, _, state, _ = toy
    xs = jnp.linspace(9.0, 11.0, 301)[:, None]
    means, _ = ens.predict_all(state, xs)  # [B, 301, 1]
    used = []
    for seed in (0, 1):
        sample, mean, _ = ens.predict(state, xs, jax.random.PRNGKey(seed), deterministic=True)
        np.testing.assert_array_equal(np.asarray(sample), np.asarray(mean))
        dist = np.abs(np.asarray(means[:, :, 0]) - np.asarray(mean[:, 0])[None])  # [B, 301]
        member = np.argmin(dist, axis=0)
        assert np.all(dist[member, np.arange(301)] < 1e-4)
        used.append(member)
    elites = set(np.asarray(state.elites).tolist())
    for member in used:
        assert set(member.tolist()) == elites  # only elites, and every elite serves some rows
        counts = np.bincount(member, minlength=CFG.num_members)[sorted(elites)]
        assert counts.max() - counts.min() <= 1  # balanced random assignment: 100 or 101 rows each
    assert np.mean(used[0] != used[1]) > 0.4  # the choice is random per row, not per batch


# ---- vmap over seeds ---------------------------------------------------------------------------------
def test_vmapped_train_equals_separate_calls(toy):
    ens, train, x, y, _, _, _ = toy
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    states = jax.vmap(ens.init)(keys)
    n_valid = jnp.array([N_VALID, 2500], jnp.int32)  # the seeds may also differ in their number of rows
    vs, vm = jax.jit(jax.vmap(ens.train, in_axes=(0, None, None, 0, 0)))(states, x, y, n_valid, keys)
    for i in range(2):
        s, m = train(jax.tree.map(lambda a, i=i: a[i], states), x, y, n_valid[i], keys[i])
        assert int(m["epochs"]) == int(vm["epochs"][i])
        assert int(m["n_train"]) == int(vm["n_train"][i])
        for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(vs), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b[i]), rtol=1e-4, atol=1e-5)
    assert not np.allclose(vs.params["net"]["layer_0"]["kernel"][0], vs.params["net"]["layer_0"]["kernel"][1])


# ---- configuration errors ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change",
    [
        {"num_elites": 5},
        {"num_elites": 0},
        {"weight_decay": (1e-4, 1e-4)},
        {"holdout_ratio": 0.0},
        {"activation": "gelu"},
        {"min_logvar_init": 1.0},
        {"patience": 0},
    ],
)
def test_bad_config_raises(change):
    with pytest.raises(ConfigError):
        Ensemble(1, 1, dataclasses.replace(CFG, **change))


# ---- the multi-agent dynamics model on a real task ---------------------------------------------------
def _spread_buffer(capacity: int, steps: int):
    """``steps`` random-action transitions of simple_spread (episodes auto-reset), stored as the runner
    stores them (``next_obs`` = the step's ``terminal_obs``)."""
    env = make("mpe/simple_spread")
    spec = env.spec
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    act = jax.jit(lambda k: random_actions(spec, k))
    keys = jax.random.split(jax.random.PRNGKey(0), 2 * steps + 1)
    obs, st = reset(keys[0])
    trans = []
    for t in range(steps):
        acts = act(keys[2 * t + 1])
        nobs, st, rew, _, infos = step(keys[2 * t + 2], st, acts)
        trans.append(
            {"obs": obs, "actions": acts, "rewards": rew, "next_obs": infos["terminal_obs"], "done": 0.0}
        )
        obs = nobs
    trans = jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trans)
    buf = replay.init(jax.tree.map(lambda a: a[0], trans), capacity)
    half = steps // 2
    for part in (slice(0, half), slice(half, steps)):  # two adds: the second one wraps around
        buf = replay.add(buf, jax.tree.map(lambda a, part=part: a[part], trans))
    return spec, buf


def test_dynamics_layout_training_and_steps_on_simple_spread():
    spec, buf = _spread_buffer(capacity=64, steps=80)
    assert int(buf.size) == 64  # full circular buffer: every row is valid
    cfg = dataclasses.replace(
        CFG, num_members=3, num_elites=2, hidden=(32,), steps_per_epoch=5, max_epochs=2, max_holdout=64
    )
    shared = DynamicsModel(spec, cfg, per_agent=False)
    per = DynamicsModel(spec, cfg, per_agent=True)
    assert shared.in_dim == 3 * 18 + 3 * 5 and shared.out_dim == 3 * 18 + 3
    d = buf.data

    # layout: joint obs then flat actions; targets = deltas then one reward per agent, decoded exactly
    x = shared.inputs(d["obs"], d["actions"])
    y = shared.targets(d["obs"], d["rewards"], d["next_obs"])
    np.testing.assert_array_equal(np.asarray(x[:, :18]), np.asarray(d["obs"]["agent_0"]))
    one_hot = jax.nn.one_hot(d["actions"]["agent_2"], 5)
    np.testing.assert_array_equal(np.asarray(x[:, 64:69]), np.asarray(one_hot))
    next_obs, rewards = shared.decode(d["obs"], y)
    for a in spec.agents:
        np.testing.assert_allclose(np.asarray(next_obs[a]), np.asarray(d["next_obs"][a]), atol=1e-6)
        np.testing.assert_array_equal(np.asarray(rewards[a]), np.asarray(d["rewards"][a]))

    # per-agent ensembles: stacked on a leading agent axis, same data, different keys
    pstate = per.init(jax.random.PRNGKey(1))
    assert pstate.params["max_logvar"].shape == (3, 3, per.out_dim)
    pstate, metrics = jax.jit(per.train)(pstate, buf, jax.random.PRNGKey(2))
    assert metrics["holdout_mse"].shape == (3,)
    np.testing.assert_array_equal(np.asarray(metrics["n_train"] + metrics["n_holdout"]), [64] * 3)
    kernels = np.asarray(pstate.params["net"]["layer_0"]["kernel"])
    assert not np.allclose(kernels[0], kernels[1])
    obs = jax.tree.map(lambda a: a[:10], d["obs"])
    acts = jax.tree.map(lambda a: a[:10], d["actions"])
    k = jax.random.PRNGKey(4)
    # shared model (one trained ensemble, no agent axis). Closed form: with a zero output layer every
    # member predicts the training rows' mean target, so a deterministic step returns obs + mean delta
    # and the mean reward (checks delta decoding and output de-normalisation)
    state = jax.tree.map(lambda v: v[0], pstate)
    last = f"layer_{len(cfg.hidden)}"
    zero = jax.tree.map(jnp.zeros_like, state.params["net"][last])
    state = state.replace(params={**state.params, "net": {**state.params["net"], last: zero}})

    @jax.jit
    def steps(pstate, state):  # one compile for every step below
        out = {}
        for i, a in enumerate(spec.agents):
            own = jax.tree.map(lambda v, i=i: v[i], pstate)
            ref = per.ensemble.predict(own, per.inputs(obs, acts), k)[0]  # agent i steps with ensemble i
            out[a] = (per.step(pstate, obs, acts, k, agent=a), ref)
        return out, shared.step(state, obs, acts, k, agent="agent_2", deterministic=True)

    per_steps, (nobs0, rews0) = steps(pstate, state)
    for i, a in enumerate(spec.agents):
        (nobs_a, rews_a), ref = per_steps[a]
        assert all(nobs_a[b].shape == (10, 18) and rews_a[b].shape == (10,) for b in spec.agents)
        np.testing.assert_allclose(
            np.asarray(nobs_a[a]), np.asarray(obs[a] + ref[:, 18 * i : 18 * (i + 1)]), atol=1e-5
        )
    assert not np.allclose(np.asarray(per_steps["agent_0"][1]), np.asarray(per_steps["agent_1"][1]))
    with pytest.raises(ValueError):
        per.step(pstate, obs, acts, k)

    split = shared.ensemble.data_split(jax.random.split(jax.random.PRNGKey(2), 3)[0], buf.size, 64)
    y_mean = np.asarray(y)[np.asarray(split.train_mask)].mean(0)
    np.testing.assert_allclose(
        np.asarray(nobs0["agent_1"]), np.asarray(obs["agent_1"]) + y_mean[18:36], atol=1e-5
    )
    np.testing.assert_allclose(np.asarray(rews0["agent_2"]), np.full(10, y_mean[56]), rtol=1e-5)
