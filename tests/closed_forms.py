"""Hand computations shared by the tests: MASAC's soft critic target and losses (AORPO paper Eqs. 4-5)
in float64 numpy for discrete actions, built only from the networks' forward passes (never from
marlow.algos' loss code)."""

from __future__ import annotations

import jax
import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def entropy(logits: np.ndarray) -> np.ndarray:
    p = softmax(logits)
    return -np.sum(p * np.log(p), -1)


def gumbel_one_hot(key: jax.Array, logits: np.ndarray) -> np.ndarray:
    """The forward value of a straight-through Gumbel-softmax sample drawn with ``key``: one-hot of
    ``argmax(logits + g)``, ``g ~ Gumbel(0, 1)``."""
    g = np.asarray(jax.random.gumbel(key, logits.shape), np.float64)
    return np.eye(logits.shape[-1])[np.argmax(logits + g, -1)]


def one_hots(spec, actions: dict) -> dict:
    return {a: np.eye(spec.act_space(a).n)[np.asarray(actions[a])] for a in spec.agents}


def joint(spec, obs: dict, flats: dict) -> np.ndarray:
    """All observations then all flat actions, in spec order (the centralised critics' input)."""
    return np.concatenate(
        [np.asarray(obs[a], np.float64) for a in spec.agents] + [flats[a] for a in spec.agents], -1
    )


def soft_losses(
    masac,
    state,
    new_critic,
    agent: str,
    batch: dict,
    next_flats: dict,
    next_logits: np.ndarray,
    k_next: jax.Array,
    logits: np.ndarray,
    k_pi: jax.Array,
    *,
    entropy_bonus: bool = True,
    twin=np.min,
) -> tuple[float, float]:
    """Agent ``agent``'s critic loss (Eq. 5) and actor loss (Eq. 4) of one MASAC update by hand.

    ``masac``: the MASAC ``Algorithm``; ``state``: its state before the update; ``new_critic``: the agent's
    critic after this update's critic step (the actor step uses it); ``next_flats``: the other agents'
    one-hot next actions; ``next_logits`` / ``logits``: the agent's policy logits at s' / s; ``k_next`` /
    ``k_pi``: the keys of its next-action and reparameterised samples. ``entropy_bonus`` and ``twin`` (the
    reduction over the two critics) change the formula, so a test can show the exact one is required."""
    spec, cfg = masac.spec, masac.cfg
    critic = masac.critic.apply
    alpha = float(np.exp(state.log_alpha[agent]))
    own_next = gumbel_one_hot(k_next, next_logits)
    x_next = joint(spec, batch["next_obs"], {**next_flats, agent: own_next})
    q_next = twin(np.asarray(critic(state.target_critic[agent], x_next), np.float64), axis=0)
    bonus = alpha * entropy(next_logits) if entropy_bonus else 0.0
    r = np.asarray(batch["rewards"][agent], np.float64)
    y = cfg.reward_scale * r + cfg.gamma * (1 - np.asarray(batch["done"], np.float64)) * (q_next + bonus)
    buffer_flats = one_hots(spec, batch["actions"])
    q = np.asarray(critic(state.critic[agent], joint(spec, batch["obs"], buffer_flats)), np.float64)
    critic_loss = 0.5 * np.mean(np.sum((q - y) ** 2, axis=0))
    own = gumbel_one_hot(k_pi, logits)
    q_pi = np.asarray(critic(new_critic, joint(spec, batch["obs"], {**buffer_flats, agent: own})), np.float64)
    actor_loss = np.mean(-alpha * entropy(logits) - np.min(q_pi, axis=0))
    return float(critic_loss), float(actor_loss)
