"""Training progress: env steps, latest evaluation return, env steps per second (all seeds). A rich
progress bar when stderr is a terminal; otherwise (a log file, a cluster job) one plain line per
evaluation."""

from __future__ import annotations

import contextlib
import sys
import time


class ProgressReporter:
    """``enabled=False`` draws nothing and does not import rich."""

    def __init__(self, exp, total_steps: int, enabled: bool = True, console=None):
        self.enabled = enabled
        self.name, self.total, self.t0 = f"{exp.algo} on {exp.task} x{exp.num_seeds} seeds", total_steps, None
        self.lines, self.progress = False, None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console or Console(stderr=True)
        self.lines = not self.console.is_terminal  # one line per evaluation, no bar
        if self.lines:
            return
        self.progress = Progress(
            TextColumn(f"[bold]{exp.algo}[/] on {exp.task} x{exp.num_seeds} seeds"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("env steps  return {task.fields[ret]}  {task.fields[sps]} steps/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task = self.progress.add_task("train", total=total_steps, ret="-", sps="-")

    def __enter__(self):
        (self.progress or contextlib.nullcontext()).__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc) if self.progress is not None else False

    def advance(self, steps: int, ret: float | None, sps: float | None) -> None:
        if self.lines:
            self.t0 = time.perf_counter() if self.t0 is None else self.t0
            if ret is not None:
                rate = f"{sps:,.0f} steps/s" if sps is not None else "- steps/s"
                elapsed = time.perf_counter() - self.t0
                line = f"{self.name}: {steps:,}/{self.total:,} env steps  return {ret:.2f}  {rate}"
                print(f"{line}  {elapsed:.0f} s", file=sys.stderr, flush=True)
            return
        if self.progress is None:
            return
        fields = {}
        if ret is not None:
            fields["ret"] = f"{ret:.2f}"
        if sps is not None:
            fields["sps"] = f"{sps:,.0f}"
        self.progress.update(self.task, completed=steps, **fields)
