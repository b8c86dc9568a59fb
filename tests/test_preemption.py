"""Runs stopped at any moment resume to the uninterrupted result: real `marlow train` processes killed with
SIGKILL at random moments (compiling, mid-chunk, writing a checkpoint) and requeued with `resume=` until
they finish; SIGTERM / SIGINT finish the chunk, checkpoint and exit 128 + signal; a run killed before its
first checkpoint starts again from its saved config. The final metrics.csv, marl_eval.json and TensorBoard
scalars (read as TensorBoard reads them, honouring purge steps) must equal an uninterrupted run's, with no
row lost or duplicated."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = [
    "algo=masac",
    "task=games/climbing",
    "hidden=16,16",
    "batch_size=32",
    "buffer_size=1000",
    "total_steps=3000",
    "eval_every=100",
    "update_every=100",
    "warmup_steps=100",
    "num_envs=4",
    "eval_episodes=2",
    "checkpoint_every=1",
]
VOLATILE = ("wall_time", "steps_per_s")
CLI = [sys.executable, "-c", "import sys; from marlow.cli import main; sys.exit(main())", "train"]


def _start(*args: str) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _train(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    p = _start(*ARGS, f"run_dir={run_dir}", *extra)
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def _csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in VOLATILE} for r in csv.DictReader(f)]


def _json_returns(run_dir: Path) -> dict:
    def strip(x):
        return {k: strip(v) for k, v in x.items() if k != "elapsed_time"} if isinstance(x, dict) else x

    return strip(json.loads((run_dir / "marl_eval.json").read_text()))


def _tb_scalars(run_dir: Path) -> list[tuple[str, int, float]]:
    """Every scalar event of every seed's TensorBoard files in write order, dropping the events a later
    file's purge step (a SessionLog START at step s) discards, as TensorBoard's reader does."""
    from tensorboardX.proto import event_pb2

    out = []
    for logdir in sorted((run_dir / "tb").iterdir()):
        events = []
        for f in sorted(logdir.glob("events.out.tfevents.*"), key=lambda p: (p.stat().st_mtime, p.name)):
            data, i = f.read_bytes(), 0
            while i + 12 <= len(data):
                (n,) = struct.unpack("<Q", data[i : i + 8])
                rec = data[i + 12 : i + 12 + n]
                i += 12 + n + 4
                if len(rec) < n:  # a record cut short by a kill
                    break
                ev = event_pb2.Event.FromString(rec)
                if ev.HasField("session_log") and ev.session_log.status == event_pb2.SessionLog.START:
                    events = [e for e in events if e[1] < ev.step]
                events += [(f"{logdir.name}/{v.tag}", ev.step, v.simple_value) for v in ev.summary.value]
        out += [e for e in events if e[0].split("/", 1)[1] not in VOLATILE]
    return out


def _same_results(run: Path, ref: Path) -> None:
    assert _csv_rows(run) == _csv_rows(ref)
    assert _json_returns(run)["games"] == _json_returns(ref)["games"]
    tb = _tb_scalars(run)
    assert len(set(tb)) == len(tb), "duplicated TensorBoard rows"
    assert sorted(tb) == sorted(_tb_scalars(ref))
    assert (run / "report.md").is_file()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("preempt") / "uninterrupted"
    _train(run, "progress=false")
    return run


def _kill_and_requeue(run: Path, delays: list[float]) -> list[str]:
    """Start the run, SIGKILL it after each delay (requeueing it with resume= each time), then let the last
    attempt finish; returns what each kill interrupted."""
    seen = []
    for delay in delays:
        # a requeue resumes; a run killed before it wrote its config.yaml is started again as it was
        started = (run / "config.yaml").exists()
        p = _start(f"resume={run}") if started else _start(*ARGS, f"run_dir={run}")
        time.sleep(delay)
        if p.poll() is not None:  # finished before the kill
            break
        n = len(_csv_rows(run)) if (run / "metrics.csv").exists() else 0
        seen.append("before the first row" if n == 0 else f"after {n} rows")
        p.send_signal(signal.SIGKILL)
        p.wait()
    if not (run / "report.md").exists():
        p = _start(f"resume={run}") if (run / "config.yaml").exists() else _start(*ARGS, f"run_dir={run}")
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    return seen


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(reference, tmp_path):
    rng = random.Random(0)
    run = tmp_path / "killed"
    seen = _kill_and_requeue(run, [rng.uniform(0.5, 3.0), rng.uniform(3.0, 8.0), rng.uniform(4.0, 9.0)])
    assert seen and seen[0] == "before the first row"  # the first kill lands before any checkpoint
    _same_results(run, reference)


@pytest.mark.exhaustive
def test_many_sigkills_then_resume_equals_uninterrupted(reference, tmp_path):
    rng = random.Random(1)
    run = tmp_path / "killed_often"
    _kill_and_requeue(run, [rng.uniform(0.2, 9.0) for _ in range(10)])
    _same_results(run, reference)


def test_killed_while_writing_a_checkpoint_resumes(reference, tmp_path):
    """A kill inside checkpoint.save leaves its temporary file beside the previous checkpoint."""
    import shutil

    run = tmp_path / "mid_write"
    shutil.copytree(reference, run)
    (run / "report.md").unlink()
    (run / "checkpoint.tmp").write_bytes(b"\x85half a checkpoint")
    p = _start(f"resume={run}")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    _same_results(run, reference)


def test_no_checkpoint_yet_starts_again_with_the_saved_config(reference, tmp_path):
    run = tmp_path / "early"
    run.mkdir()
    (run / "config.yaml").write_text(
        (reference / "config.yaml").read_text().replace(str(reference), str(run))
    )
    p = _start(f"resume={run}")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert "no checkpoint" in err and "from the beginning" in err
    _same_results(run, reference)


LONG = ["total_steps=100000000", "eval_every=1000000"]  # chunks of about 5 s here (0.45 s per 100k steps)
SHORT_CHUNKS = ["total_steps=100000000", "eval_every=200000"]  # about 1 s


def _start_long(run: Path, *extra: str, chunks: list[str] = LONG) -> subprocess.Popen:
    p = _start(*ARGS, f"run_dir={run}", *chunks, *extra)
    deadline = time.time() + 300
    while not ((run / "metrics.csv").exists() and len(_csv_rows(run)) >= 2) and time.time() < deadline:
        time.sleep(0.1)
    return p


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_finishes_the_chunk_and_checkpoints(tmp_path, sig):
    from flax import serialization

    run = tmp_path / sig.name
    p = _start_long(run, "checkpoint_every=1000", chunks=SHORT_CHUNKS)  # the run stops after the next chunk
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, err
    assert f"resume with `marlow train resume={run}`" in err.strip().splitlines()[-1]
    meta = serialization.msgpack_restore((run / "checkpoint.msgpack").read_bytes())["meta"]
    assert meta["chunk"] == len(_csv_rows(run)) - 1  # written on the signal, after the chunk's row


def test_a_second_signal_exits_at_once_and_keeps_the_checkpoint(tmp_path):
    import threading

    from flax import serialization

    run = tmp_path / "twice"
    p = _start_long(run)
    while not (run / "checkpoint.msgpack").exists():  # chunk 1's checkpoint follows its row
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the next chunk, so the first signal cannot end the run by itself
    lines: list[str] = []
    first_seen = threading.Event()

    def read():
        for line in p.stderr:
            lines.append(line)
            if "send it again" in line:
                first_seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    p.send_signal(signal.SIGTERM)
    assert first_seen.wait(60), "".join(lines)
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    reader.join(10)
    err = "".join(lines)
    assert p.returncode == 128 + signal.SIGTERM and time.time() - t0 < 5, err
    assert "exiting now" in err, err
    meta = serialization.msgpack_restore((run / "checkpoint.msgpack").read_bytes())["meta"]
    assert meta["chunk"] >= 1
