"""Every algorithm on every registered JAX task it fits, through the real runner for one tiny chunk (the
BenchMARL-style check that no algorithm/task pair is broken: spaces, teams, auto-reset, buffer,
updates, evaluation, logging); every other pair must be refused with a one-line error. PettingZoo tasks
go through the host loop (tests/test_host_loop.py).

The model-based algorithms (AORPO, AORDPG) compile world-model training, opponent fits and rollouts for
every task (about a minute each on 2 cores), so CI trains them in tests/test_aorpo.py instead: AORPO
through the runner on cooperative navigation, learning on Box actions (games/climb, the runner's jitted
chunk), a competitive task (simple_tag), and AORDPG (which shares all of AORPO's world-model code) on
heterogeneous spaces; AORPO's pairs here (games/climb, heterogeneous multi-discrete agents on
mpe/simple_schedule, ...) run in make test-all. The model-free
network learners train in CI on one to three tasks each, CI_TASKS, chosen so that together they cover
every task (simple_spread: test_learning trains MASAC and MADDPG on it) and every layout
(heterogeneous discrete agents, multi-discrete agents, competitive teams, Box and Discrete games, SMAX's
action masks on two of its maps: SMAX_EXHAUSTIVE lists the others); the
tabular learners train on every task they fit (seconds each). test_learning, test_rommeo and the
algorithms' own tests train them further. The other pairs are marked ``exhaustive`` (``make test-all``
runs them)."""

import numpy as np
import pytest

from marlow import envs
from marlow.algos import ALGORITHMS, get_algo, learner, unsupported
from marlow.algos.learner import kind_of
from marlow.errors import ConfigError
from marlow.experiment.config import field_types, resolve
from marlow.runtime.loggers import read_metrics
from marlow.runtime.runner import train

SPECS = {t: env.spec for t in envs.task_names() if (env := envs.make(t)).is_jax}  # each env built once
JAX_TASKS = list(SPECS)
PAIRS = [(a, t) for a in ALGORITHMS for t in JAX_TASKS if unsupported(get_algo(a), SPECS[t]) is None]
REFUSED = [(a, t) for a in ALGORITHMS for t in JAX_TASKS if (a, t) not in PAIRS]
MODEL_TASKS = {  # model-based algorithms (with world-model keys) -> tasks CI trains them on
    # Teammate Lookahead: stacked HAPPO agents on Box actions; MAPPO's shared actors (tests/test_lookahead.py
    # covers the rest; heterogeneous MPE agents run in make test-all)
    "la_happo": {"games/lookahead_toy"},
    "la_mappo": {"games/lookahead_toy"},
}
MODEL_BASED = {a for a in ALGORITHMS if "model_hidden" in field_types(get_algo(a).Config)}
CI_TASKS = {  # model-free network learners -> tasks CI trains them on
    "masac": {"mpe/simple_adversary", "games/climbing"},
    "maddpg": {"mpe/simple_tag", "games/climb"},
    "ddpg": {"mpe/simple_push", "games/lookahead_toy"},
    "rommeo_ac": {"games/max_of_two_quadratics"},
    "ddpg_om": {"games/climb"},
    "masql": {"games/lookahead_toy"},
    "pr2_ac": {"games/max_of_two_quadratics"},
    # on-policy: heterogeneous multi-discrete agents, competitive teams, Box actions, action masks
    # (IPPO's MPE pairs run in make test-all: simple_schedule and simple_tag are trained by HAPPO and MADDPG)
    "ippo": {"games/lookahead_toy", "smax/3s_vs_4z"},
    # MAPPO: shared actors with masks, actors of different spaces, Box actions
    "mappo": {"smax/3m", "mpe/simple_speaker_listener", "games/max_of_two_quadratics"},
    # HAPPO: lax.switch over heterogeneous multi-discrete agents, stacked agents (its masks are the shared
    # Actors' code, trained on SMAX here by IPPO and MAPPO; happo on smax/2s3z runs in make test-all)
    "happo": {"mpe/simple_schedule", "games/lookahead_toy"},
    # TAPPO: MAPPO's update (trained above) with a recurrent teammate model on Box one-shot episodes
    # (tests/test_tappo.py trains it on simple_spread's multi-step episodes; its masks are MAPPO's actors')
    "tappo": {"games/lookahead_toy"},
    # world-model learners and their model-free counterpart on masked multi-step battles: MAG is MAMBA's
    # learner with planning (tests/test_mamba.py trains MAMBA through the runner on games/climbing)
    "mag": {"smax/3m"},
    "attention_ppo": {"smax/3m"},
    # Attention-PPO's learner with other networks (tests/test_comm.py trains them on games/climbing)
    "commnet": {"games/climbing"},
    "g2a": {"games/climbing"},
}
RUNNER_TESTED = {  # trained in CI there
    "aorpo": "tests/test_aorpo.py",
    "aordpg": "tests/test_aorpo.py",
    "mamba": "tests/test_mamba.py",
}
# SMAX maps that differ from the CI-trained ones (3m, 3s_vs_4z) only in unit counts and types (2s3z: two
# types): test_envs_smax checks their specs and steps a custom map; make test-all trains every algorithm
# on them
SMAX_EXHAUSTIVE = {"smax/2s3z", "smax/3s_vs_5z", "smax/3s5z_vs_3s6z", "smax/3s_vs_3z", "smax/6z_vs_24zg"}
# MA-MuJoCo in the jitted loop (the default simulator): Box-action cooperative tasks like the games above,
# with MuJoCo's physics from a host callback, which tests/test_envs_mamujoco_rollout.py compares with
# Gymnasium-Robotics step by step and trains IPPO on through the runner (two vmapped seeds); HAPPO and
# LA-HAPPO train on its host-side twin in tests/test_host_loop.py and tests/test_lookahead.py; make test-all
# trains every algorithm on every split here
MAMUJOCO_EXHAUSTIVE = {t for t in JAX_TASKS if t.startswith("mamujoco/")}
ON_POLICY = {a for a in ALGORITHMS if kind_of(get_algo(a)) == learner.ON_POLICY}
WORLD_MODEL = {a for a in ALGORITHMS if kind_of(get_algo(a)) == learner.WORLD_MODEL}


def in_ci(algo: str, task: str) -> bool:
    if algo in MODEL_BASED:
        return task in MODEL_TASKS.get(algo, ())
    if algo in CI_TASKS:
        return task in CI_TASKS[algo]
    return algo not in RUNNER_TESTED  # tabular learners


TRAIN_PAIRS = [(a, t) if in_ci(a, t) else pytest.param(a, t, marks=pytest.mark.exhaustive) for a, t in PAIRS]
# refusals build the env first (about half a second for an MA-MuJoCo split): CI refuses on one of them
REFUSED_PAIRS = [
    pytest.param(a, t, marks=pytest.mark.exhaustive)
    if t in MAMUJOCO_EXHAUSTIVE and t != "mamujoco/halfcheetah_2x3"
    else (a, t)
    for a, t in REFUSED
]
NETWORK = ["hidden=8,8"]  # only for algorithms with networks
# model-based algorithms: tiny world models that are trained and rolled out within the 100 steps
WORLD = [
    "model_warmup_steps=50",
    "model_train_every=50",
    "model_num_members=2",
    "model_num_elites=1",
    "model_hidden=8,8",
    "model_weight_decay=0.0001",
    "model_steps_per_epoch=2",
    "model_max_epochs=2",
    "model_buffer_size=64",
    "rollout_batch=4",
    "rollout_start=0",
    "rollout_end=1",
    "rollout_max=2",
    "opp_hidden=8",
    "opp_max_epochs=2",
    "opp_window=64",
]
# Teammate Lookahead: tiny team models, trained every iteration; the lookahead from the first iteration on
LOOKAHEAD = [
    "la_warmup_steps=50",
    "la_rollouts=4",
    "la_episode_length=3",
    "la_epochs=1",
    "la_minibatches=1",
    "la_start_window=16",
    "diag_samples=8",
    "model_hidden=8,8",
    "model_batch_size=8",
    "model_steps_per_epoch=2",
    "model_max_epochs=1",
    "model_term_steps=2",
    "model_buffer_size=64",
]
RUN = ["num_envs=2", "eval_every=100", "total_steps=100", "eval_episodes=2", "progress=false"]
TINY = ["batch_size=16", "update_every=50", "updates_per_step=1", "warmup_steps=50", *RUN]
# on-policy: two iterations of 25 steps x 2 envs, one epoch of two minibatches each
TINY_ON_POLICY = ["rollout_steps=25", "epochs=1", "num_minibatches=2", *RUN]
# world-model learners (MAMBA, MAG): a tiny model, one model update and one imagination round per learner
# step, learner steps every 50 env steps from the first; MAG plans over 2 candidates of 2 steps
TINY_WORLD_MODEL = [
    "preset=small",
    *("embed=8", "model_width=8", "deter=8", "n_categoricals=2", "n_classes=4", "attn_heads=2"),
    *("actor_hidden=8", "critic_hidden=8", "seq_len=5", "model_batch=4", "agent_batch=2", "horizon=3"),
    *("model_updates=1", "agent_updates=1", "ppo_epochs=1", "ppo_minibatch=16"),
    *("warmup_steps=50", "train_every=50", "buffer_size=100"),
    *RUN,
]
MAG = ["plan_candidates=2", "plan_horizon=2", "rm_hidden=8", "rm_updates=1", "rm_batch=2"]


def tiny_args(algo: str) -> list[str]:
    if algo in WORLD_MODEL:
        return TINY_WORLD_MODEL + (MAG if algo == "mag" else [])
    if algo in ON_POLICY:  # one critic minibatch of the 2 envs (MA-MuJoCo's LA-HAPPO defaults to 10 of 40)
        return TINY_ON_POLICY + (
            ["critic_minibatches=1"] if "critic_minibatches" in field_types(get_algo(algo).Config) else []
        )
    return TINY


def test_every_algorithm_fits_some_task():
    assert {a for a, _ in PAIRS} == set(ALGORITHMS)


def test_ci_trains_every_algorithm_and_every_task():
    """The CI subset still trains every algorithm (AORPO, AORDPG and MAMBA through their own tests' runs) and
    every task some algorithm fits (simple_spread through tests/test_learning.py), and names no pair that
    does not exist."""
    ci = [(a, t) for a, t in PAIRS if in_ci(a, t)]
    assert {a for a, _ in ci} == set(ALGORITHMS) - set(RUNNER_TESTED)
    elsewhere = {"mpe/simple_spread"} | SMAX_EXHAUSTIVE | MAMUJOCO_EXHAUSTIVE
    assert {t for _, t in ci} == {t for _, t in PAIRS} - elsewhere
    assert SMAX_EXHAUSTIVE <= {t for _, t in PAIRS} and len(MAMUJOCO_EXHAUSTIVE) == 6
    named = {(a, t) for table in (CI_TASKS, MODEL_TASKS) for a, ts in table.items() for t in ts}
    assert named <= set(PAIRS)


@pytest.mark.parametrize(("algo", "task"), REFUSED_PAIRS)
def test_unfitting_pair_is_refused(tmp_path, algo, task):
    cfg = resolve([f"algo={algo}", f"task={task}", f"run_dir={tmp_path / 'run'}", *tiny_args(algo)])
    with pytest.raises(ConfigError, match=f"algorithm '{algo}'"):
        train(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("algo", "task"), TRAIN_PAIRS)
def test_algorithm_trains_on_task(tmp_path, algo, task):
    spec = SPECS[task]
    types = field_types(get_algo(algo).Config)
    net = NETWORK if "hidden" in types else []
    world = WORLD if "rollout_batch" in types else []
    lookahead = LOOKAHEAD if "la_rounds" in types else []
    tiny = tiny_args(algo)
    run = train(
        resolve(
            [f"algo={algo}", f"task={task}", f"run_dir={tmp_path / 'run'}", *tiny, *net, *world, *lookahead]
        )
    )
    m = read_metrics(run)[0]
    assert list(m["env_steps"]) == [0, 100]
    # off-policy: two iterations of 50 steps, warm-up reached at the first; on-policy: two iterations of
    # 2 minibatches (HAPPO: of every agent, then its critic's epochs)
    cfg = resolve([f"algo={algo}", f"task={task}", *tiny])
    sequential = algo in ("happo", "la_happo")
    per_iter = 2 * (spec.num_agents if sequential else 1)
    if sequential:
        per_iter += cfg.algo.critic_epochs * cfg.algo.critic_minibatches
    if lookahead:  # one lookahead update per iteration (both iterations reach la_warmup_steps=50)
        per_iter += spec.num_agents + 1 if sequential else 1
        assert m["loss/la_active"][-1] == 1.0 and m["loss/la_collected"][-1] == 0.5
    assert m["updates"][-1] == (2 * per_iter if algo in ON_POLICY else 2)
    losses = [k for k in m if k.startswith("loss/")]
    assert losses and all(np.isfinite(m[k][-1]) for k in losses)
    assert np.isfinite(m["eval/team_return"]).all()
    assert m["agent_interactions"][-1] >= 100 / spec.episode_length  # every env step is a full interaction
    if world:  # the model was trained and used: rollouts were made, some with real teammates
        assert m["diag/rollout_k"][-1] >= 1 and m["diag/model_mse"][-1] > 0
    for agent in spec.agents:
        assert np.isfinite(m[f"eval/return/{agent}"]).all()
    if spec.competitive:
        for team, _ in spec.teams:
            assert np.isfinite(m[f"eval/team_return/{team}"]).all()
