"""A rich progress bar: env steps, latest evaluation return, env steps per second (all seeds)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressReporter:
    def __init__(self, exp, total_steps: int, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn(f"[bold]{exp.algo}[/] on {exp.task} x{exp.num_seeds} seeds"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("env steps  return {task.fields[ret]}  {task.fields[sps]} steps/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
            transient=False,
        )
        self.task = self.progress.add_task("train", total=total_steps, ret="-", sps="-")

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def advance(self, steps: int, ret: float | None, sps: float | None) -> None:
        fields = {}
        if ret is not None:
            fields["ret"] = f"{ret:.2f}"
        if sps is not None:
            fields["sps"] = f"{sps:,.0f}"
        self.progress.update(self.task, completed=steps, **fields)
