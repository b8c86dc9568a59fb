"""The runner's single-state readings (``diag/pi_mean``, and the algorithm's ``probe``) of an off-policy
algorithm object, for tests that drive an algorithm without a runner."""

from __future__ import annotations

import jax

from marlow.algos.learner import OffPolicyLearner, OffPolicyState
from marlow.experiment.loop import probe


def probe_fn(spec, algo, cfg):
    """A jitted ``state -> readings`` of ``algo`` on the single-state task ``spec``
    (:func:`marlow.experiment.loop.probe`, as logged at every evaluation without the ``diag/`` prefix)."""
    learner = OffPolicyLearner(algo, cfg, num_envs=1, capacity=1)
    return jax.jit(lambda state: probe(spec, learner, OffPolicyState(state, None)))
