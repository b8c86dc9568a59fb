"""Every algorithm on every registered JAX task, through the real runner for one tiny chunk (the
BenchMARL-style check that no algorithm/task pair is broken: spaces, teams, auto-reset, buffer,
updates, evaluation, logging). PettingZoo tasks go through the host loop (tests/test_host_loop.py)."""

import numpy as np
import pytest

from marlow import envs
from marlow.algos import ALGORITHMS, get_algo
from marlow.experiment.config import resolve
from marlow.experiment.logging import read_metrics
from marlow.experiment.runner import train

JAX_TASKS = [t for t in envs.task_names() if envs.make(t).is_jax]
TINY = [
    "hidden=8,8",
    "batch_size=16",
    "num_envs=2",
    "update_every=50",
    "updates_per_step=1",
    "warmup_steps=50",
    "eval_every=100",
    "total_steps=100",
    "eval_episodes=2",
    "progress=false",
]


@pytest.mark.parametrize("task", JAX_TASKS)
@pytest.mark.parametrize("algo", ALGORITHMS)
def test_algorithm_trains_on_task(tmp_path, algo, task):
    spec = envs.make(task).spec
    assert spec.action_kinds <= get_algo(algo).SUPPORTED_ACTIONS
    run = train(resolve([f"algo={algo}", f"task={task}", f"run_dir={tmp_path / 'run'}", *TINY]))
    m = read_metrics(run)[0]
    assert list(m["env_steps"]) == [0, 100]
    assert m["updates"][-1] == 2  # two iterations of 50 steps, warm-up reached at the first
    losses = [k for k in m if k.startswith("loss/")]
    assert losses and all(np.isfinite(m[k][-1]) for k in losses)
    assert np.isfinite(m["eval/team_return"]).all()
    for agent in spec.agents:
        assert np.isfinite(m[f"eval/return/{agent}"]).all()
    if spec.competitive:
        for team, _ in spec.teams:
            assert np.isfinite(m[f"eval/team_return/{team}"]).all()
