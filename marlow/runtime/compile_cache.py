"""JAX's persistent compilation cache for marlow runs (the ``compile_cache`` experiment key).

XLA compiles a run's programs (init, the training chunk with its evaluation) before its first step: about 25 s
for a one-seed MASAC run on cooperative navigation on the 2-core benchmark machine, minutes for AORPO. JAX can
keep compiled programs on disk, keyed by the program's HLO, the compile options, the XLA flags, the devices
and the jax/jaxlib versions, so a rerun, a resume, another seed with the same shapes, or a sweep trial of an
already-compiled setting loads the executable instead of compiling it again. A cached program gives the same
results as a freshly compiled one; only the time to the first step changes (benchmarks/startup.md measures
it).

Settings of ``compile_cache``:

* ``auto`` (default): ``$MARLOW_COMPILE_CACHE`` if set (a directory, or ``off``), else
  ``$XDG_CACHE_HOME/marlow/jax``, else ``~/.cache/marlow/jax``. A cache JAX was already given
  (``JAX_COMPILATION_CACHE_DIR``, or ``jax.config`` set by the caller) is left as it is.
* ``off``: marlow sets no cache (and turns off one it set earlier in this process).
* any other value: that directory.

On top of this cache, :mod:`marlow.runtime.program_cache` keeps each run setting's programs whole in
``<dir>/programs`` (a rerun then skips tracing and lowering too); it is on whenever marlow set the
directory. Every program is cached, however short its compilation (JAX's default skips those under
1 s, which on a warm rerun left 3 of a MASAC run's 114 programs cached and 1.3 s more to start). The
directory is capped at :data:`MAX_BYTES`, least recently used entries evicted first.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_BYTES = 2 * 1024**3
_ENV = "MARLOW_COMPILE_CACHE"
_set_by_marlow: str | None = None  # the directory this module gave JAX, if any


def cache_dir(setting: str) -> Path | None:
    """The directory ``setting`` names (module docstring), or None for ``off``."""
    setting = str(setting).strip()
    if setting == "off":
        return None
    if setting == "auto":
        env = os.environ.get(_ENV, "").strip()
        if env and env != "auto":
            return cache_dir(env)
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "marlow" / "jax"
    return Path(setting).expanduser()


def owned(directory: Path | None) -> bool:
    """Whether ``directory`` is the cache :func:`enable` set (not one JAX was given by someone else)."""
    return directory is not None and str(directory) == _set_by_marlow


def enable(setting: str) -> Path | None:
    """Point JAX's persistent compilation cache at ``setting``'s directory (module docstring); returns the
    directory in use, or None when no cache is on."""
    global _set_by_marlow
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    current = jax.config.jax_compilation_cache_dir
    if current and current != _set_by_marlow and str(setting).strip() in ("auto", "off"):
        return Path(current)  # someone else's cache: keep it
    wanted = cache_dir(setting)
    if wanted is None:
        if current and current == _set_by_marlow:
            jax.config.update("jax_compilation_cache_dir", None)
            compilation_cache.reset_cache()
        _set_by_marlow = None
        return None
    wanted.mkdir(parents=True, exist_ok=True)
    if str(wanted) != current:
        jax.config.update("jax_compilation_cache_dir", str(wanted))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
        compilation_cache.reset_cache()
    _set_by_marlow = str(wanted)
    return wanted
