"""Ask XLA for one host device per core before any test module touches JAX (as the CLI does), so that
seed sharding over devices is exercised; and the shared fixtures."""

import pytest

from marlow.devices import configure_host_devices

configure_host_devices()

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
