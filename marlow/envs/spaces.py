"""Typed per-agent spaces: Discrete, MultiDiscrete and Box.

Spaces are small frozen (hashable) dataclasses so they can be static arguments of jitted functions.
Every space knows three things the algorithms need:

- ``sample(key)``: a uniformly random action in the env's own format (int, int vector, float vector);
- ``flat_dim``: width of the vector form used as network input (one-hot for discrete parts);
- ``to_flat(action)``: env-format action -> that vector form (one-hot / concatenated one-hots / floats).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Discrete:
    n: int

    kind = "discrete"

    @property
    def shape(self) -> tuple[int, ...]:
        return ()

    @property
    def dtype(self):
        return jnp.int32

    @property
    def flat_dim(self) -> int:
        return self.n

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, (), 0, self.n, dtype=jnp.int32)

    def to_flat(self, action: jax.Array) -> jax.Array:
        return jax.nn.one_hot(action, self.n)

    def contains(self, action) -> bool:
        return 0 <= int(action) < self.n


@dataclass(frozen=True)
class MultiDiscrete:
    nvec: tuple[int, ...]

    kind = "multi_discrete"

    def __post_init__(self):
        object.__setattr__(self, "nvec", tuple(int(n) for n in self.nvec))

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.nvec),)

    @property
    def dtype(self):
        return jnp.int32

    @property
    def flat_dim(self) -> int:
        return int(sum(self.nvec))

    def sample(self, key: jax.Array) -> jax.Array:
        keys = jax.random.split(key, len(self.nvec))
        return jnp.stack(
            [jax.random.randint(k, (), 0, n, dtype=jnp.int32) for k, n in zip(keys, self.nvec, strict=True)]
        )

    def to_flat(self, action: jax.Array) -> jax.Array:
        parts = [jax.nn.one_hot(action[..., i], n) for i, n in enumerate(self.nvec)]
        return jnp.concatenate(parts, axis=-1)

    def contains(self, action) -> bool:
        if len(action) != len(self.nvec):
            return False
        return all(0 <= int(a) < n for a, n in zip(action, self.nvec, strict=True))


@dataclass(frozen=True)
class Box:
    low: float | tuple[float, ...]
    high: float | tuple[float, ...]
    shape: tuple[int, ...]

    kind = "box"

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        for name in ("low", "high"):
            v = getattr(self, name)
            if not isinstance(v, int | float):
                object.__setattr__(self, name, tuple(float(x) for x in jnp.ravel(jnp.asarray(v)).tolist()))
            else:
                object.__setattr__(self, name, float(v))

    @property
    def dtype(self):
        return jnp.float32

    @property
    def flat_dim(self) -> int:
        d = 1
        for s in self.shape:
            d *= s
        return d

    @property
    def low_array(self) -> jax.Array:
        return jnp.broadcast_to(jnp.asarray(self.low, jnp.float32).reshape(-1), (self.flat_dim,)).reshape(
            self.shape
        )

    @property
    def high_array(self) -> jax.Array:
        return jnp.broadcast_to(jnp.asarray(self.high, jnp.float32).reshape(-1), (self.flat_dim,)).reshape(
            self.shape
        )

    @property
    def bounded(self) -> bool:
        return bool(jnp.all(jnp.isfinite(self.low_array)) and jnp.all(jnp.isfinite(self.high_array)))

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.uniform(key, self.shape, minval=self.low_array, maxval=self.high_array)

    def to_flat(self, action: jax.Array) -> jax.Array:
        return action.reshape(action.shape[: action.ndim - len(self.shape)] + (self.flat_dim,)).astype(
            jnp.float32
        )

    def contains(self, action) -> bool:
        a = jnp.asarray(action)
        return a.shape == self.shape and bool(jnp.all(a >= self.low_array) & jnp.all(a <= self.high_array))


Space = Discrete | MultiDiscrete | Box


# ---- the affine map between env-scale Box actions and the [-1, 1] actions networks see or emit ---------
def to_unit(x: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """[low, high] -> [-1, 1] over the last axis: (x - low) / ((high - low) / 2) - 1. Networks are fed
    actions in unit scale (the games' [-10, 10] actions would otherwise dominate their inputs)."""
    return (x - low) / ((high - low) / 2.0) - 1.0


def from_unit(u: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """[-1, 1] -> [low, high], the inverse of :func:`to_unit`: low + (u + 1) (high - low) / 2, clipped
    (for bounds that are not dyadic the sum can leave the box by an ulp)."""
    return jnp.clip(low + (u + 1.0) * ((high - low) / 2.0), low, high)


def flat_bounds(spaces) -> tuple[jax.Array, jax.Array]:
    """The flat ``(low, high)`` of Box ``spaces`` concatenated in order (a joint action's bounds)."""
    low = jnp.concatenate([jnp.ravel(s.low_array) for s in spaces])
    high = jnp.concatenate([jnp.ravel(s.high_array) for s in spaces])
    return low, high


def unit_flat(space: Space, flat: jax.Array) -> jax.Array:
    """A flat action (``space.to_flat``) as a network input: a Box's mapped to [-1, 1] (:func:`to_unit`),
    one-hots unchanged."""
    return to_unit(flat, *flat_bounds([space])) if isinstance(space, Box) else flat


ACTION_KINDS = ("discrete", "multi_discrete", "box")


def describe(space: Space) -> str:
    """Short human-readable form used by `marlow list`."""
    if isinstance(space, Discrete):
        return f"Discrete({space.n})"
    if isinstance(space, MultiDiscrete):
        return f"MultiDiscrete{list(space.nvec)}"
    lo, hi = space.low, space.high
    rng = f"[{lo:g},{hi:g}]" if isinstance(lo, float) and isinstance(hi, float) else ""
    return f"Box{rng}{tuple(space.shape)}"
