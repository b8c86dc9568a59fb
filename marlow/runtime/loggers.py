"""Per-run metric logging: CSV, TensorBoard and marl-eval JSON.

A run directory holds one run (one algorithm, one task, several seeds trained together). At every
evaluation point the runner calls :meth:`RunLogger.log` with one dict of metrics per seed and the
logger writes

* ``metrics.csv`` -- long format, one row per (seed, eval point); columns ``seed``, ``env_steps``,
  then the other scalar keys sorted. The header is fixed by the first call. Flushed after each call.
* ``tb/seed_<seed>/`` -- TensorBoard event files (tensorboardX), every scalar at global step
  ``env_steps``.
* ``marl_eval.json`` -- the raw-data format of InstaDeep's marl-eval tools::

      {env: {task: {algo: {"seed_<s>": {"step_<i>": {"step_count": env_steps,
                                                      "elapsed_time": wall_time,
                                                      "return": [team return per eval episode]},
                                         ...,
                                         "absolute_metrics": {"return": [...]}}}}}}

  rewritten atomically on every call.

Non-scalar values (e.g. ``eval/episode_returns``, a list of per-episode team returns) go to the JSON
only. No pickle is used anywhere.

Resuming (``resume_step=N``) drops the CSV rows and JSON eval points logged after step ``N`` (they
came after the checkpoint being resumed) and opens the TensorBoard writers with ``purge_step=N+1``,
so a resumed run ends with exactly the rows an uninterrupted run would have.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from marlow.errors import CheckpointError

__all__ = [
    "CSV_NAME",
    "JSON_NAME",
    "TB_DIR",
    "RunDirError",
    "RunLogger",
    "read_metrics",
    "split_task",
]

CSV_NAME = "metrics.csv"
JSON_NAME = "marl_eval.json"
TB_DIR = "tb"
EPISODE_RETURNS_KEY = "eval/episode_returns"
TEAM_RETURN_KEY = "eval/team_return"


class RunDirError(CheckpointError, FileNotFoundError):
    """A run directory without a readable ``metrics.csv`` (a user-facing :class:`CheckpointError`)."""


def split_task(task: str) -> tuple[str, str]:
    """``"mpe/simple_spread"`` -> ``("mpe", "simple_spread")``; a task without "/" -> ``(task, task)``."""
    if "/" in task:
        env, name = task.split("/", 1)
        return env, name
    return task, task


_NOT_SCALAR = object()


def _as_scalar(key: str, value: Any) -> Any:
    """A Python int/float (numpy/jax 0-d values included), None, or ``_NOT_SCALAR`` for lists/arrays."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return _NOT_SCALAR
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, str | bytes):
        raise TypeError(f"metric {key!r} has a non-numeric value {value!r}")
    arr = np.asarray(value)
    if arr.ndim > 0:
        return _NOT_SCALAR
    item = arr.item()
    if isinstance(item, bool):
        return int(item)
    if isinstance(item, int | float):
        return item
    raise TypeError(f"metric {key!r} has a non-numeric value {value!r}")


def _fmt(value: int | float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and well-formed rows of a metrics CSV.

    A run killed while writing can leave a partial last line: a last line without a trailing newline,
    or any row whose field count differs from the header, is dropped.
    """
    text = path.read_text(encoding="utf-8")
    if not text:
        return [], []
    complete = text.endswith("\n")
    lines = list(csv.reader(io.StringIO(text)))
    if not complete and lines:
        lines = lines[:-1]
    if not lines:
        return [], []
    header, body = lines[0], lines[1:]
    return header, [r for r in body if len(r) == len(header)]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunLogger:
    """Writes the metrics of one run (one algorithm, one task, ``seeds``) into ``run_dir``.

    Args:
        run_dir: the run directory (created if missing).
        algo: algorithm name (marl-eval ``algorithm_name``).
        task: task string such as ``"mpe/simple_spread"``; split at the first "/" into the marl-eval
            environment and task names.
        seeds: the seeds trained together; ``log`` receives one row per seed in this order.
        resume_step: when resuming from a checkpoint taken at ``env_steps == resume_step``, the rows
            logged after it are dropped. ``None`` starts a fresh log (existing CSV/JSON overwritten).
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        algo: str,
        task: str,
        seeds: list[int],
        resume_step: int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.algo = algo
        self.task = task
        self.env_name, self.task_name = split_task(task)
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ValueError("RunLogger needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"duplicate seeds: {self.seeds}")
        self.resume_step = None if resume_step is None else int(resume_step)
        self.csv_path = self.run_dir / CSV_NAME
        self.json_path = self.run_dir / JSON_NAME
        self._t0 = time.monotonic()
        self._closed = False

        self.header: list[str] | None = None
        self._csv_file: io.TextIOWrapper | None = None
        self._csv_writer: Any = None
        self._init_csv()
        self._json: dict[str, Any] = {}
        self._seed_data: dict[int, dict[str, Any]] = {}
        self._init_json()
        self._tb: dict[int, Any] = {}
        self._init_tb()

    # ------------------------------------------------------------------ setup
    def _init_csv(self) -> None:
        if self.resume_step is not None and self.csv_path.exists():
            header, rows = _read_csv(self.csv_path)
            if header:
                if header[:2] != ["seed", "env_steps"]:
                    raise RunDirError(f"{self.csv_path}: unexpected header {header[:2]}")
                kept = [r for r in rows if float(r[1]) <= self.resume_step]
                buf = io.StringIO()
                w = csv.writer(buf, lineterminator="\n")
                w.writerow(header)
                w.writerows(kept)
                _atomic_write(self.csv_path, buf.getvalue())
                self.header = header
                self._csv_file = open(self.csv_path, "a", encoding="utf-8", newline="")
                self._csv_writer = csv.writer(self._csv_file, lineterminator="\n")
                return
        # Fresh start (or nothing to resume): the file is created with the header at the first log.
        if self.csv_path.exists():
            self.csv_path.unlink()

    def _init_json(self) -> None:
        data: dict[str, Any] = {}
        if self.resume_step is not None and self.json_path.exists():
            try:
                data = json.loads(self.json_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise RunDirError(f"{self.json_path}: cannot read ({e})") from e
        algo_data = (
            data.setdefault(self.env_name, {}).setdefault(self.task_name, {}).setdefault(self.algo, {})
        )
        for seed in self.seeds:
            steps: list[dict[str, Any]] = []
            if self.resume_step is not None:
                old = algo_data.get(f"seed_{seed}", {})
                steps = [
                    v
                    for k, v in old.items()
                    if k.startswith("step_") and int(v.get("step_count", 0)) <= self.resume_step
                ]
                steps.sort(key=lambda v: int(v["step_count"]))
            seed_data: dict[str, Any] = {f"step_{i}": v for i, v in enumerate(steps)}
            seed_data["absolute_metrics"] = self._absolute(steps)
            algo_data[f"seed_{seed}"] = seed_data
            self._seed_data[seed] = seed_data
        self._json = data
        self._write_json()

    @staticmethod
    def _absolute(steps: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if steps and "return" in steps[-1]:
            return {"return": list(steps[-1]["return"])}
        return {}

    def _init_tb(self) -> None:
        from tensorboardX import SummaryWriter

        # purge_step makes TensorBoard discard events at steps >= purge_step from earlier event files in
        # the same dir: on resume the ones logged after the checkpoint, on a fresh start all of them (the
        # CSV and JSON are overwritten too).
        purge = 0 if self.resume_step is None else self.resume_step + 1
        for seed in self.seeds:
            logdir = self.run_dir / TB_DIR / f"seed_{seed}"
            logdir.mkdir(parents=True, exist_ok=True)
            self._tb[seed] = SummaryWriter(logdir=str(logdir), purge_step=purge)

    # ------------------------------------------------------------------ logging
    def log(self, rows: list[dict[str, float | int | list[float]]]) -> None:
        """Log one evaluation point: ``rows[i]`` holds the metrics of ``seeds[i]``.

        Every row needs ``env_steps``. Scalars go to the CSV and TensorBoard; list values (such as
        ``eval/episode_returns``) to the marl-eval JSON only. The CSV header is fixed by the first
        call; a later scalar key outside it raises ValueError; missing keys are written empty.
        """
        if self._closed:
            raise RuntimeError("RunLogger.log after close()")
        if len(rows) != len(self.seeds):
            raise ValueError(f"log() got {len(rows)} rows for {len(self.seeds)} seeds")
        scalars: list[dict[str, int | float | None]] = []
        for seed, row in zip(self.seeds, rows, strict=True):
            if "env_steps" not in row:
                raise ValueError(f"row of seed {seed} has no 'env_steps'")
            s: dict[str, int | float | None] = {}
            for k, v in row.items():
                if k == "seed":
                    continue
                v = _as_scalar(k, v)
                if v is not _NOT_SCALAR:
                    s[k] = v
            if s["env_steps"] is None:
                raise ValueError(f"row of seed {seed} has env_steps=None")
            s["env_steps"] = int(s["env_steps"])
            scalars.append(s)

        if self.header is None:
            keys = set().union(*(s.keys() for s in scalars)) - {"env_steps"}
            self.header = ["seed", "env_steps", *sorted(keys)]
            self._csv_file = open(self.csv_path, "w", encoding="utf-8", newline="")
            self._csv_writer = csv.writer(self._csv_file, lineterminator="\n")
            self._csv_writer.writerow(self.header)
        known = set(self.header)
        for seed, s in zip(self.seeds, scalars, strict=True):
            unknown = sorted(set(s) - known)
            if unknown:
                raise ValueError(
                    f"seed {seed}: metric keys {unknown} are not in the CSV header fixed by the first "
                    f"log call ({self.header[2:]})"
                )

        for seed, s in zip(self.seeds, scalars, strict=True):
            self._csv_writer.writerow([str(seed)] + [_fmt(s.get(k)) for k in self.header[1:]])
        assert self._csv_file is not None
        self._csv_file.flush()

        for seed, s in zip(self.seeds, scalars, strict=True):
            w = self._tb[seed]
            step = int(s["env_steps"])
            for k, v in s.items():
                # NaN marks "not measured yet" (e.g. losses before warm-up): CSV only, not TensorBoard
                if k != "env_steps" and v is not None and math.isfinite(float(v)):
                    w.add_scalar(k, float(v), global_step=step)
            _write_queued(w)

        for seed, row, s in zip(self.seeds, rows, scalars, strict=True):
            self._append_json(seed, row, s)
        self._write_json()

    def _append_json(self, seed: int, row: dict[str, Any], s: dict[str, int | float | None]) -> None:
        seed_data = self._seed_data[seed]
        n = sum(1 for k in seed_data if k.startswith("step_"))
        wall = s.get("wall_time")
        if wall is None:
            wall = time.monotonic() - self._t0
        entry: dict[str, Any] = {"step_count": int(s["env_steps"]), "elapsed_time": float(wall)}
        if row.get(EPISODE_RETURNS_KEY) is not None:
            entry["return"] = [float(x) for x in np.asarray(row[EPISODE_RETURNS_KEY], dtype=float).ravel()]
        elif s.get(TEAM_RETURN_KEY) is not None:
            entry["return"] = [float(s[TEAM_RETURN_KEY])]
        absolute = seed_data.pop("absolute_metrics")
        seed_data[f"step_{n}"] = entry
        seed_data["absolute_metrics"] = {"return": list(entry["return"])} if "return" in entry else absolute

    def _write_json(self) -> None:
        _atomic_write(self.json_path, json.dumps(self._json, indent=2))

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Flush and close the CSV and the TensorBoard writers (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._csv_file is not None:
            self._csv_file.flush()
            self._csv_file.close()
            self._csv_file = None
        for w in self._tb.values():
            w.flush()
            w.close()
        self._tb = {}

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(run_dir: str | Path) -> dict[int, dict[str, np.ndarray]]:
    """``metrics.csv`` of a run dir as ``{seed: {column: float64 array}}`` (NaN for empty cells).

    Rows keep their file order (eval points in increasing ``env_steps``); the ``seed`` column itself
    is the dict key and is not repeated in the columns.
    """
    path = Path(run_dir) / CSV_NAME
    if not path.is_file():
        raise RunDirError(f"{run_dir}: no {CSV_NAME} (not a run directory, or nothing logged yet)")
    header, rows = _read_csv(path)
    if not header or header[0] != "seed":
        raise RunDirError(f"{path}: missing or malformed header")
    per_seed: dict[int, list[list[float]]] = {}
    for lineno, r in enumerate(rows, start=2):
        try:
            seed = int(float(r[0]))
            vals = [math.nan if c.strip() == "" else float(c) for c in r[1:]]
        except ValueError as e:
            raise RunDirError(f"{path}:{lineno}: non-numeric value ({e})") from e
        per_seed.setdefault(seed, []).append(vals)
    out: dict[int, dict[str, np.ndarray]] = {}
    for seed, vals in per_seed.items():
        arr = np.asarray(vals, dtype=np.float64).reshape(len(vals), len(header) - 1)
        out[seed] = {col: arr[:, j].copy() for j, col in enumerate(header[1:])}
    return out


def _write_queued(writer) -> None:
    """Put every event ``writer`` was given into its file before returning.

    tensorboardX's ``SummaryWriter`` hands events to a writer thread through a queue, and its ``flush()``
    flushes only what that thread has already taken off the queue. The session checkpoints right after
    logging, and a resume keeps the TensorBoard events up to the checkpoint's step, so an event still
    queued when the process is killed would be lost for good (seen as a missing last scalar of a chunk
    in tests/test_preemption.py). The thread writes its queue in order and stops at a stop signal put
    behind the events, so stopping it, flushing the file and starting a new thread on the same queue
    and file leaves every event on disk. This uses tensorboardX 2.6's writer internals (pinned)."""
    from tensorboardX.event_file_writer import _EventLoggerThread

    ew = writer._get_file_writer().event_writer
    ew._worker.stop()
    ew._ev_writer.flush()
    ew._worker = _EventLoggerThread(ew._event_queue, ew._ev_writer, ew._flush_secs)
    ew._worker.start()
