"""What a new user hits first: bad counts, a bare `marlow train`, `--help` and `--version`, `--key=value`,
plot columns and tasks, `marlow list` on a narrow terminal, `marlow.devices` and `marlow.evaluate`'s
numbers. Errors are one line `marlow: error: ...` with exit code 2."""

from __future__ import annotations

import io
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from rich.console import Console

import marlow
from marlow import cli
from marlow.algos import ALGORITHMS
from marlow.algos.onpolicy.mappo import Config
from marlow.api import cli_value
from marlow.errors import ConfigError
from marlow.experiment.config import algo_defaults, build
from marlow.runtime import runner

# a tiny MASAC run on the climbing game: 2 chunks of 4 envs x 25 steps, 2 seeds, 2 greedy eval episodes;
# written as --key=value and --key value, which `marlow train` takes like key=value
TINY = [
    "--algo=masac",
    "--task",
    "games/climbing",
    "--hidden=8,8",
    "--batch-size=32",
    "--buffer_size=1000",
    "--total_steps=200",
    "--eval_every=100",
    "--update_every=100",
    "--warmup_steps=100",
    "--num_envs=4",
    "--num_seeds=2",
    "--eval_episodes=2",
    "--progress=false",
]


def _one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("marlow: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("usability") / "run"
    assert cli.main(["train", *TINY, f"--run_dir={run}"]) == 0
    return run


@pytest.fixture()
def no_training(monkeypatch):
    monkeypatch.setattr(runner, "train", lambda cfg: pytest.fail("train() reached"))


# ---------------------------------------------------------------------- 9: counts below one
@pytest.mark.parametrize("episodes", ["-5", "0"])
def test_eval_needs_at_least_one_episode(tiny_run, episodes, capsys):
    assert cli.main(["eval", str(tiny_run), "--episodes", episodes]) == 2
    cap = capsys.readouterr()
    assert "at least one episode" in _one_error(cap.err) and cap.out == ""
    with pytest.raises(ConfigError, match="at least one episode"):
        marlow.evaluate(tiny_run, episodes=int(episodes))


def test_crossplay_and_compounding_need_at_least_one(tiny_run, capsys):
    assert cli.main(["crossplay", str(tiny_run), str(tiny_run), "episodes=0"]) == 2
    assert "at least one episode" in _one_error(capsys.readouterr().err)
    assert cli.main(["compounding", str(tiny_run), "starts=0"]) == 2
    assert "starts and horizon must be at least 1" in _one_error(capsys.readouterr().err)


# ---------------------------------------------------------------------- 10: a bare `marlow train`
@pytest.mark.parametrize("args", [[], ["algo=ippo"], ["task=mpe/simple_spread"], ["algo=ippo", "task="]])
def test_train_needs_algo_and_task(args, capsys, no_training):
    assert cli.main(["train", *args]) == 2
    line = _one_error(capsys.readouterr().err)
    assert "algo= and task= are required" in line and "resume=" in line


def test_api_train_needs_algo_and_task(no_training):
    with pytest.raises(ConfigError, match="needs an algorithm and a task"):
        marlow.train()
    with pytest.raises(ConfigError, match="needs an algorithm and a task"):
        marlow.train("ippo")


def test_api_trains_a_resolved_config_alone(no_training, monkeypatch):
    cfg = marlow.config("ippo", "mpe/simple_spread", args=["hidden=8,8", "task.continuous=false"])
    assert cfg.algo.hidden == (8, 8) and cfg.experiment.task_options == {"continuous": False}
    assert marlow.config(args=["algo=ippo", "task=mpe/simple_spread", "hidden=8,8"]).algo.hidden == (8, 8)
    with pytest.raises(ConfigError, match="run_config alone"):
        marlow.train("ippo", run_config=cfg)
    with pytest.raises(ConfigError, match="run_config alone"):
        marlow.train(run_config=cfg, hidden=[4])
    seen = []
    monkeypatch.setattr(runner, "train", lambda c: seen.append(c) or "somewhere")
    assert marlow.train(run_config=cfg) == Path("somewhere") and seen == [cfg]


def test_api_reads_a_runs_config_and_metrics(tiny_run):
    cfg = marlow.run_config(tiny_run)
    metrics = marlow.metrics(tiny_run)
    assert sorted(metrics) == list(range(cfg.experiment.num_seeds))
    assert metrics[0]["env_steps"][-1] == cfg.experiment.total_steps
    run = marlow.build(cfg)
    assert run.env.spec.name == cfg.experiment.task and run.cfg.experiment.algo == cfg.experiment.algo


# ---------------------------------------------------------------------- 12: --help, --version
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_train_help_lists_the_experiment_keys(flag, capsys, no_training):
    assert cli.main(["train", flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: marlow train algo=<name> task=<name>")
    assert "total_steps=750000" in out and "env steps per seed" in out  # default and its comment
    assert "num_seeds=1" in out and "seeds trained at once with vmap" in out
    assert "marlow train algo=<name> --help" in out


@pytest.mark.parametrize("task", [None, "smax/3m"])
def test_train_algo_help_lists_its_keys_with_defaults(task, capsys, no_training):
    args = ["algo=mappo"] + ([f"task={task}"] if task else [])
    assert cli.main(["train", *args, "--help"]) == 0
    out = capsys.readouterr().out
    defaults = marlow.config("mappo", task).algo if task else build(Config, algo_defaults("mappo"))
    shown = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    for k, v in vars(defaults).items():
        assert f"{k}={cli_value(v)}" in shown, k
    assert "M: MPE ppo-clip 0.2" in out  # conf/algo/mappo.yaml's comment
    if task:
        assert "smax/3m's value; default 64,64" in out  # hidden: the task's override, and the default


def test_sweep_and_demo_help(capsys):
    assert cli.main(["sweep", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: marlow sweep")
    for option in ("out=", "address=", "cpus_per_trial=1", "gpus_per_trial=0", "ray_cpus=", "aggregate=true"):
        assert option in out
    assert cli.main(["demo", "-h"]) == 0
    assert capsys.readouterr().out.startswith("usage: marlow demo [total_steps=30000]")


def test_top_help_without_rst_and_version(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and "marlow train" in out
    for argv in (["--version"], ["version"]):
        assert cli.main(argv) == 0
        assert capsys.readouterr().out.strip() == f"marlow {version('marlow')}"


# ---------------------------------------------------------------------- 13: --key=value, plot
def test_key_value_flags():
    assert cli._key_values(["--total_steps=1000", "--num-seeds", "2", "lr=0.1", "-x"]) == [
        "total_steps=1000",
        "num_seeds=2",
        "lr=0.1",
        "-x",
    ]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--algo=ippo", "--task", "mpe/simple_spread", "--total_steps=abc"], "'total_steps' expects"),
        (["--algo=ippo", "--task", "mpe/simple_spread", "--gamma"], "--gamma needs a value"),
    ],
)
def test_train_takes_dashed_keys(args, needle, capsys, no_training):
    assert cli.main(["train", *args]) == 2
    assert needle in _one_error(capsys.readouterr().err)


def test_sweep_and_demo_take_dashed_keys(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    args = [f"--out={out}", "--algo=ippo", "--task=games/climbing", "--cpus_per_trial=0"]
    assert cli.main(["sweep", *args]) == 2
    assert "cpus_per_trial must be positive" in _one_error(capsys.readouterr().err) and not out.exists()
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo", "--total_steps=abc"]) == 2
    assert "'total_steps' expects an integer" in _one_error(capsys.readouterr().err)


def _run_dir(path, task: str):
    path.mkdir()
    rows = [f"{s},{100 * i},{i + s},0.5" for s in (0, 1) for i in range(1, 4)]
    (path / "metrics.csv").write_text(
        "seed,env_steps,eval/team_return,eval/win_rate\n" + "\n".join(rows) + "\n"
    )
    (path / "config.yaml").write_text(f"algo: ippo\ntask: {task}\n")
    return str(path)


def test_plot_of_a_missing_column_names_the_columns(tmp_path, capsys):
    run = _run_dir(tmp_path / "a", "smax/3m")
    assert cli.main(["plot", run, "y=eval/winrate", f"out={tmp_path / 'p.png'}"]) == 2
    line = _one_error(capsys.readouterr().err)
    assert "'eval/winrate'" in line and "did you mean 'eval/win_rate'?" in line
    assert "env_steps, eval/team_return, eval/win_rate" in line


def test_plot_of_runs_of_different_tasks_warns(tmp_path, capsys):
    a, b = _run_dir(tmp_path / "a", "smax/3m"), _run_dir(tmp_path / "b", "smax/2s3z")
    assert cli.main(["plot", a, b, f"out={tmp_path / 'p.png'}"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("marlow: warning:") and "smax/2s3z, smax/3m" in err[0]
    assert cli.main(["plot", a, f"out={tmp_path / 'q.png'}"]) == 0
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------- 14: `marlow list`, 80 columns
def test_list_fits_a_narrow_terminal():
    tables = cli._list_rows()
    console = Console(file=io.StringIO(), width=80, force_terminal=False)
    cli.print_tables(tables, console)
    lines = console.file.getvalue().splitlines()
    assert len(lines) < len(ALGORITHMS) + len(tables["tasks"]) + 15 and max(map(len, lines)) <= 80
    for row in tables["algorithms"]:  # one line each, the description whole or cut with an ellipsis
        (line,) = [ln for ln in lines if ln.split(" ", 1)[0] == row["algo"]]
        shown = line.split("  ")[-1].strip()
        assert row["description"] == shown or (
            shown.endswith("…") and row["description"].startswith(shown[:-1])
        ), line
    for row in tables["tasks"]:  # task, agents, action kinds, episode length, number of algorithms
        (line,) = [ln for ln in lines if ln.split(" ", 1)[0] == row["task"]]
        cells = line.split()
        assert cells[1] == str(len(row["agents"])) and cells[-2:] == [
            str(row["episode_length"]),
            str(len(row["algorithms"])),
        ]
    assert "marlow list --json" in lines[-1]


# ---------------------------------------------------------------------- 18: the Python API
def test_import_marlow_gives_devices_without_jax():
    code = (
        "import sys, marlow\n"
        "assert 'jax' not in sys.modules\n"
        "print(marlow.devices.configure_host_devices.__name__, marlow.algos.get_algo.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["configure_host_devices", "get_algo"]


def test_evaluate_returns_numbers(tiny_run, capsys):
    res = marlow.evaluate(tiny_run, episodes=2, seed=3)
    assert isinstance(res["team_return"], float) and len(res["team_return_per_seed"]) == 2
    assert set(res["agent_returns"]) == {"agent_0", "agent_1"} and "team_returns" not in res
    assert (res["env_steps"], res["episodes"]) == (200, 2)
    assert cli.main(["eval", str(tiny_run), "episodes=2", "seed=3"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    per_seed = ", ".join(f"{v:.3f}" for v in res["team_return_per_seed"])
    assert out == [
        f"masac on games/climbing after 200 env steps, 2 episodes: team return {res['team_return']:.3f} "
        f"(per seed: {per_seed})"
    ]


def test_list_reads_its_table_without_jax_the_second_time(tmp_path):
    """`marlow list` took 7 s (every algorithm imported, every task built): the table is kept, keyed by
    marlow's source and the task libraries' versions, and a second call imports no JAX."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, MARLOW_COMPILE_CACHE=str(tmp_path / "cache"))
    code = "import sys; from marlow.cli import main; main(['list', '--json']); print('jax' in sys.modules)"
    run = [sys.executable, "-c", code]
    outs = [subprocess.run(run, env=env, capture_output=True, text=True, check=True).stdout for _ in range(2)]
    first, second = (o.rsplit("\n", 2) for o in outs)
    assert first[0] == second[0] and '"mpe/simple_spread"' in first[0]  # the same tables
    assert (first[1], second[1]) == ("True", "False")
    assert len(list((tmp_path / "cache" / "list").iterdir())) == 1
