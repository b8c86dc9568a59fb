"""marlow: Multi-Agent Reinforcement Learning with Opponent and World models."""

from marlow.devices import configure_host_devices

configure_host_devices()  # before JAX initialises its backends (see marlow/devices.py)

__version__ = "0.1.0"
