"""Opponent models (AORPO Appendix E): maximum-likelihood fits with an entropy bonus recover known
stochastic policies, eps matches its closed form, holdout rows are disjoint from training rows, the loss
has the chosen sign, heterogeneous MPE spaces, shared copies, and vmap over seeds.

The machine is small and shared: every jitted function is compiled once per module (fixtures)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import marlow.envs as envs
from marlow.envs.api import EnvSpec
from marlow.envs.spaces import Box, Discrete, MultiDiscrete
from marlow.errors import ConfigError
from marlow.world.opponents import (
    Head,
    OpponentModels,
    holdout_block,
    holdout_split,
    recommended_config,
)

# ---------------------------------------------------------------------------------------------------
# A toy task: three agents, each seeing the one-hot of its own state s in {0, 1, 2} (padded to a
# different width per agent: a constant pair of zeros for "multi", a noise feature for "box") and acting
# by a known state-dependent stochastic policy: categorical, multi-discrete [3, 2], 2-d Gaussian.
S = 3
P_CAT = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
P_M0 = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1]])
P_M1 = np.array([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
MU = np.array([[-1.0, 0.5], [0.0, -0.5], [1.0, 0.0]])
SD = np.array([[0.5, 0.3], [0.3, 0.6], [0.8, 0.4]])
AGENTS = ("cat", "multi", "box")
PAD = {"cat": 0, "multi": 2, "box": 1}
SPEC = EnvSpec(
    "toy",
    AGENTS,
    tuple(Box(-10.0, 10.0, (S + PAD[a],)) for a in AGENTS),
    (Discrete(3), MultiDiscrete((3, 2)), Box(-5.0, 5.0, (2,))),
    (("team", AGENTS),),
    25,
)
ALPHA = 0.3  # large enough that the entropy bonus visibly moves the optimum
EYE = np.eye(S, dtype=np.float32)


def toy_obs(agent, states, rng=None):
    x = EYE[states]
    if agent == "multi":
        return np.concatenate([x, np.zeros((len(states), 2), np.float32)], 1)
    if agent == "box":
        noise = rng.standard_normal((len(states), 1)) if rng is not None else np.zeros((len(states), 1))
        return np.concatenate([x, noise.astype(np.float32)], 1)
    return x


def _draw(rng, probs, states):
    return (rng.random(len(states))[:, None] > np.cumsum(probs[states], axis=1)).sum(1)


def toy_data(n_rows: int, seed: int, n_garbage: int = 0):
    """``n_garbage`` adversarial rows first (what a fit that trained on invalid rows would learn), then
    ``n_rows`` real rows drawn from the known policies. Returns the data and the per-row states."""
    rng = np.random.default_rng(seed)
    s = {a: rng.integers(0, S, n_rows) for a in AGENTS}
    act = {
        "cat": _draw(rng, P_CAT, s["cat"]).astype(np.int32),
        "multi": np.stack([_draw(rng, P_M0, s["multi"]), _draw(rng, P_M1, s["multi"])], 1).astype(np.int32),
        "box": (MU[s["box"]] + SD[s["box"]] * rng.standard_normal((n_rows, 2))).astype(np.float32),
    }
    if n_garbage:
        junk = {
            "cat": np.full(n_garbage, 2, np.int32),
            "multi": np.tile(np.array([[2, 1]], np.int32), (n_garbage, 1)),
            "box": np.full((n_garbage, 2), 4.0, np.float32),
        }
        act = {a: np.concatenate([junk[a], act[a]]) for a in AGENTS}
        s = {a: np.concatenate([np.zeros(n_garbage, int), s[a]]) for a in AGENTS}
    obs = {a: toy_obs(a, s[a], rng) for a in AGENTS}
    return {"obs": obs, "actions": act}, s


def entropy_bonus_optimum(p, alpha):
    """Rows of argmin_q -sum p log q - alpha H(q) over the simplex (gradient descent on the logits to
    the stationary point q - p + alpha q (log q + H(q)) = 0)."""
    z = np.log(p)
    for _ in range(3000):
        q = softmax(z)
        h = -(q * np.log(q)).sum(-1, keepdims=True)
        z = z - 0.5 * (q - p + alpha * q * (np.log(q) + h))
    return softmax(z)


def softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------------
N_REAL, N_GARBAGE = 8192, 2048
WINDOW = N_REAL + N_GARBAGE


@pytest.fixture(scope="module")
def toy():
    cfg = recommended_config(
        lr=1e-2,
        entropy_coef=ALPHA,
        window=WINDOW,
        holdout_ratio=0.5,
        max_epochs=100,
        steps_per_epoch=10,
        share_across_egos=True,
    )
    models = OpponentModels(SPEC, cfg)
    data, states = toy_data(N_REAL, seed=0, n_garbage=N_GARBAGE)
    state0 = models.init(jax.random.PRNGKey(0))
    state, metrics = jax.jit(models.fit)(state0, data, jnp.int32(N_REAL), jax.random.PRNGKey(1))
    probe = {a: toy_obs(a, np.arange(S)) for a in AGENTS}
    # raw outputs of every target's model at the three states, as seen by its first ego
    outputs = jax.jit(lambda st: {j: models.outputs(st, models.egos[j][0], j, probe[j]) for j in AGENTS})
    return dict(
        models=models, state=state, metrics=metrics, data=data, states=states, out=outputs(state), probe=probe
    )


def test_fit_recovers_known_policies_with_entropy_bonus(toy):
    metrics, out = toy["metrics"], jax.tree.map(np.asarray, toy["out"])
    assert int(metrics["n_holdout"]) == N_REAL // 2 and int(metrics["n_train"]) == N_REAL - N_REAL // 2
    assert 1 <= int(metrics["epochs"]["box"]["cat"]) <= 100

    # categorical: the optimum of NLL - alpha H is the data distribution flattened towards uniform.
    # The adversarial rows before n_valid (state 0 -> action 2) would pull p(2|s=0) up if used.
    want = entropy_bonus_optimum(P_CAT, ALPHA)
    wrong_sign = entropy_bonus_optimum(P_CAT, -ALPHA)
    assert np.abs(want - P_CAT).max() > 0.08 and np.abs(want - wrong_sign).max() > 0.15  # test has power
    np.testing.assert_allclose(softmax(out["cat"]), want, atol=0.045)

    # multi-discrete: log-probs added, entropies added => each component is fitted independently
    np.testing.assert_allclose(softmax(out["multi"][:, :3]), entropy_bonus_optimum(P_M0, ALPHA), atol=0.045)
    np.testing.assert_allclose(softmax(out["multi"][:, 3:]), entropy_bonus_optimum(P_M1, ALPHA), atol=0.045)

    # Gaussian: mean recovered, std inflated by exactly 1/sqrt(1 - alpha) (a penalty would deflate it)
    np.testing.assert_allclose(out["box"][:, :2], MU, atol=0.06)
    ratio = np.exp(out["box"][:, 2:]) / SD
    np.testing.assert_allclose(ratio, 1 / math.sqrt(1 - ALPHA), rtol=0.08)
    assert np.all(ratio > 1.1)  # no bonus: 1.0; entropy penalty: 1/sqrt(1.3) = 0.88


def test_eps_matches_closed_form(toy):
    data, states = toy["data"], toy["states"]
    out = jax.tree.map(np.asarray, toy["out"])
    rows = np.arange(WINDOW - N_REAL // 2, WINDOW)  # holdout = the newest half of the valid rows

    # discrete: E[1 - 1(a = a_hat)] = 1 - sum_a p_true(a|s) p_model(a|s), averaged over holdout states
    s = states["cat"][rows]
    q = softmax(out["cat"])
    eps_cat = np.mean(1 - (P_CAT[s] * q[s]).sum(1))
    s = states["multi"][rows]
    q0, q1 = softmax(out["multi"][:, :3]), softmax(out["multi"][:, 3:])
    eps_multi = np.mean(1 - (P_M0[s] * q0[s]).sum(1) * (P_M1[s] * q1[s]).sum(1))  # every component
    # continuous: Monte Carlo of E||a - a_hat||_2 with 256 draws of a_hat per holdout row
    s = states["box"][rows]
    a = np.asarray(data["actions"]["box"])[rows]
    rng = np.random.default_rng(5)
    a_hat = out["box"][s, None, :2] + np.exp(out["box"][s, None, 2:]) * rng.standard_normal(
        (len(rows), 256, 2)
    )
    eps_box = np.mean(np.linalg.norm(a[:, None] - np.clip(a_hat, -5, 5), axis=-1))

    # fit's metrics come from ``error`` on the holdout rows; a broken eps (argmax a_hat, per-component
    # matches, ||a - mu||) lands far outside these bounds
    m = toy["metrics"]
    assert float(m["eps"]["box"]["cat"]) == pytest.approx(eps_cat, abs=0.025)
    assert float(m["eps"]["cat"]["multi"]) == pytest.approx(eps_multi, abs=0.025)
    assert float(m["eps"]["cat"]["box"]) == pytest.approx(eps_box, rel=0.03)
    # shared copies: every ego reports the same model's error
    assert float(m["eps"]["multi"]["cat"]) == float(m["eps"]["box"]["cat"])
    # the sampled-a_hat mismatch of a near-exact model is about 1 - sum p^2, far above the argmax rate
    assert eps_cat > 0.4


def test_loss_sign_by_hand(toy):
    """loss = mean(-log pi(a|o) - alpha H(pi(.|o))): an entropy *bonus*."""
    models, state, probe = toy["models"], toy["state"], toy["probe"]
    out = jax.tree.map(lambda x: np.asarray(x, np.float64), toy["out"])
    a_box = np.array([[0.3, -1.0], [2.0, 0.5]])
    loss = jax.jit(
        lambda st: (
            models.loss(st, "box", "cat", probe["cat"][[0, 2]], jnp.array([1, 2])),
            models.loss(st, "cat", "box", probe["box"][[0, 2]], jnp.asarray(a_box, jnp.float32)),
        )
    )
    got_cat, got_box = (float(x) for x in loss(state))

    logp = np.log(softmax(out["cat"][[0, 2]]))
    nll = -logp[[0, 1], [1, 2]]
    ent = -(np.exp(logp) * logp).sum(1)
    assert got_cat == pytest.approx(np.mean(nll - ALPHA * ent), rel=1e-5)
    assert abs(got_cat - np.mean(nll + ALPHA * ent)) > 0.1

    mu, log_sd = out["box"][[0, 2], :2], out["box"][[0, 2], 2:]
    nll = (0.5 * ((a_box - mu) / np.exp(log_sd)) ** 2 + log_sd + 0.5 * np.log(2 * np.pi)).sum(1)
    ent = (log_sd + 0.5 * np.log(2 * np.pi * np.e)).sum(1)
    assert got_box == pytest.approx(np.mean(nll - ALPHA * ent), rel=1e-5)
    assert abs(got_box - np.mean(nll + ALPHA * ent)) > 0.1


def test_holdout_split_disjoint_and_sized():
    split = jax.jit(holdout_split, static_argnums=(0, 2, 3))
    for holdout in ("newest", "oldest"):
        for n_valid in (0, 3, 7, 10):
            train, hold = (np.asarray(x) for x in split(10, jnp.int32(n_valid), 0.2, holdout))
            valid = np.arange(10) >= 10 - n_valid
            assert not np.any((train > 0) & (hold > 0))
            np.testing.assert_array_equal((train + hold) > 0, valid)
            assert hold.sum() == math.floor(0.2 * n_valid)
    train, hold = (np.asarray(x) for x in split(10, jnp.int32(7), 0.3, "newest"))
    np.testing.assert_array_equal(np.flatnonzero(hold), [8, 9])
    np.testing.assert_array_equal(np.flatnonzero(train), [3, 4, 5, 6, 7])
    train, hold = (np.asarray(x) for x in split(10, jnp.int32(7), 0.3, "oldest"))
    np.testing.assert_array_equal(np.flatnonzero(hold), [3, 4])
    np.testing.assert_array_equal(np.flatnonzero(train), [5, 6, 7, 8, 9])


def test_holdout_block_holds_every_holdout_row():
    """The fit evaluates its early-stopping criterion on :func:`holdout_block`'s rows only: they must hold
    every holdout row, for any number of valid rows, and stay about the fullest holdout's size."""
    for window, ratio in ((10, 0.2), (10, 0.3), (3072, 0.2), (7, 0.7), (5, 0.01)):
        for holdout in ("newest", "oldest"):
            for n_valid in sorted({0, 1, 2, window // 3, window - 1, window}):
                _, hold = holdout_split(window, jnp.int32(n_valid), ratio, holdout)
                start, size = holdout_block(window, jnp.int32(n_valid), ratio, holdout)
                start = int(start)
                rows = np.flatnonzero(np.asarray(hold))
                assert 0 <= start and start + size <= window
                assert np.all((rows >= start) & (rows < start + size)), (window, ratio, holdout, n_valid)
                assert size <= ratio * window + 2  # a block, not the window


def test_heads_multidiscrete_adds_and_gaussian_clips():
    head = Head(MultiDiscrete((3, 2)))
    out = np.array([[0.5, -1.0, 2.0, 0.3, -0.2]], np.float32)
    g = Head(Box(-1.0, 1.0, (2,)))
    g_out = jnp.array([[100.0, -100.0, 1.0, 1.0]])

    @jax.jit
    def run():
        return (
            head.log_prob(out, jnp.array([[2, 0]]))[0],
            head.error(jnp.array([[2, 0], [2, 0]]), jnp.array([[2, 1], [2, 0]])),
            g.sample(g_out, jax.random.PRNGKey(0)),
            g.mode(g_out),
        )

    logp, err, sample, mode = run()
    want = np.log(softmax(out[0, :3]))[2] + np.log(softmax(out[0, 3:]))[0]  # sum, not product
    assert float(logp) == pytest.approx(want, rel=1e-5)
    np.testing.assert_array_equal(np.asarray(err), [1.0, 0.0])  # one component off: a mismatch
    np.testing.assert_array_equal(np.asarray(sample), [[1.0, -1.0]])
    np.testing.assert_array_equal(np.asarray(mode), [[1.0, -1.0]])


def test_share_across_egos_shapes():
    key = jax.random.PRNGKey(0)
    own = OpponentModels(SPEC, recommended_config())
    shared = OpponentModels(SPEC, recommended_config(share_across_egos=True))
    s_own, s_shared = jax.eval_shape(own.init, key), jax.eval_shape(shared.init, key)
    for j in AGENTS:
        assert own.egos[j] == tuple(a for a in AGENTS if a != j)
        assert {leaf.shape[0] for leaf in jax.tree.leaves((s_own.params[j], s_own.opt_state[j]))} == {2}
        assert {leaf.shape[0] for leaf in jax.tree.leaves((s_shared.params[j], s_shared.opt_state[j]))} == {1}
        assert [own.copy_index(i, j) for i in own.egos[j]] == [0, 1]
        assert [shared.copy_index(i, j) for i in shared.egos[j]] == [0, 0]
    with pytest.raises(ConfigError):
        own.copy_index("cat", "cat")


# ---------------------------------------------------------------------------------------------------
# Heterogeneous MPE tasks. The windows are drawn from the spaces directly (the model never looks at the
# env dynamics), so only the spec matters.
def random_window(spec: EnvSpec, n: int, seed: int):
    rng = np.random.default_rng(seed)
    obs, acts = {}, {}
    for a, space in zip(spec.agents, spec.act_spaces, strict=True):
        obs[a] = rng.standard_normal((n, spec.obs_dim(a))).astype(np.float32)
        if isinstance(space, Discrete):
            acts[a] = rng.integers(0, space.n, n).astype(np.int32)
        else:
            acts[a] = np.stack([rng.integers(0, k, n) for k in space.nvec], 1).astype(np.int32)
    return {"obs": obs, "actions": acts}


@pytest.fixture(scope="module")
def speaker_listener():
    spec = envs.make("mpe/simple_speaker_listener").spec
    # the other code paths: minibatches, the code's greedy-error stopping and its oldest-block holdout
    cfg = recommended_config(
        lr=1e-2,
        window=128,
        max_epochs=6,
        steps_per_epoch=2,
        batch_size=32,
        stop_metric="greedy_error",
        holdout="oldest",
    )
    models = OpponentModels(spec, cfg)
    return dict(
        spec=spec,
        models=models,
        init=jax.jit(models.init),
        fit=jax.jit(models.fit),
        data=random_window(spec, 128, 0),
    )


def _check_heterogeneous(spec, models, state, data, metrics=None):
    """Per-target parameter shapes (never padded) and the env / flat formats of the predictions."""

    @jax.jit
    def predictions(st):
        key = jax.random.PRNGKey(3)
        return {
            i: (
                models.predict_others(st, i, data["obs"], key, greedy=False),
                models.predict_others(st, i, data["obs"], key, greedy=True, flat=True),
            )
            for i in spec.agents
        }

    preds = predictions(state)
    n = data["obs"][spec.agents[0]].shape[0]
    for j, space in zip(spec.agents, spec.act_spaces, strict=True):
        kernels = [x for x in jax.tree.leaves(state.params[j]) if x.ndim == 3]
        assert kernels[0].shape == (spec.num_agents - 1, spec.obs_dim(j), 64)
        assert kernels[-1].shape == (spec.num_agents - 1, 64, space.flat_dim)
    for i in spec.agents:
        acts, flats = preds[i]
        assert set(acts) == set(flats) == set(spec.agents) - {i}
        for j in acts:
            space = spec.act_space(j)
            act, flat = np.asarray(acts[j]), np.asarray(flats[j])
            assert act.dtype == np.int32 and flat.shape == (n, space.flat_dim)
            if isinstance(space, MultiDiscrete):
                assert act.shape == (n, len(space.nvec))
                assert np.all((act >= 0) & (act < np.asarray(space.nvec)))
                np.testing.assert_allclose(flat.sum(-1), len(space.nvec))
            else:
                assert act.shape == (n,) and np.all((act >= 0) & (act < space.n))
                np.testing.assert_allclose(flat.sum(-1), 1.0)
            if metrics is not None:
                assert 0.0 < float(metrics["eps"][i][j]) <= 1.0


def test_heterogeneous_simple_speaker_listener(speaker_listener):
    spec, models, data = speaker_listener["spec"], speaker_listener["models"], speaker_listener["data"]
    assert spec.act_spaces == (Discrete(3), Discrete(5)) and spec.obs_dim("speaker_0") == 3
    state0 = speaker_listener["init"](jax.random.PRNGKey(0))
    state, metrics = speaker_listener["fit"](state0, data, jnp.int32(100), jax.random.PRNGKey(1))
    assert int(metrics["n_holdout"]) == 20 and int(metrics["n_train"]) == 80
    assert all(1 <= int(metrics["epochs"][i][j]) <= 6 for i in spec.agents for j in models.others(i))
    _check_heterogeneous(spec, models, state, data, metrics)


def test_heterogeneous_simple_schedule():
    spec = envs.make("mpe/simple_schedule").spec
    assert spec.act_spaces == (MultiDiscrete((5, 3, 3)), Discrete(5), Discrete(5))
    assert (spec.obs_dim("agent_0"), spec.obs_dim("agent_1")) == (20, 15)
    models = OpponentModels(spec, recommended_config())
    state = jax.jit(models.init)(jax.random.PRNGKey(0))
    _check_heterogeneous(spec, models, state, random_window(spec, 16, 1))


def test_vmapped_fit_over_seeds_equals_separate_calls(speaker_listener):
    models, fit, data = speaker_listener["models"], speaker_listener["fit"], speaker_listener["data"]
    inits = [speaker_listener["init"](jax.random.PRNGKey(10 + i)) for i in range(2)]
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    n_valid = jnp.int32(110)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *inits)
    batched = jax.jit(jax.vmap(models.fit, in_axes=(0, None, None, 0)))(stacked, data, n_valid, keys)
    for i in range(2):
        single = fit(inits[i], data, n_valid, keys[i])
        for x, y in zip(jax.tree.leaves(single), jax.tree.leaves(batched), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y)[i], rtol=1e-5, atol=1e-6)
    kernel = batched[0].params["listener_0"]["params"]["Dense_0"]["kernel"]
    assert float(jnp.abs(kernel[0] - kernel[1]).max()) > 1e-3  # the seeds really differ


def test_bad_config_raises():
    for bad in (
        dict(lr=0.0),
        dict(holdout_ratio=1.0),
        dict(holdout="random"),
        dict(stop_metric="match"),
        dict(patience=0),
        dict(batch_size=-1),
        dict(entropy_coef=1.0),  # Box target: sigma would diverge
    ):
        with pytest.raises(ConfigError):
            OpponentModels(SPEC, recommended_config(**bad))
    with pytest.raises(ConfigError):
        recommended_config(nonsense=1)
