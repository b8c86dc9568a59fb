"""Spreading seeds over devices.

XLA's CPU backend runs the small matrix products of MARL updates on one core: measured on the 2-core
benchmark machine, a second core changed a MASAC update's time by less than the run-to-run noise. Seeds
never interact, so the seed axis of a vmapped run can be split across devices with no communication.
:func:`configure_host_devices` (called by the command line and the test suite's conftest before JAX
initialises its backends; importing ``marlow`` does not touch ``XLA_FLAGS``)
exposes one CPU device per core; :func:`shard_seeds` places a seed-batched pytree so that each device
holds an equal share of the seeds, and the jitted program then runs the shares in parallel. On a GPU
the default backend has its own devices and the same code spreads seeds over them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # JAX is imported on first use: the command line sets XLA_FLAGS before it starts
    import jax

_FLAG = "--xla_force_host_platform_device_count"


def configure_host_devices(count: int | None = None) -> None:
    """Ask XLA for one host device per core, unless the user set the count or JAX is already running.
    ``MARLOW_HOST_DEVICES=1`` turns it off. ``count`` (a sweep's trial, which inherits its launcher's
    environment) replaces any count already in ``XLA_FLAGS``."""
    flags = os.environ.get("XLA_FLAGS", "")
    if count is not None:
        flags = " ".join(f for f in flags.split() if not f.startswith(_FLAG))
        os.environ["XLA_FLAGS"] = flags
        wanted = str(count)
    else:
        wanted = os.environ.get("MARLOW_HOST_DEVICES", str(os.cpu_count() or 1))
    if _FLAG in flags or not wanted.isdigit() or int(wanted) <= 1:
        return
    os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={int(wanted)}".strip()


def seed_devices(num_seeds: int) -> list:
    """The largest set of devices that divides ``num_seeds`` evenly."""
    import jax

    devices = jax.devices()
    n = max(k for k in range(1, len(devices) + 1) if num_seeds % k == 0)
    return devices[:n]


def seed_sharding(num_seeds: int) -> jax.sharding.Sharding:
    """Split a leading seed axis over :func:`seed_devices` (jit ``out_shardings`` of seed-batched code)."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = seed_devices(num_seeds)
    if len(devices) == 1:
        return jax.sharding.SingleDeviceSharding(devices[0])
    return NamedSharding(Mesh(devices, ("seed",)), PartitionSpec("seed"))


def shard_seeds(tree, num_seeds: int):
    """Place a pytree whose leaves have a leading seed axis across :func:`seed_devices`."""
    import jax

    return jax.device_put(tree, seed_sharding(num_seeds))
