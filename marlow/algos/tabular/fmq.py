"""FMQ: Frequency Maximum Q (Kapetanakis & Kudenko, AAAI 2002, "Reinforcement learning of coordination
in cooperative multi-agent systems"), independent learners with the FMQ heuristic; the ROMMEO paper's
baseline "FMQ-c10" (Sec. 5.1, Fig. 1) uses c = 10.

Every agent i keeps Q_i[s, a_i] and, for each own action, the maximum reward received so far
maxR_i(s, a_i), how often that maximum was received, and how often a_i was played:
    freq(maxR_i(s, a)) = #(a played and r = maxR_i(s, a)) / #(a played)
FMQ heuristic (the expected value used for action selection only):
    EV_i(s, a) = Q_i(s, a) + c freq(maxR_i(s, a)) maxR_i(s, a)
Boltzmann action selection with a decaying temperature:
    pi_i(a|s) = exp(EV_i(s, a) / T) / sum_b exp(EV_i(s, b) / T),   T(x) = exp(-s_T x) max_temp + 1
  x = number of joint actions played so far (transitions observed, all envs counted).
Q update (single-stage in the paper, Q(a) <- Q(a) + lambda (r - Q(a))), written for stochastic games:
    Q_i(s, a) <- Q_i(s, a) + lr ( r_i + gamma (1 - d) max_{a'} Q_i(s', a') - Q_i(s, a) )

Choices (values and sources in conf/algo/fmq.yaml):
- gamma = 0 by default, the paper's single-stage update: the iterated climbing game has one state, so
  bootstrapping would add the same gamma V(s') to every action's target and leave the fixed point's
  ordering unchanged, but it inflates Q ~ 20-fold relative to the heuristic term while it grows
  (a transient the paper does not have). ``gamma`` > 0 bootstraps through max Q (not max EV: the
  heuristic is an action-selection device in the paper).
- lr = 0.9 constant, c = 10, max_temp = 499, s_T = 0.006: the paper's climbing-game settings.
- maxR, its frequency and x are updated from every collected transition (``observe``, warm-up
  included), like the paper's online agents; Q learns from replay mini-batches (``cell_update``).
  Before an action was ever played its heuristic term is 0.
- No epsilon: the paper explores by the Boltzmann temperature alone.
- ``explore=False`` plays argmax EV (ties broken at random, ``tabular.greedy_sample``).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from marlow.algos.tabular import common as tabular
from marlow.algos.tabular.common import StepSize, decayed
from marlow.envs.api import EnvSpec
from marlow.schema.groups import ReplayKeys
from marlow.schema.ranges import NonNegative, Unit

NAME = "fmq"
KIND = "off_policy"
DESCRIPTION = (
    "Frequency Maximum Q: independent Q + max-reward frequency heuristic (Kapetanakis & Kudenko 2002)"
)
SUPPORTED_ACTIONS = frozenset({"discrete"})
TABULAR = True


@dataclass
class Config(ReplayKeys):
    """Defaults in conf/algo/fmq.yaml, each with its source."""

    gamma: Unit
    lr: StepSize
    lr_decay: NonNegative  # d of lr d / (d + t); 0 keeps lr constant
    c: NonNegative  # the heuristic's weight; 0 leaves plain Boltzmann Q-learning
    max_temp: NonNegative  # 0: T = 1 throughout
    temp_decay: NonNegative  # s_T; 0 keeps T = max_temp + 1


@struct.dataclass
class State:
    q: dict[str, jax.Array]  # [S, |A_i|]
    max_r: dict[str, jax.Array]  # [S, |A_i|] maxR(s, a), -inf before a was played
    max_count: dict[str, jax.Array]  # [S, |A_i|] times maxR(s, a) was received playing a
    count: dict[str, jax.Array]  # [S, |A_i|] times a was played
    seen: jax.Array  # x: transitions observed (joint actions played)
    steps: jax.Array  # updates done


class Algorithm:
    def __init__(self, spec: EnvSpec, cfg: Config):
        self.spec, self.cfg = spec, cfg
        self.ix = tabular.Indexing(spec)

    def init(self, key: jax.Array) -> State:
        ix = self.ix

        def table(v):
            return {a: jnp.full((ix.num_states, ix.n[a]), v, jnp.float32) for a in ix.agents}

        return State(
            q=table(0.0),
            max_r=table(-jnp.inf),
            max_count=table(0.0),
            count=table(0.0),
            seen=jnp.float32(0),
            steps=jnp.int32(0),
        )

    def temperature(self, state: State) -> jax.Array:
        """T(x) = exp(-s_T x) max_temp + 1."""
        return jnp.exp(-self.cfg.temp_decay * state.seen) * self.cfg.max_temp + 1.0

    def frequency(self, state: State, agent: str, s: jax.Array) -> jax.Array:
        """freq(maxR(s, a)), ``[B, |A_i|]`` (0 before a was played)."""
        n = state.count[agent][s]
        return jnp.where(n > 0, state.max_count[agent][s] / jnp.maximum(n, 1.0), 0.0)

    def expected_values(self, state: State, agent: str, s: jax.Array) -> jax.Array:
        """EV(s, a) = Q(s, a) + c freq(maxR(s, a)) maxR(s, a), ``[B, |A_i|]``."""
        freq = self.frequency(state, agent, s)
        max_r = jnp.where(state.count[agent][s] > 0, state.max_r[agent][s], 0.0)
        return state.q[agent][s] + self.cfg.c * freq * max_r

    def policy(self, state: State, agent: str, s: jax.Array) -> jax.Array:
        """Boltzmann policy over EV at the current temperature, ``[B, |A_i|]``."""
        return jax.nn.softmax(self.expected_values(state, agent, s) / self.temperature(state), axis=-1)

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        return tabular.act(
            self.ix,
            key,
            obs,
            explore,
            lambda a, s: self.policy(state, a, s),
            lambda a, s: self.expected_values(state, a, s),
        )

    # ---- learning ----------------------------------------------------------------------------------
    def observe(self, state: State, trans: dict) -> State:
        """Update maxR, its frequency and the play counts with every collected transition."""
        s = self.ix.state(trans["obs"])
        new = {k: {} for k in ("max_r", "max_count", "count")}
        for a in self.ix.agents:
            cell = (s, trans["actions"][a].astype(jnp.int32))
            r = trans["rewards"][a].astype(jnp.float32)
            old_max = state.max_r[a]
            max_r = old_max.at[cell].max(r)  # the batch may raise a cell's maximum
            hits = jnp.zeros_like(max_r).at[cell].add((r == max_r[cell]).astype(jnp.float32))
            kept = jnp.where(max_r > old_max, 0.0, state.max_count[a])  # a new maximum restarts its count
            new["max_r"][a], new["max_count"][a] = max_r, kept + hits
            new["count"][a] = tabular.count_update(state.count[a], cell)
        return state.replace(seen=state.seen + s.shape[0], **new)

    def update(self, state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        cfg, ix = self.cfg, self.ix
        lr = decayed(cfg.lr, cfg.lr_decay, state.steps)
        s, s_next = ix.state(batch["obs"]), ix.state(batch["next_obs"])
        not_done = 1.0 - batch["done"]
        q_new, td = {}, []
        for a in ix.agents:
            y = batch["rewards"][a] + cfg.gamma * not_done * jnp.max(state.q[a][s_next], axis=-1)
            cell = (s, batch["actions"][a].astype(jnp.int32))
            td.append(jnp.mean(jnp.abs(y - state.q[a][cell])))
            q_new[a] = tabular.cell_update(state.q[a], cell, y, lr)
        state = state.replace(q=q_new, steps=state.steps + 1)
        return state, {"td_error": jnp.mean(jnp.stack(td)), "lr": lr, "temperature": self.temperature(state)}

    def diagnostics(self, state: State) -> dict:
        """P(action 0) in state 0 under each agent's Boltzmann policy, and the temperature."""
        s0 = jnp.zeros((1,), jnp.int32)
        out = {f"pi_a0/{a}": self.policy(state, a, s0)[0, 0] for a in self.ix.agents}
        out["temperature"] = self.temperature(state)
        return out
