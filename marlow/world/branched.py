"""Branched model rollouts with adaptive opponent-wise model usage (AORPO paper, Sec. 5.1 and Algorithm 1).

From the perspective of an ego agent i, M start states are sampled from the real buffer and rolled out for
k steps in a (model) env (Algorithm 1 lines 9-19). For every other agent j the action at rollout step
p = 1..k comes either from the ego's opponent model pi_hat^j or from j's real policy ("Comm", line 18: one
communication per start state and step):

- ``"adaptive"`` (simu-to-real, the paper's default; Algorithm 1 lines 15-18, Fig. 9a): the opponent model
  for the first n_j steps (p <= n_j), the real policy for the last k - n_j, with

      n_j = floor(k * min_j' eps_j' / eps_j)                              (Sec. 5.1; Algorithm 1 line 8)

  where eps_j is the error of the opponent model of j (Appendix E: mismatch rate for discrete actions,
  E||a - a_hat||_2 for continuous ones). The condition is the paper's ``p <= n_j``; the reference code's
  ``step + 1 < n_j`` uses the model one step fewer (a bug).
- ``"real_to_simu"`` (Appendix G.6, Fig. 9b): the real policy for the first k - n_j steps, the opponent
  model for the last n_j.
- ``"all_models"``: opponent models at every step (no communication; the "opponent models" usage of
  Sec. 6.3 / Figs. 4-5).
- ``"all_real"``: real policies at every step (the "real opponents" usage of Sec. 6.3).

Both adaptive schemes query agent j at k - n_j steps, so one rollout batch costs exactly M x (k - n_j)
communications with j (the opponent sample complexity; the reference code multiplies by the number of
agents instead of M, a bug). Steps p > k of the static-length scan (``k_max``) are masked as invalid and
query nobody.

Competitive tasks (Appendix G.3): the ego communicates only with its own team. Agents of other teams
(``spec.opponents(ego)``) are always simulated by their opponent models (n_j = k, no communication) in
every scheme; teammates (``spec.teammates(ego)``) follow the scheme.

The rollout length k follows the thresholded linear schedule of Tables 1-2 (:func:`rollout_length`), and
the model compounding error of Sec. 6.3 is :func:`compounding_error`.

Everything here is a pure function of explicit keys and arrays: jittable and vmappable over seeds; k and
n_j may be traced (the schedule changes k during training), ``k_max`` and ``scheme`` are static.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Number
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from marlow import rollout as engine
from marlow.errors import ConfigError
from marlow.schema import ranges

Scheme = Literal["adaptive", "real_to_simu", "all_models", "all_real"]
"""Opponent usage schemes of :func:`branched_rollout` (module docstring)."""
SCHEMES = ranges.choices(Scheme)

Policy = Callable[[dict, jax.Array], jax.Array]
"""``act(obs, key) -> action_j [M, ...]``: one agent's action from the joint observation dict (agent ->
``[M, d]``, batched over the start states). An opponent model reads ``obs[j]``; a real policy conditioned
on its own opponent models' predictions (AORPO, Eq. 4) reads the other agents' entries too."""


# ------------------------------------------------------------------------------------------------------
# rollout length schedule (Tables 1-2)
# ------------------------------------------------------------------------------------------------------
class Schedule(NamedTuple):
    """``x -> y over epochs a -> b`` (Tables 1-2): see :func:`rollout_length`."""

    x: int
    y: int
    a: int
    b: int

    def __call__(self, epoch) -> jax.Array:
        return rollout_length(epoch, self.x, self.y, self.a, self.b)


PAPER_SCHEDULES: dict[str, Schedule] = {
    # Table 1 (cooperative): communication, navigation, scheduling.
    "mpe/simple_speaker_listener": Schedule(1, 10, 15, 100),
    "mpe/simple_spread": Schedule(1, 6, 15, 100),
    "mpe/simple_schedule": Schedule(1, 8, 40, 100),
    # Table 2 (competitive): keep-away, physical deception, predator-prey.
    "mpe/simple_push": Schedule(1, 10, 30, 120),
    "mpe/simple_adversary": Schedule(1, 8, 20, 100),
    "mpe/simple_tag": Schedule(1, 5, 20, 100),
}
"""Branched rollout length k of the AORPO paper's Tables 1-2 per task (the reference code uses other
values and a compounding ramp; see docs/reference/aorpo.md)."""


def rollout_length(epoch, x, y, a, b) -> jax.Array:
    """Rollout length k at ``epoch`` for the schedule "x -> y over epochs a -> b" (Tables 1-2):

        f(e) = min(max(x + (e - a) / (b - a) * (y - x), x), y),      k = floor(f(e))   (int32)

    The note under Table 1 prints ``(x - y)`` instead of ``(y - x)``: a sign typo (with it k would stay at x
    for ever, as x < y in every row); we implement the increasing ramp. The paper gives no rounding; we
    truncate like MBPO's ``set_rollout_length`` (``int(...)``, ours). ``(e - a) * (y - x)`` is formed
    before dividing so that integer points of the ramp are exact in float32. ``epoch`` may be traced.
    """
    concrete = all(isinstance(v, Number) for v in (x, y, a, b))
    if concrete and not b > a:
        raise ConfigError(f"rollout schedule needs end epoch b > start epoch a, got a={a}, b={b}")
    if concrete and not y >= x:
        raise ConfigError(f"rollout schedule needs y >= x (thresholded increasing ramp), got x={x}, y={y}")
    e = jnp.asarray(epoch, jnp.float32)
    x_, y_, a_, b_ = (jnp.asarray(v, jnp.float32) for v in (x, y, a, b))
    f = x_ + (e - a_) * (y_ - x_) / (b_ - a_)
    return jnp.floor(jnp.minimum(jnp.maximum(f, x_), y_)).astype(jnp.int32)


# ------------------------------------------------------------------------------------------------------
# opponent-wise rollout lengths
# ------------------------------------------------------------------------------------------------------
def opponent_steps(
    eps: Mapping[str, Any],
    k,
    simulate_only: tuple[str, ...] | frozenset[str] = (),
    *,
    min_over_simulated: bool = True,
) -> dict[str, jax.Array]:
    """n_j = floor(k * min_j' eps_j' / eps_j), the number of leading rollout steps for which the ego uses
    its opponent model of agent j (Sec. 5.1, Algorithm 1 line 8), for every agent j in ``eps``.

    Args:
        eps: opponent-model error eps_j per modelled agent (all agents but the ego), scalars, may be traced.
        k: rollout length (may be traced).
        simulate_only: agents the ego may not query (the other team in competitive tasks, Appendix G.3):
            their n_j = k (model for the whole rollout).
        min_over_simulated: whether those agents' errors enter the min over j'. True (default): Algorithm 1
            line 8 takes the min over all of the ego's opponent models j' in {-i}, and Appendix G.3 only
            changes whom the ego may query; this keeps every model's compounding contribution n_j eps_j
            near k min_j' eps_j' (Sec. 5.1), including the models that must run for all k steps. False
            (ours, an option): min over the queryable agents only, so the best teammate model always runs
            for all k steps.

    eps_j = 0 (a perfect model) gives n_j = k. If some eps_j' = 0, every imperfect model gets n_j = 0.
    A 1e-4 slack before the floor keeps exact integer ratios from rounding down in float32 (ours).
    Returns a dict agent -> int32 n_j in [0, k].
    """
    agents = tuple(eps)
    if not agents:
        return {}
    unknown = set(simulate_only) - set(agents)
    if unknown:
        raise ConfigError(f"simulate_only names agents without an opponent-model error: {sorted(unknown)}")
    e = jnp.stack([jnp.asarray(eps[a], jnp.float32) for a in agents])
    sim = np.array([a in simulate_only for a in agents])
    pool = e if (min_over_simulated or sim.all()) else e[np.flatnonzero(~sim)]
    m = jnp.min(pool)
    k = jnp.asarray(k, jnp.int32)
    perfect = e <= 0.0
    ratio = jnp.where(perfect, 1.0, m / jnp.where(perfect, 1.0, e))
    n = jnp.clip(jnp.floor(k.astype(jnp.float32) * ratio + 1e-4).astype(jnp.int32), 0, k)
    n = jnp.where(jnp.asarray(sim), k, n)
    return {a: n[i] for i, a in enumerate(agents)}


def real_query_steps(scheme: str, n_j, k, k_max: int) -> jax.Array:
    """bool [k_max]: whether rollout step p = 1..k_max queries agent j's real policy under ``scheme``
    (module docstring). Steps p > k never query; n_j is clipped to [0, k]."""
    _check_scheme(scheme)
    p = jnp.arange(1, k_max + 1)
    k = jnp.minimum(jnp.asarray(k, jnp.int32), k_max)
    valid = p <= k
    n_j = jnp.clip(jnp.asarray(n_j, jnp.int32), 0, k)
    if scheme == "adaptive":  # simu-to-real: model while p <= n_j (Algorithm 1 line 15), then Comm
        rule = p > n_j
    elif scheme == "real_to_simu":  # Appendix G.6: Comm for the first k - n_j steps, then the model
        rule = p <= k - n_j
    elif scheme == "all_models":
        rule = jnp.zeros_like(valid)
    else:  # all_real
        rule = jnp.ones_like(valid)
    return valid & rule


# ------------------------------------------------------------------------------------------------------
# rollouts
# ------------------------------------------------------------------------------------------------------
@struct.dataclass
class Rollout:
    """A batch of M rollouts of ``k_max`` steps (steps beyond k masked).

    transitions: runner format ``{"obs", "actions", "rewards", "next_obs", "done"}`` (dicts keyed by agent
        for the first four; ``done`` = true terminal, float32), every leaf ``[k_max, M, ...]``.
    valid: bool ``[k_max, M]``, step p (1-based) <= k.
    real_steps: agent -> bool ``[k_max]``, the steps at which that agent's real policy was queried (every
        agent but the ego; empty for :func:`rollout`).
    communication: agent -> int32, the number of real-policy queries = M x (number of real steps), i.e.
        M x (k - n_j) for the adaptive schemes.
    """

    transitions: dict[str, Any]
    valid: jax.Array
    real_steps: dict[str, jax.Array]
    communication: dict[str, jax.Array]


def _check_scheme(scheme: str) -> None:
    ranges.check_choice("rollout_scheme", scheme, SCHEMES)


def _check_lengths(k, k_max) -> None:
    if not isinstance(k_max, int) or k_max < 1:
        raise ConfigError(f"k_max must be a positive int (the static scan length), got {k_max!r}")
    if isinstance(k, Number) and not 0 <= k <= k_max:
        raise ConfigError(f"rollout length k={k} must lie in [0, k_max={k_max}]")


def _start(env, start):
    """Env states ``[M]`` from ``start``: env states, or (for a ModelEnv) a joint observation dict."""
    if isinstance(start, Mapping):
        if not hasattr(env, "start"):
            raise ConfigError("start observations need a ModelEnv; pass env states for other envs")
        start = env.start(start)
    return start


def _scan(key, env, start, act, k, k_max: int):
    """``k_max`` steps of the rollout engine (:func:`marlow.rollout.collect`) from ``start`` with
    ``act(t, obs, key) -> actions`` (t 0-based, traced); steps t >= k are invalid. Returns (transitions in
    the replay format, valid ``[k_max, M]``)."""
    _check_lengths(k, k_max)
    carry = engine.from_states(env, _start(env, start))
    k = jnp.minimum(jnp.asarray(k, jnp.int32), k_max)

    def policy(pstate, obs, t, key):
        return pstate, act(t, obs, key), None

    _, _, traj = engine.collect(env, policy, carry, key, k_max, engine.Options(horizon=k))
    # a branch ends at its first episode end (a predicted termination or the time limit): the steps the
    # env's auto-reset would make after it are not part of the rollout
    valid = traj.valid & (engine.episode_mask(traj) > 0)
    return engine.transitions(traj, flat=False), valid


def rollout(key: jax.Array, env, start, policy, k, k_max: int) -> Rollout:
    """Plain k-step rollouts of a joint ``policy(obs, key) -> actions`` (dicts, batched over the M start
    states) from ``start`` (env states ``[M]``; for a ModelEnv also a joint observation dict ``[M, ...]``).
    With the real env and the real policies this gives the real trajectories that
    :func:`compounding_error` compares a branched rollout with. ``env.step`` auto-resets at the time
    limit, so real env states should carry a fresh step counter (e.g. ``state.replace(step=0)`` in MPE)."""
    trans, valid = _scan(key, env, start, lambda t, obs, key: policy(obs, key), k, k_max)
    return Rollout(transitions=trans, valid=valid, real_steps={}, communication={})


class Actors(NamedTuple):
    """Who acts in an ego's branched rollout, each a :data:`Policy` ``act(obs, key)``.

    ego: the ego's own policy (``obs`` is the joint observation dict: a policy conditioned on opponent-model
        predictions reads the others' entries).
    models: agent j -> the ego's opponent model of j, for every other agent (agents only ever queried for
        real under ``"all_real"`` may be left out).
    real: agent j -> j's real policy ("Comm"), for the ego's teammates (not needed for ``"all_models"``;
        other-team agents are never queried).
    """

    ego: Policy
    models: Mapping[str, Policy]
    real: Mapping[str, Policy]


class Length(NamedTuple):
    """How long a branched rollout runs and how long each teammate is simulated.

    k: the rollout length (may be traced), at most ``k_max``.
    k_max: the static scan length; steps p > k are computed but masked (``Rollout.valid``) and query nobody.
    n: agent j -> n_j (from :func:`opponent_steps`) for the teammates under the adaptive schemes; ignored
        (may be None) for ``"all_models"``/``"all_real"``. Clipped to [0, k].
    """

    k: Any
    k_max: int
    n: Mapping[str, Any] | None = None


def branched_rollout(
    key: jax.Array, model_env, start, ego: str, actors: Actors, length: Length, scheme: str = "adaptive"
) -> Rollout:
    """The ego's branched rollouts with opponent-wise model usage (module docstring; Algorithm 1 l. 9-19).

    Args:
        key: PRNG key.
        model_env: an env with the marlow API (a :class:`~marlow.world.model_env.ModelEnv`, or a real env).
        start: the M start states: env states ``[M]``, or for a ModelEnv the joint observations sampled from
            the real buffer (dict agent -> ``[M, d_j]``).
        ego: the ego agent i.
        actors: the ego's policy, its opponent models and the teammates' real policies (:class:`Actors`).
        length: k, k_max and the teammates' n_j (:class:`Length`).
        scheme: one of :data:`SCHEMES`.

    Each teammate's real policy sits in a ``lax.cond`` branch taken exactly at its real steps, the opponent
    model in the other branch (under ``vmap`` over seeds XLA evaluates both and selects, which changes
    nothing in the result). ``Rollout.communication`` counts M per real step within the first k, i.e.
    exactly the queries the algorithm makes.
    """
    _check_scheme(scheme)
    ego_act, model_act, real_act = actors
    k, k_max, n = length
    spec = model_env.spec
    if ego not in spec.agents:
        raise ConfigError(f"ego agent {ego!r} is not one of {spec.agents}")
    teammates = spec.teammates(ego)
    others = tuple(a for a in spec.agents if a != ego)
    need_real = teammates if scheme != "all_models" else ()
    need_model = tuple(a for a in others if scheme != "all_real" or a not in teammates)
    for role, table, needed in (("real_act", real_act, need_real), ("model_act", model_act, need_model)):
        missing = [a for a in needed if a not in table]
        if missing:
            raise ConfigError(f"scheme {scheme!r} needs {role} for agents {missing}")
    if scheme in ("adaptive", "real_to_simu"):
        missing = [a for a in teammates if n is None or a not in n]
        if missing:
            raise ConfigError(f"scheme {scheme!r} needs n_j for the ego's teammates {missing}")
    _check_lengths(k, k_max)

    # Which steps query each agent's real policy (other-team agents never: Appendix G.3).
    real_steps = {}
    for a in others:
        if a in teammates:
            n_a = n[a] if scheme in ("adaptive", "real_to_simu") else 0
            real_steps[a] = real_query_steps(scheme, n_a, k, k_max)
        else:
            real_steps[a] = jnp.zeros((k_max,), jnp.bool_)

    agent_idx = {a: i for i, a in enumerate(spec.agents)}

    def act(t, obs, key):
        keys = jax.random.split(key, spec.num_agents)
        m = obs[ego].shape[0]
        out = {ego: ego_act(obs, keys[agent_idx[ego]])}
        for a in others:
            space = spec.act_space(a)
            k_a = keys[agent_idx[a]]

            def model(o, kk, a=a, space=space):
                if a in model_act:
                    return jnp.asarray(model_act[a](o, kk), space.dtype)
                return jnp.zeros((m,) + space.shape, space.dtype)  # masked steps of "all_real" only

            if a in teammates and scheme != "all_models":

                def real(o, kk, a=a, space=space):
                    return jnp.asarray(real_act[a](o, kk), space.dtype)

                out[a] = jax.lax.cond(real_steps[a][t], real, model, obs, k_a)
            else:
                out[a] = model(obs, k_a)
        return out

    trans, valid = _scan(key, model_env, start, act, k, k_max)
    m = valid.shape[1]
    communication = {a: (m * jnp.sum(real_steps[a])).astype(jnp.int32) for a in others}
    return Rollout(transitions=trans, valid=valid, real_steps=real_steps, communication=communication)


def flatten(r: Rollout) -> tuple[dict[str, Any], jax.Array]:
    """Transitions ``[k_max * M, ...]`` (step-major) and their validity mask ``[k_max * M]``, e.g. for
    adding the valid ones to the model buffer D_model (Algorithm 1 line 20)."""
    trans = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), r.transitions)
    return trans, r.valid.reshape(-1)


# ------------------------------------------------------------------------------------------------------
# model compounding error (Sec. 6.3)
# ------------------------------------------------------------------------------------------------------
def compounding_error(
    real_next_obs: Mapping[str, jax.Array], model_next_obs: Mapping[str, jax.Array], valid=None
) -> jax.Array:
    """Model compounding error of Sec. 6.3 (following Nagabandi et al. 2018), per start state:

        eps_c = 1/h sum_{i=1}^h ||s_i - s_hat_i||_2^2

    where (s_0, a_0, ..., s_h) is the real trajectory (real dynamics, the ego's policy and the real
    policies of all other agents) and (s_0, a_hat_0, ..., s_hat_h) the branched rollout from the same s_0
    under the learned dynamics and the opponent models as the scheme uses them (so opponent-model errors
    enter through a_hat). The state s is the joint observation: the squared norm sums over all agents'
    observation entries.

    Args:
        real_next_obs, model_next_obs: agent -> ``[h, M, d_j]``: s_1..s_h and s_hat_1..s_hat_h, e.g.
            ``rollout(...).transitions["next_obs"]`` and ``branched_rollout(...).transitions["next_obs"]``.
        valid: optional bool ``[h]`` or ``[h, M]`` (e.g. ``Rollout.valid``): h counts the valid steps only.

    Returns float32 ``[M]`` (average it over start states for the figures' curves).
    """
    if set(real_next_obs) != set(model_next_obs):
        raise ConfigError("real and model trajectories must hold the same agents")
    sq = sum(
        jnp.sum(jnp.square(jnp.asarray(real_next_obs[a], jnp.float32) - model_next_obs[a]), axis=-1)
        for a in real_next_obs
    )  # [h, M]
    if valid is None:
        return jnp.mean(sq, axis=0)
    w = jnp.asarray(valid, jnp.float32)
    w = jnp.broadcast_to(w[:, None] if w.ndim == 1 else w, sq.shape)
    return jnp.sum(w * sq, axis=0) / jnp.maximum(jnp.sum(w, axis=0), 1.0)


__all__ = [
    "PAPER_SCHEDULES",
    "Actors",
    "Length",
    "SCHEMES",
    "Rollout",
    "Schedule",
    "branched_rollout",
    "compounding_error",
    "flatten",
    "opponent_steps",
    "real_query_steps",
    "rollout",
    "rollout_length",
]
