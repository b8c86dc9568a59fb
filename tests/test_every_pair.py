"""Every algorithm on every registered JAX task it fits, through the real runner for one tiny chunk (the
BenchMARL-style check that no algorithm/task pair is broken: spaces, teams, auto-reset, buffer,
updates, evaluation, logging); every other pair must be refused with a one-line error. PettingZoo tasks
go through the host loop (tests/test_host_loop.py)."""

import numpy as np
import pytest

from marlow import envs
from marlow.algos import ALGORITHMS, get_algo, unsupported
from marlow.errors import ConfigError
from marlow.experiment.config import field_types, resolve
from marlow.experiment.logging import read_metrics
from marlow.experiment.runner import train

JAX_TASKS = [t for t in envs.task_names() if envs.make(t).is_jax]
PAIRS = [(a, t) for a in ALGORITHMS for t in JAX_TASKS if unsupported(get_algo(a), envs.make(t).spec) is None]
REFUSED = [(a, t) for a in ALGORITHMS for t in JAX_TASKS if (a, t) not in PAIRS]
NETWORK = ["hidden=8,8"]  # only for algorithms with networks
TINY = [
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


def test_every_algorithm_fits_some_task():
    assert {a for a, _ in PAIRS} == set(ALGORITHMS)


@pytest.mark.parametrize(("algo", "task"), REFUSED)
def test_unfitting_pair_is_refused(tmp_path, algo, task):
    with pytest.raises(ConfigError, match=algo):
        train(resolve([f"algo={algo}", f"task={task}", f"run_dir={tmp_path / 'run'}", *TINY]))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("algo", "task"), PAIRS)
def test_algorithm_trains_on_task(tmp_path, algo, task):
    spec = envs.make(task).spec
    net = NETWORK if "hidden" in field_types(get_algo(algo).Config) else []
    run = train(resolve([f"algo={algo}", f"task={task}", f"run_dir={tmp_path / 'run'}", *TINY, *net]))
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
