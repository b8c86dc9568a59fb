"""Action distributions: Gumbel-softmax straight-through, categorical / multi-categorical statistics,
tanh-Gaussian densities and bounds, deterministic tanh with exploration noise."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow.envs.spaces import Box, Discrete, MultiDiscrete
from marlow.nn.distributions import (
    Categorical,
    DeterministicTanh,
    MultiCategorical,
    TanhGaussian,
    gumbel_softmax_st,
    make_dist,
)

KEY = jax.random.PRNGKey(0)


def _np_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def _logits(shape, scale=2.0, seed=1):
    return scale * jax.random.normal(jax.random.PRNGKey(seed), shape)


# ------------------------------------------------------------------------------------------------
# Gumbel-softmax straight-through
def test_gumbel_st_forward_is_one_hot_of_idx():
    logits = _logits((500, 7), scale=3.0)
    idx, flat = jax.jit(gumbel_softmax_st)(KEY, logits)
    flat = np.asarray(flat)
    np.testing.assert_allclose(flat, np.eye(7)[np.asarray(idx)], rtol=0, atol=1e-6)
    assert np.all(np.argmax(flat, -1) == np.asarray(idx))


def test_gumbel_st_forward_is_exactly_one_hot():
    logits = _logits((1000, 7), scale=3.0)
    for fn in (gumbel_softmax_st, jax.jit(gumbel_softmax_st)):
        idx, flat = fn(KEY, logits)
        assert np.array_equal(np.asarray(flat), np.eye(7, dtype=np.float32)[np.asarray(idx)])


def test_gumbel_st_gradient_wrt_logits_is_nonzero():
    logits = _logits((4, 5), scale=0.5)
    w = jnp.arange(5.0)

    def f(lg):
        return jnp.sum(gumbel_softmax_st(KEY, lg, 0.7)[1] * w)

    g = np.asarray(jax.jit(jax.grad(f))(logits))
    assert np.all(np.isfinite(g))
    assert np.all(np.abs(g).sum(-1) > 1e-4)  # every row gets a gradient through the soft sample
    np.testing.assert_allclose(g.sum(-1), 0.0, atol=1e-5)  # softmax is shift-invariant


def test_gumbel_st_samples_follow_softmax():
    logits = jnp.log(jnp.array([0.1, 0.2, 0.7]))
    idx, _ = gumbel_softmax_st(KEY, jnp.broadcast_to(logits, (20000, 3)))
    freq = np.bincount(np.asarray(idx), minlength=3) / 20000
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.7], atol=0.015)


# ------------------------------------------------------------------------------------------------
# Categorical / MultiCategorical
def test_categorical_entropy_and_log_prob_closed_form():
    d = Categorical(Discrete(6))
    logits = _logits((64, 6))
    s = jax.jit(d.sample)(logits, KEY)
    logp_all = _np_log_softmax(logits)
    ent = -(np.exp(logp_all) * logp_all).sum(-1)
    np.testing.assert_allclose(np.asarray(s.entropy), ent, rtol=1e-5, atol=1e-5)
    idx = np.asarray(s.env)
    assert s.env.dtype == jnp.int32 and idx.min() >= 0 and idx.max() < 6
    np.testing.assert_allclose(np.asarray(s.log_prob), logp_all[np.arange(64), idx], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(d.log_prob(logits, s.env)), np.asarray(s.log_prob), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(s.flat), np.eye(6)[idx], atol=1e-6)
    # uniform logits: entropy log n
    np.testing.assert_allclose(float(d.sample(jnp.zeros(6), KEY).entropy), np.log(6), rtol=1e-6)


def test_categorical_mode_is_argmax():
    d = Categorical(Discrete(5))
    logits = _logits((32, 5))
    idx, flat = d.mode(logits)
    np.testing.assert_array_equal(np.asarray(idx), np.argmax(np.asarray(logits), -1))
    np.testing.assert_array_equal(np.asarray(flat), np.eye(5)[np.argmax(np.asarray(logits), -1)])


def test_multicategorical_log_prob_and_entropy_are_sums():
    space = MultiDiscrete((5, 3, 3))
    d = MultiCategorical(space)
    out = _logits((40, 11))
    parts = np.split(np.asarray(out), [5, 8], axis=-1)
    s = jax.jit(d.sample)(out, KEY)
    act = np.asarray(s.env)
    assert act.shape == (40, 3) and s.env.dtype == jnp.int32
    assert all(space.contains(a) for a in act)
    lps = [_np_log_softmax(p) for p in parts]
    exp_logp = sum(lp[np.arange(40), act[:, i]] for i, lp in enumerate(lps))
    exp_ent = sum(-(np.exp(lp) * lp).sum(-1) for lp in lps)
    np.testing.assert_allclose(np.asarray(s.log_prob), exp_logp, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(jax.jit(d.log_prob)(out, s.env)), exp_logp, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(s.entropy), exp_ent, rtol=1e-5, atol=1e-5)
    # the product of component probabilities (not a product of log-probs): sum of log-probs
    cats = [Categorical(Discrete(n)) for n in space.nvec]
    comp = [
        jax.jit(c.log_prob)(jnp.asarray(p), jnp.asarray(act[:, i]))
        for i, (c, p) in enumerate(zip(cats, parts, strict=True))
    ]
    np.testing.assert_allclose(np.asarray(s.log_prob), np.asarray(sum(comp)), rtol=1e-5, atol=1e-5)
    # flat form: concatenated one-hots of the env action
    np.testing.assert_allclose(np.asarray(s.flat), np.asarray(space.to_flat(s.env)), atol=1e-6)


def test_multicategorical_mode_is_per_component_argmax():
    space = MultiDiscrete((5, 3, 3))
    d = MultiCategorical(space)
    out = _logits((16, 11))
    idx, flat = jax.jit(d.mode)(out)
    parts = np.split(np.asarray(out), [5, 8], axis=-1)
    np.testing.assert_array_equal(np.asarray(idx), np.stack([p.argmax(-1) for p in parts], -1))
    np.testing.assert_array_equal(np.asarray(flat), np.asarray(space.to_flat(idx)))


def test_multicategorical_gradient_flows_to_every_component():
    d = MultiCategorical(MultiDiscrete((4, 3)))
    out = _logits((8, 7), scale=0.3)
    g = np.asarray(jax.jit(jax.grad(lambda o: jnp.sum(d.sample(o, KEY).flat * jnp.arange(7.0))))(out))
    assert np.abs(g[:, :4]).sum() > 1e-4 and np.abs(g[:, 4:]).sum() > 1e-4


# ------------------------------------------------------------------------------------------------
# TanhGaussian
def test_tanh_gaussian_samples_in_bounds_including_saturation():
    space = Box(low=-2.0, high=3.0, shape=(1,))
    d = TanhGaussian(space)
    mean = jnp.concatenate([jnp.full((100, 1), -40.0), jnp.full((100, 1), 40.0), _logits((100, 1))])
    out = jnp.concatenate([mean, jnp.full((300, 1), 2.0)], -1)
    s = d.sample(out, KEY)
    a = np.asarray(s.env)
    assert a.shape == (300, 1)
    assert a.min() >= -2.0 and a.max() <= 3.0
    assert np.isclose(a.min(), -2.0) and np.isclose(a.max(), 3.0)  # saturation reaches the bounds
    assert np.all(np.isfinite(np.asarray(s.log_prob)))


def test_tanh_gaussian_vector_bounds():
    space = Box(low=(-1.0, 0.0), high=(1.0, 5.0), shape=(2,))
    d = TanhGaussian(space)
    out = jnp.concatenate([3.0 * _logits((500, 2)), jnp.full((500, 2), 1.0)], -1)
    a = np.asarray(d.sample(out, KEY).env)
    assert np.all(a >= [-1.0, 0.0]) and np.all(a <= [1.0, 5.0])
    # log-density of independent dimensions is the sum of the 1-D densities
    lp = d.log_prob(out, jnp.asarray(a))
    d0 = TanhGaussian(Box(-1.0, 1.0, (1,)))
    d1 = TanhGaussian(Box(0.0, 5.0, (1,)))
    lp0 = d0.log_prob(out[:, [0, 2]], jnp.asarray(a[:, :1]))
    lp1 = d1.log_prob(out[:, [1, 3]], jnp.asarray(a[:, 1:]))
    np.testing.assert_allclose(np.asarray(lp), np.asarray(lp0 + lp1), rtol=1e-5, atol=1e-4)


def _density_grid(d, out, low, high, n=200_001):
    a = np.linspace(low, high, n)[1:-1]
    lp = np.asarray(d.log_prob(jnp.broadcast_to(out, (a.size, 2)), jnp.asarray(a[:, None], jnp.float32)))
    return a, np.exp(lp.astype(np.float64))


@pytest.mark.parametrize("mean,log_std", [(0.3, -0.2), (-1.0, 0.3), (0.0, -1.5)])
def test_tanh_gaussian_density_integrates_to_one(mean, log_std):
    low, high = -2.0, 3.0
    d = TanhGaussian(Box(low, high, (1,)))
    a, p = _density_grid(d, jnp.array([mean, log_std]), low, high)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(np.trapezoid(p, a), 1.0, atol=2e-3)


def test_tanh_gaussian_density_matches_sample_histogram():
    low, high = -2.0, 3.0
    d = TanhGaussian(Box(low, high, (1,)))
    out = jnp.array([0.3, -0.2])
    n = 100_000
    samples = np.asarray(d.sample(jnp.broadcast_to(out, (n, 2)), jax.random.PRNGKey(7)).env)[:, 0]
    edges = np.linspace(low, high, 26)
    emp = np.histogram(samples, edges)[0] / n
    a, p = _density_grid(d, out, low, high)
    cum = np.concatenate([[0.0], np.cumsum((p[1:] + p[:-1]) / 2 * np.diff(a))])
    model = np.diff(np.interp(edges, a, cum))
    np.testing.assert_allclose(emp, model, atol=6e-3)


def test_tanh_gaussian_log_prob_finite_at_bounds():
    space = Box(low=-1.5, high=2.5, shape=(1,))
    d = TanhGaussian(space)
    for mean in (-3.0, 0.0, 3.0):
        out = jnp.array([[mean, 0.0]])
        for bound in (-1.5, 2.5):
            assert np.isfinite(float(d.log_prob(out, jnp.array([[bound]]))[0]))
    # symmetric bounds +-high
    d = TanhGaussian(Box(-1.0, 1.0, (2,)))
    lp = d.log_prob(jnp.zeros((2, 4)), jnp.array([[1.0, -1.0], [-1.0, 1.0]]))
    assert np.all(np.isfinite(np.asarray(lp)))


def test_tanh_gaussian_sample_log_prob_agrees_with_log_prob_of_env_action():
    space = Box(low=-2.0, high=3.0, shape=(2,))
    d = TanhGaussian(space)
    out = jnp.concatenate([0.5 * _logits((2000, 2), scale=1.0), jnp.full((2000, 2), -0.5)], -1)
    s = d.sample(out, KEY)
    a = np.asarray(s.env)
    t = (a - (-2.0)) / 2.5 - 1.0
    away = np.all(np.abs(t) < 0.95, -1)
    assert away.mean() > 0.9
    np.testing.assert_allclose(
        np.asarray(d.log_prob(out, s.env))[away], np.asarray(s.log_prob)[away], rtol=1e-3, atol=1e-3
    )
    np.testing.assert_allclose(np.asarray(s.entropy), -np.asarray(s.log_prob))
    np.testing.assert_allclose(np.asarray(s.flat), a, atol=1e-6)


def test_tanh_gaussian_mode_is_squashed_mean():
    d = TanhGaussian(Box(-1.0, 1.0, (3,)))
    out = _logits((8, 6))
    env, flat = d.mode(out)
    np.testing.assert_allclose(np.asarray(env), np.tanh(np.asarray(out)[:, :3]), rtol=1e-5, atol=1e-6)
    d = TanhGaussian(Box(-2.0, 3.0, (1,)))
    env, _ = d.mode(jnp.array([[0.4, 1.0]]))
    np.testing.assert_allclose(float(env[0, 0]), -2.0 + (np.tanh(0.4) + 1.0) * 2.5, rtol=1e-5)


def test_tanh_gaussian_reparameterised_gradient():
    d = TanhGaussian(Box(-1.0, 1.0, (1,)))
    g = jax.grad(lambda o: jnp.sum(d.sample(o, KEY).flat))(jnp.array([[0.1, -0.5]]))
    assert np.all(np.isfinite(np.asarray(g))) and float(g[0, 0]) > 0


# ------------------------------------------------------------------------------------------------
# DeterministicTanh
def test_deterministic_tanh_mode_and_noise_in_bounds():
    space = Box(low=-2.0, high=3.0, shape=(2,))
    d = DeterministicTanh(space, noise=3.0)  # large noise: clipping must keep actions in bounds
    out = jnp.concatenate([_logits((500, 2), scale=4.0)])
    env, flat = d.mode(out)
    np.testing.assert_allclose(np.asarray(env), -2.0 + (np.tanh(np.asarray(out)) + 1.0) * 2.5, rtol=1e-5)
    assert np.all(np.asarray(env) >= -2.0) and np.all(np.asarray(env) <= 3.0)
    s = d.sample(out, KEY)
    a = np.asarray(s.env)
    assert a.shape == (500, 2) and np.all(a >= -2.0) and np.all(a <= 3.0)
    assert np.any(a == -2.0) and np.any(a == 3.0)  # clipped
    assert not np.allclose(a, np.asarray(env))  # noise was added
    np.testing.assert_array_equal(np.asarray(s.log_prob), 0.0)
    # noise=0: sample is the mode
    d0 = DeterministicTanh(space, noise=0.0)
    np.testing.assert_allclose(np.asarray(d0.sample(out, KEY).env), np.asarray(env), rtol=1e-6)


def test_saturated_actions_stay_within_non_dyadic_bounds():
    space = Box(low=-3.0, high=0.2, shape=(1,))
    sat = jnp.array([[50.0], [-50.0]])
    tg, dt = TanhGaussian(space), DeterministicTanh(space, noise=5.0)
    actions = [
        tg.sample(jnp.concatenate([sat, jnp.full((2, 1), 2.0)], -1), KEY).env,
        tg.mode(jnp.concatenate([sat, jnp.zeros((2, 1))], -1))[0],
        dt.mode(sat)[0],
        dt.sample(sat, KEY).env,
    ]
    for acts in actions:
        for a in np.asarray(acts):
            assert space.contains(a), a


# ------------------------------------------------------------------------------------------------
def test_make_dist_dispatch_and_unbounded_box():
    assert isinstance(make_dist(Discrete(3)), Categorical)
    assert isinstance(make_dist(MultiDiscrete((2, 3))), MultiCategorical)
    assert isinstance(make_dist(Box(-1.0, 1.0, (2,))), TanhGaussian)
    det = make_dist(Box(-1.0, 1.0, (2,)), deterministic=True, noise=0.3)
    assert isinstance(det, DeterministicTanh) and det.noise == 0.3
    assert make_dist(Box(-1.0, 1.0, (2,))).out_dim == 4 and det.out_dim == 2
    assert make_dist(MultiDiscrete((2, 3))).out_dim == 5
    with pytest.raises(ValueError):
        TanhGaussian(Box(-np.inf, np.inf, (1,)))
    with pytest.raises(ValueError):
        DeterministicTanh(Box(-np.inf, 1.0, (1,)))


# ---- the affine map between env-scale and unit actions (one piece, envs.spaces) -------------------------
def test_unit_rescaling_is_affine_and_inverted():
    from marlow.envs.spaces import flat_bounds, from_unit, to_unit, unit_flat

    low, high = flat_bounds([Box(-10.0, 10.0, (1,)), Box((0.0, -1.0), (1.0, 3.0), (2,))])
    np.testing.assert_array_equal(np.asarray(low), [-10.0, 0.0, -1.0])
    np.testing.assert_array_equal(np.asarray(high), [10.0, 1.0, 3.0])
    np.testing.assert_array_equal(np.asarray(to_unit(low, low, high)), [-1.0, -1.0, -1.0])
    np.testing.assert_array_equal(np.asarray(to_unit(high, low, high)), [1.0, 1.0, 1.0])
    x = jnp.array([[5.0, 0.25, 2.0]])  # 3/4, 1/4 and 3/4 of the way up
    np.testing.assert_allclose(np.asarray(to_unit(x, low, high)), [[0.5, -0.5, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(from_unit(to_unit(x, low, high), low, high)), x, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(from_unit(jnp.array([2.0, -3.0, 1.0]), low, high)), [10, 0, 3])
    np.testing.assert_array_equal(np.asarray(unit_flat(Discrete(3), jnp.eye(3))), np.eye(3))  # one-hots pass


def test_tanh_distributions_use_the_same_rescaling():
    from marlow.envs.spaces import from_unit, to_unit

    space = Box(-10.0, 10.0, (2,))
    low, high = space.low_array, space.high_array
    out = jnp.array([[0.3, -2.0, 0.1, 0.2]])
    np.testing.assert_array_equal(
        np.asarray(TanhGaussian(space).mode(out)[1]), np.asarray(from_unit(jnp.tanh(out[:, :2]), low, high))
    )
    np.testing.assert_array_equal(
        np.asarray(DeterministicTanh(space).mode(out[:, :2])[1]),
        np.asarray(from_unit(jnp.tanh(out[:, :2]), low, high)),
    )
    a = jnp.array([[2.5, -7.5]])  # log_prob inverts the squashing with to_unit
    want = TanhGaussian(space).log_prob_from_pre_tanh(
        jnp.arctanh(to_unit(a, low, high)), out[:, :2], out[:, 2:]
    )
    np.testing.assert_allclose(np.asarray(TanhGaussian(space).log_prob(out, a)), np.asarray(want), rtol=1e-6)


def test_gaussian_density_entropy_and_clipping():
    from marlow.nn.distributions import Gaussian

    g = Gaussian(Box(-1.0, 1.0, (2,)))
    mean, log_std = np.array([0.2, -0.4]), np.array([-1.0, 0.5])
    out = jnp.asarray(np.concatenate([mean, log_std])[None], jnp.float32)
    x = np.array([0.5, 0.9])
    want = np.sum(-0.5 * ((x - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi))
    assert float(g.log_prob(out, jnp.asarray(x[None], jnp.float32))[0]) == pytest.approx(want, rel=1e-5)
    assert float(g.entropy(out)[0]) == pytest.approx(
        np.sum(log_std + 0.5 * np.log(2 * np.pi * np.e)), rel=1e-6
    )
    s = g.sample(jnp.array([[5.0, -5.0, -20.0, -20.0]]), KEY)  # far outside the box, no spread
    np.testing.assert_array_equal(np.asarray(s.env), [[1.0, -1.0]])
