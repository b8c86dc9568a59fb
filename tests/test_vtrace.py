"""V-trace (ppo.vtrace) against a direct numpy implementation of IMPALA's sum (Espeholt et al. 2018, Eq. 1),
its on-policy reduction to GAE, its clipping; the diagonal-Gaussian KL against closed-form values."""

import jax.numpy as jnp
import numpy as np
import pytest

from marlow.algos.onpolicy import ppo
from marlow.nn.distributions import DiagGaussian


def direct_vtrace(r, v, nv, term, done, rho, gamma, lam, rho_clip, c_clip):
    """v_s - V(s) = sum_{t >= s, same episode} gamma^(t-s) (prod_{i=s}^{t-1} c_i) delta_t, term by term."""
    T, B = r.shape
    rho_bar, c = np.minimum(rho, rho_clip), lam * np.minimum(rho, c_clip)
    delta = rho_bar * (r + gamma * (1 - term) * nv - v)
    adv = np.zeros((T, B))
    for b in range(B):
        for s in range(T):
            weight = 1.0
            for t in range(s, T):
                adv[s, b] += gamma ** (t - s) * weight * delta[t, b]
                if done[t, b]:
                    break  # the trace stops at the episode's end
                weight *= c[t, b]
    return adv, adv + v


def _trajectory(T=7, B=3, seed=0):
    rng = np.random.default_rng(seed)
    r, v, nv = rng.normal(size=(T, B)), rng.normal(size=(T, B)), rng.normal(size=(T, B))
    term = np.zeros((T, B), bool)
    trunc = np.zeros((T, B), bool)
    term[2, 0] = True  # one terminated episode, one truncated one
    trunc[4, 1] = True
    return r, v, nv, term, term | trunc, rng


@pytest.mark.parametrize(("rho_clip", "c_clip"), [(1.0, 1.0), (2.0, 0.5)])
def test_vtrace_matches_the_direct_sum(rho_clip, c_clip):
    r, v, nv, term, done, rng = _trajectory()
    rho = np.exp(rng.normal(scale=0.8, size=r.shape))  # ratios both above and below the clip levels
    want_adv, want_target = direct_vtrace(r, v, nv, term, done, rho, 0.97, 0.9, rho_clip, c_clip)
    steps = ppo.Steps(*(jnp.asarray(x) for x in (r, v, nv, term, done)))
    adv, target = ppo.vtrace(steps, jnp.asarray(rho), 0.97, 0.9, rho_clip, c_clip)
    np.testing.assert_allclose(adv, want_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(target, want_target, rtol=1e-5, atol=1e-5)


def test_vtrace_on_policy_is_gae_and_clipping_caps_large_ratios():
    r, v, nv, term, done, _ = _trajectory(seed=1)
    steps = ppo.Steps(*(jnp.asarray(x) for x in (r, v, nv, term, done)))
    gae_adv, gae_target = ppo.gae(steps, 0.99, 0.95)
    adv, target = ppo.vtrace(steps, jnp.ones_like(steps.rewards), 0.99, 0.95)
    np.testing.assert_allclose(adv, gae_adv, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(target, gae_target, rtol=1e-6, atol=1e-6)
    # ratios above the clip levels act as 1; ratios below them scale the TD errors and the traces
    big, _ = ppo.vtrace(steps, jnp.full_like(steps.rewards, 5.0), 0.99, 0.95)
    np.testing.assert_allclose(big, gae_adv, rtol=1e-6, atol=1e-6)
    half, _ = ppo.vtrace(steps, jnp.full_like(steps.rewards, 0.5), 0.99, 0.95)
    want, _ = direct_vtrace(r, v, nv, term, done, np.full(r.shape, 0.5), 0.99, 0.95, 1.0, 1.0)
    np.testing.assert_allclose(half, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(half, gae_adv)


def test_diag_gaussian_kl_closed_form():
    z = jnp.zeros(1)
    np.testing.assert_allclose(DiagGaussian.kl(z, z, z + 1.0, z), 0.5, rtol=1e-6)  # unit variances
    # N(0, 1) || N(0, 2^2): log 2 + 1/8 - 1/2
    np.testing.assert_allclose(DiagGaussian.kl(z, z, z, z + np.log(2.0)), np.log(2) + 1 / 8 - 0.5, rtol=1e-6)
    # sums over dimensions, zero for equal distributions, asymmetric
    m, s = jnp.array([0.3, -1.0]), jnp.array([0.1, -0.4])
    assert float(DiagGaussian.kl(m, s, m, s)) == pytest.approx(0.0, abs=1e-7)
    kl_pq = float(DiagGaussian.kl(m, s, m + 1.0, s - 0.5))
    kl_qp = float(DiagGaussian.kl(m + 1.0, s - 0.5, m, s))
    one = [
        float(DiagGaussian.kl(m[i : i + 1], s[i : i + 1], m[i : i + 1] + 1, s[i : i + 1] - 0.5))
        for i in (0, 1)
    ]
    assert kl_pq == pytest.approx(sum(one), rel=1e-6) and kl_pq != pytest.approx(kl_qp, rel=1e-3)
