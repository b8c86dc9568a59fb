"""A run's compiled programs kept whole, so a warm start skips Python tracing and lowering as well.

JAX's persistent cache (:mod:`marlow.runtime.compile_cache`) is keyed by the lowered program, so even a
warm start traces and lowers every program first: for a one-seed MASAC run on simple_spread about 2.7 s
of a 5.4 s warm start on the 2-core benchmark machine (benchmarks/startup.md). This cache stores each
program's serialized executable (``jax.experimental.serialize_executable``) under a key made of what
determines the program before it is traced:

* the resolved config, without the keys that only say where and how to run it (run directory, resume,
  overwrite, progress, compilation cache);
* a digest of every ``.py`` and ``.yaml`` file of the installed marlow package;
* the versions of jax, jaxlib and the libraries marlow traces through (flax, optax, chex, jaxmarl, numpy);
* the devices (platform, kind, count), ``XLA_FLAGS`` and the JAX options that change tracing;
* the program's name and its argument shapes, dtypes and shardings.

A program from code outside the marlow package cannot be keyed that way, so the cache is used only when
the task is one of marlow's registered tasks, built by marlow's own code, and the algorithm is marlow's
(a user's own JAX env, ``jax:module:factory``, or a task registered from user code always goes the long
way, through JAX's persistent cache alone). Code that replaces marlow functions at run time
(monkeypatching) is not seen by the digest: set ``compile_cache=off`` for such runs.

The entries live in ``<cache dir>/programs/<key>/<program>.bin`` beside JAX's cache; the newest
:data:`MAX_ENTRIES` keys are kept. An entry that does not load (truncated, written by another jaxlib)
is removed and the program compiled as usual; entries are written to a temporary file and renamed, so a
killed run leaves no partial entry. Like JAX's own cache, an entry is a serialized executable, which
runs code when loaded: only the user's own cache directory should hold them.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import jax

from marlow.experiment.config import HOST_ONLY
from marlow.runtime.fingerprint import source_digest, versions

MAX_ENTRIES = 64
_VERSIONED = ("jax", "jaxlib", "flax", "optax", "chex", "jaxmarl", "numpy")
_TRACE_OPTIONS = (
    "jax_enable_x64",
    "jax_default_matmul_precision",
    "jax_default_prng_impl",
    "jax_threefry_partitionable",
    "jax_numpy_rank_promotion",
    "jax_numpy_dtype_promotion",
    "jax_enable_checks",
    "jax_debug_nans",
    "jax_debug_infs",
    "jax_disable_jit",
)


def from_marlow(run) -> bool:
    """Whether the programs of ``run`` (a :class:`~marlow.experiment.setup.Run`) come from marlow's own
    files (module docstring): its task's factory, its env's class and its algorithm's class."""
    from marlow.envs import registry

    entry = registry._REGISTRY.get(run.cfg.experiment.task)
    return (
        entry is not None
        and getattr(entry.factory, "__module__", "").startswith("marlow.")
        and type(run.env).__module__.startswith("marlow.")
        and type(run.algo).__module__.startswith("marlow.")
        and not run.env.host_callbacks  # an executable holding a Python callback cannot be reloaded
    )


def avals(tree) -> str:
    """Shapes, dtypes and shardings of a pytree of arrays or ``ShapeDtypeStruct`` (with its structure)."""
    leaves, treedef = jax.tree.flatten(tree)
    info = [
        (x.shape, str(x.dtype), getattr(x, "weak_type", False), repr(getattr(x, "sharding", None)))
        for x in leaves
    ]
    return repr(treedef) + repr(info)


class ProgramCache:
    """The compiled programs of one run setting (module docstring)."""

    def __init__(self, cache_dir: Path, cfg, devices: list):
        """``devices``: the devices the run's programs execute on (in the order of their shardings)."""
        d = cfg.to_dict()
        for k in HOST_ONLY:
            d.pop(k, None)
        self.devices = list(devices)
        setting = {
            "config": d,
            "marlow_source": source_digest(),
            "versions": versions(_VERSIONED),
            "python": sys.version,
            "devices": [(x.platform, x.device_kind, x.id) for x in self.devices],
            "all_devices": len(jax.devices()),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "jax_options": {k: repr(getattr(jax.config, k, None)) for k in _TRACE_OPTIONS},
        }
        self.key = hashlib.sha256(json.dumps(setting, sort_keys=True, default=repr).encode()).hexdigest()[:32]
        self.root = Path(cache_dir) / "programs"
        self.dir = self.root / self.key

    def _path(self, name: str, args) -> Path:
        tag = hashlib.sha256(avals(args).encode()).hexdigest()[:16]
        return self.dir / f"{name}-{tag}.bin"

    def load(self, name: str, args) -> jax.stages.Compiled | None:
        """The compiled ``name`` for ``args``, or None (not cached, or an entry that does not load)."""
        from jax.experimental.serialize_executable import deserialize_and_load

        path = self._path(name, args)
        if not path.exists():
            return None
        try:
            payload, in_tree, out_tree = pickle.loads(path.read_bytes())
            compiled = deserialize_and_load(payload, in_tree, out_tree, execution_devices=self.devices)
        except Exception:  # truncated, or from another jaxlib: compile it again
            path.unlink(missing_ok=True)
            return None
        os.utime(self.dir)  # most recently used
        return compiled

    def store(self, name: str, args, compiled: jax.stages.Compiled) -> None:
        """Keep ``compiled``; a program that cannot be serialized, or a full disk, is skipped."""
        from jax.experimental.serialize_executable import serialize

        path = self._path(name, args)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        try:
            blob = pickle.dumps(serialize(compiled))
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(blob)
            os.replace(tmp, path)
        except (ValueError, NotImplementedError, OSError, pickle.PicklingError, AttributeError, TypeError):
            tmp.unlink(missing_ok=True)
            return
        self._evict()

    def _evict(self) -> None:
        keys = sorted(self.root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in keys[MAX_ENTRIES:]:
            shutil.rmtree(old, ignore_errors=True)


def for_run(cache_dir: Path | None, run) -> ProgramCache | None:
    """The program cache of ``run`` (a :class:`~marlow.experiment.setup.Run`), or None when there is no
    cache directory or the programs do not all come from marlow's files. The programs run on the devices
    that share the seeds."""
    from marlow.devices import seed_devices

    if cache_dir is None or not from_marlow(run):
        return None
    return ProgramCache(cache_dir, run.cfg, seed_devices(run.cfg.experiment.num_seeds))
