"""Environments: the functional multi-agent API, spaces, the task registry and the tasks."""

from marlow.envs.api import EnvSpec, MultiAgentEnv, random_actions, share_team_rewards
from marlow.envs.registry import make, register, task_names
from marlow.envs.spaces import Box, Discrete, MultiDiscrete, Space

__all__ = [
    "Box",
    "Discrete",
    "EnvSpec",
    "MultiAgentEnv",
    "MultiDiscrete",
    "Space",
    "make",
    "random_actions",
    "register",
    "share_team_rewards",
    "task_names",
]
