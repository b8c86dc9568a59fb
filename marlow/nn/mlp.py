"""Small MLPs (flax.linen)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, get_args

import flax.linen as nn
import jax
import jax.numpy as jnp

Activation = Literal["relu", "tanh", "swish", "elu"]  # a config key naming one (e.g. ``model_activation``)
POLICY_HEAD_SCALE = 0.01
"""``out_scale`` of every policy (and opponent-model) output layer: its initial weights about 100x smaller
than a default layer's (variance scaling 0.01), so that initial policies are near uniform / near the
action box's centre and independent of the observation (Andrychowicz et al. 2021, *What Matters in
On-Policy Reinforcement Learning?*, recommendation: initialise the last policy layer with 100x smaller
weights)."""
ACTIVATIONS: dict[str, Callable] = dict(
    zip(get_args(Activation), (nn.relu, nn.tanh, nn.swish, nn.elu), strict=True)
)


class MLP(nn.Module):
    """``len(hidden)`` hidden layers then a linear output layer of width ``out_dim``.

    The AORPO paper (Appendix F) uses a "three-layer MLP with ReLU ... each layer has 64 units" for
    policies and critics: two hidden layers of 64 plus the output layer.
    """

    hidden: Sequence[int]
    out_dim: int
    activation: str = "relu"
    out_scale: float = 1.0  # scale of the output layer's init (small for policy heads)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for h in self.hidden:
            x = act(nn.Dense(h)(x))
        init = nn.initializers.variance_scaling(self.out_scale, "fan_avg", "uniform")
        return nn.Dense(self.out_dim, kernel_init=init)(x)


class TwinQ(nn.Module):
    """Two independent Q heads on the same input (clipped double-Q, SAC/TD3), one vmapped module."""

    hidden: Sequence[int]
    activation: str = "relu"
    num: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ens = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num,
        )
        return jnp.squeeze(ens(self.hidden, 1, self.activation)(x), -1)  # [num, ...]
