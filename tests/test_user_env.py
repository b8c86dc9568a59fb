"""A user's own JAX env, defined in a file outside the package, trained from the CLI (`task=jax:<file>`)
and from the Python API (`marlow.train`); bad user tasks are one-line errors."""

from __future__ import annotations

import sys
import textwrap
import types

import jax
import numpy as np
import pytest
from gymnasium import spaces as gs
from pettingzoo import ParallelEnv

import marlow
from marlow import cli, make_env
from marlow.errors import ConfigError
from marlow.runtime.report import read_metrics

ENV_FILE = textwrap.dedent(
    '''
    """Two agents score 1 each step both pick action 2 (a user's env, outside marlow)."""
    import jax.numpy as jnp
    from flax import struct

    from marlow.envs import EnvSpec, MultiAgentEnv
    from marlow.envs.spaces import Box, Discrete

    AGENTS = ("a0", "a1")


    @struct.dataclass
    class State:
        t: jnp.ndarray


    class Coordinate(MultiAgentEnv):
        def __init__(self, length: int = 5):
            self.spec = EnvSpec(
                name="jax:coordinate", agents=AGENTS, obs_spaces=(Box(0.0, 1.0, (1,)),) * 2,
                act_spaces=(Discrete(3),) * 2, teams=(("team", AGENTS),), episode_length=length,
                shared_reward=True,
            )

        def get_obs(self, state):
            return {a: jnp.ones((1,), jnp.float32) for a in AGENTS}

        def reset(self, key):
            state = State(t=jnp.zeros((), jnp.int32))
            return self.get_obs(state), state

        def step_env(self, key, state, actions):
            r = jnp.where((actions["a0"] == 2) & (actions["a1"] == 2), 1.0, 0.0).astype(jnp.float32)
            state = State(t=state.t + 1)
            done = state.t >= self.spec.episode_length
            dones = {"a0": done, "a1": done, "__all__": done}
            return self.get_obs(state), state, {a: r for a in AGENTS}, dones, {"truncated": done}


    def make_env(length: int = 5):
        return Coordinate(length)


    def not_an_env():
        return object()
    '''
)
TINY = dict(
    total_steps=2000,
    eval_every=1000,
    num_envs=4,
    rollout_steps=25,
    epochs=1,
    num_minibatches=2,
    eval_episodes=2,
)


@pytest.fixture()
def env_file(tmp_path):
    path = tmp_path / "elsewhere" / "my_env.py"
    path.parent.mkdir()
    path.write_text(ENV_FILE)
    return path


def test_cli_trains_a_jax_env_from_a_file(env_file, tmp_path, capsys):
    run = tmp_path / "cli_run"
    args = [f"{k}={v}" for k, v in TINY.items()]
    rc = cli.main(
        ["train", "algo=ippo", f"task=jax:{env_file}:make_env", "task.length=4", *args, f"run_dir={run}"]
    )
    assert rc == 0, capsys.readouterr().err
    m = read_metrics(run)[0]
    assert list(m["env_steps"])[-1] == 2000
    assert all(0.0 <= r <= 4.0 for r in m["eval/team_return"])  # 4 steps, at most 1 per step


def test_python_api_trains_the_same_env_and_matches_the_cli(env_file, tmp_path):
    cli_run = tmp_path / "cli_run"
    assert cli.main(["train", "algo=ippo", f"task=jax:{env_file}", *[f"{k}={v}" for k, v in TINY.items()],
                     f"run_dir={cli_run}", "progress=false"]) == 0  # fmt: skip
    api_run = marlow.train("ippo", f"jax:{env_file}", run_dir=str(tmp_path / "api_run"), **TINY)
    assert (api_run / "report.md").is_file()
    a, b = read_metrics(api_run)[0], read_metrics(cli_run)[0]
    assert list(a["eval/team_return"]) == list(b["eval/team_return"])  # same config, same seeds
    res = marlow.evaluate(api_run, episodes=2)
    assert 0.0 <= res["team_return"] <= 5.0 and len(res["team_return_per_seed"]) == 1  # 5 steps


def test_python_api_validates_like_the_cli(env_file):
    with pytest.raises(ConfigError, match="'gamma' = 2.0 is out of range"):
        marlow.train("ippo", f"jax:{env_file}", gamma=2.0)
    with pytest.raises(ConfigError, match="unknown config key 'gamme'"):
        marlow.config("ippo", gamme=0.9)
    assert marlow.config("mappo", "smax/3m", hidden=[32, 32], anneal_lr=False).algo.hidden == (32, 32)


@pytest.mark.parametrize(
    ("task", "expect"),
    [
        ("jax:{file}:not_an_env", "returned object, not a marlow.envs.MultiAgentEnv"),
        ("jax:{file}:missing", "has no attribute 'missing'"),
        ("jax:{dir}/nope.py", "no such file"),
        ("jax:no_such_module_xyz", "cannot import module 'no_such_module_xyz'"),
        ("jax:", "bad JAX task"),
    ],
)
def test_bad_user_tasks_are_one_line_errors(env_file, task, expect, capsys):
    task = task.format(file=env_file, dir=env_file.parent)
    assert cli.main(["train", "algo=ippo", f"task={task}", "total_steps=100"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expect in err, err


# ---- a user env's outputs are checked once when it is built ------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ('{"truncated": done}', "{}", "step_env() infos has no 'truncated' entry: return infos['truncated']"),
        ('{"truncated": done}', '{"truncated": 0}', "infos['truncated'] is int32[]: return a bool scalar"),
        ("{a: r for a in AGENTS}", '{"a0": r}', "step_env() rewards has no entry 'a1'"),
        (', "__all__": done}', "}", "step_env() dones has no entry '__all__'"),
        ("jnp.ones((1,), jnp.float32)", "jnp.ones((2,), jnp.float32)", "reset() obs['a0'] has shape (2,)"),
        (', {"truncated": done}\n', "\n", "step_env() does not return 5 values"),
        ("self.spec = EnvSpec(", "self.space = EnvSpec(", "user env has no spec"),
    ],
)
def test_user_env_outputs_are_checked_when_it_is_built(tmp_path, capsys, old, new, expect):
    assert old in ENV_FILE
    path = tmp_path / "broken_env.py"
    path.write_text(ENV_FILE.replace(old, new))
    assert cli.main(["train", "algo=ippo", f"task=jax:{path}", "total_steps=100"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expect in err, err


JAXMARL_STYLE = (
    ENV_FILE.replace(
        "    def __init__(self, length: int = 5):\n",
        "    def __init__(self, length: int = 5, names=AGENTS):\n"
        "        self.agents = list(names)  # as JaxMARL envs do\n"
        "        self.num_agents = len(self.agents)\n",
    )
    .replace("for a in AGENTS}", "for a in self.agents}")
    .replace("def make_env(length: int = 5):\n    return Coordinate(length)", "make_env = Coordinate")
)


def test_a_jaxmarl_style_env_may_assign_agents(tmp_path):
    """JaxMARL envs set ``self.agents`` / ``self.num_agents`` in ``__init__`` (marlow derives both from the
    spec: assigning them was an AttributeError); allowed when they agree with the spec."""
    assert JAXMARL_STYLE.count("self.agents") == 4
    path = tmp_path / "jaxmarl_style.py"
    path.write_text(JAXMARL_STYLE)
    env = marlow.make_env(f"jax:{path}")
    assert env.agents == ["a0", "a1"] and env.num_agents == 2
    obs, state = env.reset(jax.random.PRNGKey(0))
    _, _, rewards, _, _ = jax.jit(env.step)(jax.random.PRNGKey(1), state, {"a0": 2, "a1": 2})
    assert float(rewards["a0"]) == 1.0
    with pytest.raises(ConfigError, match=r"user env sets self.agents = \['x', 'y'\]: its spec says"):
        marlow.make_env(f"jax:{path}", names=("x", "y"))


class OldApiEnv(ParallelEnv):
    """Two agents, 2-step episodes; ``api`` breaks PettingZoo's Parallel API: ``"four"`` returns gym's old
    four step values, ``"no_truncations"`` leaves the truncations empty."""

    metadata = {"name": "old_api"}
    max_cycles = 2

    def __init__(self, api: str = "ok"):
        self.possible_agents, self.api = ["a_0", "a_1"], api

    def observation_space(self, agent):
        return gs.Box(-1, 1, (3,))

    def action_space(self, agent):
        return gs.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        return {a: np.zeros(3) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        obs, rew = {a: np.zeros(3) for a in self.agents}, dict.fromkeys(self.agents, 1.0)
        done, infos = dict.fromkeys(self.agents, False), {a: {} for a in self.agents}
        if self.api == "four":
            return obs, rew, done, infos
        return obs, rew, done, {} if self.api == "no_truncations" else dict(done), infos


@pytest.mark.parametrize(
    ("api", "expect"),
    [
        ("four", "step() does not return 5 values: return (observations, rewards, terminations, truncations"),
        ("no_truncations", "step() truncations has no entry for 'a_0': return one per agent that acted so"),
    ],
)
def test_user_pettingzoo_env_outputs_are_checked_when_it_is_built(monkeypatch, api, expect):
    mod = types.ModuleType("marlow_old_api_module")
    mod.parallel_env = OldApiEnv
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    assert make_env(f"pettingzoo:{mod.__name__}").spec.episode_length == 2  # the good one builds
    with pytest.raises(ConfigError) as err:
        make_env(f"pettingzoo:{mod.__name__}", api=api)
    assert len(str(err.value).splitlines()) == 1 and expect in str(err.value), str(err.value)
