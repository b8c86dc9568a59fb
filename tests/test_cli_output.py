"""Output that scripts can read: `marlow list` unwrapped or as JSON off a terminal, one progress line per
evaluation when stderr is not a terminal."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

from rich.console import Console

from marlow import cli, envs
from marlow.algos import ALGORITHMS
from marlow.runtime.progress import ProgressReporter


def test_list_prints_one_row_per_line_when_piped(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split("\t")[0]: line.split("\t") for line in lines if not line.startswith("#")}
    assert set(envs.task_names()) | set(ALGORITHMS) <= set(rows)  # whole names, one per line
    spread = rows["mpe/simple_spread"]
    assert "masac" in spread[-1] and spread[3] == "25"  # episode length column, algorithms last
    header = [line for line in lines if line.startswith("# task\t")]
    assert len(header) == 1 and len(header[0].split("\t")) == len(spread)


def test_list_json(capsys):
    assert cli.main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    tasks = {t["task"]: t for t in data["tasks"]}
    assert "mappo" in tasks["smax/3m"]["algorithms"] and tasks["smax/3m"]["action_masks"] is True
    assert {a["algo"] for a in data["algorithms"]} == set(ALGORITHMS)


def test_progress_is_one_line_per_evaluation_off_a_terminal(capsys):
    exp = SimpleNamespace(algo="ippo", task="mpe/simple_spread", num_seeds=2)
    console = Console(file=io.StringIO(), force_terminal=False)
    with ProgressReporter(exp, 300, console=console) as rep:
        rep.advance(0, None, None)  # a resumed run's start: no line
        rep.advance(100, -12.5, 1000.0)
        rep.advance(200, -10.25, 2000.0)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and console.file.getvalue() == ""
    assert err[1].startswith(
        "ippo on mpe/simple_spread x2 seeds: 200/300 env steps  return -10.25  2,000 steps/s"
    )


def test_progress_bar_on_a_terminal(capsys):
    exp = SimpleNamespace(algo="ippo", task="mpe/simple_spread", num_seeds=1)
    console = Console(file=io.StringIO(), force_terminal=True, width=150)
    with ProgressReporter(exp, 300, console=console) as rep:
        rep.advance(100, -12.5, 1000.0)
    assert "return -12.50" in console.file.getvalue() and capsys.readouterr().err == ""
