"""Ask XLA for one host device per core before any test module touches JAX (as the CLI does), so that
seed sharding over devices is exercised."""

from marlow.devices import configure_host_devices

configure_host_devices()
