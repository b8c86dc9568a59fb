"""Ask XLA for one host device per core before any test module touches JAX (as the CLI does), so that
seed sharding over devices is exercised; and the shared fixtures."""

import os

import pytest

from marlow.devices import configure_host_devices

# The suite compiles hundreds of small programs and runs each briefly, so XLA's compile time dominates it.
# XLA's CPU back end at LLVM optimisation level 0 compiles them in about half the time (a tiny MAPPO chunk
# on smax/3m: 83 s -> 44 s; MASAC's and MADDPG's simple_spread learning tests: 160 s -> 120 s, measured
# side by side on the 2-core CI machine); the programs and their semantics are the same, only the
# generated machine code is less optimised. MARLOW_TEST_XLA_OPT=1 keeps XLA's default level. Set before
# JAX starts; subprocesses (the CLI tests) inherit it.
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if os.environ.get("MARLOW_TEST_XLA_OPT") != "1" and "xla_backend_optimization_level" not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()
configure_host_devices()
# Runs in the suite keep out of the user's compilation cache (~/.cache/marlow/jax, compile_cache=auto):
# tests/test_compile_cache.py gives the cache its own directories. Subprocesses inherit the setting.
os.environ.setdefault("MARLOW_COMPILE_CACHE", "off")

_CACHE_OPTIONS = {
    "jax_compilation_cache_dir": None,
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}


@pytest.fixture(scope="module")
def jax_compilation_cache(tmp_path_factory):
    """A persistent compilation cache for one test module: runs of the same program (another seed, a
    resume) skip XLA's compilation."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jax_cc

    old = {k: getattr(jax.config, k) for k in _CACHE_OPTIONS}
    new = dict(_CACHE_OPTIONS, jax_compilation_cache_dir=str(tmp_path_factory.mktemp("jax_cache")))
    for k, v in new.items():
        jax.config.update(k, v)
    jax_cc.reset_cache()
    yield
    for k, v in old.items():
        jax.config.update(k, v)
    jax_cc.reset_cache()
