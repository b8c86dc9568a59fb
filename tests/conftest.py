"""Import marlow before any test module touches JAX, so that marlow.devices can ask XLA for one host
device per core before the backend starts (as the CLI does)."""

import marlow  # noqa: F401
