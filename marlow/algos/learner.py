"""The learner protocol: what the runner needs of every algorithm, off-policy, tabular or on-policy.

A learner has

- ``steps_per_iter``: vectorised env steps collected per iteration (per env);
- ``init(key) -> state``;
- ``act(state, obs, key, explore) -> actions`` (greedy evaluation, cross-play);
- ``policy(state)``: the behaviour policy, a :data:`marlow.rollout.Policy`
  ``(pstate, obs, t, key) -> (pstate, actions, extras)`` that :func:`marlow.rollout.collect` runs;
- ``ready(step) -> bool``: whether ``learn`` at env step ``step`` will draw randomness (learn); ``step``
  is a Python int or an unbatched scalar, so a branch on it stays a real branch under ``vmap``;
- ``learn(state, trajectory, step, key) -> (state, metrics)``: learn from the ``[T, E]`` trajectory just
  collected; ``metrics["updates"]`` is the number of updates applied (0: nothing learned, e.g. warm-up,
  and the other metrics are then ignored);
- ``diagnostics(state) -> dict`` and ``communications(state) -> scalar`` (may return ``{}`` / 0);
- ``probe(state, obs) -> dict``: readings of the learner's models at ``obs`` (every agent's ``[1, d]``
  observation), which the runner asks for at the one observation of single-state tasks
  (:func:`marlow.experiment.loop.probe`; may return ``{}``);
- optionally, for learners whose policies carry a recurrent state: ``init_pstate(num_envs)`` (the policy
  state of ``num_envs`` fresh episodes), ``reset_pstate(pstate, done)`` (back to the initial state where
  ``done``; :func:`marlow.rollout.collect` calls it after every step) and ``greedy_policy(state)`` (the
  greedy behaviour as a stateful :data:`marlow.rollout.Policy`, used by every evaluation instead of
  ``act``). Without them the policy state is ``None`` and evaluation calls ``act``;
- ``algo_state(state)``: the algorithm's own state inside the learner's (what ``act`` of the algorithm
  object reads; tools such as cross-play use it).

Three kinds implement it:

- **off-policy** (``KIND = "off_policy"``; :class:`OffPolicyLearner`, wrapping every algorithm with the
  ``init``/``act``/``update`` protocol of :mod:`marlow.algos`, tabular and model-based ones included):
  owns the replay buffer, the warm-up and the update rounds (``update_every`` env steps per iteration,
  then ``updates_per_step`` updates of ``batch_size`` sampled transitions once ``warmup_steps`` have been
  collected);
- **on-policy** (``KIND = "on_policy"`` modules, e.g. :mod:`marlow.algos.onpolicy.ippo`, whose
  ``Algorithm`` is itself a learner): learns from each ``rollout_steps x num_envs`` trajectory of its
  behaviour policy, whose log-probabilities and values it keeps in the trajectory's extras;
- **world-model** (``KIND = "world_model"``, :mod:`marlow.algos.model_based.mamba` and MAG): a learner of
  its own too, which keeps the collected steps in a sequence buffer, trains its world model and learns
  its policies in the model's imagination every ``train_every`` env steps.

The runner (:mod:`marlow.experiment.loop`) only alternates ``collect`` and ``learn``, evaluates, logs and
checkpoints, the same for every kind and for JAX and host envs.

The protocol is typed (:class:`Learner`, :class:`OffPolicyAlgorithm`) and checked once, by
:func:`make_learner`: a missing method, a public method named like an optional hook it is not (a
misspelled ``observe`` would silently never be called), recurrent hooks that are not all three, and a
module without a valid ``KIND`` are one-line ConfigErrors.
"""

from __future__ import annotations

import difflib
from types import ModuleType
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from flax import struct
from jax.extend.core import jaxpr_as_fun

from marlow import rollout
from marlow.buffers import replay
from marlow.envs.api import EnvSpec
from marlow.errors import ConfigError

OFF_POLICY, ON_POLICY, WORLD_MODEL = "off_policy", "on_policy", "world_model"
KINDS = (OFF_POLICY, ON_POLICY, WORLD_MODEL)


def kind_of(algo_mod: ModuleType) -> str:
    """The module's ``KIND``, which every algorithm module declares (no default: an off-policy module that
    forgot it and an on-policy one that misspelled it would both be run as something they are not)."""
    kind = getattr(algo_mod, "KIND", None)
    if kind not in KINDS:
        raise ConfigError(
            f"algorithm module {algo_mod.__name__} must set KIND to one of {', '.join(KINDS)}; got {kind!r}"
        )
    return kind


class Learner(Protocol):
    """What the runner needs of every learner (the module docstring says what each part does). Checked
    once when a learner is made (:func:`check_protocol`)."""

    steps_per_iter: int

    def init(self, key: jax.Array) -> Any: ...
    def act(self, state: Any, obs: dict, key: jax.Array, explore: bool) -> dict: ...
    def policy(self, state: Any) -> rollout.Policy: ...
    def ready(self, step: Any) -> Any: ...
    def learn(self, state: Any, traj: rollout.Trajectory, step: Any, key: jax.Array) -> tuple[Any, dict]: ...
    def diagnostics(self, state: Any) -> dict: ...
    def probe(self, state: Any, obs: dict) -> dict: ...
    def communications(self, state: Any) -> jax.Array: ...
    def algo_state(self, state: Any) -> Any: ...


class OffPolicyAlgorithm(Protocol):
    """What :class:`OffPolicyLearner` needs of the algorithm it wraps (the optional hooks are
    :data:`OFF_POLICY_HOOKS`; :mod:`marlow.algos` says what each does)."""

    spec: EnvSpec

    def init(self, key: jax.Array) -> Any: ...
    def act(self, state: Any, obs: dict, key: jax.Array, explore: bool) -> dict: ...
    def update(self, state: Any, batch: dict, key: jax.Array) -> tuple[Any, dict]: ...


OFF_POLICY_HOOKS = ("observe", "prepare", "full_round", "diagnostics", "probe", "communications")
"""Optional methods of an off-policy algorithm; ``full_round`` comes with ``REDUCED_UPDATES``."""
RECURRENT_HOOKS = ("init_pstate", "reset_pstate", "greedy_policy")
"""Optional methods of a learner whose policies carry a recurrent state: all three or none."""


def _members(proto: type) -> list[str]:
    names = [n for n in vars(proto) if not n.startswith("_") and callable(vars(proto)[n])]
    return list(getattr(proto, "__annotations__", {})) + names


def check_protocol(obj, proto: type, what: str, hooks: tuple[str, ...] = ()) -> None:
    """ConfigError unless ``obj`` has every member of ``proto`` (methods callable), and unless a public
    method of ``obj`` looks like a misspelling of one of the optional ``hooks`` it lacks (such a hook
    would silently never be called)."""
    members = _members(proto)
    missing = [
        m
        for m in members
        if not hasattr(obj, m) or (callable(getattr(proto, m, None)) and not callable(getattr(obj, m)))
    ]
    if missing:
        raise ConfigError(
            f"{what} lacks {', '.join(missing)} ({proto.__module__}.{proto.__name__} needs them)"
        )
    lacking = [h for h in hooks if not hasattr(obj, h)]
    for name in dir(type(obj)):
        if name.startswith("_") or name in hooks or name in members:
            continue
        close = difflib.get_close_matches(name, lacking, n=1, cutoff=0.8)
        if close:
            raise ConfigError(
                f"{what} defines {name!r}, which is no hook of the learner protocol: did you mean "
                f"{close[0]!r}? (rename it, or start its name with _ if it is a helper)"
            )


def check_learner(lrn, what: str) -> None:
    """The checks of :func:`check_protocol` for a learner, and its recurrent hooks all or none."""
    check_protocol(lrn, Learner, what, RECURRENT_HOOKS)
    have = [h for h in RECURRENT_HOOKS if hasattr(lrn, h)]
    if have and len(have) < len(RECURRENT_HOOKS):
        lacking = [h for h in RECURRENT_HOOKS if h not in have]
        raise ConfigError(
            f"{what} has {', '.join(have)} but not {', '.join(lacking)}: a learner with a recurrent policy "
            "state needs all three"
        )


@struct.dataclass
class OffPolicyState:
    algo: Any
    buffer: replay.ReplayBuffer


class OffPolicyLearner:
    """An ``init``/``act``/``update`` algorithm with its replay buffer and update schedule.

    Per iteration (``update_every / num_envs`` vectorised steps): the transitions are shown to the
    algorithm's optional ``observe`` hook and stored (also during warm-up); then, once
    ``step >= warmup_steps``, the optional ``prepare(state, buffer, key, step)`` (world models,
    rollouts) and ``updates_per_step`` updates on batches sampled from the buffer. An algorithm that
    applies fewer updates in some rounds defines ``full_round(step) -> bool`` and ``REDUCED_UPDATES``
    (AORPO: MASAC's one update per round until its world model is trained); the two round sizes are two
    branches of a real ``lax.cond``, so no update is computed and thrown away."""

    kind = OFF_POLICY

    def __init__(self, algo, cfg, num_envs: int, capacity: int):
        self.algo, self.cfg, self.spec = algo, cfg, algo.spec
        if cfg.update_every % num_envs:
            raise ConfigError(
                f"update_every ({cfg.update_every}) must be a multiple of num_envs ({num_envs})"
            )
        self.steps_per_iter = cfg.update_every // num_envs
        self.updates_per_step = cfg.updates_per_step
        self.warmup = cfg.warmup_steps
        self.batch_size = cfg.batch_size
        self.capacity = capacity

    # ---- state ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> OffPolicyState:
        buffer = replay.init(replay.example_transition(self.spec), self.capacity)
        return OffPolicyState(self.algo.init(key), buffer)

    def algo_state(self, state: OffPolicyState):
        return state.algo

    def act(self, state: OffPolicyState, obs: dict, key: jax.Array, explore: bool) -> dict:
        return self.algo.act(state.algo, obs, key, explore)

    def policy(self, state: OffPolicyState) -> rollout.Policy:
        return rollout.stateless(lambda obs, key: self.algo.act(state.algo, obs, key, True))

    def diagnostics(self, state: OffPolicyState) -> dict:
        return self.algo.diagnostics(state.algo) if hasattr(self.algo, "diagnostics") else {}

    def probe(self, state: OffPolicyState, obs: dict) -> dict:
        return self.algo.probe(state.algo, obs) if hasattr(self.algo, "probe") else {}

    def communications(self, state: OffPolicyState) -> jax.Array:
        if hasattr(self.algo, "communications"):
            return self.algo.communications(state.algo)
        return jnp.float32(0)

    # ---- learning ---------------------------------------------------------------------------------
    def ready(self, step) -> Any:
        return step >= self.warmup

    def store(self, state: OffPolicyState, trans: dict) -> OffPolicyState:
        """Show a batch of transitions to the optional ``observe`` hook and add it to the buffer."""
        algo_state = state.algo
        if hasattr(self.algo, "observe"):
            algo_state = self.algo.observe(algo_state, trans)
        return OffPolicyState(algo_state, replay.add(state.buffer, trans))

    def updates(self, state: OffPolicyState, step, key: jax.Array) -> tuple[OffPolicyState, dict]:
        """``prepare`` (given the whole real buffer) then the round's updates; metrics are averaged over
        the updates applied, plus ``updates``, their number. Each update samples its batch and draws its
        own noise from two independent keys."""
        algo_state, prep_metrics = state.algo, {}
        if hasattr(self.algo, "prepare"):
            key, k_prep = jax.random.split(key)
            algo_state, prep_metrics = self.algo.prepare(algo_state, state.buffer, k_prep, step)

        def one(algo_state, key):
            k_sample, k_update = jax.random.split(key)
            batch = replay.sample(state.buffer, k_sample, self.batch_size)
            return self.algo.update(algo_state, batch, k_update)

        def rounds(n: int):
            def run(algo_state):
                algo_state, metrics = jax.lax.scan(one, algo_state, jax.random.split(key, n))
                return algo_state, dict(jax.tree.map(jnp.mean, metrics), updates=jnp.float32(n))

            return run

        full = rounds(self.updates_per_step)
        if hasattr(self.algo, "full_round"):  # a real branch: the step is not batched over seeds
            reduced = rounds(min(self.algo.REDUCED_UPDATES, self.updates_per_step))
            algo_state, metrics = jax.lax.cond(self.algo.full_round(step), full, reduced, algo_state)
        else:
            algo_state, metrics = full(algo_state)
        metrics.update(prep_metrics)
        return state.replace(algo=algo_state), metrics

    def learn(self, state: OffPolicyState, traj: rollout.Trajectory, step, key: jax.Array):
        state = self.store(state, rollout.transitions(traj))
        return learn_when(self.ready(step), lambda s: self.updates(s, step, key), state)


def learn_when(ready, learn, state):
    """``learn(state) -> (state, metrics)`` where ``ready``, else ``state`` unchanged with zero metrics of
    the same shapes (``metrics["updates"]`` = 0: nothing learned): one ``lax.cond``, a real branch when
    ``ready`` is not batched over seeds (warm-up).

    ``learn`` is traced once, to a jaxpr that gives the zero branch its shapes and is then evaluated as
    the learning branch (the same operations as tracing ``learn`` again inside the ``cond``, which would
    double the Python tracing of every update at each compilation)."""
    closed, out_shapes = jax.make_jaxpr(learn, return_shape=True)(state)
    out_tree = jax.tree.structure(out_shapes)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), out_shapes[1])

    def traced_learn(s):
        return jax.tree.unflatten(out_tree, jaxpr_as_fun(closed)(*jax.tree.leaves(s)))

    return jax.lax.cond(ready, traced_learn, lambda s: (s, zeros), state)


class OnPolicyDefaults:
    """The parts of the learner protocol an on-policy learner (``KIND = "on_policy"``) usually leaves as
    they are: its whole state is the algorithm's, no diagnostics, no communication outside the env, and
    ready to learn from the first trajectory."""

    def algo_state(self, state):
        return state

    def diagnostics(self, state) -> dict:
        return {}

    def probe(self, state, obs: dict) -> dict:
        return {}

    def communications(self, state) -> jax.Array:
        return jnp.float32(0)

    def ready(self, step) -> jax.Array:
        return jnp.asarray(True)


def make_learner(algo_mod: ModuleType, algo, cfg, spec: EnvSpec, num_envs: int, total_steps: int):
    """The learner of a built algorithm (``algo = algo_mod.Algorithm(spec, cfg.algo)``)."""
    what = f"algorithm {algo_mod.__name__.rsplit('.', 1)[-1]}"
    if kind_of(algo_mod) != OFF_POLICY:  # on-policy and world-model learners are their own learners
        algo.bind(num_envs=num_envs, total_steps=total_steps)
        check_learner(algo, what)
        return algo
    check_protocol(algo, OffPolicyAlgorithm, what, OFF_POLICY_HOOKS)
    if hasattr(algo, "full_round") and not hasattr(algo, "REDUCED_UPDATES"):
        raise ConfigError(f"{what} has full_round but no REDUCED_UPDATES (the updates of its reduced rounds)")
    lrn = OffPolicyLearner(algo, cfg, num_envs, capacity=cfg.buffer_size)
    check_learner(lrn, what)
    return lrn
