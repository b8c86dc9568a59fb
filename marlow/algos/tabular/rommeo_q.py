"""ROMMEO-Q: tabular regularised opponent model with maximum entropy objective (ROMMEO paper Sec. 3.1,
Appendix A Algorithm 1).

Every agent i keeps a joint soft Q-table Q_i[s, a_i, a_-i] and counts of the other agents' joint actions
per state, whose normalised value is the empirical prior P_i(a_-i|s) ("the observed empirical
distribution of opponents' actions given states", Sec. 2.2; Algorithm 1 counts over the whole buffer).

Eq. (10), conditional pi: pi_i(a_i|s, a_-i) = softmax_{a_i}( Q_i(s, a_i, a_-i) / alpha )
Eq. (11), opponent model: rho_i(a_-i|s) propto P_i(a_-i|s) (sum_{a_i} exp(Q_i(s, a_i, a_-i) / alpha))^alpha
Algorithm 1, acting:      pi_i(a_i|s) = sum_{a_-i} pi_i(a_i|s, a_-i) rho_i(a_-i|s)  (epsilon-greedy)
Eq. (13), soft value:     V_i(s) = log sum_{a_-i} P_i(a_-i|s) (sum_{a_i} exp(Q_i(s, a_i, a_-i) / alpha))^alpha
Algorithm 1, sampled V:   Vbar_i(s') = log 1/K sum_k (P^(1/alpha)(b_k|s') exp(Q_i(s', a_k, b_k)/alpha))^alpha
                                                 / (pi_i(a_k|s', b_k) rho_i(b_k|s')),
                          b_k ~ rho_i(.|s'), a_k ~ pi_i(.|s', b_k)   (b = a_-i)
Eq. (13), Q-iteration:    Q_i(s, a_i, a_-i) <- r_i + gamma (1 - d) V_i(s')   (with a learning rate)

``num_value_samples`` = K > 0 uses Algorithm 1's importance-sampled estimate; K = 0 computes Eq. (13)
exactly (cheap for tables). Note: the sampled estimate's expectation inside the log is
sum_{a_i, a_-i} P exp(Q), which equals exp(V) of Eq. (13) only at alpha = 1 (the paper's original
objective, Sec. 3.1); the reference code uses K = 1 with alpha ~ 1 (see conf/algo/rommeo_q.yaml).

Left open by the paper, our choices (all in the config):
- The prior starts from ``prior_pseudocount`` counts per joint action (Laplace smoothing), so log P is
  finite before an action is seen; the paper's prior is the raw frequency, the code's a window of 50.
- The learning rate and alpha follow the reference code's schedule ``c / (c + t)`` (t = updates).
- A replay mini-batch updates each Q cell toward the mean of its targets (``tabular.cell_update``).

``ROMMEO-Q-EMP`` (the paper's ablation, ``rommeo_q_emp``) replaces rho by the empirical prior P itself;
its soft value is then the expected soft value of the conditional policy,
V(s) = sum_{a_-i} P(a_-i|s) alpha log sum_{a_i} exp(Q(s, a_i, a_-i) / alpha).
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
from marlow.schema.ranges import Count, NonNegative, Positive, Unit

NAME = "rommeo_q"
KIND = "off_policy"
DESCRIPTION = "ROMMEO-Q: tabular soft Q-iteration with a regularised opponent model (ROMMEO Alg. 1)"
SUPPORTED_ACTIONS = frozenset({"discrete"})
TABULAR = True


@dataclass
class Config(ReplayKeys):
    """Defaults in conf/algo/rommeo_q.yaml, each with its source."""

    gamma: Unit
    alpha: Positive
    alpha_decay: NonNegative  # 0 keeps alpha constant
    lr: StepSize
    lr_decay: NonNegative  # d of lr d / (d + t); 0 keeps lr constant
    epsilon: Unit  # the probability of a uniform action
    num_value_samples: Count  # 0: the exact soft value, Eq. (13)
    prior_pseudocount: NonNegative  # 0: the raw frequencies (log P = -inf for an unseen joint action)


@struct.dataclass
class State:
    q: dict[str, jax.Array]  # [S, |A_i|, |A_-i|] per agent
    counts: dict[str, jax.Array]  # [S, |A_-i|] counts of the others' joint actions, per agent
    steps: jax.Array  # updates done


class Algorithm:
    empirical_opponent = False  # ROMMEO-Q-EMP sets True

    def __init__(self, spec: EnvSpec, cfg: Config):
        self.spec, self.cfg = spec, cfg
        self.ix = tabular.Indexing(spec)

    def init(self, key: jax.Array) -> State:
        ix = self.ix
        q = {a: jnp.zeros((ix.num_states, ix.n[a], ix.n_others[a])) for a in ix.agents}
        counts = {a: jnp.full((ix.num_states, ix.n_others[a]), self.cfg.prior_pseudocount) for a in ix.agents}
        return State(q=q, counts=counts, steps=jnp.int32(0))

    def alpha(self, state: State) -> jax.Array:
        return tabular.decayed(self.cfg.alpha, self.cfg.alpha_decay, state.steps)

    # ---- the policy and the opponent model of one agent, for states s [B] --------------------------
    def components(self, state: State, agent: str, s: jax.Array, alpha: jax.Array):
        """``(log P, log rho, log pi(.|s, a_-i))`` with shapes [B, O], [B, O], [B, A, O]."""
        q = state.q[agent][s] / alpha  # [B, A, O]
        log_prior = jnp.log(tabular.normalise(state.counts[agent][s]))  # [B, O]
        log_pi_cond = jax.nn.log_softmax(q, axis=1)  # Eq. (10)
        if self.empirical_opponent:
            log_rho = log_prior
        else:
            log_rho = jax.nn.log_softmax(log_prior + alpha * jax.nn.logsumexp(q, axis=1), axis=-1)  # Eq. (11)
        return log_prior, log_rho, log_pi_cond

    def marginal(self, state: State, agent: str, s: jax.Array, alpha: jax.Array) -> jax.Array:
        """pi_i(a_i|s) = sum_{a_-i} pi_i(a_i|s, a_-i) rho_i(a_-i|s), shape [B, A]."""
        _, log_rho, log_pi_cond = self.components(state, agent, s, alpha)
        return jnp.sum(jnp.exp(log_pi_cond + log_rho[:, None, :]), axis=-1)

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        s = self.ix.state(obs)
        alpha = self.alpha(state)
        out = {}
        for a, k in zip(self.ix.agents, jax.random.split(key, len(self.ix.agents)), strict=True):
            probs = self.marginal(state, a, s, alpha)
            if explore:
                out[a] = tabular.sample(k, tabular.epsilon_mix(probs, self.cfg.epsilon))
            else:
                out[a] = tabular.greedy_sample(k, probs)  # ties (untrained tables) at random
        return out

    # ---- soft values ---------------------------------------------------------------------------------
    def exact_value(self, state: State, agent: str, s: jax.Array, alpha: jax.Array) -> jax.Array:
        """Eq. (13) (ROMMEO-Q) or the expected conditional soft value (ROMMEO-Q-EMP), shape [B]."""
        q = state.q[agent][s] / alpha
        log_prior = jnp.log(tabular.normalise(state.counts[agent][s]))
        lse = jax.nn.logsumexp(q, axis=1)  # [B, O]
        if self.empirical_opponent:
            return jnp.sum(jnp.exp(log_prior) * alpha * lse, axis=-1)
        return jax.nn.logsumexp(log_prior + alpha * lse, axis=-1)

    def sampled_value(self, state: State, agent: str, s: jax.Array, alpha: jax.Array, key) -> jax.Array:
        """Algorithm 1's importance-sampled estimate with K = ``num_value_samples`` samples, shape [B]."""
        K = self.cfg.num_value_samples
        log_prior, log_rho, log_pi_cond = self.components(state, agent, s, alpha)
        k_o, k_a = jax.random.split(key)
        o = jax.random.categorical(k_o, log_rho, shape=(K,) + log_rho.shape[:1])  # [K, B]
        rows = jnp.arange(s.shape[0])
        a = jax.random.categorical(k_a, jnp.swapaxes(log_pi_cond, 1, 2)[rows, o])  # [K, B]
        q = state.q[agent][s[None, :], a, o]  # [K, B]
        log_w = (
            log_prior[rows, o] + q - log_pi_cond[rows, a, o] - log_rho[rows, o]
        )  # log[(P^(1/alpha) e^(Q/alpha))^alpha / (pi rho)]
        return jax.nn.logsumexp(log_w, axis=0) - jnp.log(K)

    def value(self, state: State, agent: str, s: jax.Array, alpha: jax.Array, key) -> jax.Array:
        if self.cfg.num_value_samples > 0:
            return self.sampled_value(state, agent, s, alpha, key)
        return self.exact_value(state, agent, s, alpha)

    # ---- learning ------------------------------------------------------------------------------------
    def observe(self, state: State, trans: dict) -> State:
        """Algorithm 1: update the prior's counts with every observed opponent action."""
        s = self.ix.state(trans["obs"])
        counts = {
            a: tabular.count_update(state.counts[a], (s, self.ix.others_index(a, trans["actions"])))
            for a in self.ix.agents
        }
        return state.replace(counts=counts)

    def update(self, state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        cfg, ix = self.cfg, self.ix
        alpha = self.alpha(state)
        lr = tabular.decayed(cfg.lr, cfg.lr_decay, state.steps)
        s, s_next = ix.state(batch["obs"]), ix.state(batch["next_obs"])
        not_done = 1.0 - batch["done"]
        q_new, td = {}, []
        for a, k in zip(ix.agents, jax.random.split(key, len(ix.agents)), strict=True):
            v_next = self.value(state, a, s_next, alpha, k)
            y = batch["rewards"][a] + cfg.gamma * not_done * v_next  # Eq. (13)
            cell = (s, batch["actions"][a].astype(jnp.int32), ix.others_index(a, batch["actions"]))
            td.append(jnp.mean(jnp.abs(y - state.q[a][cell])))
            q_new[a] = tabular.cell_update(state.q[a], cell, y, lr)
        state = state.replace(q=q_new, steps=state.steps + 1)
        return state, {"td_error": jnp.mean(jnp.stack(td)), "alpha": alpha, "lr": lr}

    def diagnostics(self, state: State) -> dict:
        """P(action 0) in state 0 of each agent's marginal policy, of its opponent model's and its prior's
        marginals over the first other agent (for the climbing game: P(A), Fig. 1c)."""
        s0 = jnp.zeros((1,), jnp.int32)
        alpha = self.alpha(state)
        out = {}
        for a in self.ix.agents:
            log_prior, log_rho, _ = self.components(state, a, s0, alpha)
            other = self.ix.others[a][0]
            out[f"pi_a0/{a}"] = self.marginal(state, a, s0, alpha)[0, 0]
            out[f"rho_a0/{a}"] = self.ix.others_marginal(a, jnp.exp(log_rho), other)[0, 0]
            out[f"prior_a0/{a}"] = self.ix.others_marginal(a, jnp.exp(log_prior), other)[0, 0]
        return out
