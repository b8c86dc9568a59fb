"""Communication bodies over the agent axis, for the MAG paper's model-free baselines (Wu et al. 2023,
Sec. 4.1 "Baselines"): CommNet (Sukhbaatar, Szlam & Fergus 2016) and G2A's two-stage attention (Liu et al.
2020, "Multi-Agent Game Abstraction via Graph Attention Neural Network", Sec. 4).

Both map ``[..., N, D]`` (one row per agent, weights shared across agents) to ``[..., N, W]``: each agent's
features after it has read the others'. Both are feed-forward in time: the on-policy learners here train
on single steps, not sequences, so the temporal GRU / LSTM of the original papers' SMAC agents is left out
(ours); the recurrence CommNet applies is across its communication steps, where CommNet's Sec. 2.2
allows one module shared by all steps.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from marlow.nn.recurrent import gru_cell, lstm_cell


def others_mean(h: jax.Array) -> jax.Array:
    """CommNet's communication vector ``c_i = mean_{j != i} h_j`` of ``[..., N, D]`` (Sukhbaatar et al.
    2016, Eq. 2 with ``J - 1`` in the denominator); zero for a single agent."""
    n = h.shape[-2]
    total = jnp.sum(h, axis=-2, keepdims=True)
    return (total - h) / max(n - 1, 1)


class CommNet(nn.Module):
    """CommNet with an LSTM module: ``e_i = relu(W_e o_i)``; then ``steps`` communication steps
    ``(s_i, h_i) <- LSTM([h_i ; c_i ; e_i], (s_i, h_i))`` with ``c_i`` the mean of the other agents'
    ``h_j`` (Eq. 2) and the encoded input fed to every step (the paper's skip connection, Sec. 2.2).
    One LSTM cell serves every step (the paper's shared module); ``h_i`` starts at ``e_i``."""

    width: int
    steps: int = 2  # Sukhbaatar et al. 2016, Sec. 4: K = 2 communication steps in most tasks

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        e = nn.relu(nn.Dense(self.width, name="encode")(x))
        cell = lstm_cell(self.width, name="module")
        carry = (jnp.zeros_like(e), e)  # (cell state, hidden state)
        for _ in range(self.steps):
            h = carry[1]
            carry, _ = cell(carry, jnp.concatenate([h, others_mean(h), e], axis=-1))
        return carry[1]


def straight_through_hard(logits: jax.Array, temperature: float) -> jax.Array:
    """The probability of class 1 of two-way ``logits`` ``[..., 2]`` made hard: forward value
    ``1[argmax = 1]``, gradient that of ``softmax(logits / temperature)[1]`` (the straight-through
    Gumbel-softmax of G2A's Eq. 5 without the Gumbel noise; see :class:`G2A`)."""
    soft = jax.nn.softmax(logits / temperature, axis=-1)[..., 1]
    hard = (jnp.argmax(logits, axis=-1) == 1).astype(soft.dtype)
    return soft + jax.lax.stop_gradient(hard - soft)


class G2A(nn.Module):
    """G2A's two-stage attention (Liu et al. 2020, Sec. 4, Fig. 3), per agent ``i`` over the others ``j``:

    - encoding ``h_i = relu(W_e o_i)``;
    - hard attention (Eqs. 4-5): a bidirectional GRU reads the sequence of pairs ``[h_i ; h_j]`` over the
      other agents, a linear layer maps each output to two logits, and the hard weight
      ``W_h^{ij} in {0, 1}`` is their straight-through argmax;
    - soft attention (Eq. 6): ``W_s^{ij} = softmax_j(W_h^{ij} q_i . k_j / sqrt(d))`` with ``q = W_q h``,
      ``k = W_k h``;
    - the message ``x_i = sum_j W_h^{ij} W_s^{ij} relu(W_v h_j)`` (Eq. 7), output ``[h_i ; x_i]``.

    G2A samples the hard weights with Gumbel-softmax noise while training; we take the noiseless
    straight-through argmax (ours), so the policy stays a function of the observations and PPO's ratio
    against the behaviour policy is exact. With one agent the message is zero.
    """

    width: int
    temperature: float = 1.0  # ours: the softmax temperature of the straight-through gradient

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.relu(nn.Dense(self.width, name="encode")(x))
        n = h.shape[-2]
        if n == 1:
            return jnp.concatenate([h, jnp.zeros_like(h)], axis=-1)
        # others[i] = the agents j != i in index order: [N, N - 1] gather indices
        idx = jnp.asarray([[j for j in range(n) if j != i] for i in range(n)])
        h_j = h[..., idx, :]  # [..., N, N-1, W]
        h_i = jnp.broadcast_to(h[..., :, None, :], h_j.shape)
        pairs = jnp.concatenate([h_i, h_j], axis=-1)
        lead = pairs.shape[:-2]
        seq = pairs.reshape((-1,) + pairs.shape[-2:])  # [B, N-1, 2W]: the pair sequence of each agent
        bigru = nn.Bidirectional(
            nn.RNN(gru_cell(self.width), name="forward"), nn.RNN(gru_cell(self.width), name="backward")
        )
        hard_logits = nn.Dense(2, name="hard")(bigru(seq)).reshape(lead + (n - 1, 2))
        w_hard = straight_through_hard(hard_logits, self.temperature)  # [..., N, N-1]
        q = nn.Dense(self.width, use_bias=False, name="query")(h)  # [..., N, W]
        k = nn.Dense(self.width, use_bias=False, name="key")(h)[..., idx, :]  # [..., N, N-1, W]
        score = jnp.einsum("...nw,...nmw->...nm", q, k) / jnp.sqrt(self.width)
        w_soft = jax.nn.softmax(w_hard * score, axis=-1)
        v = nn.relu(nn.Dense(self.width, name="value")(h))[..., idx, :]
        msg = jnp.einsum("...nm,...nmw->...nw", w_hard * w_soft, v)
        return jnp.concatenate([h, msg], axis=-1)
