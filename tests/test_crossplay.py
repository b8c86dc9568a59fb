"""Cross-play evaluation (marlow.analysis.crossplay, AORPO Appendix G.3): one run's policies play the agent
team, another run's the adversary team.

The run directories are written as ``marlow train`` writes them (``prepare_run_dir``'s config.yaml and a
``checkpoint.save`` of the seed-vmapped runner state) but hold an untrained state, which keeps the file
fast (compiling a training chunk takes most of a minute on 2 busy cores; cross-play only reads the
policies). Run A is MASAC with random actor networks (2 seeds); run C is MADDPG (another state type)
whose actors output a constant greedy action per agent (2 seeds), C1 the same with one seed.

Returns are compared to float32 rounding (rtol 1e-6, atol 1e-5): XLA fuses the env step differently in
different programs, which moves the last bits of some returns; any different action or key changes a return
by orders of magnitude more (see ``test_tolerance_sees_one_changed_action``).
"""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from marlow.analysis.crossplay import crossplay
from marlow.analysis.evaluate import eval_keys, evaluate_seeds, load_jax_run
from marlow.cli import main
from marlow.errors import CheckpointError, ConfigError
from marlow.experiment.config import resolve
from marlow.experiment.loop import Loop, evaluate_policy
from marlow.runtime import checkpoint
from marlow.runtime.runner import CONFIG_NAME, build, prepare_run_dir, seed_keys

TASK = "mpe/simple_push"  # adversary_0 (team "adversary"), agent_0 (team "agent"), Discrete(5) each
SMALL = ["hidden=8,8", "batch_size=16", "num_envs=2", "update_every=50", "total_steps=100", "eval_every=100"]
CONST = {"adversary_0": 3, "agent_0": 2}  # run C's greedy actions: adversary -y, agent +x
EPISODES, SEED = 3, 7
RTOL, ATOL = 1e-6, 1e-5  # float32 rounding of returns summed over 25 steps


def write_run(run_dir, algo, num_seeds, const=None):
    """A run directory with an untrained state: the runner's state shapes with zeros (no compilation)
    and random actor networks, or with ``const``, zero actors whose output bias is 1 on ``const[agent]``
    (so the greedy action is that constant)."""
    cfg = resolve([f"algo={algo}", f"task={TASK}", f"num_seeds={num_seeds}", f"run_dir={run_dir}", *SMALL])
    run = build(cfg)
    cfg, env = run.cfg, run.env
    prepare_run_dir(run, run_dir)
    state = checkpoint.template(jax.vmap(Loop(env, run.learner, cfg.experiment).init), seed_keys(cfg))
    rng = np.random.default_rng(0)
    for a, params in state.learner.algo.actor.items():
        for layer in params["params"].values():  # hidden 8, 8 -> Dense_0, Dense_1, output Dense_2
            if const is None:
                layer["kernel"][:] = rng.normal(size=layer["kernel"].shape) / np.sqrt(
                    layer["kernel"].shape[1]
                )
                layer["bias"][:] = rng.normal(size=layer["bias"].shape) * 0.1
        if const is not None:
            params["params"]["Dense_2"]["bias"][:, const[a]] = 1.0
    checkpoint.save(run_dir, state, {"chunk": 1, "env_steps": 100, "wall_time": 0.0})
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("crossplay")
    return {
        "A": write_run(root / "masac", "masac", 2),
        "C": write_run(root / "const", "maddpg", 2, CONST),
        "C1": write_run(root / "const1", "maddpg", 1, CONST),
    }


@pytest.fixture(scope="module")
def run_a(runs):
    cfg = resolve(["algo=masac", f"task={TASK}", "num_seeds=2", *SMALL])
    run = build(cfg)
    rs, _ = load_jax_run(runs["A"], run)
    return run.env, run.algo, rs.learner.algo


@pytest.fixture(scope="module")
def alone(run_a):
    """Run A evaluated as ``marlow eval`` does (``evaluate_seeds``: its 2 seeds, keys from SEED)."""
    env, algo, states = run_a
    return evaluate_seeds(env, lambda s, o, k: algo.act(s, o, k, False), states, EPISODES, SEED)


@pytest.fixture(scope="module")
def direct(run_a):
    """Run A's seeds played directly with ``evaluate_policy`` (no cross-play code): each agent takes A's
    greedy action where its flag is 1 and run C's constant otherwise. The flag sets (A alone, A's agent vs
    C's adversary, C's agent vs A's adversary, and A alone with agent_0's action changed at step 3 of
    episode 0) are batched with the seeds, each with the 2 seeds' eval keys, so one program plays all."""
    env, algo, states = run_a
    # (agent_0 plays A, adversary_0 plays A, agent_0's first action(s) in episode 0 changed)
    flags = {"alone": (1, 1, 0), "A_vs_C": (1, 0, 0), "C_vs_A": (0, 1, 0), "changed": (1, 1, 1)}
    n = len(flags)
    states = jax.tree.map(lambda x: jnp.concatenate([x] * n), states)
    f = jnp.repeat(jnp.array(list(flags.values())), 2, axis=0)  # [n * 2 seeds, 3]
    keys = jnp.concatenate([eval_keys(SEED, 2)] * n)

    def one(state, flag, key):
        def policy(obs, k):
            acts = algo.act(state, obs, k, False)
            out = {
                a: jnp.where(flag[i] > 0, acts[a], CONST[a]) for i, a in enumerate(("agent_0", "adversary_0"))
            }
            # agent_0 is still at rest (own velocity = its first 2 observations) at the first step
            first = jnp.all(obs["agent_0"][:, :2] == 0, axis=-1) & (jnp.arange(EPISODES) == 0) & (flag[2] > 0)
            out["agent_0"] = jnp.where(first, (out["agent_0"] + 1) % 5, out["agent_0"])
            return out

        return evaluate_policy(env, policy, key, EPISODES)

    res = jax.device_get(jax.jit(jax.vmap(one))(states, f, keys))
    return {m: {k: np.asarray(v)[2 * i : 2 * i + 2] for k, v in res.items()} for i, m in enumerate(flags)}


def _check(res, ref):
    np.testing.assert_allclose(res.agent_return, ref["eval/team_return/agent"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(res.adversary_return, ref["eval/team_return/adversary"], rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(res.score, res.agent_return - res.adversary_return)
    # simple_push has one agent per team: the per-episode team returns are the agents' returns
    assert res.episode_agent_return.shape == res.episode_adversary_return.shape == (2, EPISODES)
    np.testing.assert_allclose(res.episode_agent_return.mean(1), res.agent_return, rtol=1e-5)
    np.testing.assert_allclose(res.episode_score.mean(1), res.score, rtol=1e-5, atol=1e-5)


def test_self_play_equals_playing_the_run_alone(runs, alone, direct):
    for k in ("eval/team_return/agent", "eval/team_return/adversary"):  # the direct rollout is A alone
        np.testing.assert_allclose(direct["alone"][k], alone[k], rtol=RTOL, atol=ATOL)
    res = crossplay(runs["A"], runs["A"], episodes=EPISODES, seed=SEED)
    assert (res.task, res.agent_algo, res.adversary_algo, res.episodes) == (TASK, "masac", "masac", EPISODES)
    _check(res, alone)  # `marlow eval`'s evaluation of the run


def test_tolerance_sees_one_changed_action(direct):
    """The comparisons' tolerance is far below the effect of changing agent_0's first action in one of
    the seed's 3 episodes."""
    for team in ("agent", "adversary"):
        x, y = direct["changed"][f"eval/team_return/{team}"], direct["alone"][f"eval/team_return/{team}"]
        assert np.all(np.abs(x - y) > 100 * (ATOL + RTOL * np.abs(y))), (x, y)


def test_teams_follow_their_runs(runs, direct):
    a_vs_c = crossplay(runs["A"], runs["C"], episodes=EPISODES, seed=SEED)  # A agents, C adversary
    c_vs_a = crossplay(runs["C"], runs["A"], episodes=EPISODES, seed=SEED)  # C agents, A adversary
    assert (a_vs_c.agent_algo, a_vs_c.adversary_algo) == ("masac", "maddpg")
    assert (c_vs_a.agent_algo, c_vs_a.adversary_algo) == ("maddpg", "masac")
    _check(a_vs_c, direct["A_vs_C"])
    _check(c_vs_a, direct["C_vs_A"])
    # the three pairings are different games
    for x, y in ((direct["A_vs_C"], direct["C_vs_A"]), (direct["A_vs_C"], direct["alone"])):
        assert not np.allclose(x["eval/team_return/agent"], y["eval/team_return/agent"], rtol=1e-3)


def test_cli_and_one_seed_run(runs, direct, capsys):
    """A one-seed run plays every seed of the other (through ``marlow crossplay``)."""
    assert main(["crossplay", str(runs["A"]), str(runs["C1"]), "episodes=3", "seed=7"]) == 0
    out = capsys.readouterr().out
    assert f"{TASK}: agents masac vs adversaries maddpg, 3 episodes x 2 seed pair(s)" in out
    ref = direct["A_vs_C"]
    want = ref["eval/team_return/agent"] - ref["eval/team_return/adversary"]
    assert f"score per seed pair: {want[0]:.3f}, {want[1]:.3f}" in out


def _copy(src, dst, **config):
    shutil.copytree(src, dst)
    cfg = yaml.safe_load((dst / CONFIG_NAME).read_text())
    cfg.update(config)
    (dst / CONFIG_NAME).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dst


def test_errors(runs, tmp_path):
    a = runs["A"]
    cases = [
        (ConfigError, "same task", (a, _copy(a, tmp_path / "tag", task="mpe/simple_tag"))),
        (
            ConfigError,
            "'agent' and an 'adversary' team; mpe/simple_spread has 1 team",
            2 * (_copy(a, tmp_path / "spread", task="mpe/simple_spread"),),
        ),
        (ConfigError, "has 2 seeds and .* has 3", (a, _copy(a, tmp_path / "three", num_seeds=3))),
        (CheckpointError, "no checkpoint", (a, _copy(a, tmp_path / "missing"))),
        (CheckpointError, "corrupted", (_copy(a, tmp_path / "corrupt"), a)),
        (CheckpointError, "not a run directory", (a, tmp_path / "nope")),
    ]
    (tmp_path / "missing" / checkpoint.CKPT_NAME).unlink()
    (tmp_path / "corrupt" / checkpoint.CKPT_NAME).write_bytes(b"\x93not msgpack at all")
    for err, match, dirs in cases:
        with pytest.raises(err, match=match) as e:
            crossplay(*dirs)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="episode"):
        crossplay(a, a, episodes=0)
    assert main(["crossplay", str(a), str(tmp_path / "tag")]) == 2  # the CLI: one line, exit code 2
