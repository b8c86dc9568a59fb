"""End-to-end runs on a tiny config: determinism, vmap over seeds == separate runs, resume after a
kill, corrupted checkpoints, divergence, the CLI and the run directory contents.

Every run compiles the same chunk program (only the seed, the run directory or the number of seeds
change), so the module turns on JAX's persistent compilation cache in a temporary directory: the
first run of a given program compiles it, the others load it (seconds instead of tens of seconds).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml

from marlow import envs
from marlow.algos import ALGORITHMS
from marlow.cli import main
from marlow.devices import seed_devices
from marlow.errors import TrainingDiverged
from marlow.experiment.config import resolve
from marlow.runtime import checkpoint
from marlow.runtime.loggers import read_metrics
from marlow.runtime.runner import load_run_config, train

# 4 chunks of one iteration (25 vectorised steps x 4 envs, then one update), 2 greedy eval episodes
TINY = [
    "algo=masac",
    "task=games/climbing",
    "hidden=16,16",
    "batch_size=32",
    "buffer_size=1000",
    "total_steps=400",
    "eval_every=100",
    "update_every=100",
    "warmup_steps=100",
    "num_envs=4",
    "eval_episodes=2",
    "checkpoint_every=1",  # the resume and divergence tests rely on a checkpoint after every chunk
    "progress=false",
]
N_CHUNKS = 4
VOLATILE = ("wall_time", "steps_per_s")  # the only columns allowed to differ between identical runs
RUN_FILES = (
    "config.yaml",
    "metrics.csv",
    "marl_eval.json",
    "checkpoint.msgpack",
    "report.md",
    "learning_curve.png",
    "startup.json",
)

pytestmark = pytest.mark.usefixtures("jax_compilation_cache")  # tests/conftest.py


def _train(run_dir: Path, *extra: str) -> Path:
    return train(resolve([*TINY, f"run_dir={run_dir}", *extra]))


def _csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in VOLATILE} for r in csv.DictReader(f)]


def _json_returns(run_dir: Path) -> dict:
    """marl_eval.json without the wall-clock ``elapsed_time``."""
    data = json.loads((Path(run_dir) / "marl_eval.json").read_text())

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "elapsed_time"}
        return x

    return strip(data)


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("marlow: error:"), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module", autouse=True)
def jaxmarl_imported():
    """Import jaxmarl before any capsys capture starts: its first import resets sys.stdout/sys.stderr to
    the process streams (see test_first_mpe_env_keeps_redirected_stdout), which would bypass capsys."""
    envs.make("mpe/simple_spread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, jax_compilation_cache):
    """Lazily trained runs, shared by the tests of this module."""
    root = tmp_path_factory.mktemp("runs")
    done: dict[str, Path] = {}

    def get(name: str, *extra: str) -> Path:
        if name not in done:
            done[name] = _train(root / name, *extra)
        return done[name]

    return get


@pytest.fixture(scope="module")
def run_a(runs) -> Path:
    return runs("a", "seed=0")


# ------------------------------------------------------------------------------------------------
def test_run_directory_contents(run_a):
    for name in RUN_FILES:
        assert (run_a / name).is_file() and (run_a / name).stat().st_size > 0, name
    tb = run_a / "tb"
    assert tb.is_dir() and any(p.is_file() for p in (tb / "seed_0").iterdir())
    assert (run_a / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = load_run_config(run_a)
    assert cfg.experiment.task == "games/climbing" and cfg.algo.hidden == (16, 16)
    assert cfg.algo.buffer_size == 400  # capped at the run length
    m = read_metrics(run_a)
    assert list(m) == [0]
    np.testing.assert_array_equal(m[0]["env_steps"], [0, 100, 200, 300, 400])
    np.testing.assert_array_equal(m[0]["updates"], [0, 1, 1, 1, 1])
    assert np.isnan(m[0]["loss/critic_loss"][0]) and np.all(np.isfinite(m[0]["loss/critic_loss"][1:]))
    assert np.all(np.isfinite(m[0]["eval/team_return"]))
    data = json.loads((run_a / "marl_eval.json").read_text())
    seed = data["games"]["climbing"]["masac"]["seed_0"]
    assert [seed[f"step_{i}"]["step_count"] for i in range(5)] == [0, 100, 200, 300, 400]
    assert all(len(seed[f"step_{i}"]["return"]) == 2 for i in range(5))
    _, meta = checkpoint.load(run_a, _template(run_a))
    assert meta["chunk"] == N_CHUNKS and meta["env_steps"] == 400
    assert "games/climbing" in (run_a / "report.md").read_text()


def _template(run_dir: Path):
    """A runner state of the run's structure, to restore its checkpoint into."""
    from marlow.experiment.loop import Loop
    from marlow.runtime.runner import build, seed_keys

    run = build(load_run_config(run_dir))
    loop = Loop(run.env, run.learner, run.cfg.experiment)
    return jax.jit(jax.vmap(loop.init))(seed_keys(run.cfg))


def test_determinism(runs, run_a):
    again = runs("a_again", "seed=0")
    assert _csv_rows(again) == _csv_rows(run_a)
    assert _json_returns(again)["games"] == _json_returns(run_a)["games"]
    other = runs("seed_1", "seed=1")
    assert _csv_rows(other) != _csv_rows(run_a)


def test_vmap_over_seeds_equals_separate_runs(runs, run_a, capsys):
    # 4 seeds: on a machine with >= 2 cores they are also split over 2 host devices (marlow.devices)
    if len(jax.devices()) >= 2:
        assert len(seed_devices(4)) >= 2
    vmap_dir = runs("vmap4", "seed=0", "num_seeds=4")
    batched = read_metrics(vmap_dir)
    assert sorted(batched) == [0, 1, 2, 3]
    separate = {0: read_metrics(run_a)[0]}
    for s in (1, 2, 3):
        separate[s] = read_metrics(runs(f"seed_{s}", f"seed={s}"))[s]
    max_diff, worst = 0.0, "all equal"
    for s in range(4):
        assert set(batched[s]) == set(separate[s])
        for col, v in batched[s].items():
            if col in VOLATILE:
                continue
            w = separate[s][col]
            np.testing.assert_allclose(v, w, rtol=1e-5, atol=1e-5, equal_nan=True, err_msg=f"seed {s} {col}")
            finite = np.isfinite(v) & np.isfinite(w)
            if finite.any() and float(np.max(np.abs(v[finite] - w[finite]))) > max_diff:
                max_diff, worst = float(np.max(np.abs(v[finite] - w[finite]))), f"seed {s} {col}"
    print(f"vmap vs separate runs: max abs difference {max_diff:g} ({worst})")
    # the seeds really differ from each other
    assert not np.allclose(batched[0]["loss/critic_loss"][1:], batched[1]["loss/critic_loss"][1:])
    # a multi-seed run evaluates every seed's checkpointed policies
    capsys.readouterr()
    assert main(["eval", str(vmap_dir), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "after 400 env steps" in out
    per_seed = out.split("per seed: ")[1].split(")")[0].split(", ")
    assert len(per_seed) == 4
    # and several run directories plot together
    png = vmap_dir.parent / "two_runs.png"
    assert main(["plot", str(vmap_dir), str(run_a), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_after_kill_matches_uninterrupted_run(runs, run_a, tmp_path, die_at_checkpoint):
    """Run B is 'killed' after chunk 3 was logged but before its checkpoint was written (so the last
    checkpoint is chunk 2's); resuming with resume=<dir> drops the orphan rows and ends exactly like A."""
    run_b = tmp_path / "b"
    die_at_checkpoint(3, _train, run_b, "seed=0")

    assert not (run_b / "report.md").exists()
    _, meta = checkpoint.load(run_b, _template(run_b))
    assert meta["chunk"] == 2 and meta["env_steps"] == 200
    assert [r["env_steps"] for r in _csv_rows(run_b)] == ["0", "100", "200", "300"]

    out = train(resolve([f"resume={run_b}", "progress=false"]))
    assert Path(out) == run_b
    assert _csv_rows(run_b) == _csv_rows(run_a)
    assert _json_returns(run_b)["games"] == _json_returns(run_a)["games"]
    for name in RUN_FILES:
        assert (run_b / name).is_file(), name
    _, meta = checkpoint.load(run_b, _template(run_b))
    assert meta["chunk"] == N_CHUNKS


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "other_msgpack"])
def test_corrupted_checkpoint_is_one_line_error(run_a, tmp_path, capsys, damage):
    d = tmp_path / "run"
    shutil.copytree(run_a, d)
    ck = d / "checkpoint.msgpack"
    raw = ck.read_bytes()
    if damage == "truncate":
        ck.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        ck.write_bytes(b"\x00garbage\xff" * 100)
    elif damage == "empty":
        ck.write_bytes(b"")
    else:
        from flax import serialization

        ck.write_bytes(serialization.msgpack_serialize({"state": {"x": np.zeros(3)}, "meta": {"chunk": 1}}))
    capsys.readouterr()
    assert main(["eval", str(d), "--episodes", "2"]) == 2
    cap = capsys.readouterr()
    line = _one_error_line(cap.err)
    assert "checkpoint" in line
    assert cap.out == ""


def test_eval_of_missing_checkpoint_or_run_dir(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "run directory" in _one_error_line(capsys.readouterr().err)
    (tmp_path / "cfg_only").mkdir()
    (tmp_path / "cfg_only" / "config.yaml").write_text(
        yaml.safe_dump(resolve([*TINY]).to_dict(), sort_keys=False)
    )
    assert main(["eval", str(tmp_path / "cfg_only")]) == 2
    assert "checkpoint" in _one_error_line(capsys.readouterr().err)


def test_divergence_exits_3_and_keeps_last_good_checkpoint(tmp_path, capsys, jax_compilation_cache):
    """No update in chunk 1 (warm-up), rewards scaled to overflow in chunk 2: the run stops with
    TrainingDiverged (CLI exit 3) and chunk 1's checkpoint still loads and evaluates."""
    d = tmp_path / "nan"
    args = [*TINY, f"run_dir={d}", "warmup_steps=200", "reward_scale=1e38"]
    assert main(["train", *args]) == 3
    line = _one_error_line(capsys.readouterr().err)
    assert "non-finite loss/" in line and "TrainingDiverged" not in line
    m = read_metrics(d)[0]
    np.testing.assert_array_equal(m["env_steps"], [0, 100, 200])
    assert not np.isfinite(m["loss/critic_loss"][2])
    _, meta = checkpoint.load(d, _template(d))
    assert meta["chunk"] == 1 and meta["env_steps"] == 100
    assert main(["eval", str(d), "--episodes", "2"]) == 0
    cap = capsys.readouterr()
    assert "after 100 env steps" in cap.out and cap.err == ""
    # the library call raises the exception itself (the compiled chunk comes from the cache)
    with pytest.raises(TrainingDiverged, match="non-finite"):
        train(resolve([*TINY, f"run_dir={tmp_path / 'nan2'}", "warmup_steps=200", "reward_scale=1e38"]))


# ------------------------------------------------------------------------------------------------
# CLI
def test_cli_list(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # no folding of long names in the rich tables
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in envs.task_names():
        assert name in out, name
    for algo in ALGORITHMS:
        assert algo in out


@pytest.mark.parametrize(
    "args,needle",
    [
        (["algo=nope"], "'nope'"),
        (["task=mpe/nope"], "mpe/nope"),
        (["no_such_key=1"], "'no_such_key'"),
        (["seed=1.5"], "'seed'"),
        (["lr_actor=abc"], "'lr_actor'"),
        (["progress=maybe"], "'progress'"),
        (["num_seeds=0"], "'num_seeds'"),
        (["eval_every=150", "update_every=100"], "eval_every"),
        (["seed"], "key=value"),
        (["task=smax/3m", "algo=mappo", "task.episode_length=-3"], "bad task option for 'smax/3m'"),
        (["task=smax/3m", "algo=mag", "preset=huge"], "unknown preset 'huge'"),
    ],
)
def test_cli_train_bad_input_exits_2(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written to the working directory
    assert main(["train", "progress=false", "algo=masac", "task=mpe/simple_spread", *args]) == 2
    cap = capsys.readouterr()
    assert needle in _one_error_line(cap.err)
    assert list(tmp_path.iterdir()) == []


def test_first_mpe_env_keeps_redirected_stdout():
    code = (
        "import contextlib, io, sys\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    import marlow.envs as e\n"
        "    e.make('mpe/simple_spread')\n"
        "    ok = sys.stdout is buf\n"
        "sys.exit(0 if ok else 1)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode == 0


def test_cli_unknown_command(capsys):
    assert main(["frobnicate"]) == 2
    assert "frobnicate" in _one_error_line(capsys.readouterr().err)


def test_cli_help(capsys):
    assert main([]) == 0 and "marlow train" in capsys.readouterr().out


def test_cli_eval_finished_run(run_a, capsys):
    capsys.readouterr()
    assert main(["eval", str(run_a), "--episodes", "2", "--seed", "3"]) == 0
    cap = capsys.readouterr()
    assert cap.err == ""
    assert "masac on games/climbing after 400 env steps, 2 episodes" in cap.out
    assert "team return" in cap.out


def test_cli_eval_documented_episodes_syntax(run_a, capsys):
    assert main(["eval", str(run_a), "episodes=2"]) == 0


def test_cli_plot_writes_png(run_a, tmp_path, capsys):
    png = tmp_path / "curves.png"
    assert main(["plot", str(run_a), "--out", str(png)]) == 0
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in capsys.readouterr().out


def test_cli_plot_missing_dir(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")]) == 2
    _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "x.png").exists()
