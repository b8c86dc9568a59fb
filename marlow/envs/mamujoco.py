"""MA-MuJoCo tasks: Gymnasium-Robotics' multi-agent MuJoCo locomotion, in the jitted loop or on the host-side
PettingZoo adapter.

Source: ``gymnasium_robotics.mamujoco_v1.parallel_env`` (Gymnasium-Robotics 1.4.2, MuJoCo 4.0.0), which
splits the joints of a single-agent Gymnasium MuJoCo robot (``HalfCheetah-v5``, ``Ant-v5``,
``Walker2d-v5``) among agents: each agent applies the torques of its joints, and the robot moves as the
single-agent env would under the joint action. marlow registers:

========================  ======  ==============  =======  =====  ==========  ============
task                      agents  obs k=1         obs k=0  act    full_obs    global state
========================  ======  ==============  =======  =====  ==========  ============
mamujoco/halfcheetah_2x3  2       12              11       3      19          17
mamujoco/halfcheetah_3x2  3       10, 12, 11      9        2      20          17
mamujoco/ant_2x4          2       63              61       4      107         105
mamujoco/ant_4x2          4       42              39       2      109         105
mamujoco/walker2d_2x3     2       12              11       3      19          17
mamujoco/walker2d_3x2     3       10, 12, 11      9        2      20          17
========================  ======  ==============  =======  =====  ==========  ============

(obs: per agent, for ``agent_obsk`` 1 and 0; act: per agent, ``Box(-1, 1)``; the 3x2 splits are this
module's, the others Gymnasium-Robotics'.)

Partitions (joints per agent; :func:`partition` returns them):

- HalfCheetah 2x3: ``agent_0`` the back leg (bthigh, bshin, bfoot), ``agent_1`` the front leg (fthigh,
  fshin, ffoot).
- HalfCheetah 3x2: ``agent_0`` (bshin, bfoot), ``agent_1`` (bthigh, ffoot), ``agent_2`` (fthigh, fshin).
- Ant 2x4: ``agent_0`` the front legs (hip1, ankle1, hip2, ankle2), ``agent_1`` the back legs (hip3, ankle3,
  hip4, ankle4). Ant 4x2: one leg (hip, ankle) per agent, legs 1 to 4.
- Walker2d 2x3: ``agent_0`` the right leg (thigh_joint, leg_joint, foot_joint), ``agent_1`` the left leg
  (thigh_left_joint, leg_left_joint, foot_left_joint).
- Walker2d 3x2: ``agent_0`` (leg_joint, foot_joint), ``agent_1`` (thigh_joint, foot_left_joint),
  ``agent_2`` (thigh_left_joint, leg_left_joint).

Gymnasium-Robotics has no "3x2" for HalfCheetah or Walker2d (it rejects the string), but the Teammate
Lookahead paper's Table 1 reports both, so this module builds them as custom factorisations from the
env's own joint graph (its nodes, edges and global nodes for the unpartitioned robot), with the grouping of
the MA-MuJoCo code the HAPPO/HATRPO line of work uses (PKU-MARL/HARL,
``harl/envs/mamujoco/multiagent_mujoco/obsk.py``, partitioning "3x2"): the six joints listed from the
back foot forwards (HalfCheetah: bfoot, bshin, bthigh, ffoot, fshin, fthigh; Walker2d: foot, leg, thigh,
left foot, left leg, left thigh) are cut into consecutive pairs. So the middle agent drives two joints
that are not neighbours in the body graph (HalfCheetah's back thigh and front foot; Walker2d's right
thigh and left foot); that grouping is kept for comparability with the published results. Within an agent,
actions follow the robot's actuator order (as Gymnasium-Robotics orders its built-in partitions).

Observations (``agent_obsk``, default 1, Gymnasium-Robotics' default; ``agent_obsk=0`` gives 11 for
HalfCheetah 2x3): an agent observes its own joints' positions and velocities (Ant: also the external
contact forces of their bodies), the positions of the joints up to ``agent_obsk`` edges away, and the
robot's root (torso height, angle and velocities; Ant: torso orientation and velocities). HARL's config
(``harl/configs/envs_cfgs/mamujoco.yaml``) sets ``agent_obsk: 0`` but notes it is unused: HARL's MA-MuJoCo
env, like the Lookahead authors' (xlnwel/grl2-jax, ``env/ma_mujoco_env/multiagent_mujoco/mujoco_multi.py``),
gives every agent the full single-agent observation plus a one-hot agent id (and standardises each vector
by its own mean and std). ``full_obs=True`` gives that full observation: the global state followed by the
one-hot agent id (HalfCheetah 2x3: 17 + 2 = 19), without the per-vector standardisation.

Global state (``spec.global_state_dim``, :meth:`~marlow.envs.pettingzoo.PettingZooEnv.global_state`):
MA-MuJoCo's ``state()``, the single-agent Gymnasium observation (joint positions without the root's x
position, velocities; Ant also external contact forces: 105).

Reward: the single-agent env's reward (forward velocity minus control cost; Ant and Walker2d also a
healthy bonus, Ant also a contact cost), given unchanged to every agent (``team_reward="given"``: one
team, ``spec.shared_reward`` True, not multiplied by the number of agents). Episodes: 1000 steps (the
Gymnasium time limit, which ends them as truncations); Ant and Walker2d also terminate when the robot
falls (unhealthy). ``episode_length`` changes both the Gymnasium limit and the spec. Further keyword
arguments go to the Gymnasium MuJoCo env (e.g. ``ctrl_cost_weight``, :func:`gym_options`); arguments that
change its observation are not supported (refused, like any other option).

Two simulators run the same tasks. The default, ``task.simulator=rollout``, runs them inside the jitted
loop: every env (and seed) of a vectorised step is advanced by one ``mujoco.rollout`` call on all cores
(:mod:`marlow.envs.mamujoco_rollout`; its observations, rewards and terminations equal this module's on
the same states and actions, tests/test_envs_mamujoco_rollout.py). ``task.simulator=gymnasium`` runs the
Gymnasium-Robotics env itself on the host: MuJoCo is stepped from Python, one env at a time, and the
collection (:mod:`marlow.runtime.host`) batches every env's policy call of a step into one jitted call.
It is the reference, and 1.6x slower to train on (benchmarks/mamujoco/physics.md).

Importing this module is cheap: gymnasium-robotics and mujoco are imported by the factories.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings

import numpy as np

from marlow.envs.pettingzoo import PettingZooEnv
from marlow.envs.registry import accepted_options, register
from marlow.errors import ConfigError
from marlow.schema import ranges

EPISODE_LENGTH = 1000  # Gymnasium's time limit of the three robots
SIMULATORS = (
    "rollout",
    "gymnasium",
)  # task.simulator: marlow.envs.mamujoco_rollout (the default), or the host-side adapter

# task name -> (Gymnasium-Robotics scenario, agent_conf)
TASKS = {
    "halfcheetah_2x3": ("HalfCheetah", "2x3"),
    "halfcheetah_3x2": ("HalfCheetah", "3x2"),
    "ant_2x4": ("Ant", "2x4"),
    "ant_4x2": ("Ant", "4x2"),
    "walker2d_2x3": ("Walker2d", "2x3"),
    "walker2d_3x2": ("Walker2d", "3x2"),
}

# Factorisations Gymnasium-Robotics lacks: joint labels (its node names) per agent, in actuator order.
CUSTOM_PARTITIONS = {
    ("HalfCheetah", "3x2"): (("bshin", "bfoot"), ("bthigh", "ffoot"), ("fthigh", "fshin")),
    ("Walker2d", "3x2"): (
        ("leg_joint", "foot_joint"),
        ("thigh_joint", "foot_left_joint"),
        ("thigh_left_joint", "leg_left_joint"),
    ),
}


def _mamujoco():
    """``gymnasium_robotics.mamujoco_v1``; the first import drops Gymnasium-Robotics' import-time notice
    about its Adroit hand envs (unrelated to MA-MuJoCo) and passes any other output on to stderr."""
    if "gymnasium_robotics" not in sys.modules:
        buf = io.StringIO()
        try:
            with contextlib.redirect_stderr(buf):
                import gymnasium_robotics  # noqa: F401
        except ImportError as e:
            raise ConfigError(f"MA-MuJoCo tasks need gymnasium-robotics and mujoco ({e})") from None
        finally:
            rest = "".join(line for line in buf.getvalue().splitlines(True) if "AdroitHand" not in line)
            if rest.strip():
                sys.stderr.write(rest)
    from gymnasium_robotics import mamujoco_v1

    return mamujoco_v1


@contextlib.contextmanager
def mujoco_compiler_warnings():
    """Route MuJoCo's warnings while a model is compiled to Python warnings instead of MuJoCo's default
    handler (which prints them and appends them to ``MUJOCO_LOG.TXT`` in the working directory); drops the
    known deprecation notice of ``settotalmass`` in Gymnasium's ``half_cheetah.xml``."""
    import mujoco

    previous = mujoco.get_mju_user_warning()
    messages: list[str] = []
    mujoco.set_mju_user_warning(messages.append)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)
        for msg in messages:
            if "settotalmass" not in msg:
                warnings.warn(f"MuJoCo: {msg}", RuntimeWarning, stacklevel=3)


def _graph(scenario: str):
    from gymnasium_robotics.envs.multiagent_mujoco.obsk import get_parts_and_edges

    (nodes,), edges, global_nodes = get_parts_and_edges(scenario, None)  # the unpartitioned robot
    return nodes, edges, global_nodes


def factorization(scenario: str, agent_conf: str) -> dict | None:
    """The ``agent_factorization`` (partition, edges, global nodes) of a custom split, built from the
    env's joint graph; None for the splits Gymnasium-Robotics has."""
    labels = CUSTOM_PARTITIONS.get((scenario, agent_conf))
    if labels is None:
        return None
    _mamujoco()
    nodes, edges, global_nodes = _graph(scenario)
    by_label = {n.label: n for n in nodes}
    used = [lab for agent in labels for lab in agent]
    assert sorted(used) == sorted(by_label), (used, sorted(by_label))  # every joint exactly once
    parts = [tuple(by_label[lab] for lab in agent) for agent in labels]
    return {"partition": parts, "edges": edges, "globals": global_nodes}


def partition(scenario: str, agent_conf: str) -> tuple[tuple[str, ...], ...]:
    """Joint labels (Gymnasium-Robotics' node names) each agent drives, in its action order."""
    if (scenario, agent_conf) in CUSTOM_PARTITIONS:
        return CUSTOM_PARTITIONS[scenario, agent_conf]
    _mamujoco()
    from gymnasium_robotics.envs.multiagent_mujoco.obsk import get_parts_and_edges

    parts, _, _ = get_parts_and_edges(scenario, agent_conf)
    return tuple(tuple(n.label for n in agent) for agent in parts)


class _FullObs:
    """PettingZoo Parallel wrapper of a MA-MuJoCo env: every agent observes the global state followed by
    its one-hot agent id (``full_obs=True``)."""

    def __init__(self, env):
        from gymnasium import spaces

        self.env = env
        self.metadata = env.metadata
        self.possible_agents = list(env.possible_agents)
        self.agents = list(env.agents)
        n, d = len(self.possible_agents), int(np.asarray(env.state()).size)
        self._ids = np.eye(n)
        self._space = spaces.Box(-np.inf, np.inf, (d + n,), np.float64)

    def observation_space(self, agent):
        return self._space

    def action_space(self, agent):
        return self.env.action_space(agent)

    def _obs(self) -> dict[str, np.ndarray]:
        s = np.asarray(self.env.state(), np.float64)
        return {a: np.concatenate([s, self._ids[i]]) for i, a in enumerate(self.possible_agents)}

    def reset(self, seed=None, options=None):
        _, infos = self.env.reset(seed=seed, options=options)
        self.agents = list(self.env.agents)
        return self._obs(), infos

    def step(self, actions):
        _, rewards, terms, truncs, infos = self.env.step(actions)
        self.agents = list(self.env.agents)
        return self._obs(), rewards, terms, truncs, infos

    def state(self):
        return self.env.state()

    def render(self):
        return self.env.render()

    def close(self):
        self.env.close()


def gym_options(scenario: str) -> tuple[str, ...]:
    """The task options passed on to Gymnasium's ``<scenario>-v5`` env: its constructor's arguments less
    those that change the observation (unsupported, see the module docstring), and ``render_mode``."""
    import gymnasium
    from gymnasium.envs.registration import load_env_creator

    names = accepted_options(load_env_creator(gymnasium.spec(f"{scenario}-v5").entry_point), ())
    return tuple(n for n in names if n != "xml_file" and "observation" not in n) + ("render_mode",)


def _int_option(task: str, key: str, value, minimum: int) -> int:
    try:
        out = int(str(value)) if not isinstance(value, bool) else None
    except ValueError:
        out = None
    if out is None or out < minimum:
        raise ConfigError(f"{task}: {key} must be an integer >= {minimum}, got {value!r}")
    return out


def _bool_option(task: str, key: str, value) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ConfigError(f"{task}: {key} must be true or false, got {value!r}")


def make_mamujoco(
    scenario: str,
    agent_conf: str,
    *,
    name: str,
    agent_obsk: int = 1,
    full_obs: bool = False,
    episode_length: int = EPISODE_LENGTH,
    **gym_kwargs,
) -> PettingZooEnv:
    """The adapter around ``mamujoco_v1.parallel_env(scenario, agent_conf, ...)`` (module docstring)."""
    agent_obsk = _int_option(name, "agent_obsk", agent_obsk, 0)
    episode_length = _int_option(name, "episode_length", episode_length, 1)
    full_obs = _bool_option(name, "full_obs", full_obs)
    mamujoco_v1 = _mamujoco()
    custom = factorization(scenario, agent_conf)
    with mujoco_compiler_warnings():
        env = mamujoco_v1.parallel_env(
            scenario,
            agent_conf,  # with a custom factorisation: only needs to be a string (None means one agent)
            agent_obsk=agent_obsk,
            agent_factorization=custom,
            max_episode_steps=episode_length,
            **gym_kwargs,
        )
    if full_obs:
        env = _FullObs(env)
    return PettingZooEnv(
        env,
        name=name,
        teams={"team": list(env.possible_agents)},
        team_reward="given",
        episode_length=episode_length,
        description=f"MA-MuJoCo {scenario} {agent_conf} (Gymnasium-Robotics, host-side)",
    )


def _register(task: str, scenario: str, agent_conf: str) -> None:
    name = f"mamujoco/{task}"

    def factory(
        agent_obsk: int = 1,
        full_obs: bool = False,
        episode_length: int = EPISODE_LENGTH,
        simulator: str = "rollout",
        **gym_kwargs,
    ):
        ranges.check_choice("task.simulator", simulator, SIMULATORS)
        env = make_mamujoco(
            scenario,
            agent_conf,
            name=name,
            agent_obsk=agent_obsk,
            full_obs=full_obs,
            episode_length=episode_length,
            **gym_kwargs,
        )
        if simulator == "rollout":
            from marlow.envs.mamujoco_rollout import RolloutMaMuJoCo

            return RolloutMaMuJoCo(env, scenario)
        return env

    factory.__name__ = factory.__qualname__ = task
    factory.__doc__ = (
        f"MA-MuJoCo {scenario} {agent_conf} (Gymnasium-Robotics physics in the jitted loop; one team, "
        "shared reward)"
    )
    register(name, options=lambda: gym_options(scenario))(factory)


for _task, (_scenario, _conf) in TASKS.items():
    _register(_task, _scenario, _conf)


__all__ = [
    "CUSTOM_PARTITIONS",
    "EPISODE_LENGTH",
    "TASKS",
    "factorization",
    "gym_options",
    "make_mamujoco",
    "mujoco_compiler_warnings",
    "partition",
]
