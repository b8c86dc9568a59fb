"""MAG (marlow.algos.model_based.mag): planning takes, per imagined sample (and per agent with
``plan_select=agent``), the candidate with the lowest predicted error under a hand-set error predictor; the
candidates' H-step rollouts are scored jointly; the error predictor learns the world model's per-step
error. That MAG with one candidate is MAMBA exactly (same seed, same metrics) is in tests/test_mamba.py,
beside the MAMBA runs it compares with."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_mamba import _algo


def _planner(select: str, horizon: int, candidates: int = 5):
    env, alg = _algo(
        f"plan_select={select}", f"plan_horizon={horizon}", f"plan_candidates={candidates}", algo="mag"
    )
    state = alg.init(jax.random.PRNGKey(0))
    w = jax.random.normal(jax.random.PRNGKey(7), (alg.sizes.stoch,))
    # hand-set R_m: a fixed linear function of the latent, per agent
    alg.predicted_error = lambda rm, deter, stoch: stoch @ w
    deter = jax.random.normal(jax.random.PRNGKey(1), (64, alg.n, alg.sizes.deter))
    return alg, state, deter, w


@pytest.mark.parametrize("select", ["joint", "agent"])
def test_planning_picks_the_per_sample_minimum_of_a_hand_set_error(select):
    alg, state, deter, w = _planner(select, horizon=1)
    key = jax.random.PRNGKey(3)
    z, m = alg.next_latent(state, deter, key)
    k_c = jax.random.split(key, 3)[0]
    cands = alg.sample_prior(state.model, deter, k_c, 5)  # the candidates next_latent drew
    err = np.asarray(cands @ w)  # [L, M, N]: with H = 1 the score is R_m of the candidate itself
    if select == "joint":
        best = err.sum(-1).argmin(0)  # [M]
        expect = np.asarray(cands)[best, np.arange(64)]
        np.testing.assert_allclose(m["plan_err_chosen"], err.sum(-1).min(0), rtol=1e-5, atol=1e-5)
        assert len(set(best.tolist())) > 1  # per sample: not one choice for the whole batch
    else:
        best = err.argmin(0)  # [M, N]
        expect = np.asarray(cands)[best, np.arange(64)[:, None], np.arange(alg.n)[None, :]]
        assert (best != best[:, :1]).any()  # agents of one sample choose differently
    np.testing.assert_allclose(z, expect, atol=1e-6)
    assert (m["plan_err_chosen"] <= m["plan_err_random"] + 1e-5).all()


def test_multi_step_scores_sum_the_error_along_each_candidate_s_rollout():
    """With H = 3 each candidate's score is its own error plus the errors of the two states its rollout
    reaches, computed for all candidates at once; the choice is the per-sample argmin of those scores."""
    alg, state, deter, w = _planner("joint", horizon=3)
    key = jax.random.PRNGKey(5)
    k_c, k_roll, _ = jax.random.split(key, 3)
    cands = alg.sample_prior(state.model, deter, k_c, 5)
    scores, first = alg.candidate_scores(state, deter, cands, k_roll)
    one_step = cands @ w
    assert scores.shape == (5, 64, alg.n) and not np.allclose(scores, one_step)
    np.testing.assert_allclose(first, one_step, rtol=1e-6)
    z, _ = alg.next_latent(state, deter, key)
    best = np.asarray(scores.sum(-1)).argmin(0)
    np.testing.assert_allclose(z, np.asarray(cands)[best, np.arange(64)], atol=1e-6)


def test_error_predictor_learns_the_model_s_per_step_error():
    """Trained on one buffer against a fixed (untrained) world model, R_m's predictions on fresh windows
    fit the per-step error it regresses better than the best constant does, and correlate with it."""
    from marlow import rollout
    from marlow.buffers import sequence
    from marlow.world import rssm

    rm = ("rm_updates=1000", "rm_batch=16", "seq_len=10", "rm_hidden=32", "rm_lr=0.003")
    env, alg = _algo(*rm, algo="mag")
    state = alg.init(jax.random.PRNGKey(0))
    carry = rollout.reset(env, jax.random.PRNGKey(1), 2, alg.init_pstate(2))
    _, _, traj = jax.jit(
        lambda c: rollout.collect(
            env,
            alg.policy(state),
            c,
            jax.random.PRNGKey(2),
            400,
            rollout.Options(env_info=True, reset_pstate=alg.reset_pstate),
        )
    )(carry)
    state = state.replace(buffer=sequence.add(state.buffer, alg.steps_of(traj)))
    state, m = jax.jit(lambda s: alg.train_extra(s, jax.random.PRNGKey(3)))(state)
    window = sequence.sample(state.buffer, jax.random.PRNGKey(4), 32, 10)
    _, (_, target, post) = rssm.model_loss(alg.model, state.model, window, jax.random.PRNGKey(5))
    pred = alg.predicted_error(state.rm, post["deter"], post["prior_stoch"])
    corr = np.corrcoef(np.ravel(pred), np.ravel(target))[0, 1]
    huber = lambda p: float(np.mean(optax.huber_loss(p, target, delta=1.0)))  # noqa: E731
    # better than the best constant (the median, for the smooth L1 loss) and correlated with the target
    assert huber(pred) < 0.95 * huber(jnp.median(target)) and corr > 0.2, (corr, huber(pred))
