"""Behaviour check for changes to shared machinery: train a fixed set of cheap configurations (every
learner family: model-free off-policy, model-based, tabular, continuous games, on-policy with and without
lookahead, the world-model learners, a PettingZoo host run)
and write every metric of every evaluation to ``<out>/<name>.csv``. Run it before and after a change
and compare with ``--compare BEFORE AFTER``: the table lists, per configuration, the largest absolute
difference of any metric and the metric it is in.

    python -m benchmarks.regression --out /tmp/before
    python -m benchmarks.regression --out /tmp/after
    python -m benchmarks.regression --compare /tmp/before /tmp/after > benchmarks/regression.md
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import sys
import tempfile
from pathlib import Path

import marlow
from marlow.devices import configure_host_devices

COMMON = ["progress=false", "eval_episodes=4", "num_seeds=2"]
SMALL_NET = ["hidden=16,16", "batch_size=64"]
WORLD = [
    "model_warmup_steps=200",
    "model_train_every=200",
    "model_num_members=2",
    "model_num_elites=1",
    "model_hidden=16,16",
    "model_weight_decay=0.0001",
    "model_steps_per_epoch=4",
    "model_max_epochs=2",
    "model_buffer_size=512",
    "rollout_batch=16",
    "rollout_start=0",
    "rollout_end=2",
    "rollout_max=3",
    "epoch_steps=100",
    "opp_hidden=16",
    "opp_max_epochs=2",
    "opp_window=128",
    "updates_per_step=4",
]
SCHEDULE = ["total_steps=600", "eval_every=200", "num_envs=2", "update_every=50", "warmup_steps=100"]
CONFIGS: dict[str, list[str]] = {
    "masac_spread": ["algo=masac", "task=mpe/simple_spread", *SCHEDULE, *SMALL_NET],
    "maddpg_tag": ["algo=maddpg", "task=mpe/simple_tag", *SCHEDULE, *SMALL_NET],
    "aorpo_spread": ["algo=aorpo", "task=mpe/simple_spread", *SCHEDULE, *SMALL_NET, *WORLD],
    "rommeo_ac_quadratics": ["algo=rommeo_ac", "task=games/max_of_two_quadratics", *SCHEDULE, *SMALL_NET],
    "rommeo_q_climbing": ["algo=rommeo_q", "task=games/climbing", *SCHEDULE],
    "iql_climbing": ["algo=iql", "task=games/climbing", *SCHEDULE],
    "masac_pettingzoo": ["algo=masac", "task=pettingzoo/mpe2_simple_spread", *SCHEDULE, *SMALL_NET],
}
QUADRATICS = ["task=games/max_of_two_quadratics", *SCHEDULE, *SMALL_NET]
PARTICLES = ["value_particles=4", "kernel_particles=4"]
CONFIGS |= {  # the continuous-game baselines of ROMMEO's Fig. 2 (the off-policy scaffold's other users)
    "ddpg_quadratics": ["algo=ddpg", *QUADRATICS],
    "ddpg_om_quadratics": ["algo=ddpg_om", *QUADRATICS, "om_window=64"],
    "masql_quadratics": ["algo=masql", *QUADRATICS, *PARTICLES, "greedy_particles=4"],
    "pr2_ac_quadratics": ["algo=pr2_ac", *QUADRATICS, *PARTICLES],
    "masac_quadratics": ["algo=masac", *QUADRATICS],
}
ON_POLICY = ["total_steps=600", "eval_every=200", "num_envs=2", "rollout_steps=25", "epochs=2"]
ON_POLICY += ["num_minibatches=2", "hidden=16,16"]
LOOKAHEAD = ["la_warmup_steps=100", "la_rollouts=4", "la_episode_length=3", "la_epochs=1"]
LOOKAHEAD += ["la_minibatches=1", "la_start_window=16", "diag_samples=8", "model_hidden=8,8"]
LOOKAHEAD += ["model_batch_size=8", "model_steps_per_epoch=2", "model_max_epochs=1", "model_term_steps=2"]
LOOKAHEAD += ["model_buffer_size=64"]
WORLD_MODEL = ["total_steps=600", "eval_every=200", "num_envs=2", "preset=small", "embed=8"]
WORLD_MODEL += ["model_width=8", "deter=8", "n_categoricals=2", "n_classes=4", "attn_heads=2"]
WORLD_MODEL += ["actor_hidden=8", "critic_hidden=8", "seq_len=5", "model_batch=4", "agent_batch=2"]
WORLD_MODEL += ["horizon=3", "model_updates=1", "agent_updates=1", "ppo_epochs=1", "ppo_minibatch=16"]
WORLD_MODEL += ["warmup_steps=100", "train_every=100", "buffer_size=200"]
MAG = ["plan_candidates=2", "plan_horizon=2", "rm_hidden=8", "rm_updates=1", "rm_batch=2"]
CONFIGS |= {  # the on-policy and world-model families
    "ippo_smax": ["algo=ippo", "task=smax/3m", *ON_POLICY],
    "mappo_spread": ["algo=mappo", "task=mpe/simple_spread", *ON_POLICY],
    "happo_schedule": ["algo=happo", "task=mpe/simple_schedule", *ON_POLICY],
    "la_happo_toy": ["algo=la_happo", "task=games/lookahead_toy", *ON_POLICY, *LOOKAHEAD],
    "mamba_climbing": ["algo=mamba", "task=games/climbing", *WORLD_MODEL],
    "mag_smax": ["algo=mag", "task=smax/3m", *WORLD_MODEL, *MAG],
}
SKIP = {"wall_time", "steps_per_s"}


def run_all(out: Path, names: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            run = marlow.train(
                run_config=marlow.config(args=[*CONFIGS[name], *COMMON, f"run_dir={Path(tmp) / 'run'}"])
            )
            shutil.copy(run / "metrics.csv", out / f"{name}.csv")
        print(f"{name}: done", file=sys.stderr)


def read(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


AGGREGATES = ("eval/team_return", "train/return")  # means over agents / episodes: summation order only


def diff(a: Path, b: Path, skip=()) -> tuple[float, str, int]:
    ra, rb = read(a), read(b)
    if len(ra) != len(rb):
        return math.inf, f"rows {len(ra)} vs {len(rb)}", 0
    worst, where, n = 0.0, "", 0
    for x, y in zip(ra, rb, strict=True):
        for k in x:
            if k in SKIP or k not in y or k.startswith(tuple(skip)):
                continue
            try:
                fx, fy = float(x[k]), float(y[k])
            except ValueError:
                continue
            n += 1
            if math.isnan(fx) and math.isnan(fy):
                continue
            d = abs(fx - fy) if not (math.isnan(fx) or math.isnan(fy)) else math.inf
            if d > worst:
                worst, where = d, k
    missing = sorted(set(ra[0]) ^ set(rb[0]))
    if missing:
        where += f" (columns only in one: {', '.join(missing)})"
    return worst, where, n


def compare(before: Path, after: Path) -> None:
    print(
        "| configuration | metrics compared | largest absolute difference | in | largest difference outside "
        "the team-mean returns |"
    )
    print("|---|---|---|---|---|")
    for name in CONFIGS:
        if (before / f"{name}.csv").exists() and (after / f"{name}.csv").exists():
            d, where, n = diff(before / f"{name}.csv", after / f"{name}.csv")
            d2, where2, _ = diff(before / f"{name}.csv", after / f"{name}.csv", skip=AGGREGATES)
            inner = f"{d2:.3g} ({where2})" if where2 else f"{d2:.3g}"
            print(f"| {name} | {n} | {d:.3g} | {where or '-'} | {inner} |")


def main() -> None:
    configure_host_devices()  # one XLA host device per core, before JAX starts
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path)
    p.add_argument("--only", nargs="*", default=list(CONFIGS))
    p.add_argument("--compare", nargs=2, type=Path)
    args = p.parse_args()
    if args.compare:
        compare(*args.compare)
    else:
        run_all(args.out, args.only)


if __name__ == "__main__":
    main()
