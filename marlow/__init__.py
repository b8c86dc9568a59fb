"""marlow: Multi-Agent Reinforcement Learning with Opponent and World models.

Importing marlow changes nothing in the process: the command line (``marlow.cli.main``) asks XLA for one
host device per core (:func:`marlow.devices.configure_host_devices`) before JAX starts; a script or
notebook that wants the same seed sharding calls it itself, first."""

__version__ = "0.1.0"
