"""HAPPO: heterogeneous-agent PPO (Kuba et al. 2022, "Trust Region Policy Optimisation in Multi-Agent
Reinforcement Learning", Algorithm 2 / Eq. 11; HARL's ``harl/algorithms/actors/happo.py`` and its on-policy
runner).

Per iteration, after collecting ``rollout_steps`` x ``num_envs`` steps and computing the team advantage
A(s, a) with the centralised critic (:mod:`.centralised`):

1. draw a random order i_1, ..., i_n of the agents; M = 1 for every sample;
2. for each agent i_m in turn: ``epochs`` passes of ``num_minibatches`` minibatches minimising

       -mean( M * min(r A, clip(r, 1 - eps, 1 + eps) A) ) - ent_coef H[pi_{i_m}],
       r = pi_{i_m}(a | o) / pi_{i_m, old}(a | o)

   with M outside the min and unclipped (HARL); then M <- M * pi_{i_m, new}(a | o) / pi_{i_m, old}(a | o)
   on every sample, with the agent's updated policy (the factor of the agents after it). With
   ``factor_clip`` = c > 0, M is clipped to [1 - c, 1 + c] where it is used (the Teammate Lookahead
   authors' HAPPO variant, teammate ratio clip 0.2);
3. the critic: ``critic_epochs`` passes of ``critic_minibatches`` minibatches of the value loss.

No parameter sharing (heterogeneous agents). Each agent keeps its own Adam. The agents' updates run in one
``fori_loop`` over the order: agents of one space are stacked on one axis and picked by index (one traced
update, cheap under ``vmap`` over seeds); agents of different spaces go through ``lax.switch`` (under
``vmap`` every branch runs). Logged, besides PPO's statistics: ``factor_std``, the standard deviation of M
over samples averaged over the order's positions. Defaults: conf/algo/happo.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from marlow import rollout
from marlow.algos.onpolicy import centralised, ppo
from marlow.algos.onpolicy.centralised import SUPPORTED_ACTIONS, CentralisedPPO, State
from marlow.schema.ranges import NonNegative, Size

NAME = "happo"
KIND = "on_policy"
DESCRIPTION = "HAPPO: sequential per-agent PPO updates weighted by earlier agents' ratios, centralised V"
SUPPORTS_MASKS = True
COOPERATIVE = True
__all__ = ["NAME", "KIND", "DESCRIPTION", "SUPPORTED_ACTIONS", "Config", "Algorithm"]


@dataclass
class Config(centralised.Config):
    """Defaults in conf/algo/happo.yaml, each with its source."""

    critic_epochs: Size
    critic_minibatches: Size
    factor_clip: NonNegative  # M clipped to [1 - c, 1 + c]; 0 leaves it unclipped


class Algorithm(CentralisedPPO):
    """HAPPO as a learner (:mod:`marlow.algos.learner`)."""

    NAME = NAME

    def __init__(self, spec, cfg: Config):
        super().__init__(spec, cfg, share=False)
        agents = spec.agents
        self.stacked = len({self.actors._kind(a) for a in agents}) == 1  # one space: stack the agents

    def _minibatch_counts(self) -> dict[str, int]:
        return {
            "num_minibatches": self.cfg.num_minibatches,
            "critic_minibatches": self.cfg.critic_minibatches,
        }

    def factor(self, log_factor: jax.Array) -> jax.Array:
        """M = exp(sum of earlier agents' log-ratios), clipped to [1 - c, 1 + c] with ``factor_clip`` c."""
        m = jnp.exp(log_factor)
        c = self.cfg.factor_clip
        return jnp.clip(m, 1.0 - c, 1.0 + c) if c > 0 else m

    # ---- one agent --------------------------------------------------------------------------------
    def train_agent(self, a: str, p, opt_state, agent_data: dict, adv, log_factor, key, lr):
        """Agent ``a``'s epochs with the factor of ``log_factor``; returns its parameters and optimiser
        state, the updated log-factor, the factor it used and its metrics."""
        cfg = self.cfg
        factor = self.factor(log_factor)
        data = {"agents": {a: agent_data}, "adv": adv, "factor": factor}

        def step(carry, mb):
            p, o = carry
            grads, m = jax.grad(lambda q: self.actor_loss(q, a, mb, mb["adv"], mb["factor"]), has_aux=True)(p)
            p, o = self.apply(grads, o, p, lr)
            return (p, o), m

        (p, opt_state), metrics = ppo.minibatch_epochs(
            (p, opt_state), data, key, cfg.epochs, cfg.num_minibatches, step
        )
        d = agent_data
        new_logp, _ = self.actors.log_prob_entropy(p, a, d["obs"], d["action"], d["mask"])
        base = d.get("factor_base", d["log_prob"])  # the policy M's ratios are taken against
        log_factor = log_factor + jax.lax.stop_gradient(new_logp - base)
        metrics["factor_std"] = jnp.std(factor)
        return p, opt_state, log_factor, factor, metrics

    def actor_phase(self, actors: dict, opt: dict, data: dict, order: jax.Array, key: jax.Array, lr):
        """The agents' sequential updates in ``order`` (indices into ``spec.agents``). Returns the actors'
        parameters and optimiser states, the factor M each position used (``[n, N]``) and the metrics
        averaged over the positions."""
        agents, n = self.spec.agents, self.spec.num_agents
        samples = data["adv"].shape  # [N] transitions (or [B, T] sequences, :mod:`.lookahead`)
        keys = jax.random.split(key, n)

        if self.stacked:
            rep = agents[0]  # every agent has this agent's network and distribution

            def stack(tree):
                return jax.tree.map(lambda *x: jnp.stack(x), *[tree[a] for a in agents])

            ps, os_, ds = stack(actors), stack(opt), stack(data["agents"])

            def train(i, k, carry_models, log_factor):
                ps, os_ = carry_models
                take = lambda t: jax.tree.map(lambda x: x[i], t)  # noqa: E731
                p, o, log_factor, factor, m = self.train_agent(
                    rep, take(ps), take(os_), take(ds), data["adv"], log_factor, k, lr
                )
                put = lambda full, one: jax.tree.map(lambda x, y: x.at[i].set(y), full, one)  # noqa: E731
                return (put(ps, p), put(os_, o)), log_factor, factor, m

            models = (ps, os_)
        else:

            def branch(j):
                a = agents[j]

                def run(k, carry_models, log_factor):
                    ps, os_ = carry_models
                    p, o, log_factor, factor, m = self.train_agent(
                        a, ps[a], os_[a], data["agents"][a], data["adv"], log_factor, k, lr
                    )
                    return ({**ps, a: p}, {**os_, a: o}), log_factor, factor, m

                return run

            branches = [branch(j) for j in range(n)]

            def train(i, k, carry_models, log_factor):
                return jax.lax.switch(i, branches, k, carry_models, log_factor)

            models = (dict(actors), dict(opt))

        m_shape = jax.eval_shape(lambda c: train(order[0], keys[0], c, jnp.zeros(samples))[3], models)
        init = (models, jnp.zeros(samples), jnp.zeros((n, *samples)), jax.tree.map(jnp.zeros_like, m_shape))

        def body(pos, carry):
            models, log_factor, factors, msum = carry
            models, log_factor, factor, m = train(order[pos], keys[pos], models, log_factor)
            return models, log_factor, factors.at[pos].set(factor), jax.tree.map(jnp.add, msum, m)

        models, _, factors, msum = jax.lax.fori_loop(0, n, body, init)
        if self.stacked:

            def unstack(tree):
                return {a: jax.tree.map(lambda x, j=j: x[j], tree) for j, a in enumerate(agents)}

            actors, opt = unstack(models[0]), unstack(models[1])
        else:
            actors, opt = models
        return actors, opt, factors, jax.tree.map(lambda v: v / n, msum)

    # ---- one iteration ----------------------------------------------------------------------------
    def learn(self, state: State, traj: rollout.Trajectory, step, key: jax.Array) -> tuple[State, dict]:
        cfg, lr_factor = self.cfg, self.lr_factor(step)
        lr, critic_lr = cfg.lr * lr_factor, cfg.critic_lr * lr_factor
        data, vnorm, ev = self.batch(state, traj)
        k_order, k_actors, k_critic = jax.random.split(key, 3)
        order = jax.random.permutation(k_order, self.spec.num_agents)
        actors, actor_opt, _, metrics = self.actor_phase(
            state.params["actors"], state.opt["actors"], data, order, k_actors, lr
        )

        def critic_step(carry, mb):
            c, o, m = self.critic_step(*carry, mb, critic_lr)
            return (c, o), m

        critic_data = {k: data[k] for k in ("state", "value", "target")}
        (critic, critic_opt), critic_metrics = ppo.minibatch_epochs(
            (state.params["critic"], state.opt["critic"]),
            critic_data,
            k_critic,
            cfg.critic_epochs,
            cfg.critic_minibatches,
            critic_step,
        )
        metrics = {**jax.tree.map(jnp.mean, metrics), **critic_metrics}
        n = self.spec.num_agents
        metrics.update(
            explained_variance=ev,
            lr=jnp.asarray(lr, jnp.float32),
            updates=jnp.float32(
                n * cfg.epochs * cfg.num_minibatches + cfg.critic_epochs * cfg.critic_minibatches
            ),
        )
        params = {"actors": actors, "critic": critic}
        opt = {"actors": actor_opt, "critic": critic_opt}
        return State(params=params, opt=opt, vnorm=vnorm, updates=state.updates + 1), metrics
