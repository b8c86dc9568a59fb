"""Running a run in a process: the runner and its session (chunks of the jitted loop, or the host loop
for PettingZoo), checkpoints, signals, progress, the loggers, the compilation caches, the start-up record
and the report written at the end. Below it: :mod:`marlow.experiment` (what a run is); above it:
:mod:`marlow.analysis` (tools over finished runs)."""
