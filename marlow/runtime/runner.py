"""Host-side orchestration of a run: run directory, config, the jitted program, logging, checkpoints,
progress, resume. The learning itself is :mod:`marlow.experiment.loop`'s, for JAX envs in one jitted
program per chunk and for PettingZoo envs through :mod:`marlow.runtime.host` (which collects on the
host and runs the same jitted learning step)."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp

from marlow.devices import seed_sharding, shard_seeds
from marlow.experiment.config import RunConfig
from marlow.experiment.loop import Loop
from marlow.experiment.setup import (  # noqa: F401  (re-exported: the runner is the public entry point)
    CONFIG_NAME,
    Run,
    build,
    claim_run_dir,
    default_run_dir,
    load_run_config,
    num_chunks,
    prepare_run_dir,
    seed_keys,
)
from marlow.runtime import checkpoint, compile_cache, program_cache
from marlow.runtime.session import finished, run_chunks
from marlow.runtime.signals import exit_at_once
from marlow.runtime.startup import Startup


def train(cfg: RunConfig, run_dir: str | Path | None = None) -> Path:
    """Train (or resume) a run; returns its directory. Raises MarlowError subclasses on bad input."""
    if cfg.experiment.resume:  # cfg is the run's saved config with this command's RESUME_KEYS (resolve)
        run_dir = Path(cfg.experiment.resume)
        if not (run_dir / checkpoint.CKPT_NAME).exists():  # killed before its first checkpoint
            print(
                f"marlow: no checkpoint in {run_dir} yet: starting the run again from the beginning with its "
                "saved config",
                file=sys.stderr,
            )
            cfg = dataclasses.replace(cfg, experiment=dataclasses.replace(cfg.experiment, resume=""))
    else:
        run_dir = Path(run_dir or cfg.experiment.run_dir or default_run_dir(cfg))
        claim_run_dir(cfg, run_dir)
    cache = compile_cache.enable(cfg.experiment.compile_cache)
    run = build(cfg)
    cfg = run.cfg  # fitted to whole iterations, buffer capped
    # whole programs too, in marlow's own cache only (a caller's JAX cache may serve monkeypatched code)
    own = cache if compile_cache.owned(cache) else None
    programs = program_cache.for_run(own, run)
    startup = Startup(cache, programs)
    startup.mark("build")
    if not run.env.is_jax:
        from marlow.runtime.host import train_host

        return train_host(run, Path(run_dir))

    prepare_run_dir(run, run_dir)
    # a resume's checkpoint, read once: where the run stands decides which chunk program it needs
    payload = checkpoint.read(run_dir) if cfg.experiment.resume else None
    done = int(payload["meta"]["env_steps"]) if payload else 0
    if payload and finished(cfg, run_dir, done):
        return run_dir
    loop = Loop(run.env, run.learner, cfg.experiment)
    with exit_at_once(), compiling(cfg, run_dir, startup):
        state, run_chunk = _programs(cfg, loop, startup)

    def first_eval(rs):
        """The step-0 evaluation: the chunk program with no iterations, whose training metrics are NaN
        (nothing learned, no episode finished) as the step-0 row has them."""
        return run_chunk(rs, jnp.int32(0), jnp.int32(0))

    def metric_names(_state) -> list[str]:
        return []  # first_eval gives every metric of the chunk

    def span(rs, c, first_step, steps):
        it = loop.iteration_steps
        return run_chunk(rs, jnp.int32(first_step // it), jnp.int32(steps // it))

    return run_chunks(cfg, run_dir, state, metric_names, first_eval, span, startup, payload)


def _programs(cfg: RunConfig, loop: Loop, startup: Startup):
    """The run's first state (a template on a resume) and its chunk program, compiled ahead of time (or
    loaded from the program cache). The chunk program also makes the step-0 evaluation (no iterations,
    :meth:`Loop.chunk`), a shorter last chunk and a resumed run's first.

    The two programs compile side by side in two threads (XLA's compilation releases the GIL): the chunk,
    the longest, in one, init in the other. The chunk is traced for init's output shapes, so it does not
    wait for init to compile or run."""
    init, chunk = jitted_program(loop, cfg.experiment.num_seeds)
    keys = seed_keys(cfg)
    n = cfg.experiment.num_seeds
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="marlow-compile") as pool:
        if cfg.experiment.resume:  # the checkpoint overwrites the state: only its shapes are needed
            out = state = checkpoint.template(jax.vmap(loop.init), keys)
            pending_init = None
        else:
            keys = shard_seeds(keys, n)
            pending_init = startup.lowered("init", init, keys)
            out = pending_init.out_info
        sharding = seed_sharding(n)
        shapes = jax.tree.map(lambda x: _shape(x, sharding), out)
        # the longest compilation first, on one core; init on the other
        pending_chunk = startup.lowered("chunk", chunk, shapes, jnp.int32(0), jnp.int32(0)).submit(pool)
        if pending_init is not None:
            state = pending_init.submit(pool).result()(keys)
        run_chunk = pending_chunk.result()
    return state, run_chunk


@contextlib.contextmanager
def compiling(cfg: RunConfig, run_dir: Path, startup: Startup):
    """With progress on, a line before the compilation (which can take from seconds to minutes, with
    nothing else on the screen) and one after it, with its time."""
    e = cfg.experiment
    if e.progress:
        print(
            f"marlow: compiling {e.algo} on {e.task} (Ctrl-C exits at once; `marlow train resume={run_dir}` "
            "starts it again)",
            file=sys.stderr,
            flush=True,
        )
    t0 = time.perf_counter()
    yield
    if e.progress:
        loaded = any(k.endswith("_load") for k in startup.phases)
        how = "loaded from the compilation cache" if loaded else "compiled"
        print(f"marlow: {how} in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


def jitted_program(loop: Loop, num_seeds: int):
    """``init(keys)`` and ``chunk(state, first_iter, n_iters)`` of a JAX-env run, jitted and vmapped over
    seeds, with the seed axis of every returned state split over :func:`seed_sharding`'s devices (without
    ``out_shardings`` XLA would replicate the state on every device). ``chunk(state, 0, 0)`` is the
    step-0 evaluation."""
    sharding = seed_sharding(num_seeds)
    init = jax.jit(jax.vmap(loop.init), out_shardings=sharding)
    chunk = jax.jit(jax.vmap(loop.chunk, in_axes=(0, None, None)), donate_argnums=0, out_shardings=sharding)
    return init, chunk


def _shape(x, sharding) -> jax.ShapeDtypeStruct:
    """``x``'s shape, dtype and weak type on ``sharding`` (what a compiled program checks its inputs for)."""
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding, weak_type=getattr(x, "weak_type", False))
