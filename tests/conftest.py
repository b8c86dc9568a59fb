"""Ask XLA for one host device per core before any test module touches JAX (as the CLI does), so that
seed sharding over devices is exercised; and the shared fixtures."""

import os
import shutil
import tempfile

import pytest

from marlow.devices import configure_host_devices

# The suite compiles hundreds of small programs and runs each briefly, so XLA's compile time dominates it.
# XLA's CPU back end at LLVM optimisation level 0 compiles them in about half the time (a tiny MAPPO chunk
# on smax/3m: 83 s -> 44 s; MASAC's and MADDPG's simple_spread learning tests: 160 s -> 120 s, measured
# side by side on the 2-core CI machine); the programs and their semantics are the same, only the
# generated machine code is less optimised. XLA's older fusion emitters (--xla_cpu_use_fusion_emitters=false)
# take another 10-15% off (the ten slowest tests: 1360 -> 1169 s of test time, 711 -> 640 s wall, one run
# after the other). With them XLA once evaluated FMQ's greedy policy from values computed twice with
# different rounding, so that no entry equalled the row's max; tabular.argmax_set now keeps a row's argmax
# in that case, and test_tabular_baselines checks it under these flags. MARLOW_TEST_XLA_OPT=1 keeps XLA's
# default level and emitters. Set before JAX starts; subprocesses (the CLI tests) inherit it.
_FAST_COMPILE = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
    "--xla_cpu_use_fusion_emitters=false"
)
# XLA's own defaults, for the few tests whose run time outweighs their compilation (``optimised_xla``)
FULL_OPT = {
    "xla_backend_optimization_level": 3,
    "xla_llvm_disable_expensive_passes": False,
    "xla_cpu_use_fusion_emitters": True,
}
if os.environ.get("MARLOW_TEST_XLA_OPT") != "1" and "xla_backend_optimization_level" not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()
configure_host_devices()
# Runs in the suite keep out of the user's compilation cache (~/.cache/marlow/jax, compile_cache=auto):
# tests/test_compile_cache.py gives marlow's cache its own directories. Subprocesses inherit the setting.
os.environ.setdefault("MARLOW_COMPILE_CACHE", "off")


# The suite compiles the same programs many times: a resumed run and the uninterrupted one, the seeds of a
# vmapped run and its separate runs, a CLI run in a subprocess and its Python twin, tests of one algorithm
# on one task. JAX's own persistent compilation cache (keyed by the lowered program, so a hit runs exactly
# the program a fresh compilation would) serves all of them across both workers and the CLI subprocesses,
# which inherit these variables (pytest-xdist's workers inherit them from the controller, which made the
# directory and removes it at the end). The cache starts empty, so the suite's time is a cold-cache time.
# Every program is cached, however quick its compilation. marlow's whole-program cache stays off
# (MARLOW_COMPILE_CACHE=off keeps a cache JAX was given): it is keyed by the config and marlow's source, so
# it would serve tests that monkeypatch traced code with programs compiled without the patch.
# MARLOW_TEST_JAX_CACHE=0 runs the suite without it.
if os.environ.get("MARLOW_TEST_JAX_CACHE") != "0" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="marlow-test-jax-cache-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    _OWN_CACHE = True
else:
    _OWN_CACHE = False


def pytest_sessionfinish(session):
    """The process that made the run's cache removes it."""
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


_CACHE_OPTIONS = {
    "jax_compilation_cache_dir": None,
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}


@pytest.fixture(scope="module")
def jax_compilation_cache(tmp_path_factory):
    """A persistent compilation cache for one test module: runs of the same program (another seed, a
    resume) skip XLA's compilation. The suite's own cache (above) already does that for every module."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        yield
        return
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


class Killed(Exception):
    """Raised in place of a checkpoint by :func:`die_at_checkpoint`."""


@pytest.fixture
def die_at_checkpoint(monkeypatch):
    """``die_at_checkpoint(n, train, cfg)`` calls ``train(cfg)`` as if the process were killed when it
    was about to write checkpoint ``n`` (its metrics row is logged, the checkpoint is not; checkpoint
    ``n - 1`` is the last on disk), checks that it stopped there, and puts the real writer back."""
    from marlow.runtime import checkpoint

    real_save = checkpoint.save

    def run(n: int, fn, *args, **kwargs) -> None:
        def save_then_die(run_dir, state, meta):
            if meta["chunk"] == n:
                raise Killed
            return real_save(run_dir, state, meta)

        monkeypatch.setattr(checkpoint, "save", save_then_die)
        try:
            with pytest.raises(Killed):
                fn(*args, **kwargs)
        finally:
            monkeypatch.setattr(checkpoint, "save", real_save)

    return run


@pytest.fixture
def optimised_xla():
    """``compile(jitted, *args)``: the program compiled at XLA's default optimisation level instead of the
    suite's level 0, for a test whose run time outweighs its compilation. Measured one after the other:
    AORPO on games/climb (test_aorpo) 226 s at level 0, 150 s at the default level; the learning tests of
    test_learning, through the runner, were as fast or slower at the default level (MAPPO on
    simple_spread 67 -> 96 s, HAPPO 86 -> 110 s, MADDPG 65 -> 83 s), so they stay at level 0."""

    def compile_(jitted, *args):
        return jitted.lower(*args).compile(compiler_options=FULL_OPT)

    return compile_
