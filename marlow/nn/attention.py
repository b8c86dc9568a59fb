"""Self-attention across agents: the transformer encoder MAMBA (Egorov & Shpilman 2022, Sec. 3) puts in its
world model's transition and in its critic, and Attention-PPO in its actor and critic.

The agent axis is the sequence axis (-2 of ``[..., N, D]``); a fixed sinusoidal encoding of the agent index
is added first (Vaswani et al. 2017, Sec. 3.5; upstream jbr-ai-labs/mamba ``networks/transformer/layers.py``
adds the same table), so weights shared across agents can still tell agents apart. Each layer is a
post-norm encoder layer, as torch's ``nn.TransformerEncoderLayer`` that MAMBA uses: ``x = LN(x + MHA(x))``,
``x = LN(x + FF(x))`` with a ReLU feed-forward of width ``ff``. MAMBA's transition applies dropout 0.1
inside the layers; we leave dropout out (ours: a deterministic transition keeps imagination, planning
and the L=1 equivalence of MAG reproducible, and the small models here do not overfit).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def agent_encoding(n: int, d: int) -> jax.Array:
    """``[n, d]`` sinusoidal position table: ``sin(p / 10000^(2j/d))`` on even, ``cos`` on odd features."""
    pos = np.arange(n)[:, None]
    j = np.arange(d)[None, :]
    angle = pos / np.power(10000.0, 2 * (j // 2) / d)
    table = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    return jnp.asarray(table, jnp.float32)


class AgentAttention(nn.Module):
    """``layers`` post-norm transformer encoder layers over the agent axis of ``[..., N, D]``."""

    layers: int
    heads: int
    ff: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, d = x.shape[-2:]
        x = x + agent_encoding(n, d)
        for _ in range(self.layers):
            y = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=d, out_features=d)(x, x)
            x = nn.LayerNorm()(x + y)
            y = nn.Dense(d)(nn.relu(nn.Dense(self.ff)(x)))
            x = nn.LayerNorm()(x + y)
        return x
