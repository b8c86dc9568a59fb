"""PR2-Q: tabular probabilistic recursive reasoning, level 1 (Wen et al., ICLR 2019, "Probabilistic
recursive reasoning for multi-agent reinforcement learning", Sec. 4; the ROMMEO paper's PR2 baseline
of Fig. 1).

Every agent i keeps a joint soft Q-table Q_i[s, a_i, a_-i] and reasons about how the others would
react to its own action a_i (level-1 recursion).
Optimal opponent conditional policy (PR2 Theorem 1, soft form with temperature alpha):
    rho_i(a_-i | s, a_i) = exp(Q_i(s, a_i, a_-i) / alpha) / sum_b exp(Q_i(s, a_i, b) / alpha)
Level-1 value of an own action (PR2 Sec. 4, "the opponents' reaction integrated out"):
    Q_i(s, a_i) = sum_{a_-i} rho_i(a_-i | s, a_i) Q_i(s, a_i, a_-i)
Own policy (maximum-entropy best response to it):
    pi_i(a_i | s) = softmax_{a_i}( Q_i(s, a_i) / alpha )
Joint Q update (PR2-Q):
    Q_i(s, a_i, a_-i) <- Q_i + lr_t ( r_i + gamma (1 - d) max_{a'} Q_i(s', a') - Q_i(s, a_i, a_-i) )
with the level-1 values Q_i(s', a') of the next state.

Choices the paper leaves open (values and sources in conf/algo/pr2_q.yaml):
- The bootstrapped value is max_{a'} Q_i(s', a') (Q-learning on the level-1 values), as in the
  PR2 authors' tabular code (maci "RRQ" learner).
- alpha: 1 at t = 0, decayed as alpha c / (c + t), c = 1e4, the same schedule as ROMMEO-Q (the ROMMEO
  reference code's tabular setting), so the two soft methods share their temperature.
- Acting: pi_i with epsilon-greedy 0.1 mixing (ROMMEO reference code; maci RRQ: softmax then
  epsilon-greedy). ``explore=False`` plays argmax_a Q_i(s, a)
  (ties broken at random, ``tabular.greedy_sample``).
- Q starts at 0 (rho uniform); lr_t = lr c / (c + t), c = 1e4 (ROMMEO reference code); a replay
  mini-batch moves each cell toward the mean of its targets (``tabular.cell_update``).
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
from marlow.schema.ranges import NonNegative, Positive, Unit

NAME = "pr2_q"
KIND = "off_policy"
DESCRIPTION = "PR2-Q: tabular level-1 probabilistic recursive reasoning (Wen et al. 2019)"
SUPPORTED_ACTIONS = frozenset({"discrete"})
TABULAR = True


@dataclass
class Config(ReplayKeys):
    """Defaults in conf/algo/pr2_q.yaml, each with its source."""

    gamma: Unit
    alpha: Positive
    alpha_decay: NonNegative  # 0 keeps alpha constant
    lr: StepSize
    lr_decay: NonNegative  # d of lr d / (d + t); 0 keeps lr constant
    epsilon: Unit  # the probability of a uniform action


@struct.dataclass
class State:
    q: dict[str, jax.Array]  # [S, |A_i|, |A_-i|] per agent
    steps: jax.Array  # updates done


class Algorithm:
    def __init__(self, spec: EnvSpec, cfg: Config):
        self.spec, self.cfg = spec, cfg
        self.ix = tabular.Indexing(spec)

    def init(self, key: jax.Array) -> State:
        ix = self.ix
        return State(
            q={a: jnp.zeros((ix.num_states, ix.n[a], ix.n_others[a])) for a in ix.agents},
            steps=jnp.int32(0),
        )

    def alpha(self, state: State) -> jax.Array:
        return decayed(self.cfg.alpha, self.cfg.alpha_decay, state.steps)

    # ---- level-1 reasoning -------------------------------------------------------------------------
    def opponent(self, state: State, agent: str, s: jax.Array) -> jax.Array:
        """rho_i(a_-i | s, a_i) = softmax_{a_-i}(Q_i(s, a_i, a_-i) / alpha), ``[B, |A_i|, |A_-i|]``."""
        return jax.nn.softmax(state.q[agent][s] / self.alpha(state), axis=-1)

    def level1(self, state: State, agent: str, s: jax.Array) -> jax.Array:
        """Q_i(s, a_i) = sum_{a_-i} rho_i(a_-i | s, a_i) Q_i(s, a_i, a_-i), ``[B, |A_i|]``."""
        return jnp.sum(self.opponent(state, agent, s) * state.q[agent][s], axis=-1)

    def policy(self, state: State, agent: str, s: jax.Array) -> jax.Array:
        """pi_i(a_i|s) = softmax(Q_i(s, .) / alpha) (before epsilon mixing), ``[B, |A_i|]``."""
        return jax.nn.softmax(self.level1(state, agent, s) / self.alpha(state), axis=-1)

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        return tabular.act(
            self.ix,
            key,
            obs,
            explore,
            lambda a, s: tabular.epsilon_mix(self.policy(state, a, s), self.cfg.epsilon),
            lambda a, s: self.level1(state, a, s),
        )

    # ---- learning ----------------------------------------------------------------------------------
    def update(self, state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        cfg, ix = self.cfg, self.ix
        lr = decayed(cfg.lr, cfg.lr_decay, state.steps)
        s, s_next = ix.state(batch["obs"]), ix.state(batch["next_obs"])
        not_done = 1.0 - batch["done"]
        q_new, td = {}, []
        for a in ix.agents:
            v_next = jnp.max(self.level1(state, a, s_next), axis=-1)
            y = batch["rewards"][a] + cfg.gamma * not_done * v_next
            cell = (s, batch["actions"][a].astype(jnp.int32), ix.others_index(a, batch["actions"]))
            td.append(jnp.mean(jnp.abs(y - state.q[a][cell])))
            q_new[a] = tabular.cell_update(state.q[a], cell, y, lr)
        alpha = self.alpha(state)
        state = state.replace(q=q_new, steps=state.steps + 1)
        return state, {"td_error": jnp.mean(jnp.stack(td)), "lr": lr, "alpha": alpha}

    def diagnostics(self, state: State) -> dict:
        """P(action 0) in state 0 under each agent's policy pi_i, and the probability its opponent model
        gives the first other agent playing action 0 in reply to the agent's own action 0."""
        s0 = jnp.zeros((1,), jnp.int32)
        out = {}
        for a in self.ix.agents:
            out[f"pi_a0/{a}"] = self.policy(state, a, s0)[0, 0]
            other = self.ix.others[a][0]
            rho = self.ix.others_marginal(a, self.opponent(state, a, s0)[:, 0], other)
            out[f"rho_a0_given_a0/{a}"] = rho[0, 0]
        return out
