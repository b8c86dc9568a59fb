"""Learning checks on cheap tasks, with thresholds a broken learner cannot reach.

- Max of Two Quadratics (ROMMEO differential game): a uniformly random policy scores about -172 per
  25-step episode and the initial greedy policy about -100 to -140; the local optimum (-5,-5) gives 0.
  MASAC must reach at least the local optimum (within 0.1 per step).
- simple_spread: a uniformly random policy scores -80.8 (1000 episodes); the initial greedy policy
  -100 to -150. A short MASAC/MADDPG run must beat -65 on the mean of its last two evaluations; a
  200k-step IPPO run -76 (greedy) and -74 (its stochastic training episodes, over 800 per chunk) on the
  mean of its last three. MAPPO (82k steps) and HAPPO (120k steps) at their default settings must beat
  -68 and -70 on the mean of their last two greedy evaluations and on their last chunk's training
  episodes (at 200k steps both reach about -57).
- games/lookahead_toy (Teammate Lookahead Sec. 4.1, R = a0^3 - 2 (a0 - a1)^2 + 3 a0 on [0, 1]^2): the
  initial policy means are near 0 (R about 0); MAPPO's greedy joint action must reach the optimum's basin,
  R > 3.9, which needs a0 > 0.97 and |a0 - a1| < 0.23 (the optimum (1, 1) gives 4; (0.9, 0.9) gives 3.43).

The longer runs train one seed (a learner that does not learn misses the threshold on any seed, and a
second seed doubles the run); the cheap lookahead toy run trains two. Seed spreads are measured in
benchmarks/ (onpolicy/learning.md, rommeo/, aorpo/).
"""

import numpy as np
import pytest

from marlow.analysis.evaluate import random_policy_return
from marlow.experiment.config import resolve
from marlow.runtime.loggers import read_metrics
from marlow.runtime.runner import train


def _final_returns(run_dir, last=2):
    return {s: float(np.mean(c["eval/team_return"][-last:])) for s, c in read_metrics(run_dir).items()}


def test_masac_reaches_at_least_local_optimum_on_max_of_two_quadratics(tmp_path):
    cfg = resolve(
        [
            "algo=masac",
            "task=games/max_of_two_quadratics",
            "total_steps=1500",
            "progress=false",
            f"run_dir={tmp_path / 'run'}",
        ]
    )
    finals = _final_returns(train(cfg), last=1)
    assert all(v >= -2.5 for v in finals.values()), finals


@pytest.mark.parametrize("algo", ["masac", "maddpg"])
def test_beats_random_on_simple_spread(tmp_path, algo):
    cfg = resolve(
        [
            f"algo={algo}",
            "task=mpe/simple_spread",
            "total_steps=60000",
            "warmup_steps=10000",
            "progress=false",
            f"run_dir={tmp_path / 'run'}",
        ]
    )
    finals = _final_returns(train(cfg))
    assert all(v > -65.0 for v in finals.values()), finals


def test_ippo_beats_random_on_simple_spread(tmp_path):
    """IPPO at JaxMARL's settings but a higher learning rate (2e-3, to learn within 200k steps): a broken
    learner stays at the random policy's -80.8 or below (the initial greedy policy is at -83 to -102)."""
    cfg = resolve(
        [
            "algo=ippo",
            "task=mpe/simple_spread",
            "total_steps=204800",
            "lr=0.002",
            "eval_episodes=32",
            "progress=false",
            f"run_dir={tmp_path / 'run'}",
        ]
    )
    run = train(cfg)
    finals = _final_returns(run, last=3)
    assert all(v > -76.0 for v in finals.values()), finals
    train_ret = {s: float(np.mean(c["train/return"][-3:])) for s, c in read_metrics(run).items()}
    assert all(v > -74.0 for v in train_ret.values()), train_ret


@pytest.mark.parametrize(("algo", "steps", "bound"), [("mappo", 81920, -68.0), ("happo", 120000, -70.0)])
def test_mappo_happo_beat_random_on_simple_spread(tmp_path, algo, steps, bound):
    every = 20480 if algo == "mappo" else 20000  # 10 iterations of 16 x 128 / 5 of 20 x 200 steps
    cfg = resolve(
        [
            f"algo={algo}",
            "task=mpe/simple_spread",
            f"total_steps={steps}",
            f"eval_every={every}",
            "eval_episodes=32",
            "progress=false",
            f"run_dir={tmp_path / 'run'}",
        ]
    )
    run = train(cfg)
    finals = _final_returns(run)
    assert all(v > bound for v in finals.values()), finals
    train_ret = {s: float(c["train/return"][-1]) for s, c in read_metrics(run).items()}
    assert all(v > bound for v in train_ret.values()), train_ret


def test_mappo_reaches_the_optimum_basin_of_the_lookahead_toy(tmp_path):
    cfg = resolve(
        [
            "algo=mappo",
            "task=games/lookahead_toy",
            "num_envs=16",
            "rollout_steps=8",  # one-shot episodes: 128 per iteration
            "eval_every=2048",
            "total_steps=6144",
            "num_seeds=2",
            "eval_episodes=4",
            "progress=false",
            f"run_dir={tmp_path / 'run'}",
        ]
    )
    metrics = read_metrics(train(cfg))
    for m in metrics.values():
        assert m["eval/team_return"][0] < 1.0  # the start is far from the optimum
        assert m["eval/team_return"][-1] > 3.9
        assert m["eval/return/agent_0"][-1] > 3.9 and m["eval/return/agent_1"][-1] > 3.9  # shared R


def test_random_policy_baseline_value():
    # the number the README and the thresholds above quote
    assert random_policy_return("mpe/simple_spread", episodes=1000) == pytest.approx(-80.8, abs=0.5)
