"""WoLF-PHC: "Win or Learn Fast" policy hill-climbing (Bowling & Veloso, IJCAI 2001 "Rational and
convergent learning in stochastic games"; AIJ 2002 "Multiagent learning using a variable learning
rate", Table 2).

Every agent i keeps Q_i[s, a], a mixed policy pi_i[s, a], an average policy pibar_i[s, a] and a visit
count C_i(s). After an experience (s, a, r, s') (Table 2, steps (b)-(d)):
  (b) Q_i(s, a) <- (1 - lr) Q_i(s, a) + lr ( r + gamma (1 - d) max_{a'} Q_i(s', a') )
  (c) C(s) <- C(s) + 1;   pibar(s, a') <- pibar(s, a') + (pi(s, a') - pibar(s, a')) / C(s)   for all a'
  (d) delta = delta_win  if  sum_a pi(s, a) Q(s, a) > sum_a pibar(s, a) Q(s, a)   ("winning")
              delta_lose otherwise,                        with delta_lose > delta_win
      delta_sa = min( pi(s, a), delta / (|A_i| - 1) )
      pi(s, a) <- pi(s, a) + Delta_sa,   Delta_sa = -delta_sa                    if a != argmax_a' Q(s, a')
                                                  = sum_{a' != a} delta_sa'      otherwise
  so pi stays a probability distribution (the min keeps every entry >= 0, the mass moved is conserved).
Acting (step (a)): sample from pi with epsilon-exploration.

Choices the papers leave open (values and sources in conf/algo/wolf_phc.yaml):
- Replay: one update call moves Q toward the mean target of each cell hit by the mini-batch
  (``tabular.cell_update``) and then does steps (c)-(d) once for every *state* the batch hits, so with
  one update per env step the policy takes one hill-climbing step per experience, as in Table 2.
- Ties in argmax Q (e.g. the all-zero initial table): the maximisers share the mass taken from the
  other actions equally (Table 2 assumes a unique argmax; ``jnp.argmax`` would favour action 0, the
  climbing game's optimum). If every action is a maximiser the policy does not move.
- delta_win, delta_lose: B&V use experiment-specific decaying schedules with delta_lose / delta_win
  = 2 or more; we take the ROMMEO authors' tabular code (maci WoLF-PHC: 0.0025 / 0.005, constant;
  ``delta_decay`` > 0 decays both as delta c / (c + t)).
- Q starts at 0, pi and pibar uniform, C = 0 (Table 2). lr_t = lr c / (c + t), c = 1e4, epsilon 0.1,
  gamma 0.95 (ROMMEO reference code's tabular setting).
- ``explore=False`` plays argmax pi, the mode of the mixed policy (ties broken at random,
  ``tabular.greedy_sample``: the uniform initial pi would otherwise evaluate at action 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import jax
import jax.numpy as jnp
from flax import struct

from marlow.algos.tabular import common as tabular
from marlow.algos.tabular.common import decayed, greedy_sample
from marlow.envs.api import EnvSpec
from marlow.schema.groups import ReplayKeys
from marlow.schema.ranges import NonNegative, Range, Unit

NAME = "wolf_phc"
KIND = "off_policy"
DESCRIPTION = (
    "WoLF policy hill-climbing: Q + mixed policy stepped by delta_win < delta_lose (Bowling & Veloso 2002)"
)
SUPPORTED_ACTIONS = frozenset({"discrete"})
TABULAR = True


@dataclass
class Config(ReplayKeys):
    """Defaults in conf/algo/wolf_phc.yaml, each with its source."""

    gamma: Unit
    lr: Unit  # the Q step size (1 - lr) Q + lr y; 0 freezes Q while pi still hill-climbs
    lr_decay: NonNegative  # d of lr d / (d + t); 0 keeps lr constant
    delta_win: Annotated[float, Range(0, 1, lo_open=True)]  # probability mass moved per step
    delta_lose: Annotated[float, Range(0, 1, lo_open=True)]  # > delta_win (checked by Algorithm)
    delta_decay: NonNegative  # 0 keeps both deltas constant
    epsilon: Unit  # the probability of a uniform action


@struct.dataclass
class State:
    q: dict[str, jax.Array]  # [S, |A_i|]
    pi: dict[str, jax.Array]  # [S, |A_i|] current mixed policy
    avg_pi: dict[str, jax.Array]  # [S, |A_i|] average policy pibar
    visits: dict[str, jax.Array]  # [S] C(s): policy updates done in s
    steps: jax.Array  # updates done


def hill_climb(pi: jax.Array, q: jax.Array, delta: jax.Array) -> jax.Array:
    """Step (d) for every row: move up to ``delta`` of probability mass to the greedy actions of ``q``
    (shared equally among ties), taking ``min(pi, delta / (n - 1))`` from each other action."""
    n = pi.shape[-1]
    best = tabular.argmax_set(q)
    taken = jnp.where(best, 0.0, jnp.minimum(pi, delta[..., None] / (n - 1)))  # delta_sa, a not greedy
    given = jnp.sum(taken, axis=-1, keepdims=True) * best / jnp.sum(best, axis=-1, keepdims=True)
    return pi - taken + given


class Algorithm:
    def __init__(self, spec: EnvSpec, cfg: Config):
        if not cfg.delta_lose > cfg.delta_win > 0:
            raise ValueError("WoLF needs delta_lose > delta_win > 0")
        self.spec, self.cfg = spec, cfg
        self.ix = tabular.Indexing(spec)

    def init(self, key: jax.Array) -> State:
        ix = self.ix
        return State(
            q={a: jnp.zeros((ix.num_states, ix.n[a])) for a in ix.agents},
            pi={a: jnp.full((ix.num_states, ix.n[a]), 1.0 / ix.n[a]) for a in ix.agents},
            avg_pi={a: jnp.full((ix.num_states, ix.n[a]), 1.0 / ix.n[a]) for a in ix.agents},
            visits={a: jnp.zeros((ix.num_states,)) for a in ix.agents},
            steps=jnp.int32(0),
        )

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        s = self.ix.state(obs)
        out = {}
        for a, k in zip(self.ix.agents, jax.random.split(key, len(self.ix.agents)), strict=True):
            if explore:
                out[a] = tabular.sample(k, tabular.epsilon_mix(state.pi[a][s], self.cfg.epsilon))
            else:
                out[a] = greedy_sample(k, state.pi[a][s])
        return out

    def update(self, state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        cfg, ix = self.cfg, self.ix
        lr = decayed(cfg.lr, cfg.lr_decay, state.steps)
        d_win = decayed(cfg.delta_win, cfg.delta_decay, state.steps)
        d_lose = decayed(cfg.delta_lose, cfg.delta_decay, state.steps)
        s, s_next = ix.state(batch["obs"]), ix.state(batch["next_obs"])
        not_done = 1.0 - batch["done"]
        hit = jnp.zeros((ix.num_states,), bool).at[s].set(True)  # states whose policy takes a step
        new = {k: {} for k in ("q", "pi", "avg_pi", "visits")}
        td, win_frac = [], []
        for a in ix.agents:
            # (b) Q-learning
            y = batch["rewards"][a] + cfg.gamma * not_done * jnp.max(state.q[a][s_next], axis=-1)
            cell = (s, batch["actions"][a].astype(jnp.int32))
            td.append(jnp.mean(jnp.abs(y - state.q[a][cell])))
            q = tabular.cell_update(state.q[a], cell, y, lr)
            # (c) average policy
            visits = state.visits[a] + hit
            pi = state.pi[a]
            avg = jnp.where(
                hit[:, None],
                state.avg_pi[a] + (pi - state.avg_pi[a]) / jnp.maximum(visits, 1.0)[:, None],
                state.avg_pi[a],
            )
            # (d) win or learn fast
            win = jnp.sum(pi * q, axis=-1) > jnp.sum(avg * q, axis=-1)
            delta = jnp.where(win, d_win, d_lose)
            new["pi"][a] = jnp.where(hit[:, None], hill_climb(pi, q, delta), pi)
            new["q"][a], new["avg_pi"][a], new["visits"][a] = q, avg, visits
            win_frac.append(jnp.sum(win * hit) / jnp.sum(hit))
        state = state.replace(steps=state.steps + 1, **new)
        metrics = {"td_error": jnp.mean(jnp.stack(td)), "lr": lr, "win_frac": jnp.mean(jnp.stack(win_frac))}
        return state, metrics

    def diagnostics(self, state: State) -> dict:
        """P(action 0) in state 0 under each agent's mixed policy pi and average policy pibar."""
        out = {}
        for a in self.ix.agents:
            out[f"pi_a0/{a}"] = state.pi[a][0, 0]
            out[f"avg_pi_a0/{a}"] = state.avg_pi[a][0, 0]
        return out
