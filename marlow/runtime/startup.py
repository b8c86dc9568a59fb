"""Where a run's start-up time goes: ``startup.json`` in the run directory.

A JAX-env run compiles its two programs (init, and the training chunk, which also makes the step-0 evaluation)
ahead of time, each in its three stages (Python tracing to a jaxpr, lowering to StableHLO, XLA compilation or
a load from the persistent cache, :mod:`marlow.runtime.compile_cache`), and :class:`Startup` times each
stage, or the load of the whole program from :mod:`marlow.runtime.program_cache` (``<program>_load``). The
file holds those seconds, the seconds from the process start to the end of env and algorithm set-up
(``build``, which includes Python's imports) and to the first training step (``first_step``), the cache
directory and the program cache's key in use, so a cold and a warm start can be compared run by run
(benchmarks/startup.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

STARTUP_NAME = "startup.json"


def process_start() -> float:
    """The Unix time this process started (psutil; the time of this call if psutil cannot tell)."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # a platform psutil does not cover: count from here instead
        return time.time()


class AheadOfTime:
    """A jitted function traced, lowered and compiled for one set of argument shapes; calls run the
    executable (the same one a first call of the jitted function would build). ``out_names``: the keys of
    the last output when it is a dict (the metrics of ``chunk`` and ``evaluate``)."""

    def __init__(self, executable, out_info):
        self.executable = executable
        last = out_info[-1] if isinstance(out_info, tuple) else out_info
        self.out_names = list(last) if isinstance(last, dict) else []

    def __call__(self, *args):
        return self.executable(*args)


class Pending:
    """A traced and lowered program whose output shapes are known (``out_info``): ``submit(pool)`` starts
    its XLA compilation in a ``concurrent.futures`` executor, ``result()`` waits for it (or compiles it
    here if it was not submitted) and re-raises its error. A program loaded from the program cache is
    already done."""

    def __init__(self, out_info, compile_=None, done: AheadOfTime | None = None):
        self.out_info, self._compile, self._done, self._future = out_info, compile_, done, None

    def submit(self, pool) -> Pending:
        if self._done is None and self._future is None:
            self._future = pool.submit(self._compile)
        return self

    def result(self) -> AheadOfTime:
        if self._done is None:
            self._done = self._future.result() if self._future is not None else self._compile()
        return self._done


class Startup:
    """Seconds of each start-up phase, measured from the process start."""

    def __init__(self, cache_dir: Path | None = None, programs=None):
        self.start = process_start()
        self.cache_dir, self.programs = cache_dir, programs
        self.phases: dict[str, float] = {}
        self.since_start: dict[str, float] = {}

    def mark(self, name: str) -> None:
        """Record that ``name`` ended now."""
        self.since_start[name] = round(time.time() - self.start, 3)

    def lowered(self, name: str, jitted, *args) -> Pending:
        """Trace and lower ``jitted`` for ``args`` here (Python, holding the GIL); the returned
        :class:`Pending` compiles it, here or in another thread (XLA's compilation releases the GIL, so
        programs can compile side by side on several cores while this thread traces the next one). Its
        ``out_info`` (output shapes) is known before the compilation. A program found in the program
        cache is loaded here instead."""
        if self.programs is not None:
            t0 = time.perf_counter()
            hit = self.programs.load(name, args)
            if hit is not None:
                self.phases[f"{name}_load"] = time.perf_counter() - t0
                return Pending(hit.out_info, done=AheadOfTime(hit, hit.out_info))
        t0 = time.perf_counter()
        traced = jitted.trace(*args)
        t1 = time.perf_counter()
        lowered = traced.lower()
        self.phases.update({f"{name}_trace": t1 - t0, f"{name}_lower": time.perf_counter() - t1})

        def compile_() -> AheadOfTime:
            t2 = time.perf_counter()
            executable = lowered.compile()
            t3 = time.perf_counter()
            self.phases[f"{name}_compile"] = t3 - t2
            if self.programs is not None:
                self.programs.store(name, args, executable)
                self.phases[f"{name}_store"] = time.perf_counter() - t3
            return AheadOfTime(executable, traced.out_info)

        return Pending(traced.out_info, compile_)

    def record(self) -> dict[str, Any]:
        return {
            "since_process_start_s": self.since_start,
            "phases_s": {k: round(v, 3) for k, v in self.phases.items()},
            "compile_cache": str(self.cache_dir) if self.cache_dir else None,
            "program_cache": self.programs.key if self.programs is not None else None,
        }

    def write(self, run_dir: Path) -> None:
        (Path(run_dir) / STARTUP_NAME).write_text(json.dumps(self.record(), indent=1) + "\n")
