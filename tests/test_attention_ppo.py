"""Attention-PPO (marlow.algos.onpolicy.attention_ppo): each agent's policy reads every agent's observation
through the attention (communication at execution). Its learning tests are tests/test_comm.py's, beside
G2A's and CommNet's, which share its learner."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from marlow import envs
from marlow.algos.onpolicy import attention_ppo
from marlow.experiment.config import resolve


def test_each_agent_s_policy_reads_the_others_observations():
    env = envs.make("smax/3m")
    alg = attention_ppo.Algorithm(env.spec, resolve(["algo=attention_ppo", "task=smax/3m"]).algo)
    state = alg.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (4, alg.n, alg.obs_dim))
    base = alg.logits(state.params, obs, None)
    moved = alg.logits(state.params, obs.at[:, 2].add(1.0), None)  # only agent 2's observation changes
    assert not np.allclose(base[:, 0], moved[:, 0], atol=1e-7)  # agent 0 acts on it
    v0, v1 = (
        alg.critic.apply(state.params["critic"], obs),
        alg.critic.apply(state.params["critic"], obs[:, ::-1]),
    )
    assert not np.allclose(v0[:, 0], v1[:, 2])  # the agent encoding tells agents apart
    assert jnp.isfinite(base).all()
