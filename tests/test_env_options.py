"""Task options are checked against the task's factory before it runs, for every family: an unknown one is
a one-line ConfigError naming it, the task's options and the closest (never silently ignored, never the
factory's own TypeError)."""

from __future__ import annotations

import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium import spaces as gs
from pettingzoo import ParallelEnv

import marlow
from marlow import cli
from marlow.envs import Box, Discrete, EnvSpec, MultiAgentEnv, make
from marlow.envs.registry import accepted_options
from marlow.errors import ConfigError

AGENTS = ("a0", "a1")


@pytest.mark.parametrize(
    ("task", "option", "closest", "listed"),
    [
        ("mpe/simple_spread", "num_agent", "num_agents", "local_ratio"),
        ("mpe/simple_spread", "episode_lenght", "episode_length", "num_landmarks"),
        ("mpe/simple_tag", "num_adversary", "num_adversaries", "num_obs"),
        ("mpe/simple_schedule", "sum_team_rewards", "sum_team_reward", "episode_length"),
        ("games/climbing", "cc_payof", "cc_payoff", "one_shot"),
        ("games/climb", "transitions", "transition", "agent1_coef"),
        ("smax/3m", "episode_len", "episode_length", "episode_length"),
        ("pettingzoo/mpe2_simple_spread", "n", "N", "max_cycles"),
        ("mamujoco/halfcheetah_2x3", "ctrl_cost_weigth", "ctrl_cost_weight", "agent_obsk"),
    ],
)
def test_unknown_option_is_one_line_with_the_options_and_the_closest(task, option, closest, listed):
    with pytest.raises(ConfigError) as err:
        marlow.make_env(task, **{option: 1})
    msg = str(err.value)
    assert len(msg.splitlines()) == 1, msg
    assert f"unknown option {option!r}" in msg and listed in msg and f"did you mean {closest!r}" in msg, msg
    assert "unexpected keyword" not in msg  # not the factory's own TypeError


def test_a_far_off_option_gets_no_suggestion():
    with pytest.raises(ConfigError, match=r"unknown option 'foo' \(its options: episode_length, .*\)$"):
        make("mpe/simple_spread", foo=1)


def test_accepted_options_still_reach_the_factory():
    assert make("mpe/simple_spread", num_agents=4).spec.agents == tuple(f"agent_{i}" for i in range(4))
    assert make("mpe/simple_spread", episode_length=50, local_ratio=0.2).spec.episode_length == 50
    assert make("mpe/simple_tag", num_adversaries=2).spec.num_agents == 3
    assert make("games/climbing", cc_payoff=(5, 3)).cc_payoff == (5.0, 3.0)
    env = make("mamujoco/halfcheetah_2x3", ctrl_cost_weight=0.2, agent_obsk=0)  # in the jitted loop
    assert env.ctrl_weight == 0.2 and env.spec.obs_dim("agent_0") == 11
    host = make("mamujoco/halfcheetah_2x3", ctrl_cost_weight=0.2, simulator="gymnasium")
    assert host.pz_env.single_agent_env.unwrapped._ctrl_cost_weight == 0.2


def test_mamujoco_refuses_options_that_change_the_gymnasium_observation():
    with pytest.raises(ConfigError, match="unknown option 'exclude_current_positions_from_observation'"):
        make("mamujoco/halfcheetah_2x3", exclude_current_positions_from_observation=False)


def test_accepted_options_of_a_factory():
    def named(a, b=1, *, c=2): ...

    def open_ended(a=1, **kwargs): ...

    class Env:
        def __init__(self, x=1): ...

    assert accepted_options(named) == ("a", "b", "c")
    assert accepted_options(Env) == ("x",)
    assert accepted_options(open_ended) is None  # **kwargs and nothing declared: any option
    assert accepted_options(open_ended, ("d",)) == ("a", "d")
    assert accepted_options(open_ended, lambda: ("e",)) == ("a", "e")


def test_cli_refuses_an_unknown_task_option_before_training(tmp_path, capsys):
    run = tmp_path / "run"
    rc = cli.main(
        ["train", "algo=ippo", "task=mpe/simple_spread", "task.foo=1", "total_steps=100", f"run_dir={run}"]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("marlow: error:") and "unknown option 'foo'" in err and "num_agents" in err
    assert not run.exists()  # nothing trained or saved


# ---- user tasks: the options of the user's factory -------------------------------------------------------
class Coordinate(MultiAgentEnv):
    """Two agents, one state; episodes of ``length`` steps."""

    def __init__(self, length: int = 5):
        self.spec = EnvSpec(
            name="jax:coordinate", agents=AGENTS, obs_spaces=(Box(0.0, 1.0, (1,)),) * 2,
            act_spaces=(Discrete(3),) * 2, teams=(("team", AGENTS),), episode_length=length,
        )  # fmt: skip

    def get_obs(self, state):
        return {a: jnp.ones((1,), jnp.float32) for a in AGENTS}

    def reset(self, key):
        return self.get_obs(0), jnp.zeros((), jnp.int32)

    def step_env(self, key, state, actions):
        done = state + 1 >= self.spec.episode_length
        dones = {"a0": done, "a1": done, "__all__": done}
        return self.get_obs(0), state + 1, {a: jnp.float32(0) for a in AGENTS}, dones, {"truncated": done}


class Toy(ParallelEnv):
    """Two agents, ``steps`` steps per episode (a PettingZoo Parallel env)."""

    metadata = {"name": "toy"}

    def __init__(self, steps: int = 2):
        self.possible_agents, self.steps = list(AGENTS), steps

    def observation_space(self, agent):
        return gs.Box(-1, 1, (2,))

    def action_space(self, agent):
        return gs.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return {a: np.zeros(2) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        end = {a: self.t >= self.steps for a in self.agents}
        out = ({a: np.zeros(2) for a in self.agents}, dict.fromkeys(self.agents, 0.0))
        self.agents = [] if self.t >= self.steps else self.agents
        return *out, dict.fromkeys(end, False), end, {a: {} for a in end}


@pytest.fixture
def user_module(monkeypatch):
    mod = types.ModuleType("marlow_options_user_module")
    mod.make_env = lambda length=5: Coordinate(length)
    mod.make_any = lambda **kwargs: Coordinate()
    mod.parallel_env = Toy
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod.__name__


def test_user_jax_factory_options(user_module):
    assert make(f"jax:{user_module}", length=3).spec.episode_length == 3
    with pytest.raises(ConfigError, match=r"unknown option 'lenght' \(its options: length\); did you mean"):
        make(f"jax:{user_module}", lenght=3)
    make(f"jax:{user_module}:make_any", whatever=1)  # a **kwargs factory takes any option


def test_user_pettingzoo_factory_options(user_module):
    assert make(f"pettingzoo:{user_module}", episode_length=4, steps=3).spec.episode_length == 4
    with pytest.raises(ConfigError) as err:
        make(f"pettingzoo:{user_module}", episode_length=4, step=3)
    msg = str(err.value)
    assert "unknown option 'step'" in msg and "teams" in msg and "did you mean 'steps'" in msg, msg
