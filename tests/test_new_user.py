"""What a new user hit: a run makes the steps it is asked for (whole iterations, a shorter last chunk,
never whole chunks past the budget), a resume takes only the keys it can change (a larger total_steps
extends a run), a run directory that holds a run is never overwritten silently, typos get a suggestion,
and a user env's file path is saved absolute."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_runner import TINY  # noqa: E402  the runner tests' tiny MASAC run (iterations of 100 env steps)

from marlow.cli import main  # noqa: E402
from marlow.errors import ConfigError  # noqa: E402
from marlow.experiment.config import resolve  # noqa: E402
from marlow.runtime.loggers import read_metrics  # noqa: E402
from marlow.runtime.runner import load_run_config, train  # noqa: E402

pytestmark = pytest.mark.usefixtures("jax_compilation_cache")  # tests/conftest.py
TRAINING = ("train/return", "updates", "episodes", "loss/critic", "loss/actor")


def _steps(run: Path) -> list[int]:
    return [int(s) for s in read_metrics(run)[0]["env_steps"]]


def _one_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("marlow: error:"), err
    return err[0]


def test_budget_below_one_iteration_is_refused(capsys):
    """IPPO on the climbing game collects 2,048 env steps per iteration: total_steps=100 used to run a
    whole 20,480-step chunk."""
    line = _one_error(capsys, ["train", "algo=ippo", "task=games/climbing", "total_steps=100"])
    assert "less than one ippo iteration" in line and "2,048" in line


def test_budget_rounds_down_to_whole_iterations_and_says_so(capsys):
    cfg = resolve(["algo=ippo", "task=games/climbing", "total_steps=5000", "eval_every=2048"])
    from marlow.experiment.setup import build

    run = build(cfg)
    assert run.cfg.experiment.total_steps == 4096
    assert cfg.experiment.total_steps == 5000  # the caller's config is left as it was
    err = capsys.readouterr().err
    assert "total_steps=5,000" in err and "4,096 env steps" in err and len(err.strip().splitlines()) == 1
    cfg = resolve(["algo=ippo", "task=games/climbing", "total_steps=4096"])  # eval_every 20,480 > total
    e = build(cfg).cfg.experiment
    assert (e.total_steps, e.eval_every) == (4096, 4096)
    assert capsys.readouterr().err == ""  # nothing rounded: nothing said


def test_shorter_last_chunk_then_extended_by_resume(tmp_path, capsys):
    """250 steps with evaluations every 100: chunks of 100, 100 and 50 steps (not 300). Resumed with
    total_steps=400 it goes on from 250 (the rest of chunk 2, then chunk 3), and its training matches a
    400-step run at step 400: the extra evaluation at 250 draws only on the evaluation key stream."""
    short = tmp_path / "short"
    base = [a for a in TINY if not a.startswith("total_steps=")]
    train(resolve([*base, "total_steps=250", f"run_dir={short}", "update_every=50", "num_envs=2"]))
    assert _steps(short) == [0, 100, 200, 250]
    assert load_run_config(short).experiment.total_steps == 250

    # resuming a finished run with its own budget does nothing, and says so
    before = (short / "metrics.csv").read_text()
    train(resolve([f"resume={short}", "progress=false"]))
    assert "is finished" in capsys.readouterr().err
    assert (short / "metrics.csv").read_text() == before

    train(resolve([f"resume={short}", "total_steps=400", "progress=false"]))
    assert _steps(short) == [0, 100, 200, 250, 300, 400]
    assert load_run_config(short).experiment.total_steps == 400  # the run's new length is saved

    whole = tmp_path / "whole"
    train(resolve([*base, "total_steps=400", f"run_dir={whole}", "update_every=50", "num_envs=2"]))
    assert _steps(whole) == [0, 100, 200, 300, 400]
    a, b = read_metrics(short)[0], read_metrics(whole)[0]
    for k in TRAINING:
        if k in a:
            np.testing.assert_array_equal(a[k][-1], b[k][-1], err_msg=k)  # the 300-400 chunk of both
    assert a["updates"][-1] > 0


def test_resume_takes_only_the_keys_it_can_change(tmp_path, capsys):
    run = tmp_path / "run"
    train(resolve([*TINY, f"run_dir={run}"]))
    line = _one_error(capsys, ["train", f"resume={run}", "lr_actor=0.5"])
    assert "lr_actor cannot change when resuming" in line and "total_steps" in line
    line = _one_error(capsys, ["train", f"resume={run}", "algo=ippo"])
    assert "algo cannot change" in line
    line = _one_error(capsys, ["train", f"resume={run}", "total_step=800"])
    assert "did you mean 'total_steps'" in line and "masac" in line
    line = _one_error(capsys, ["train", f"resume={run}", "total_steps=200"])  # a run is never shortened
    assert "400" in line and "can only grow" in line
    # repeating the run's own values is allowed (a scheduler re-issuing the whole command)
    cfg = resolve([f"resume={run}", "algo=masac", "hidden=16,16", "total_steps=600", "progress=false"])
    assert cfg.experiment.total_steps == 600 and cfg.algo.hidden == (16, 16)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"did you mean 'total_steps'"):
        resolve(["algo=mappo", "task=mpe/simple_spread", "total_step=100"])
    with pytest.raises(ConfigError, match=r"did you mean 'lr'\?"):
        resolve(["algo=mappo", "task=mpe/simple_spread", "learning_rate=0.1"])


def test_a_run_directory_is_never_overwritten_silently(tmp_path, capsys):
    run = tmp_path / "run"
    train(resolve([*TINY, f"run_dir={run}"]))
    before = (run / "metrics.csv").read_text()
    line = _one_error(capsys, ["train", *TINY, f"run_dir={run}", "seed=3"])
    assert "already holds a run" in line and "overwrite=true" in line
    assert (run / "metrics.csv").read_text() == before  # untouched

    train(resolve([*TINY, f"run_dir={run}", "seed=3", "overwrite=true"]))
    assert load_run_config(run).experiment.seed == 3
    assert list(read_metrics(run)) == [3]
    assert [p.name for p in (run / "tb").iterdir()] == ["seed_3"]  # the old run's events are gone
    assert len(list((run / "tb" / "seed_3").iterdir())) == 1

    # a directory without a run in it (empty, or killed before its config.yaml) is used as it is
    empty = tmp_path / "empty"
    empty.mkdir()
    train(resolve([*TINY, f"run_dir={empty}"]))
    assert _steps(empty) == [0, 100, 200, 300, 400]


def test_user_env_path_is_saved_absolute(tmp_path, monkeypatch):
    """`task=jax:myenv/env.py` was saved relative, so `marlow eval` from another directory failed."""
    monkeypatch.chdir(tmp_path)
    cfg = resolve(["algo=ippo", "task=jax:myenv/env.py:make"])
    assert cfg.experiment.task == f"jax:{tmp_path / 'myenv' / 'env.py'}:make"
    cfg = resolve(["algo=ippo", "task=pettingzoo:envs/mine.py"])
    assert cfg.experiment.task == f"pettingzoo:{tmp_path / 'envs' / 'mine.py'}"
    assert resolve(["algo=ippo", "task=jax:pkg.module:make"]).experiment.task == "jax:pkg.module:make"


def test_the_readme_example_env_trains_from_another_directory(tmp_path, monkeypatch):
    """docs/examples/coordinate_env.py, the README's complete user env, trains by its relative path, and its
    run is evaluated from another directory. IPPO learns it: both agents on action 2 every step."""
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    run = tmp_path / "coordinate"
    args = ["algo=ippo", "task=jax:docs/examples/coordinate_env.py", "task.length=5", "total_steps=16384"]
    args += ["eval_every=8192", "num_envs=8", "rollout_steps=64", "eval_episodes=4", "progress=false"]
    train(resolve([*args, f"run_dir={run}"]))
    assert load_run_config(run).experiment.task == f"jax:{repo / 'docs/examples/coordinate_env.py'}"
    monkeypatch.chdir(tmp_path)
    import marlow

    res = marlow.evaluate(run, episodes=4)
    assert res["team_return"] >= 4.0  # of 5: a random pair scores 5/9


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "marlow.cli", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_while_compiling_exits_at_once_and_the_run_resumes(tmp_path):
    """A second Ctrl-C during compilation crashed the process (SIGSEGV, "pure virtual method called");
    now the first one ends it at once, as killed by SIGINT (a shell's 130), and resume= starts it again."""
    run = tmp_path / "run"
    p = _start(*TINY, "progress=true", f"run_dir={run}")
    line = p.stderr.readline()
    assert line.startswith("marlow: compiling masac on games/climbing"), line
    assert f"resume={run}" in line
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == -signal.SIGINT, err
    assert "Traceback" not in err and "pure virtual" not in err
    assert (run / "config.yaml").exists() and not (run / "report.md").exists()
    p = _start(f"resume={run}")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert _steps(run) == [0, 100, 200, 300, 400]


def test_training_outlives_a_closed_pipe(tmp_path):
    """`marlow train ... 2>&1 | head -5` stopped training with exit code 0 and no checkpoint when the
    pipe closed; now training goes on to its end."""
    run = tmp_path / "run"
    p = _start(*TINY, "progress=true", f"run_dir={run}")
    assert "compiling" in p.stderr.readline()
    p.stderr.close()  # the reader goes away before the next line
    p.stdout.close()
    assert p.wait(timeout=600) == 0
    assert _steps(run) == [0, 100, 200, 300, 400] and (run / "report.md").exists()
