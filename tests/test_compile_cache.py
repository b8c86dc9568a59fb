"""The persistent compilation cache (``compile_cache``): where it goes, that a rerun loads every program
from it with the same results, and that ``off`` writes nothing; the program cache on top of it (whole
programs, no tracing: same results, a rerun and a resume load it, a damaged entry is compiled again, the
key follows the config and the code, user code is never served from it); and the run's start-up record."""

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow.experiment.config import resolve
from marlow.experiment.loop import strongly_typed
from marlow.experiment.setup import build
from marlow.runtime import compile_cache, fingerprint, program_cache
from marlow.runtime.loggers import read_metrics
from marlow.runtime.runner import train
from marlow.runtime.startup import STARTUP_NAME

TINY = [
    *("algo=masac", "task=games/climb", "hidden=8,8", "batch_size=16", "buffer_size=200"),
    *("total_steps=200", "eval_every=100", "update_every=50", "warmup_steps=100", "num_envs=2"),
    *("eval_episodes=2", "progress=false"),
]
CLOCKS = ("wall_time", "steps_per_s")
JAX_CACHE_OPTIONS = (  # the settings compile_cache.enable changes
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
    "jax_compilation_cache_max_size",
)


@pytest.fixture(autouse=True)
def own_cache_state(monkeypatch):
    """Each test starts with no cache set (not even the suite's, tests/conftest.py) and leaves the one it
    found behind, with its settings: marlow's cache caps its size, and a process that evicts entries from
    a directory another process writes without eviction (the suite's) fails to write to it."""
    from jax.experimental.compilation_cache import compilation_cache as jax_cc

    monkeypatch.delenv("MARLOW_COMPILE_CACHE", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)  # the CLI subprocesses' view
    suite = {k: getattr(jax.config, k) for k in JAX_CACHE_OPTIONS}
    jax.config.update("jax_compilation_cache_dir", None)
    jax_cc.reset_cache()
    compile_cache.enable("off")
    yield
    compile_cache.enable("off")
    assert jax.config.jax_compilation_cache_dir is None
    for k, v in suite.items():
        jax.config.update(k, v)
    jax_cc.reset_cache()


def _entries(d: Path) -> set[str]:
    """JAX's cache entries (not its locks, not the program cache's folder)."""
    if not d.exists():
        return set()
    return {p.name for p in d.iterdir() if not p.name.endswith(".lock") and p.name != "programs"}


def _same_metrics(first: Path, second: Path) -> None:
    a, b = read_metrics(first)[0], read_metrics(second)[0]
    assert a.keys() == b.keys()
    for k in a.keys() - set(CLOCKS):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # NaNs (no update yet) count as equal


def _phases(run: Path) -> dict:
    return json.loads((run / STARTUP_NAME).read_text())["phases_s"]


def test_cache_dir_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.cache_dir("auto") == tmp_path / "xdg" / "marlow" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert compile_cache.cache_dir("auto") == Path.home() / ".cache" / "marlow" / "jax"
    monkeypatch.setenv("MARLOW_COMPILE_CACHE", str(tmp_path / "env"))
    assert compile_cache.cache_dir("auto") == tmp_path / "env"
    monkeypatch.setenv("MARLOW_COMPILE_CACHE", "off")
    assert compile_cache.cache_dir("auto") is None
    assert compile_cache.cache_dir("off") is None
    assert compile_cache.cache_dir(str(tmp_path / "given")) == tmp_path / "given"


def test_rerun_loads_every_program_from_the_cache(tmp_path, monkeypatch):
    """JAX's layer: with the whole programs gone, a rerun traces and lowers but compiles nothing."""
    cache = tmp_path / "cache"
    first = train(resolve([*TINY, f"run_dir={tmp_path / 'a'}", f"compile_cache={cache}"]))
    stored = _entries(cache)
    assert len(stored) >= 2  # at least init and the chunk (which also evaluates)
    shutil.rmtree(cache / "programs")
    events: list[str] = []

    def listen(name, **_):
        events.append(name)

    jax.monitoring.register_event_listener(listen)
    try:
        second = train(resolve([*TINY, f"run_dir={tmp_path / 'b'}", f"compile_cache={cache}"]))
    finally:
        jax.monitoring.unregister_event_listener(listen)
    assert _entries(cache) == stored  # nothing compiled anew: every program came from the cache
    assert events.count("/jax/compilation_cache/cache_hits") >= 2
    _same_metrics(first, second)
    record = json.loads((second / STARTUP_NAME).read_text())
    assert record["compile_cache"] == str(cache)
    assert {"init_compile", "chunk_trace", "chunk_compile"} <= set(record["phases_s"])
    since = record["since_process_start_s"]
    assert 0 < since["build"] <= since["first_step"]


def test_auto_uses_the_user_cache_and_off_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    user_cache = tmp_path / "xdg" / "marlow" / "jax"
    run = train(resolve([*TINY, f"run_dir={tmp_path / 'off'}", "compile_cache=off"]))
    assert not (tmp_path / "xdg").exists()
    assert json.loads((run / STARTUP_NAME).read_text())["compile_cache"] is None
    train(resolve([*TINY, f"run_dir={tmp_path / 'auto'}"]))  # compile_cache=auto, the default
    assert len(_entries(user_cache)) >= 2


def test_a_cache_jax_was_given_is_kept(tmp_path):
    theirs = tmp_path / "theirs"
    jax.config.update("jax_compilation_cache_dir", str(theirs))
    try:
        assert compile_cache.enable("auto") == theirs
        assert compile_cache.enable("off") == theirs
        assert compile_cache.enable(str(tmp_path / "mine")) == tmp_path / "mine"
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    finally:
        compile_cache.enable("off")
        jax.config.update("jax_compilation_cache_dir", None)


def test_rerun_and_resume_load_whole_programs(tmp_path, die_at_checkpoint):
    """A rerun loads init and the chunk whole (no tracing) with the same metrics; so does a
    resume (whose chunk is keyed by the checkpoint template's shapes); a damaged entry is dropped and
    compiled again."""
    cache = tmp_path / "cache"
    runs = [*TINY, "checkpoint_every=1", f"compile_cache={cache}"]
    first = train(resolve([*runs, f"run_dir={tmp_path / 'a'}"]))
    assert {"init_trace", "chunk_trace", "chunk_store"} <= set(_phases(first))
    second = train(resolve([*runs, f"run_dir={tmp_path / 'b'}"]))
    assert set(_phases(second)) == {"init_load", "chunk_load"}
    _same_metrics(first, second)

    die_at_checkpoint(2, train, resolve([*runs, f"run_dir={tmp_path / 'c'}"]))
    resumed = train(resolve([f"resume={tmp_path / 'c'}", "progress=false", f"compile_cache={cache}"]))
    assert set(_phases(resumed)) == {"chunk_load"}  # the chunk program of the new run
    _same_metrics(first, resumed)

    (chunk_entry,) = (cache / "programs").glob("*/chunk-*.bin")
    chunk_entry.write_bytes(b"not an executable")
    again = train(resolve([*runs, f"run_dir={tmp_path / 'd'}"]))
    assert {"init_load", "chunk_trace", "chunk_compile"} <= set(_phases(again))
    assert chunk_entry.stat().st_size > 1000  # written again
    _same_metrics(first, again)


def test_program_key_follows_config_and_code(tmp_path, monkeypatch):
    def key(*extra):
        return program_cache.ProgramCache(tmp_path, resolve([*TINY, *extra]), jax.devices()[:1]).key

    base = key()
    assert key("run_dir=/elsewhere", "progress=true", "compile_cache=off") == base  # where, not what
    assert key("lr_actor=0.002") != base
    assert key("seed=3") != base
    if len(jax.devices()) > 1:  # another device, another program
        assert program_cache.ProgramCache(tmp_path, resolve(TINY), jax.devices()[1:2]).key != base
    monkeypatch.setattr(fingerprint, "_digest", "edited source")
    assert key() != base


class _UserEnv:
    pass


def test_user_code_is_never_served_from_the_program_cache(tmp_path):
    run = build(resolve(TINY))
    assert program_cache.from_marlow(run)
    assert program_cache.for_run(tmp_path, run) is not None
    assert program_cache.for_run(None, run) is None
    assert not program_cache.from_marlow(dataclasses.replace(run, env=_UserEnv()))
    assert not program_cache.from_marlow(dataclasses.replace(run, algo=_UserEnv()))
    user_task = dataclasses.replace(run.cfg.experiment, task="jax:my_env.py:make")
    assert not program_cache.from_marlow(
        dataclasses.replace(run, cfg=dataclasses.replace(run.cfg, experiment=user_task))
    )


def test_a_first_state_from_python_scalars_still_loads_whole_programs(tmp_path):
    """ROMMEO-Q's prior counts start as ``jnp.full(shape, pseudocount)``, weakly typed. A program loaded
    from the program cache reports its outputs strongly typed, so before the first state was made
    strongly typed (``loop.strongly_typed``) a rerun traced its evaluation and chunk for other input types
    than the first run compiled, and both caches missed: the rerun compiled both again (the evaluation is
    now part of the chunk program)."""
    cache = tmp_path / "cache"
    runs = [
        *("algo=rommeo_q", "task=games/climbing", "num_envs=1", "total_steps=200", "eval_every=100"),
        *("progress=false", f"compile_cache={cache}"),
    ]
    first = train(resolve([*runs, f"run_dir={tmp_path / 'a'}"]))
    second = train(resolve([*runs, f"run_dir={tmp_path / 'b'}"]))
    assert set(_phases(second)) == {"init_load", "chunk_load"}
    _same_metrics(first, second)


def test_strongly_typed_changes_only_the_weak_types():
    tree = {
        "weak": jnp.full((2, 3), 0.5),
        "strong": jnp.ones(3, jnp.int32),
        "key": jax.random.key(0),
        "none": None,
    }
    out = jax.jit(strongly_typed)(tree)
    assert jax.eval_shape(lambda: tree)["weak"].weak_type
    assert not any(getattr(x, "weak_type", False) for x in jax.tree.leaves(out))
    assert out["weak"].dtype == jnp.float32 and out["none"] is None
    np.testing.assert_array_equal(out["weak"], tree["weak"])
    np.testing.assert_array_equal(out["strong"], tree["strong"])
    assert jax.random.key_data(out["key"]).tolist() == jax.random.key_data(tree["key"]).tolist()
