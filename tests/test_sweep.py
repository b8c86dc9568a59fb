"""``marlow sweep``: the grid's expansion and its one-line errors before any trial starts, and a 2 x 2 grid
on a local Ray instance that resumes an interrupted trial, reports a failing one without stopping the
others, on a rerun retries only what did not finish, and ends with the aggregate report."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from marlow.cli import main
from marlow.runtime.loggers import read_metrics
from marlow.sweep.grid import expand

TINY = [
    "task=games/climbing",
    "total_steps=3000",
    "eval_every=1000",
    "num_envs=4",
    "rollout_steps=50",
    "eval_episodes=2",
    "hidden=16",
    "checkpoint_every=1",
]
GRID = ["algo=ippo,mappo", "seeds=0-1,2-3", *TINY]  # 2 x 2: a configuration's seeds in two trials


def test_grid_expands_to_one_trial_per_combination(tmp_path):
    rest = [a for a in TINY if not a.startswith("hidden=")]
    trials = expand(
        ["algo=ippo,mappo", "lr=0.001,0.0005", "seeds=0-1,2-3", "hidden=16,16;32", *rest], tmp_path
    )
    assert len(trials) == 2 * 2 * 2 * 2
    first = trials[0]
    assert first.run_dir == tmp_path / "games_climbing" / "ippo" / "lr=0.001" / "hidden=16_16" / "seeds=0-1"
    assert {"seed=0", "num_seeds=2", "hidden=16,16", "lr=0.001"} <= set(first.overrides)
    assert len({t.run_dir for t in trials}) == len(trials)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["algo=ippo,mappo", "task=games/climbing", "bogus=1"], "unknown config key 'bogus'"),
        (["algo=ippo", "task=games/climbing", "lr=0.1,abc"], "lr=abc: config key 'lr' expects a number"),
        (["algo=ippo", "task=games/climbing", "seeds=3-1"], "ends before it starts"),
        (
            ["algo=rommeo_q", "num_envs=1", "task=games/climbing,mpe/simple_spread"],
            "task=mpe/simple_spread: algorithm 'rommeo_q' is tabular",
        ),
        (["algo=ippo", "task=games/climbing", "run_dir=x"], "run_dir is set per trial"),
        (["algo=ippo", "task=games/climbing", "cpus_per_trial=0"], "cpus_per_trial must be positive"),
        (["algo=ippo", "task=games/climbing", "gpus_per_trial=1.5"], "gpus_per_trial is a fraction"),
        (["algo=ippo", "task=games/climbing", "aggregate=no"], "aggregate expects true or false"),
    ],
)
def test_bad_sweep_fails_before_any_trial_with_one_line(tmp_path, capsys, args, match):
    out = tmp_path / "sweep"
    assert main(["sweep", f"out={out}", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def _rows(run_dir: Path) -> int:
    return len(next(iter(read_metrics(run_dir).values()))["env_steps"])  # of the trial's first seed


def _interrupt_after_first_chunk(overrides, run_dir: Path) -> None:
    """``marlow train`` of one trial, sent SIGTERM once its step-0 evaluation is logged (the stop handler is
    installed then, and the first chunk is compiling): the runner checkpoints after that chunk and stops, as
    a preempted trial would."""
    cmd = [sys.executable, "-m", "marlow.cli", "train", *overrides, f"run_dir={run_dir}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (run_dir / "metrics.csv").exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert (run_dir / "checkpoint.msgpack").exists() and _rows(run_dir) < 4  # step 0 + 3 evaluations


def test_sweep_on_local_ray_resumes_reports_failures_and_skips_finished_trials(tmp_path, capsys, monkeypatch):
    # a persistent compilation cache that the trials' processes inherit: trials of one algorithm run one
    # program (the seeds are its inputs), so each is compiled once
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    out = tmp_path / "sweep"
    trials = expand(GRID, out)
    assert len(trials) == 4
    interrupted, broken = trials[0], trials[1]
    _interrupt_after_first_chunk(interrupted.overrides, interrupted.run_dir)
    _interrupt_after_first_chunk(broken.overrides, broken.run_dir)
    (broken.run_dir / "checkpoint.msgpack").write_bytes(b"not a checkpoint")

    assert main(["sweep", f"out={out}", "ray_cpus=2", "aggregate=false", *GRID]) == 1
    cap = capsys.readouterr()
    assert "4 trials, 0 finished before, 4 to run" in cap.out
    assert not (out / "aggregate").exists()  # aggregate=false: no report at the end
    failed = [line for line in cap.out.splitlines() if line.startswith("[") and "failed" in line]
    assert len(failed) == 1 and "CheckpointError: corrupted or incompatible checkpoint" in failed[0]
    assert broken.label in failed[0]
    for t in (interrupted, *trials[2:]):
        assert _rows(t.run_dir) == 4, t.label  # the interrupted one resumed to the end
    record = json.loads((out / "sweep.json").read_text())
    assert [t["status"] for t in record["trials"]] == ["finished", "failed", "finished", "finished"]

    (broken.run_dir / "checkpoint.msgpack").unlink()  # the rerun restarts it from its saved config
    stamps = {t.run_dir: (t.run_dir / "metrics.csv").stat().st_mtime_ns for t in trials if t is not broken}
    assert main(["sweep", f"out={out}", "ray_cpus=2", *GRID]) == 0
    cap = capsys.readouterr()
    assert "4 trials, 3 finished before, 1 to run" in cap.out
    assert _rows(broken.run_dir) == 4
    for run_dir, stamp in stamps.items():
        assert (run_dir / "metrics.csv").stat().st_mtime_ns == stamp  # finished trials were not rerun
    numbers = json.loads((out / "aggregate" / "aggregate.json").read_text())  # written at the sweep's end
    labels = ["ippo", "mappo"]
    assert list(numbers["aggregates"]) == labels and numbers["tasks"] == ["games/climbing"]
    assert all(len(numbers["final"][k]) == 4 for k in labels)  # each configuration's two trials pooled
    merged = json.loads((out / "aggregate" / "marl_eval.json").read_text())
    assert sorted(merged["games"]["climbing"]) == sorted(labels)
    for name in ("aggregate.md", "intervals.png", "profiles.png", "curves.png", "improvement.png"):
        assert (out / "aggregate" / name).is_file(), name
    log = (trials[2].run_dir / "train.log").read_text()  # the trial's progress, one line per evaluation
    assert "compiling" in log and "3,000/3,000 env steps" in log, log
    # another grid into the same sweep directory is refused, and the sweep's record is kept
    before = (out / "sweep.json").read_text()
    assert main(["sweep", f"out={out}", "algo=ippo", "seeds=0-1", *TINY]) == 2
    assert "holds another sweep" in capsys.readouterr().err
    assert (out / "sweep.json").read_text() == before
