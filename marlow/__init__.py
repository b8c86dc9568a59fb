"""marlow: Multi-Agent Reinforcement Learning with Opponent and World models."""

__version__ = "0.1.0"
