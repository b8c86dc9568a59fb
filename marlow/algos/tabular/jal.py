"""JAL: joint action learners (Claus & Boutilier 1998, "The dynamics of reinforcement learning in
cooperative multiagent systems", Sec. 3), extended to stochastic games by bootstrapping.

Every agent i keeps a joint-action table Q_i[s, a_i, a_-i] and, per state, counts C_i^j(s, a_j) of
every other agent j's actions (fictitious play). Its belief about the others is the product of their
empirical frequencies, as in C&B Sec. 3 (one model per other agent):
    Pr_i(a_-i | s) = prod_{j != i} C_i^j(s, a_j) / sum_b C_i^j(s, b)       (uniform before any count)
Expected value of an own action (C&B Sec. 3):
    EV_i(s, a_i) = sum_{a_-i} Q_i(s, a_i, a_-i) Pr_i(a_-i | s)
Joint-action Q update (C&B's Q(a) <- Q(a) + lambda (r - Q(a)) for the joint action, bootstrapped):
    Q_i(s, a_i, a_-i) <- Q_i + lr_t ( r_i + gamma (1 - d) max_{a'} EV_i(s', a') - Q_i(s, a_i, a_-i) )
Acting: Boltzmann exploration over EV (C&B Sec. 3), pi_i(a_i|s) = softmax(EV_i(s, .) / T), then
epsilon-greedy mixing.

Choices the papers leave open (conf/algo/jal.yaml holds the values and their sources):
- C&B study single-stage games; in a stochastic game the bootstrapped value is the best expected
  value under the current belief, max_a EV_i(s', a) (the usual JAL extension).
- Belief: the product of per-agent marginals (C&B); for two agents it is the empirical frequency
  of the other's action. Counts are kept per state over the *joint* index (``Indexing``) and
  marginalised; they include every transition collected (``observe``), warm-up included.
- C&B decay the Boltzmann temperature per experiment; we use the ROMMEO authors' tabular code
  (maci, "OMQ" learner: softmax over EV at T = 1 and epsilon-greedy 0.1), T = ``temperature``
  constant (``temperature_decay`` > 0 decays it as T c / (c + t)).
- Q starts at 0; lr_t = lr c / (c + t), c = 1e4 (ROMMEO reference code); a replay mini-batch moves
  each cell toward the mean of its targets (``tabular.cell_update``).
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
from marlow.schema.ranges import NonNegative, Positive, Unit

NAME = "jal"
KIND = "off_policy"
DESCRIPTION = "Joint action learner: joint Q + empirical opponent frequencies (Claus & Boutilier 1998)"
SUPPORTED_ACTIONS = frozenset({"discrete"})
TABULAR = True


@dataclass
class Config(ReplayKeys):
    """Defaults in conf/algo/jal.yaml, each with its source."""

    gamma: Unit
    lr: StepSize
    lr_decay: NonNegative  # d of lr d / (d + t); 0 keeps lr constant
    temperature: Positive
    temperature_decay: NonNegative  # 0 keeps the temperature constant
    epsilon: Unit  # the probability of a uniform action


@struct.dataclass
class State:
    q: dict[str, jax.Array]  # [S, |A_i|, |A_-i|] per agent
    counts: dict[str, jax.Array]  # [S, |A_-i|] counts of the others' joint actions, per agent
    steps: jax.Array  # updates done


class Algorithm:
    def __init__(self, spec: EnvSpec, cfg: Config):
        self.spec, self.cfg = spec, cfg
        self.ix = tabular.Indexing(spec)

    def init(self, key: jax.Array) -> State:
        ix = self.ix
        return State(
            q={a: jnp.zeros((ix.num_states, ix.n[a], ix.n_others[a])) for a in ix.agents},
            counts={a: jnp.zeros((ix.num_states, ix.n_others[a])) for a in ix.agents},
            steps=jnp.int32(0),
        )

    def temperature(self, state: State) -> jax.Array:
        return decayed(self.cfg.temperature, self.cfg.temperature_decay, state.steps)

    # ---- beliefs and expected values ---------------------------------------------------------------
    def belief(self, state: State, agent: str, s: jax.Array) -> jax.Array:
        """Pr_i(a_-i|s) = product of the others' empirical marginals, ``[B, |A_-i|]`` (joint index)."""
        joint = tabular.normalise(state.counts[agent][s])  # [B, O]
        out = jnp.ones(joint.shape[:1] + (1,))
        for b in self.ix.others[agent]:  # row-major over the others, like Indexing.others_index
            marg = self.ix.others_marginal(agent, joint, b)  # [B, n_b]
            out = (out[:, :, None] * marg[:, None, :]).reshape(out.shape[0], -1)
        return out

    def expected_values(self, state: State, agent: str, s: jax.Array) -> jax.Array:
        """EV_i(s, a_i) = sum_{a_-i} Q_i(s, a_i, a_-i) Pr_i(a_-i|s), ``[B, |A_i|]``."""
        return jnp.einsum("bao,bo->ba", state.q[agent][s], self.belief(state, agent, s))

    def policy(self, state: State, agent: str, s: jax.Array) -> jax.Array:
        """Boltzmann policy over EV (before epsilon mixing), ``[B, |A_i|]``."""
        return jax.nn.softmax(self.expected_values(state, agent, s) / self.temperature(state), axis=-1)

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        return tabular.act(
            self.ix,
            key,
            obs,
            explore,
            lambda a, s: tabular.epsilon_mix(self.policy(state, a, s), self.cfg.epsilon),
            lambda a, s: self.expected_values(state, a, s),
        )

    # ---- learning ----------------------------------------------------------------------------------
    def observe(self, state: State, trans: dict) -> State:
        """Fictitious play: count every observed joint action of the others, per state."""
        s = self.ix.state(trans["obs"])
        counts = {
            a: tabular.count_update(state.counts[a], (s, self.ix.others_index(a, trans["actions"])))
            for a in self.ix.agents
        }
        return state.replace(counts=counts)

    def update(self, state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        cfg, ix = self.cfg, self.ix
        lr = decayed(cfg.lr, cfg.lr_decay, state.steps)
        s, s_next = ix.state(batch["obs"]), ix.state(batch["next_obs"])
        not_done = 1.0 - batch["done"]
        q_new, td = {}, []
        for a in ix.agents:
            v_next = jnp.max(self.expected_values(state, a, s_next), axis=-1)
            y = batch["rewards"][a] + cfg.gamma * not_done * v_next
            cell = (s, batch["actions"][a].astype(jnp.int32), ix.others_index(a, batch["actions"]))
            td.append(jnp.mean(jnp.abs(y - state.q[a][cell])))
            q_new[a] = tabular.cell_update(state.q[a], cell, y, lr)
        state = state.replace(q=q_new, steps=state.steps + 1)
        return state, {"td_error": jnp.mean(jnp.stack(td)), "lr": lr}

    def diagnostics(self, state: State) -> dict:
        """P(action 0) in state 0 under each agent's Boltzmann policy, and its belief that the first
        other agent plays action 0."""
        s0 = jnp.zeros((1,), jnp.int32)
        out = {}
        for a in self.ix.agents:
            out[f"pi_a0/{a}"] = self.policy(state, a, s0)[0, 0]
            other = self.ix.others[a][0]
            out[f"belief_a0/{a}"] = self.ix.others_marginal(a, self.belief(state, a, s0), other)[0, 0]
        return out
