"""Graceful stops on SIGINT (Ctrl-C) and SIGTERM (a cluster scheduler's preemption).

While a run's chunks run, the first signal only sets a flag: the session finishes the chunk in progress,
writes a checkpoint and raises :class:`~marlow.errors.RunInterrupted` (the CLI prints how to resume and
exits with 128 + the signal number). A second signal exits at once; checkpoints are written atomically,
so the last one stays intact. During training the session waits for a chunk's results in short sleeps
(:func:`wait`), so the handlers run promptly.

Before training (XLA compiling the run's programs, which can take minutes) there is nothing to save and
Python's handlers would only run once a compilation returns; a ``KeyboardInterrupt`` unwinding while
XLA's compiler threads run has crashed the interpreter's teardown (SIGSEGV, "pure virtual method
called"). So :func:`exit_at_once` gives both signals their default action there: the process ends at
once, as killed by the signal (a shell reports 130 for Ctrl-C), and the run directory, whose
``config.yaml`` is already written, is resumable (``resume=`` starts it from the beginning).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

import jax

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Context manager: installs the handlers (main thread only; elsewhere it does nothing)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            print(
                f"marlow: second {name}: exiting now; the last checkpoint is kept",
                file=sys.stderr,
                flush=True,
            )
            os._exit(128 + signum)
        self.signum = signum
        print(
            f"marlow: {name}: finishing the current chunk, then a checkpoint (send it again to exit now)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def exit_at_once():
    """SIGINT and SIGTERM end the process at once inside the block (module docstring); the previous
    handlers afterwards. Main thread only; elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_DFL) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def wait(tree, poll: float = 0.05):
    """``jax.device_get(tree)`` after waiting in short sleeps, so that signal handlers can run meanwhile
    (a blocking transfer would hold them off until the chunk ends)."""
    leaves = [x for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)]
    while not all(x.is_ready() for x in leaves):
        time.sleep(poll)
    return jax.device_get(tree)
