"""IQL: independent tabular Q-learning (Watkins & Dayan 1992), every agent ignoring the others (the
"independent learner" of Claus & Boutilier 1998, Sec. 3).

Every agent i keeps Q_i[s, a_i] and treats the other agents as part of the environment.

Q-learning update (Watkins & Dayan 1992):
    Q_i(s, a_i) <- Q_i(s, a_i) + lr_t ( r_i + gamma (1 - d) max_{a'} Q_i(s', a') - Q_i(s, a_i) )
Acting: epsilon-greedy around the greedy policy pi_i(.|s) = uniform over argmax_a Q_i(s, a).

Choices the method leaves open (all but the first in conf/algo/iql.yaml, each with its source):
- Ties in argmax Q are broken uniformly at random while acting (``tabular.greedy_probs``). ``jnp.argmax``
  would always pick the lowest index, and on the climbing game action 0 is the global optimum A:
  an all-zero initial table would then steer both agents to (A, A) for free.
- Q starts at 0; lr_t = lr x c / (c + t) with c = 1e4, t = updates done (the ROMMEO reference code's
  tabular schedule); epsilon = 0.1 and gamma = 0.95 (same code).
- A replay mini-batch moves every Q cell it hits toward the mean of its targets
  (``tabular.cell_update``): one sample per cell is the textbook update.
- ``explore=False`` plays argmax Q, ties broken at random too: ``jnp.argmax`` would make untrained
  all-zero tables evaluate at (A, A), the climbing game's optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from marlow.algos.tabular import common as tabular
from marlow.algos.tabular.common import StepSize
from marlow.envs.api import EnvSpec
from marlow.schema.groups import ReplayKeys
from marlow.schema.ranges import NonNegative, Unit

NAME = "iql"
KIND = "off_policy"
DESCRIPTION = (
    "Independent tabular Q-learning, epsilon-greedy (Watkins & Dayan 1992; C&B 1998 independent learners)"
)
SUPPORTED_ACTIONS = frozenset({"discrete"})
TABULAR = True


# ---- helpers shared by the tabular baselines ----------------------------------------------------------
# ---- the algorithm ---------------------------------------------------------------------------------------
@dataclass
class Config(ReplayKeys):
    """Defaults in conf/algo/iql.yaml, each with its source."""

    gamma: Unit
    lr: StepSize
    lr_decay: NonNegative  # d of lr d / (d + t); 0 keeps lr constant
    epsilon: Unit  # the probability of a uniform action


@struct.dataclass
class State:
    q: dict[str, jax.Array]  # [S, |A_i|] per agent
    steps: jax.Array  # updates done


class Algorithm:
    def __init__(self, spec: EnvSpec, cfg: Config):
        self.spec, self.cfg = spec, cfg
        self.ix = tabular.Indexing(spec)

    def init(self, key: jax.Array) -> State:
        ix = self.ix
        return State(q={a: jnp.zeros((ix.num_states, ix.n[a])) for a in ix.agents}, steps=jnp.int32(0))

    def policy(self, state: State, agent: str, s: jax.Array) -> jax.Array:
        """The greedy policy (ties shared), ``[B, |A_i|]``."""
        return tabular.greedy_probs(state.q[agent][s])

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        return tabular.act(
            self.ix,
            key,
            obs,
            explore,
            lambda a, s: tabular.epsilon_mix(self.policy(state, a, s), self.cfg.epsilon),
            lambda a, s: state.q[a][s],
        )

    def update(self, state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        cfg, ix = self.cfg, self.ix
        lr = tabular.decayed(cfg.lr, cfg.lr_decay, state.steps)
        s, s_next = ix.state(batch["obs"]), ix.state(batch["next_obs"])
        not_done = 1.0 - batch["done"]
        q_new, td = {}, []
        for a in ix.agents:
            y = batch["rewards"][a] + cfg.gamma * not_done * jnp.max(state.q[a][s_next], axis=-1)
            cell = (s, batch["actions"][a].astype(jnp.int32))
            td.append(jnp.mean(jnp.abs(y - state.q[a][cell])))
            q_new[a] = tabular.cell_update(state.q[a], cell, y, lr)
        return state.replace(q=q_new, steps=state.steps + 1), {"td_error": jnp.mean(jnp.stack(td)), "lr": lr}

    def diagnostics(self, state: State) -> dict:
        """P(action 0) in state 0 under each agent's greedy policy (ties shared)."""
        s0 = jnp.zeros((1,), jnp.int32)
        return {f"pi_a0/{a}": self.policy(state, a, s0)[0, 0] for a in self.ix.agents}
