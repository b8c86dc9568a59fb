"""Model compounding error of AORPO's rollout schemes (AORPO paper Sec. 6.3, Fig. 4; Appendix G.5, Fig. 7).

For a real trajectory (s_0, a_0, ..., s_h) and the branched model rollout (s_0, a_hat_0, ..., s_hat_h) from
the same start state, the model compounding error (Sec. 6.3, after Nagabandi et al. 2018) is

    eps_c(h) = 1/h sum_{i=1}^h ||s_i - s_hat_i||_2^2

(:func:`marlow.world.branched.compounding_error`; s is the joint observation).
:func:`compounding_curves` measures it for a trained AORPO (or AORDPG) state, per rollout scheme of
:data:`~marlow.world.branched.SCHEMES` and horizon h = 1..H:

1. Start states (ours: the paper does not say where its s_0 come from). M fresh resets of the real env,
   each run for w_m ~ U{0, ..., max_warmup} steps (default: the whole episode, ``episode_length - 1``)
   with the agents' current exploring policies, i.e. states drawn from the current policies' on-policy
   distribution over an episode's time steps, as the recent part of the real buffer D_env. The real
   env needs its full env state (not only the observations), which the replay buffer does not keep.
   The step counter of every start state is set back to 0 so that no rollout hits the time limit.
2. The real trajectory: h steps of the real env from those states, every agent acting with its own
   (exploring) policy; the same for every ego and every scheme.
3. The branched rollout of every ego under the scheme, through the algorithm's own code path
   (``algo.ego_rollout``: its dynamics model ``algo.dyn.step``, its opponent models ``algo.opp.predict``,
   n_j = :func:`~marlow.world.branched.opponent_steps` of the state's eps, the agents' ``algo.agent_act``)
   from the start states' joint observations, with rollout length k = h: eps_c(h) compares an h-step
   rollout with the first h real steps, and its communications are those of an h-step rollout (under the
   adaptive schemes n_j depends on k, so the h-step rollout is not a prefix of the H-step one).

The model rollout's actions come from the policies applied to the model's predicted observations, so
its actions drift from the real ones as its states do: that is the compounding. Common random numbers:
the real trajectory and every model rollout use the same key, so at every step each agent's action
sample uses the same key in both (the rollout engine splits the keys the same way as ``algo.act``). With
an exact dynamics model and the real policies (``"all_real"``) the two trajectories then coincide
(eps_c = 0), and the differences left are those of the learned dynamics and the opponent models, not of
independent action noise.

Everything is a pure function of explicit keys and arrays, jittable and vmappable over seeds
(:func:`make_measure`); ``m``, ``horizon``, ``schemes`` and ``max_warmup`` are static.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from marlow import rollout as engine
from marlow.errors import ConfigError
from marlow.world.branched import SCHEMES, compounding_error, rollout

DEFAULT_SCHEMES = ("adaptive", "all_models", "all_real")
"""The three model usages of Sec. 6.3 / Figs. 4-5."""


def start_states(algo, state, env, key: jax.Array, m: int, max_warmup: int | None = None):
    """M real start states (module docstring, 1.): M fresh resets, each run for w_m ~ U{0..max_warmup}
    steps with the agents' exploring policies ``algo.act(state, obs, key, True)``.

    Returns ``(env_states [M], obs {agent: [M, d]}, w [M])``; the env states carry a step counter of 0
    so that a rollout from them does not hit the time limit (an env state without a ``step`` counter is
    refused: its rollouts would end at the time limit part-way)."""
    spec = env.spec
    w_max = spec.episode_length - 1 if max_warmup is None else int(max_warmup)
    if not 0 <= w_max < spec.episode_length:
        raise ConfigError(f"max_warmup must lie in [0, episode_length - 1 = {spec.episode_length - 1}]")
    k_reset, k_w, k_run = jax.random.split(key, 3)
    carry = engine.reset(env, k_reset, m)
    w = jax.random.randint(k_w, (m,), 0, w_max + 1)
    if w_max == 0:
        env_state, obs = carry.env_state, carry.obs
    else:
        # w_max steps of every start (the rollout engine, no auto-reset: w_max < episode_length), then
        # start m's state after its first w_m steps
        last, _, traj = engine.collect(
            env,
            engine.stateless(lambda obs, k: algo.act(state, obs, k, True)),
            carry,
            jax.random.split(k_run, w_max),
            w_max,
            engine.Options(step_keys=True, auto_reset=False, record_states=True),
        )

        def pick(before, after):  # before: [w_max, M, ...] states before each step; after: [M, ...]
            seq = jnp.concatenate([before, after[None]], axis=0)
            return seq[w, jnp.arange(m)]

        env_state = jax.tree.map(pick, traj.states, last.env_state)
        obs = jax.tree.map(pick, traj.obs, last.obs)
    if not hasattr(env_state, "step"):
        raise ConfigError(
            f"the compounding measurement needs env states with a step counter to restart the time limit "
            f"from each start state; {type(env_state).__name__} has none"
        )
    env_state = env_state.replace(step=jnp.zeros_like(env_state.step))
    return env_state, obs, w


def real_trajectory(algo, state, env, key: jax.Array, env_states, horizon: int) -> dict[str, jax.Array]:
    """s_1..s_H of the real env from ``env_states`` [M], every agent acting with its exploring policy:
    agent -> ``[H, M, d]``. Uses the rollout engine with the same key layout as a branched rollout."""
    r = rollout(key, env, env_states, lambda obs, k: algo.act(state, obs, k, True), horizon, horizon)
    return r.transitions["next_obs"]


def scheme_curves(algo, state, key: jax.Array, start_obs: dict, real_next_obs: dict, scheme: str) -> dict:
    """eps_c(h) and communications of every ego's h-step branched rollouts (k = h) under ``scheme``, for
    h = 1..H (H = the real trajectory's length). See :func:`compounding_curves` for the result."""
    spec = algo.spec
    horizon = jax.tree.leaves(real_next_obs)[0].shape[0]
    ks = jnp.arange(1, horizon + 1, dtype=jnp.int32)
    err, comm, ns = [], {}, {}
    for ego in spec.agents:

        def one(k, ego=ego):
            n, r = algo.ego_rollout(state, ego, start_obs, key, k, scheme=scheme, k_max=horizon)
            return compounding_error(real_next_obs, r.transitions["next_obs"], r.valid), r.communication, n

        e, c, n = jax.vmap(one)(ks)  # e [H, M]; c, n: j -> [H]
        err.append(jnp.mean(e, axis=1))
        comm[ego], ns[ego] = c, n
    eps_c_ego = jnp.stack(err)  # [N, H]
    total = sum(c.astype(jnp.float32) for ego in comm for c in comm[ego].values())
    return {
        "eps_c": jnp.mean(eps_c_ego, axis=0),
        "eps_c_ego": eps_c_ego,
        "comm": jnp.broadcast_to(jnp.asarray(total, jnp.float32), (horizon,)),
        "comm_ego": comm,
        "n": ns,
    }


def compounding_curves(
    algo,
    state,
    env,
    key: jax.Array,
    m: int,
    horizon: int,
    schemes: Sequence[str] = DEFAULT_SCHEMES,
    max_warmup: int | None = None,
) -> dict[str, Any]:
    """The model compounding error of every scheme in ``schemes`` over horizons h = 1..``horizon`` from
    the same ``m`` real start states and the same keys (module docstring).

    Args:
        algo: an AORPO-family algorithm (``ego_rollout``, ``act``, ``spec``).
        state: its state for one seed (vmap this function over seeds).
        env: the real JAX env of the task (its full env state is rolled out).
        key: PRNG key.
        m: number of start states M.
        horizon: H, the longest rollout (at most the episode length).
        schemes: rollout schemes to measure.
        max_warmup: the most warm-up steps of a start state (default ``episode_length - 1``).

    Returns a dict scheme -> {
        ``eps_c``: float32 ``[H]``, eps_c(h) averaged over the start states and the egos;
        ``eps_c_ego``: ``[N, H]`` per ego (averaged over the start states);
        ``comm``: float32 ``[H]``, the communications of the h-step rollouts of all egos together
            (sum over egos j of M x (number of j's real steps), e.g. M x (h - n_j) per teammate j under
            ``"adaptive"``);
        ``comm_ego``: ego -> j -> int32 ``[H]``; ``n``: ego -> j -> int32 ``[H]`` (n_j at k = h)},
    plus ``"warmup"``: int32 ``[M]``, the start states' warm-up steps."""
    schemes = tuple(schemes)
    bad = [s for s in schemes if s not in SCHEMES]
    if bad:
        raise ConfigError(f"unknown rollout schemes {bad}; choose from {', '.join(SCHEMES)}")
    if not 1 <= horizon <= env.spec.episode_length:
        raise ConfigError(
            f"horizon must lie in [1, episode_length = {env.spec.episode_length}], got {horizon}"
        )
    if m < 1:
        raise ConfigError(f"need at least one start state, got m={m}")
    k_start, k_roll = jax.random.split(key)
    env_states, obs, w = start_states(algo, state, env, k_start, m, max_warmup)
    real = real_trajectory(algo, state, env, k_roll, env_states, horizon)
    out: dict[str, Any] = {s: scheme_curves(algo, state, k_roll, obs, real, s) for s in schemes}
    out["warmup"] = w
    return out


def make_measure(
    algo,
    env,
    m: int,
    horizon: int,
    schemes: Sequence[str] = DEFAULT_SCHEMES,
    max_warmup: int | None = None,
    seeds: bool = False,
):
    """``measure(state, key) -> compounding_curves(...)``, jitted; with ``seeds`` vmapped over a leading
    seed axis of both ``state`` and ``key``."""
    fn = partial(
        compounding_curves, algo, env=env, m=m, horizon=horizon, schemes=tuple(schemes), max_warmup=max_warmup
    )

    def measure(state, key):
        return fn(state, key=key)

    return jax.jit(jax.vmap(measure) if seeds else measure)


__all__ = [
    "DEFAULT_SCHEMES",
    "compounding_curves",
    "make_measure",
    "real_trajectory",
    "scheme_curves",
    "start_states",
]
