"""Learning checks on cheap tasks, with thresholds a broken learner cannot reach.

- Max of Two Quadratics (ROMMEO differential game): a uniformly random policy scores about -172 per
  25-step episode and the initial greedy policy about -100 to -140; the local optimum (-5,-5) gives 0.
  MASAC must reach at least the local optimum (within 0.1 per step) on every seed.
- simple_spread: a uniformly random policy scores -80.8 (1000 episodes); the initial greedy policy
  -100 to -150. A short MASAC/MADDPG run must beat -65 on the mean of its last two evaluations; a
  200k-step IPPO run -76 (greedy) and -74 (its stochastic training episodes, over 800 per chunk) on the
  mean of its last three.
"""

import numpy as np
import pytest

from marlow.experiment.config import resolve
from marlow.experiment.evaluate import random_policy_return
from marlow.experiment.logging import read_metrics
from marlow.experiment.runner import train


def _final_returns(run_dir, last=2):
    return {s: float(np.mean(c["eval/team_return"][-last:])) for s, c in read_metrics(run_dir).items()}


def test_masac_reaches_at_least_local_optimum_on_max_of_two_quadratics(tmp_path):
    cfg = resolve(
        [
            "algo=masac",
            "task=games/max_of_two_quadratics",
            "total_steps=1500",
            "num_seeds=2",
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
            "num_seeds=2",
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


def test_random_policy_baseline_value():
    # the number the README and the thresholds above quote
    assert random_policy_return("mpe/simple_spread", episodes=1000) == pytest.approx(-80.8, abs=0.5)
