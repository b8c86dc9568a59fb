"""A complete user environment for marlow: two agents score 1 on every step on which both pick action 2.

Train it from its file, without installing anything:

    marlow train algo=ippo task=jax:docs/examples/coordinate_env.py total_steps=20480
    marlow train algo=ippo task=jax:docs/examples/coordinate_env.py:make_env task.length=10 ...

or from Python: ``marlow.train("ippo", "jax:docs/examples/coordinate_env.py", total_steps=20480)``.
The path is stored absolute in the run's config.yaml, so ``marlow eval`` works from any directory.

What marlow needs from a JAX env (``marlow.envs.MultiAgentEnv``, JaxMARL's interface):

* ``spec``: an :class:`~marlow.envs.EnvSpec`: the agents, one observation and one action space per agent
  (``marlow.envs.spaces``: ``Box``, ``Discrete``, ``MultiDiscrete``), the teams (one team: cooperative;
  several: competitive, each team's agents are an ego's teammates, the others its opponents), the episode
  length and whether the agents share one reward;
* ``reset(key) -> (obs, state)`` and ``step_env(key, state, actions) -> (obs, state, rewards, dones,
  infos)``, pure functions of JAX arrays (they run inside ``jit`` and ``vmap``), with dicts keyed by agent;
  ``dones`` also has ``"__all__"``; ``infos["truncated"]`` is True where an episode ended by the time limit
  (its last state is then bootstrapped, not treated as terminal). ``MultiAgentEnv.step`` resets finished
  episodes for you.

marlow checks these outputs once when the env is built (a traced reset and step) and names what is missing
in one line.
"""

import jax.numpy as jnp
from flax import struct

from marlow.envs import EnvSpec, MultiAgentEnv
from marlow.envs.spaces import Box, Discrete

AGENTS = ("a0", "a1")


@struct.dataclass
class State:
    t: jnp.ndarray  # steps taken in this episode


class Coordinate(MultiAgentEnv):
    def __init__(self, length: int = 5):
        self.spec = EnvSpec(
            name="jax:coordinate",
            agents=AGENTS,
            obs_spaces=(Box(0.0, 1.0, (1,)),) * 2,  # each agent sees the fraction of the episode gone
            act_spaces=(Discrete(3),) * 2,
            teams=(("team", AGENTS),),  # one team: cooperative
            episode_length=length,
            shared_reward=True,
        )

    def get_obs(self, state: State) -> dict:
        frac = (state.t / self.spec.episode_length).astype(jnp.float32)
        return {a: frac[None] for a in AGENTS}

    def reset(self, key):
        state = State(t=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state: State, actions: dict):
        both = (actions["a0"] == 2) & (actions["a1"] == 2)
        reward = jnp.where(both, 1.0, 0.0).astype(jnp.float32)
        state = State(t=state.t + 1)
        done = state.t >= self.spec.episode_length  # the time limit is the only end
        dones = {"a0": done, "a1": done, "__all__": done}
        return self.get_obs(state), state, {a: reward for a in AGENTS}, dones, {"truncated": done}


def make_env(length: int = 5) -> Coordinate:
    """The factory marlow calls (``make_env`` is the default name); ``task.length=10`` sets ``length``."""
    return Coordinate(length)
